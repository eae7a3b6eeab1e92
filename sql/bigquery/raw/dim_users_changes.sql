-- raw.dim_users_changes: every customer change bq-writer appended (BigQuery, production),
-- without the email in clear (only its keyed hash and domain) or the name. Template:
-- placeholders as in fact_events.sql. The columns of duckdb/dim_users_changes.sql plus user_key,
-- as product_key in dim_products_changes.sql; prod.dim_users is derived from it.
CREATE TABLE IF NOT EXISTS `${project}.${raw}.dim_users_changes` (
    user_id          STRING    NOT NULL,
    source_lsn       INT64     NOT NULL,
    source_ordinal   INT64     NOT NULL,
    op               STRING    NOT NULL,
    email_hash       STRING             OPTIONS (description = 'HMAC-SHA256(USER_EMAIL_HASH_KEY, lower(trim(email))), hex; NULL for a delete.'),
    email_domain     STRING,
    country          STRING,
    is_active        BOOL      NOT NULL,
    created_at       TIMESTAMP,
    deleted_at       TIMESTAMP,
    valid_from       TIMESTAMP NOT NULL,
    updated_at       TIMESTAMP NOT NULL,
    synced_at        TIMESTAMP NOT NULL,
    source           STRING    NOT NULL,
    attr_hash        STRING             OPTIONS (description = 'sha256 hex of the tracked attributes; NULL for a delete.'),
    source_topic     STRING    NOT NULL,
    source_partition INT64     NOT NULL,
    source_offset    INT64     NOT NULL,
    loaded_at        TIMESTAMP NOT NULL,
    user_key         STRING    NOT NULL OPTIONS (description = 'warehouse.SurrogateKey(user_id, source_lsn, source_ordinal): the key of the version this change starts, if it starts one.')
)
PARTITION BY DATE(valid_from)
CLUSTER BY user_id
OPTIONS (description = 'Every customer change bq-writer appended (append-only, replays included), without email or name; prod.dim_users is derived from it.');
