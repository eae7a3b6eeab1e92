-- The DuckDB prod layer: the relations analysts query, with the same names and columns as the
-- BigQuery prod dataset (sql/bigquery/prod), as views over the main-schema tables bq-writer
-- writes. Every file creates the schema, so each stands alone; they sort after the tables
-- (ddl.DuckDB returns duckdb/*.sql, then duckdb/prod/*.sql).
--
-- prod.dim_products: main.dim_products, which bq-writer keeps by the rule of warehouse.History
-- (BigQuery derives the same versions from the change log in the view).
CREATE SCHEMA IF NOT EXISTS prod;

CREATE OR REPLACE VIEW prod.dim_products AS
SELECT
    product_key, product_id, sku, name, category, brand, price_minor, currency, is_active,
    valid_from, valid_to, is_current, deleted, source_lsn, source_ordinal, attr_hash, source,
    loaded_at
FROM main.dim_products;

COMMENT ON VIEW prod.dim_products IS 'Catalog products, SCD Type 2: one row per version, valid in [valid_from, valid_to).';
