-- dim_users (BigQuery, production). Template: ${project} and ${dataset} are placeholders (see
-- fact_events.sql). SCD Type 2, as duckdb/dim_users.sql (no email in clear, no name). Written by
-- MERGE from dim_users_changes (sql/README.md).
CREATE TABLE IF NOT EXISTS `${project}.${dataset}.dim_users` (
    user_key       STRING    NOT NULL OPTIONS (description = 'Surrogate key of the version: first 16 hex of sha256(user_id|source_lsn|source_ordinal) of the change that started it.'),
    user_id        STRING    NOT NULL OPTIONS (description = 'Natural key: the storefront customer id (fact_events.user_id, fact_orders.user_id).'),
    email_hash     STRING             OPTIONS (description = 'HMAC-SHA256(USER_EMAIL_HASH_KEY, lower(trim(email))), hex. Equal emails give equal hashes under one key.'),
    email_domain   STRING             OPTIONS (description = 'The part of the email after the last @, lower case.'),
    country        STRING             OPTIONS (description = 'ISO 3166-1 alpha-2 country.'),
    is_active      BOOL      NOT NULL OPTIONS (description = 'false once the account is closed (soft delete).'),
    created_at     TIMESTAMP,
    valid_from     TIMESTAMP NOT NULL OPTIONS (description = 'Source commit time of the change that started the version (changed_at, or updated_at).'),
    valid_to       TIMESTAMP          OPTIONS (description = 'valid_from of the next version, or of the hard delete that ended it; NULL while open.'),
    is_current     BOOL      NOT NULL OPTIONS (description = 'The customer''s last version, not ended by a hard delete.'),
    deleted        BOOL      NOT NULL OPTIONS (description = 'A hard delete in the source ended this version at valid_to.'),
    source_lsn     INT64     NOT NULL,
    source_ordinal INT64     NOT NULL,
    attr_hash      STRING    NOT NULL OPTIONS (description = 'sha256 hex of the tracked attributes (email_hash, email_domain, country, is_active).'),
    source         STRING    NOT NULL,
    loaded_at      TIMESTAMP NOT NULL OPTIONS (description = 'When bq-writer wrote this row.')
)
CLUSTER BY user_id
OPTIONS (description = 'Customers, SCD Type 2: one row per version, valid in [valid_from, valid_to). No email in clear, no name.');
