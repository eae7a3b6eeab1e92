-- fact_order_items: one row per line of the latest version of each order (BigQuery, production).
--
-- Template: ${project} and ${dataset} are placeholders (see fact_events.sql). Same model as
-- duckdb/fact_order_items.sql: the lines are replaced together with their fact_orders row.
CREATE TABLE IF NOT EXISTS `${project}.${dataset}.fact_order_items` (
    order_id         STRING    NOT NULL OPTIONS (description = 'Order id; joins fact_orders.order_id.'),
    line_number      INT64     NOT NULL OPTIONS (description = 'Position of the line in the order version (0-based).'),
    line_id          STRING             OPTIONS (description = 'The line''s id in the storefront API, stable across versions; NULL for v1 data.'),
    product_id       STRING    NOT NULL OPTIONS (description = 'Catalog product id.'),
    quantity         INT64     NOT NULL OPTIONS (description = 'Units ordered.'),
    unit_price_minor INT64     NOT NULL OPTIONS (description = 'Unit price, minor units of the order currency.'),
    line_total_minor INT64              OPTIONS (description = 'quantity x unit_price_minor as the API states it; NULL for v1 data.'),
    order_version    INT64     NOT NULL OPTIONS (description = 'order_version of the fact_orders row the line belongs to.'),
    date_key         INT64     NOT NULL OPTIONS (description = 'date_key of the order (UTC order date).'),
    loaded_at        TIMESTAMP NOT NULL OPTIONS (description = 'When bq-writer wrote the line.')
)
CLUSTER BY order_id
OPTIONS (
    description = 'One row per line of the latest version of each order in fact_orders.'
);
