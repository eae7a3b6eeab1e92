-- dim_products_changes: every ProductChange that reached the warehouse, once per source sequence
-- (DuckDB). Same model as bigquery/dim_products_changes.sql.
--
-- The change log dim_products is derived from. It is kept because the versions depend on every
-- change, including those that started none: a no-op change becomes a version when a late
-- change before it arrives (see services/bq-writer/internal/warehouse/dims.go). One row per
-- (product_id, source_lsn, source_ordinal): a replay is not logged again.
CREATE TABLE IF NOT EXISTS dim_products_changes (
    product_id       VARCHAR     NOT NULL,
    source_lsn       BIGINT      NOT NULL,
    source_ordinal   BIGINT      NOT NULL,
    op               VARCHAR     NOT NULL,
    sku              VARCHAR,
    name             VARCHAR     NOT NULL,
    category         VARCHAR,
    brand            VARCHAR,
    price_minor      BIGINT      NOT NULL,
    currency         VARCHAR     NOT NULL,
    is_active        BOOLEAN     NOT NULL,
    deleted_at       TIMESTAMPTZ,
    valid_from       TIMESTAMPTZ NOT NULL,
    updated_at       TIMESTAMPTZ NOT NULL,
    synced_at        TIMESTAMPTZ NOT NULL,
    source           VARCHAR     NOT NULL,
    attr_hash        VARCHAR,
    source_topic     VARCHAR     NOT NULL,
    source_partition INTEGER     NOT NULL,
    source_offset    BIGINT      NOT NULL,
    loaded_at        TIMESTAMPTZ NOT NULL
);

COMMENT ON TABLE dim_products_changes IS 'Every product change bq-writer received, once per (product_id, source_lsn, source_ordinal); dim_products is derived from it.';
COMMENT ON COLUMN dim_products_changes.op IS 'upsert or delete (a hard delete).';
COMMENT ON COLUMN dim_products_changes.valid_from IS 'changed_at of the change, or updated_at when it had none.';
COMMENT ON COLUMN dim_products_changes.attr_hash IS 'sha256 hex of the tracked attributes; NULL for a delete.';
COMMENT ON COLUMN dim_products_changes.source_offset IS 'Kafka offset bq-writer read the change from.';
