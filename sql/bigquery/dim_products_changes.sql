-- dim_products_changes (BigQuery, production). Template: ${project} and ${dataset} are
-- placeholders (see fact_events.sql). The append-only change log, as
-- duckdb/dim_products_changes.sql: the raw appends bq-writer's BigQuery backend writes
-- (sql/README.md).
CREATE TABLE IF NOT EXISTS `${project}.${dataset}.dim_products_changes` (
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
    loaded_at        TIMESTAMP NOT NULL
)
PARTITION BY DATE(valid_from)
CLUSTER BY product_id
OPTIONS (description = 'Every product change bq-writer received, once per (product_id, source_lsn, source_ordinal); dim_products is derived from it.');
