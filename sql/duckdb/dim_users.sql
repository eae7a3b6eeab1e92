-- dim_users: the storefront's customers as a Slowly Changing Dimension, Type 2 (DuckDB).
--
-- Same model as bigquery/dim_users.sql and the same rule as dim_products.sql (derived from
-- dim_users_changes). Personal data: the email is stored only as email_hash =
-- HMAC-SHA256(USER_EMAIL_HASH_KEY, lower(trim(email))) in hex, and its domain; the name not at
-- all (docs/design.md, 5.1).
CREATE TABLE IF NOT EXISTS dim_users (
    user_key       VARCHAR     NOT NULL,
    user_id        VARCHAR     NOT NULL,
    email_hash     VARCHAR,
    email_domain   VARCHAR,
    country        VARCHAR,
    is_active      BOOLEAN     NOT NULL,
    created_at     TIMESTAMPTZ,
    valid_from     TIMESTAMPTZ NOT NULL,
    valid_to       TIMESTAMPTZ,
    is_current     BOOLEAN     NOT NULL,
    deleted        BOOLEAN     NOT NULL,
    source_lsn     BIGINT      NOT NULL,
    source_ordinal BIGINT      NOT NULL,
    attr_hash      VARCHAR     NOT NULL,
    source         VARCHAR     NOT NULL,
    loaded_at      TIMESTAMPTZ NOT NULL
);

COMMENT ON TABLE dim_users IS 'Customers, SCD Type 2: one row per version, valid in [valid_from, valid_to). No email in clear, no name.';
COMMENT ON COLUMN dim_users.user_key IS 'Surrogate key of the version: first 16 hex of sha256(user_id|source_lsn|source_ordinal) of the change that started it.';
COMMENT ON COLUMN dim_users.user_id IS 'Natural key: the storefront customer id (fact_events.user_id, fact_orders.user_id).';
COMMENT ON COLUMN dim_users.email_hash IS 'HMAC-SHA256(USER_EMAIL_HASH_KEY, lower(trim(email))), hex. Equal emails give equal hashes under one key.';
COMMENT ON COLUMN dim_users.email_domain IS 'The part of the email after the last @, lower case.';
COMMENT ON COLUMN dim_users.country IS 'ISO 3166-1 alpha-2 country.';
COMMENT ON COLUMN dim_users.is_active IS 'false once the account is closed (soft delete).';
COMMENT ON COLUMN dim_users.valid_from IS 'Source commit time of the change that started the version (changed_at, or updated_at).';
COMMENT ON COLUMN dim_users.valid_to IS 'valid_from of the next version, or of the hard delete that ended it; NULL while open.';
COMMENT ON COLUMN dim_users.is_current IS 'The customer''s last version, not ended by a hard delete.';
COMMENT ON COLUMN dim_users.deleted IS 'A hard delete in the source ended this version at valid_to.';
COMMENT ON COLUMN dim_users.attr_hash IS 'sha256 hex of the tracked attributes (email_hash, email_domain, country, is_active).';
COMMENT ON COLUMN dim_users.loaded_at IS 'When bq-writer wrote this row.';
