-- prod.fact_orders and prod.fact_order_items (BigQuery): per order its latest version and that
-- version's lines. Template: placeholders as in raw/fact_events.sql. Same relations as
-- duckdb/prod/fact_orders.sql. One file for both because the lines view reads the orders view,
-- and "fact_order_items.sql" would sort before "fact_orders.sql".
--
-- The version kept is the greatest (order_version, updated_at), the rule of
-- services/bq-writer/internal/warehouse/orders.go; a tie (the same version from the poll and a
-- webhook) goes to the lowest (source_topic, source_partition, source_offset). The lines are
-- those of exactly that record: they join it on its source coordinates.
CREATE OR REPLACE VIEW `${project}.${prod}.fact_orders` (
    order_id,
    order_version,
    user_id,
    status,
    currency,
    subtotal_minor,
    tax_minor,
    shipping_minor,
    discount_minor,
    total_minor,
    refunded_minor,
    order_timestamp,
    order_date,
    date_key,
    updated_at,
    paid_at,
    shipped_at,
    delivered_at,
    cancelled_at,
    refunded_at,
    shipping_country,
    source,
    received_at,
    dq_warnings,
    trace_id,
    source_topic,
    source_partition,
    source_offset,
    loaded_at
)
OPTIONS (description = 'One row per order: its latest version (greatest order_version, then updated_at).')
AS
SELECT
    order_id, order_version, user_id, status, currency, subtotal_minor, tax_minor, shipping_minor,
    discount_minor, total_minor, refunded_minor, order_timestamp, order_date, date_key, updated_at,
    paid_at, shipped_at, delivered_at, cancelled_at, refunded_at, shipping_country, source,
    received_at, dq_warnings, trace_id, source_topic, source_partition, source_offset, loaded_at
FROM `${project}.${staging}.fact_orders`
WHERE TRUE
QUALIFY ROW_NUMBER() OVER (PARTITION BY order_id ORDER BY order_version DESC, updated_at DESC, source_topic, source_partition, source_offset) = 1;

CREATE OR REPLACE VIEW `${project}.${prod}.fact_order_items` (
    order_id,
    line_number,
    line_id,
    product_id,
    quantity,
    unit_price_minor,
    line_total_minor,
    order_version,
    date_key,
    loaded_at
)
OPTIONS (description = 'One row per line of the latest version of each order in fact_orders.')
AS
SELECT
    i.order_id, i.line_number, i.line_id, i.product_id, i.quantity, i.unit_price_minor,
    i.line_total_minor, i.order_version, i.date_key, i.loaded_at
FROM `${project}.${staging}.fact_order_items` i
JOIN `${project}.${prod}.fact_orders` o ON o.order_id = i.order_id AND o.source_topic = i.source_topic
    AND o.source_partition = i.source_partition AND o.source_offset = i.source_offset;
