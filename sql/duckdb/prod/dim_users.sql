-- The DuckDB prod layer: the relations analysts query, with the same names and columns as the
-- BigQuery prod dataset (sql/bigquery/prod), as views over the main-schema tables bq-writer
-- writes. Every file creates the schema, so each stands alone; they sort after the tables
-- (ddl.DuckDB returns duckdb/*.sql, then duckdb/prod/*.sql).
--
-- prod.dim_users: main.dim_users, kept as dim_products is.
CREATE SCHEMA IF NOT EXISTS prod;

CREATE OR REPLACE VIEW prod.dim_users AS
SELECT
    user_key, user_id, email_hash, email_domain, country, is_active, created_at, valid_from,
    valid_to, is_current, deleted, source_lsn, source_ordinal, attr_hash, source, loaded_at
FROM main.dim_users;

COMMENT ON VIEW prod.dim_users IS 'Storefront customers (no email in clear, no name), SCD Type 2: one row per version, valid in [valid_from, valid_to).';
