-- prod.dim_users (BigQuery): storefront customers (no email in clear, no name) as a Slowly Changing Dimension, Type 2, derived from the change
-- log by exactly the rule of warehouse.History (services/bq-writer/internal/warehouse/dims.go).
-- Template: placeholders as in raw/fact_events.sql. Same relation as duckdb/prod/dim_users.sql.
--
--   changes: one row per (user_id, source_lsn, source_ordinal), the first appended (a replay,
--            or the same change read twice, counts once);
--   marked:  in source order (source_lsn, source_ordinal), a change starts a version when it is
--            an upsert and the change before it is none, a delete, or has another attr_hash
--            (that change's attr_hash is the one of the version in force: it started it or
--            equalled it);
--   bounds:  a version ends at the next change that starts a version or is a delete
--            (valid_to = its valid_from; deleted when it is a delete; is_current when none).
-- user_key is the writer's SurrogateKey(user_id, source_lsn, source_ordinal) of the starting change,
-- stored in the log; the attributes are those of that change.
CREATE OR REPLACE VIEW `${project}.${prod}.dim_users` (
    user_key,
    user_id,
    email_hash,
    email_domain,
    country,
    is_active,
    created_at,
    valid_from,
    valid_to,
    is_current,
    deleted,
    source_lsn,
    source_ordinal,
    attr_hash,
    source,
    loaded_at
)
OPTIONS (description = 'Storefront customers (no email in clear, no name), SCD Type 2: one row per version, valid in [valid_from, valid_to).')
AS
WITH changes AS (
    SELECT *
    FROM `${project}.${staging}.dim_users_changes`
    WHERE TRUE
    QUALIFY ROW_NUMBER() OVER (
        PARTITION BY user_id, source_lsn, source_ordinal
        ORDER BY loaded_at, source_topic, source_partition, source_offset) = 1
),
marked AS (
    SELECT *,
        op = 'upsert' AND COALESCE(
            LAG(op) OVER (PARTITION BY user_id ORDER BY source_lsn, source_ordinal) = 'delete'
            OR LAG(attr_hash) OVER (PARTITION BY user_id ORDER BY source_lsn, source_ordinal) != attr_hash,
            TRUE) AS starts
    FROM changes
),
bounds AS (
    SELECT *,
        LEAD(valid_from) OVER (PARTITION BY user_id ORDER BY source_lsn, source_ordinal) AS next_from,
        LEAD(op) OVER (PARTITION BY user_id ORDER BY source_lsn, source_ordinal) AS next_op
    FROM marked
    WHERE starts OR op = 'delete'
)
SELECT
    user_key, user_id,
    email_hash, email_domain, country, is_active, created_at,
    valid_from, next_from AS valid_to, next_op IS NULL AS is_current, COALESCE(next_op = 'delete', FALSE) AS deleted,
    source_lsn, source_ordinal, attr_hash, source, loaded_at
FROM bounds
WHERE starts;
