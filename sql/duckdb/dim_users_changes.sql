-- dim_users_changes: every CustomerChange that reached the warehouse, once per source sequence
-- (DuckDB), without the email (only its keyed hash and domain) or the name. Same model as
-- bigquery/dim_users_changes.sql; dim_users is derived from it as dim_products is from
-- dim_products_changes.
CREATE TABLE IF NOT EXISTS dim_users_changes (
    user_id          VARCHAR     NOT NULL,
    source_lsn       BIGINT      NOT NULL,
    source_ordinal   BIGINT      NOT NULL,
    op               VARCHAR     NOT NULL,
    email_hash       VARCHAR,
    email_domain     VARCHAR,
    country          VARCHAR,
    is_active        BOOLEAN     NOT NULL,
    created_at       TIMESTAMPTZ,
    deleted_at       TIMESTAMPTZ,
    valid_from       TIMESTAMPTZ NOT NULL,
    updated_at       TIMESTAMPTZ NOT NULL,
    synced_at        TIMESTAMPTZ NOT NULL,
    source           VARCHAR     NOT NULL,
    attr_hash        VARCHAR,
    source_topic     VARCHAR     NOT NULL,
    source_partition INTEGER     NOT NULL,
    source_offset    BIGINT      NOT NULL,
    loaded_at        TIMESTAMPTZ NOT NULL
);

COMMENT ON TABLE dim_users_changes IS 'Every customer change bq-writer received, once per (user_id, source_lsn, source_ordinal), without email or name; dim_users is derived from it.';
COMMENT ON COLUMN dim_users_changes.email_hash IS 'HMAC-SHA256(USER_EMAIL_HASH_KEY, lower(trim(email))), hex; NULL for a delete.';
COMMENT ON COLUMN dim_users_changes.attr_hash IS 'sha256 hex of the tracked attributes; NULL for a delete.';
