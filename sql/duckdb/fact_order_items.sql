-- fact_order_items: one row per line of the latest version of each order (DuckDB).
--
-- Same model as bigquery/fact_order_items.sql. Written with fact_orders in one transaction: when
-- a newer version of an order replaces its row, all its lines are deleted and the new version's
-- lines inserted, so the lines always belong to the stored order_version.
CREATE TABLE IF NOT EXISTS fact_order_items (
    order_id         VARCHAR     NOT NULL,
    line_number      INTEGER     NOT NULL,
    line_id          VARCHAR,
    product_id       VARCHAR     NOT NULL,
    quantity         INTEGER     NOT NULL,
    unit_price_minor BIGINT      NOT NULL,
    line_total_minor BIGINT,
    order_version    BIGINT      NOT NULL,
    date_key         INTEGER     NOT NULL,
    loaded_at        TIMESTAMPTZ NOT NULL
);

COMMENT ON TABLE fact_order_items IS 'One row per line of the latest version of each order in fact_orders.';
COMMENT ON COLUMN fact_order_items.line_number IS 'Position of the line in the order version (0-based).';
COMMENT ON COLUMN fact_order_items.line_id IS 'The line''s id in the storefront API, stable across versions; NULL for v1 data.';
COMMENT ON COLUMN fact_order_items.line_total_minor IS 'quantity x unit_price_minor as the API states it; NULL for v1 data.';
COMMENT ON COLUMN fact_order_items.order_version IS 'order_version of the fact_orders row the line belongs to.';
COMMENT ON COLUMN fact_order_items.date_key IS 'date_key of the order (UTC order date).';
