-- dim_products: the catalog as a Slowly Changing Dimension, Type 2 (DuckDB).
--
-- Same model as bigquery/dim_products.sql. One row per version of a product: the attributes
-- valid in [valid_from, valid_to). bq-writer derives the versions of a product from its logged
-- changes (dim_products_changes) by the rule in services/bq-writer/internal/warehouse/dims.go,
-- in the same transaction as stream_positions: versions follow the source sequence
-- (source_lsn, source_ordinal), not arrival; a change that alters no tracked attribute
-- (attr_hash) starts no version; a late change is put at its place; a replay is a no-op; a hard
-- delete ends the version in force (deleted = true) and makes none of its own.
--
-- product_key is deterministic (first 16 hex digits of sha256("<product_id>|<source_lsn>|
-- <source_ordinal>") of the change that started the version), so a replay or a rebuild gives the
-- same keys. No PRIMARY KEY, as for the facts: the writer keeps one row per product_key.
CREATE TABLE IF NOT EXISTS dim_products (
    product_key    VARCHAR     NOT NULL,
    product_id     VARCHAR     NOT NULL,
    sku            VARCHAR,
    name           VARCHAR     NOT NULL,
    category       VARCHAR,
    brand          VARCHAR,
    price_minor    BIGINT      NOT NULL,
    currency       VARCHAR     NOT NULL,
    is_active      BOOLEAN     NOT NULL,
    valid_from     TIMESTAMPTZ NOT NULL,
    valid_to       TIMESTAMPTZ,
    is_current     BOOLEAN     NOT NULL,
    deleted        BOOLEAN     NOT NULL,
    source_lsn     BIGINT      NOT NULL,
    source_ordinal BIGINT      NOT NULL,
    attr_hash      VARCHAR     NOT NULL,
    source         VARCHAR     NOT NULL,
    loaded_at      TIMESTAMPTZ NOT NULL
);

COMMENT ON TABLE dim_products IS 'Catalog products, SCD Type 2: one row per version, valid in [valid_from, valid_to).';
COMMENT ON COLUMN dim_products.product_key IS 'Surrogate key of the version: first 16 hex of sha256(product_id|source_lsn|source_ordinal) of the change that started it.';
COMMENT ON COLUMN dim_products.product_id IS 'Natural key: the storefront product id (fact_events.product_id, fact_order_items.product_id).';
COMMENT ON COLUMN dim_products.price_minor IS 'List price in minor units of currency.';
COMMENT ON COLUMN dim_products.is_active IS 'false once discontinued (soft delete).';
COMMENT ON COLUMN dim_products.valid_from IS 'Source commit time of the change that started the version (changed_at, or updated_at for v1 data).';
COMMENT ON COLUMN dim_products.valid_to IS 'valid_from of the next version, or of the hard delete that ended it; NULL while open.';
COMMENT ON COLUMN dim_products.is_current IS 'The product''s last version, not ended by a hard delete.';
COMMENT ON COLUMN dim_products.deleted IS 'A hard delete in the source ended this version at valid_to.';
COMMENT ON COLUMN dim_products.source_lsn IS 'Source sequence of the change that started the version: commit LSN (CDC) or the snapshot''s LSN.';
COMMENT ON COLUMN dim_products.source_ordinal IS 'Position of that change in its transaction (CDC, from 1); 0 for a snapshot record.';
COMMENT ON COLUMN dim_products.attr_hash IS 'sha256 hex of the tracked attributes (sku, name, category, brand, price_minor, currency, is_active).';
COMMENT ON COLUMN dim_products.source IS 'How catalog-sync read the starting change: snapshot, cdc or backfill.';
COMMENT ON COLUMN dim_products.loaded_at IS 'When bq-writer wrote this row.';
