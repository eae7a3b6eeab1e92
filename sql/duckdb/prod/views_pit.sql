-- The DuckDB prod layer: the relations analysts query, with the same names and columns as the
-- BigQuery prod dataset (sql/bigquery/prod), as views over the main-schema tables bq-writer
-- writes. Every file creates the schema, so each stands alone; they sort after the tables
-- (ddl.DuckDB returns duckdb/*.sql, then duckdb/prod/*.sql).
--
-- prod.*_pit: the point-in-time views of ../views_pit.sql over the prod views, as
-- bigquery/prod/views_pit.sql. Sorts after the views it reads.
CREATE SCHEMA IF NOT EXISTS prod;

CREATE OR REPLACE VIEW prod.fact_events_pit AS
SELECT e.*, p.product_key, u.user_key
FROM prod.fact_events e
LEFT JOIN prod.dim_products p ON p.product_id = e.product_id
    AND p.valid_from <= e.event_timestamp AND (p.valid_to IS NULL OR e.event_timestamp < p.valid_to)
LEFT JOIN prod.dim_users u ON u.user_id = e.user_id
    AND u.valid_from <= e.event_timestamp AND (u.valid_to IS NULL OR e.event_timestamp < u.valid_to);

CREATE OR REPLACE VIEW prod.fact_orders_pit AS
SELECT o.*, u.user_key
FROM prod.fact_orders o
LEFT JOIN prod.dim_users u ON u.user_id = o.user_id
    AND u.valid_from <= o.order_timestamp AND (u.valid_to IS NULL OR o.order_timestamp < u.valid_to);

-- Order lines resolve their product at the time of the order they belong to.
CREATE OR REPLACE VIEW prod.fact_order_items_pit AS
SELECT i.*, o.order_timestamp, p.product_key
FROM prod.fact_order_items i
JOIN prod.fact_orders o ON o.order_id = i.order_id
LEFT JOIN prod.dim_products p ON p.product_id = i.product_id
    AND p.valid_from <= o.order_timestamp AND (p.valid_to IS NULL OR o.order_timestamp < p.valid_to);
