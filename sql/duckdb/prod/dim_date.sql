-- The DuckDB prod layer: the relations analysts query, with the same names and columns as the
-- BigQuery prod dataset (sql/bigquery/prod), as views over the main-schema tables bq-writer
-- writes. Every file creates the schema, so each stands alone; they sort after the tables
-- (ddl.DuckDB returns duckdb/*.sql, then duckdb/prod/*.sql).
--
-- prod.dim_date: main.dim_date (BigQuery: a table in prod).
CREATE SCHEMA IF NOT EXISTS prod;

CREATE OR REPLACE VIEW prod.dim_date AS
SELECT
    date_key, date, year, quarter, month, day, day_of_week, iso_week, is_weekend
FROM main.dim_date;

COMMENT ON VIEW prod.dim_date IS 'Calendar days 2020..2035; date_key (yyyymmdd) joins the facts'' date_key.';
