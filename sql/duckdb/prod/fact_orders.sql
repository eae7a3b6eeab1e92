-- The DuckDB prod layer: the relations analysts query, with the same names and columns as the
-- BigQuery prod dataset (sql/bigquery/prod), as views over the main-schema tables bq-writer
-- writes. Every file creates the schema, so each stands alone; they sort after the tables
-- (ddl.DuckDB returns duckdb/*.sql, then duckdb/prod/*.sql).
--
-- prod.fact_orders, prod.fact_order_items: main.fact_orders and main.fact_order_items, which
-- bq-writer keeps at the latest version of each order and its lines (one file, as
-- bigquery/prod/fact_orders.sql).
CREATE SCHEMA IF NOT EXISTS prod;

CREATE OR REPLACE VIEW prod.fact_orders AS
SELECT
    order_id, order_version, user_id, status, currency, subtotal_minor, tax_minor, shipping_minor,
    discount_minor, total_minor, refunded_minor, order_timestamp, order_date, date_key, updated_at,
    paid_at, shipped_at, delivered_at, cancelled_at, refunded_at, shipping_country, source,
    received_at, dq_warnings, trace_id, source_topic, source_partition, source_offset, loaded_at
FROM main.fact_orders;

COMMENT ON VIEW prod.fact_orders IS 'One row per order: its latest version (greatest order_version, then updated_at).';

CREATE OR REPLACE VIEW prod.fact_order_items AS
SELECT
    order_id, line_number, line_id, product_id, quantity, unit_price_minor, line_total_minor,
    order_version, date_key, loaded_at
FROM main.fact_order_items;

COMMENT ON VIEW prod.fact_order_items IS 'One row per line of the latest version of each order in fact_orders.';
