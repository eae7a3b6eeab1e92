-- prod.fact_events (BigQuery): one row per event_id, however far apart its copies are. Template:
-- placeholders as in raw/fact_events.sql. Same relation as duckdb/prod/fact_events.sql.
--
-- The row kept is the first copy in bq-writer's dedup order (compareCopies in
-- services/bq-writer/internal/warehouse/dedup.go): event_timestamp, received_at, event_type, then
-- the business columns in that order, NULL first, strings bytewise (BigQuery compares STRING by
-- code point, which is UTF-8 byte order). The first copy in that order is always one DuckDB keeps
-- in its fact_events, so both backends show the same row. Copies equal in all of it are the same
-- business row; the one with the lowest source coordinates stands for them (in both backends,
-- whatever the order they arrived in).
--
-- A view over all of staging: a duplicate days apart still collapses, and no job has to run for
-- a row to appear. The cost is a scan of the event_ids read (not prunable by event_timestamp,
-- because copies of one event_id may lie in different partitions); sql/README.md says when to
-- materialize it instead.
CREATE OR REPLACE VIEW `${project}.${prod}.fact_events` (
    event_id,
    event_timestamp,
    event_date,
    date_key,
    event_type,
    user_id,
    anonymous_id,
    session_id,
    page_url,
    referrer,
    user_agent,
    device_type,
    os,
    browser,
    country,
    region,
    city,
    product_id,
    search_query,
    quantity,
    price_minor,
    currency,
    order_id,
    source,
    received_at,
    trace_id,
    source_topic,
    source_partition,
    source_offset,
    loaded_at,
    client_ip,
    collector_source,
    dq_warnings
)
OPTIONS (description = 'One row per click event (event_id): the first copy in bq-writer''s dedup order, however old its duplicates.')
AS
SELECT
    event_id, event_timestamp, event_date, date_key, event_type, user_id, anonymous_id, session_id,
    page_url, referrer, user_agent, device_type, os, browser, country, region, city, product_id,
    search_query, quantity, price_minor, currency, order_id, source, received_at, trace_id,
    source_topic, source_partition, source_offset, loaded_at, client_ip, collector_source,
    dq_warnings
FROM `${project}.${staging}.fact_events`
WHERE TRUE
QUALIFY ROW_NUMBER() OVER (
    PARTITION BY event_id
    ORDER BY
        event_timestamp, received_at, event_type, user_id NULLS FIRST, anonymous_id NULLS FIRST,
        session_id, page_url, referrer NULLS FIRST, user_agent NULLS FIRST,
        device_type NULLS FIRST, os NULLS FIRST, browser NULLS FIRST, country NULLS FIRST,
        region NULLS FIRST, city NULLS FIRST, product_id NULLS FIRST, search_query NULLS FIRST,
        quantity NULLS FIRST, price_minor NULLS FIRST, currency NULLS FIRST, order_id NULLS FIRST,
        source, client_ip NULLS FIRST, collector_source NULLS FIRST, trace_id NULLS FIRST,
        dq_warnings NULLS FIRST, source_topic, source_partition, source_offset) = 1;
