-- raw.fact_orders: one row per order version bq-writer appended (BigQuery, production), every
-- version and every replay of it. Template: placeholders as in fact_events.sql. Same columns as
-- duckdb/fact_orders.sql, which keeps only the latest version; here prod.fact_orders picks it
-- (greatest (order_version, updated_at), ties: lowest source coordinates).
--
-- Clustered by order_id, not by what analysts filter on: analysts query prod, and what reads
-- raw is per order (prod's window over an order's versions, an operator looking at one
-- order's history, the lines' join on their order record).
CREATE TABLE IF NOT EXISTS `${project}.${raw}.fact_orders` (
    order_id         STRING    NOT NULL OPTIONS (description = 'Storefront order id; one row per order.'),
    order_version    INT64     NOT NULL OPTIONS (description = 'The API''s per-order version of this row (+1 on every change; 0 = unknown, v1 data).'),
    user_id          STRING    NOT NULL OPTIONS (description = 'The storefront''s customer id.'),
    status           STRING    NOT NULL OPTIONS (description = 'created, paid, shipped, delivered, cancelled, partially_refunded or refunded.'),
    currency         STRING    NOT NULL OPTIONS (description = 'ISO 4217 currency code of all amounts.'),
    subtotal_minor   INT64     NOT NULL OPTIONS (description = 'Sum of the line totals, minor units.'),
    tax_minor        INT64     NOT NULL OPTIONS (description = 'Tax, minor units.'),
    shipping_minor   INT64     NOT NULL OPTIONS (description = 'Shipping, minor units.'),
    discount_minor   INT64     NOT NULL OPTIONS (description = 'Discount, minor units.'),
    total_minor      INT64     NOT NULL OPTIONS (description = 'Order total, minor units.'),
    refunded_minor   INT64     NOT NULL OPTIONS (description = 'Amount refunded so far, minor units.'),
    order_timestamp  TIMESTAMP NOT NULL OPTIONS (description = 'When the order was created (UTC). Partitioning column.'),
    order_date       DATE      NOT NULL OPTIONS (description = 'UTC date of order_timestamp, equal to the partition date.'),
    date_key         INT64     NOT NULL OPTIONS (description = 'order_date as yyyymmdd; joins dim_date.date_key.'),
    updated_at       TIMESTAMP NOT NULL OPTIONS (description = 'When the storefront last changed the order (this version).'),
    paid_at          TIMESTAMP          OPTIONS (description = 'When the order was paid; NULL if not (yet).'),
    shipped_at       TIMESTAMP          OPTIONS (description = 'When the order was shipped; NULL if not (yet).'),
    delivered_at     TIMESTAMP          OPTIONS (description = 'When the order was delivered; NULL if not (yet).'),
    cancelled_at     TIMESTAMP          OPTIONS (description = 'When the order was cancelled; NULL if not.'),
    refunded_at      TIMESTAMP          OPTIONS (description = 'When the latest refund was made; NULL if none.'),
    shipping_country STRING             OPTIONS (description = 'ISO 3166-1 alpha-2 country shipped to.'),
    source           STRING    NOT NULL OPTIONS (description = 'How ingest-orders got this version: api (cursor poll), webhook or backfill.'),
    received_at      TIMESTAMP          OPTIONS (description = 'When ingest-orders received this version; NULL for v1 data.'),
    dq_warnings      STRING             OPTIONS (description = 'Ids of the warn-severity data-quality rules the version failed, comma-separated; NULL when none.'),
    trace_id         STRING             OPTIONS (description = 'W3C trace id of the record of this version; NULL when it carried none.'),
    source_topic     STRING    NOT NULL OPTIONS (description = 'Kafka topic bq-writer read this version from.'),
    source_partition INT64     NOT NULL OPTIONS (description = 'Kafka partition bq-writer read this version from.'),
    source_offset    INT64     NOT NULL OPTIONS (description = 'Kafka offset bq-writer read this version from.'),
    loaded_at        TIMESTAMP NOT NULL OPTIONS (description = 'When bq-writer wrote this version.')
)
PARTITION BY DATE(order_timestamp)
CLUSTER BY order_id
OPTIONS (
    require_partition_filter = FALSE,
    description = 'Every order version bq-writer appended (append-only); prod.fact_orders has the latest of each order.'
);
