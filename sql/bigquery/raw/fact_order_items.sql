-- raw.fact_order_items: the lines of every order version bq-writer appended (BigQuery,
-- production). Template: placeholders as in fact_events.sql. The columns of
-- duckdb/fact_order_items.sql plus the source coordinates of the order record the line came
-- from: a line joins its order version on (source_topic, source_partition, source_offset), and
-- prod.fact_order_items keeps the lines of the version prod.fact_orders picked.
--
-- Not partitioned: the lines have no time of their own (date_key is an integer), they are read
-- by their order (clustering), and prod reads them all anyway.
CREATE TABLE IF NOT EXISTS `${project}.${raw}.fact_order_items` (
    order_id         STRING    NOT NULL OPTIONS (description = 'Order id; joins fact_orders.order_id.'),
    line_number      INT64     NOT NULL OPTIONS (description = 'Position of the line in the order version (0-based).'),
    line_id          STRING             OPTIONS (description = 'The line''s id in the storefront API, stable across versions; NULL for v1 data.'),
    product_id       STRING    NOT NULL OPTIONS (description = 'Catalog product id.'),
    quantity         INT64     NOT NULL OPTIONS (description = 'Units ordered.'),
    unit_price_minor INT64     NOT NULL OPTIONS (description = 'Unit price, minor units of the order currency.'),
    line_total_minor INT64              OPTIONS (description = 'quantity x unit_price_minor as the API states it; NULL for v1 data.'),
    order_version    INT64     NOT NULL OPTIONS (description = 'order_version of the fact_orders row the line belongs to.'),
    date_key         INT64     NOT NULL OPTIONS (description = 'date_key of the order (UTC order date).'),
    loaded_at        TIMESTAMP NOT NULL OPTIONS (description = 'When bq-writer wrote the line.'),
    source_topic     STRING    NOT NULL OPTIONS (description = 'Kafka topic of the order record the line came from.'),
    source_partition INT64     NOT NULL OPTIONS (description = 'Kafka partition of that record.'),
    source_offset    INT64     NOT NULL OPTIONS (description = 'Kafka offset of that record.')
)
CLUSTER BY order_id
OPTIONS (
    description = 'The lines of every order version bq-writer appended (append-only); prod.fact_order_items has those of the latest version.'
);
