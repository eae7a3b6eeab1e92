-- raw.dim_products_changes: every product change bq-writer appended (BigQuery, production),
-- every replay included. Template: placeholders as in fact_events.sql. The columns of
-- duckdb/dim_products_changes.sql plus product_key, the surrogate key of the version the change
-- starts (if it starts one), computed by the writer so that prod.dim_products needs no hash
-- function. prod.dim_products derives the SCD2 versions from this log by the rule of
-- services/bq-writer/internal/warehouse/dims.go (sql/README.md).
CREATE TABLE IF NOT EXISTS `${project}.${raw}.dim_products_changes` (
    product_id       STRING    NOT NULL,
    source_lsn       INT64     NOT NULL,
    source_ordinal   INT64     NOT NULL,
    op               STRING    NOT NULL OPTIONS (description = 'upsert or delete (a hard delete).'),
    sku              STRING,
    name             STRING    NOT NULL,
    category         STRING,
    brand            STRING,
    price_minor      INT64     NOT NULL,
    currency         STRING    NOT NULL,
    is_active        BOOL      NOT NULL,
    deleted_at       TIMESTAMP,
    valid_from       TIMESTAMP NOT NULL OPTIONS (description = 'changed_at of the change, or updated_at when it had none.'),
    updated_at       TIMESTAMP NOT NULL,
    synced_at        TIMESTAMP NOT NULL,
    source           STRING    NOT NULL,
    attr_hash        STRING             OPTIONS (description = 'sha256 hex of the tracked attributes; NULL for a delete.'),
    source_topic     STRING    NOT NULL,
    source_partition INT64     NOT NULL,
    source_offset    INT64     NOT NULL OPTIONS (description = 'Kafka offset bq-writer read the change from.'),
    loaded_at        TIMESTAMP NOT NULL,
    product_key      STRING    NOT NULL OPTIONS (description = 'warehouse.SurrogateKey(product_id, source_lsn, source_ordinal): the key of the version this change starts, if it starts one.')
)
PARTITION BY DATE(valid_from)
CLUSTER BY product_id
OPTIONS (description = 'Every product change bq-writer appended (append-only, replays included); prod.dim_products is derived from it.');
