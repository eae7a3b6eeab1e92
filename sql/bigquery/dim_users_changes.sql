-- dim_users_changes (BigQuery, production). Template: ${project} and ${dataset} are placeholders
-- (see fact_events.sql). The append-only change log, as duckdb/dim_users_changes.sql (no email in
-- clear, no name).
CREATE TABLE IF NOT EXISTS `${project}.${dataset}.dim_users_changes` (
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
    loaded_at        TIMESTAMP NOT NULL
)
PARTITION BY DATE(valid_from)
CLUSTER BY user_id
OPTIONS (description = 'Every customer change bq-writer received, once per (user_id, source_lsn, source_ordinal), without email or name; dim_users is derived from it.');
