-- fact_orders: one row per order, holding its latest version (DuckDB, the embedded default).
--
-- Same model as bigquery/fact_orders.sql; differences are dialect only (TIMESTAMPTZ, INTEGER, no
-- partitioning: see fact_events.sql). bq-writer keeps one row per order_id: a version is written
-- only when it is newer than the stored one (higher order_version, then later updated_at), in
-- the same transaction as stream_positions; an older version is dropped, and of copies of one
-- version the one with the lowest (source_topic, source_partition, source_offset) is kept (the
-- tie rule of bigquery/prod/fact_orders.sql). The lines of the stored version are in
-- fact_order_items and are replaced with the row.
--
-- No PRIMARY KEY: the writer keeps one row per order (lines per (order_id, line_number)) itself,
-- and a key would add an ART index probed on every insert (see fact_events.sql).
--
-- order_date and date_key are derived from order_timestamp in UTC by the writer, as for events.
CREATE TABLE IF NOT EXISTS fact_orders (
    order_id         VARCHAR     NOT NULL,
    order_version    BIGINT      NOT NULL,
    user_id          VARCHAR     NOT NULL,
    status           VARCHAR     NOT NULL,
    currency         VARCHAR     NOT NULL,
    subtotal_minor   BIGINT      NOT NULL,
    tax_minor        BIGINT      NOT NULL,
    shipping_minor   BIGINT      NOT NULL,
    discount_minor   BIGINT      NOT NULL,
    total_minor      BIGINT      NOT NULL,
    refunded_minor   BIGINT      NOT NULL,
    order_timestamp  TIMESTAMPTZ NOT NULL,
    order_date       DATE        NOT NULL,
    date_key         INTEGER     NOT NULL,
    updated_at       TIMESTAMPTZ NOT NULL,
    paid_at          TIMESTAMPTZ,
    shipped_at       TIMESTAMPTZ,
    delivered_at     TIMESTAMPTZ,
    cancelled_at     TIMESTAMPTZ,
    refunded_at      TIMESTAMPTZ,
    shipping_country VARCHAR,
    source           VARCHAR     NOT NULL,
    received_at      TIMESTAMPTZ,
    dq_warnings      VARCHAR,
    trace_id         VARCHAR,
    source_topic     VARCHAR     NOT NULL,
    source_partition INTEGER     NOT NULL,
    source_offset    BIGINT      NOT NULL,
    loaded_at        TIMESTAMPTZ NOT NULL
);

COMMENT ON TABLE fact_orders IS 'One row per order: its latest version (highest order_version, then updated_at) written by bq-writer.';
COMMENT ON COLUMN fact_orders.order_id IS 'Storefront order id; one row per order.';
COMMENT ON COLUMN fact_orders.order_version IS 'The API''s per-order version of this row (+1 on every change; 0 = unknown, v1 data).';
COMMENT ON COLUMN fact_orders.status IS 'created, paid, shipped, delivered, cancelled, partially_refunded or refunded.';
COMMENT ON COLUMN fact_orders.order_timestamp IS 'When the order was created (UTC).';
COMMENT ON COLUMN fact_orders.order_date IS 'UTC date of order_timestamp (the BigQuery partition).';
COMMENT ON COLUMN fact_orders.date_key IS 'order_date as yyyymmdd; joins dim_date.date_key.';
COMMENT ON COLUMN fact_orders.updated_at IS 'When the storefront last changed the order (this version).';
COMMENT ON COLUMN fact_orders.refunded_minor IS 'Amount refunded so far, minor units.';
COMMENT ON COLUMN fact_orders.source IS 'How ingest-orders got this version: api (cursor poll), webhook or backfill.';
COMMENT ON COLUMN fact_orders.received_at IS 'When ingest-orders received this version; NULL for v1 data.';
COMMENT ON COLUMN fact_orders.dq_warnings IS 'Ids of the warn-severity data-quality rules the version failed, comma-separated; NULL when none.';
COMMENT ON COLUMN fact_orders.source_offset IS 'Kafka offset bq-writer read this version from.';
COMMENT ON COLUMN fact_orders.loaded_at IS 'When bq-writer wrote this version.';
