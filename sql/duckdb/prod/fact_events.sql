-- The DuckDB prod layer: the relations analysts query, with the same names and columns as the
-- BigQuery prod dataset (sql/bigquery/prod), as views over the main-schema tables bq-writer
-- writes. Every file creates the schema, so each stands alone; they sort after the tables
-- (ddl.DuckDB returns duckdb/*.sql, then duckdb/prod/*.sql).
--
-- prod.fact_events: one row per event_id. main.fact_events holds one row per copy kept by
-- bq-writer's windowed dedup, so an event whose copies lie more than DEDUP_WINDOW apart has
-- several rows there; this view keeps the first in the dedup order (compareCopies in
-- services/bq-writer/internal/warehouse/dedup.go), the row BigQuery's prod.fact_events keeps:
-- the first copy in that order is always kept, so it is in main.fact_events. NULLS FIRST is
-- written out because DuckDB sorts NULL last by default; strings compare bytewise (the default
-- collation).
CREATE SCHEMA IF NOT EXISTS prod;

CREATE OR REPLACE VIEW prod.fact_events AS
SELECT
    event_id, event_timestamp, event_date, date_key, event_type, user_id, anonymous_id, session_id,
    page_url, referrer, user_agent, device_type, os, browser, country, region, city, product_id,
    search_query, quantity, price_minor, currency, order_id, source, received_at, trace_id,
    source_topic, source_partition, source_offset, loaded_at, client_ip, collector_source,
    dq_warnings
FROM main.fact_events
QUALIFY row_number() OVER (
    PARTITION BY event_id
    ORDER BY
        event_timestamp, received_at, event_type, user_id NULLS FIRST, anonymous_id NULLS FIRST,
        session_id, page_url, referrer NULLS FIRST, user_agent NULLS FIRST,
        device_type NULLS FIRST, os NULLS FIRST, browser NULLS FIRST, country NULLS FIRST,
        region NULLS FIRST, city NULLS FIRST, product_id NULLS FIRST, search_query NULLS FIRST,
        quantity NULLS FIRST, price_minor NULLS FIRST, currency NULLS FIRST, order_id NULLS FIRST,
        source, client_ip NULLS FIRST, collector_source NULLS FIRST, trace_id NULLS FIRST,
        dq_warnings NULLS FIRST, source_topic, source_partition, source_offset) = 1;

COMMENT ON VIEW prod.fact_events IS 'One row per click event (event_id): the first copy in bq-writer''s dedup order, however old its duplicates.';
