-- dim_products (BigQuery, production). Template: ${project} and ${dataset} are placeholders (see
-- fact_events.sql). SCD Type 2, as duckdb/dim_products.sql. Here written by MERGE from
-- dim_products_changes (sql/README.md), not row by row.
CREATE TABLE IF NOT EXISTS `${project}.${dataset}.dim_products` (
    product_key    STRING    NOT NULL OPTIONS (description = 'Surrogate key of the version: first 16 hex of sha256(product_id|source_lsn|source_ordinal) of the change that started it.'),
    product_id     STRING    NOT NULL OPTIONS (description = 'Natural key: the storefront product id (fact_events.product_id, fact_order_items.product_id).'),
    sku            STRING,
    name           STRING    NOT NULL,
    category       STRING,
    brand          STRING,
    price_minor    INT64     NOT NULL OPTIONS (description = 'List price in minor units of currency.'),
    currency       STRING    NOT NULL,
    is_active      BOOL      NOT NULL OPTIONS (description = 'false once discontinued (soft delete).'),
    valid_from     TIMESTAMP NOT NULL OPTIONS (description = 'Source commit time of the change that started the version (changed_at, or updated_at for v1 data).'),
    valid_to       TIMESTAMP          OPTIONS (description = 'valid_from of the next version, or of the hard delete that ended it; NULL while open.'),
    is_current     BOOL      NOT NULL OPTIONS (description = 'The product''s last version, not ended by a hard delete.'),
    deleted        BOOL      NOT NULL OPTIONS (description = 'A hard delete in the source ended this version at valid_to.'),
    source_lsn     INT64     NOT NULL OPTIONS (description = 'Source sequence of the change that started the version: commit LSN (CDC) or the snapshot''s LSN.'),
    source_ordinal INT64     NOT NULL OPTIONS (description = 'Position of that change in its transaction (CDC, from 1); 0 for a snapshot record.'),
    attr_hash      STRING    NOT NULL OPTIONS (description = 'sha256 hex of the tracked attributes (sku, name, category, brand, price_minor, currency, is_active).'),
    source         STRING    NOT NULL OPTIONS (description = 'How catalog-sync read the starting change: snapshot, cdc or backfill.'),
    loaded_at      TIMESTAMP NOT NULL OPTIONS (description = 'When bq-writer wrote this row.')
)
CLUSTER BY product_id
OPTIONS (description = 'Catalog products, SCD Type 2: one row per version, valid in [valid_from, valid_to).');
