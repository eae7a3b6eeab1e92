-- fact_events_duplicates: every copy of an event that bq-writer did not keep (DuckDB only).
--
-- Same columns, in the same order, as fact_events (bq-writer moves rows between the two with
-- INSERT ... SELECT *). A copy of an event_id lands here when its event_timestamp is within
-- DEDUP_WINDOW of the copy kept before it in dedup order: event_timestamp, then received_at, then
-- the other business columns (services/bq-writer/internal/warehouse/dedup.go). Nothing is dropped
-- unseen: fact_events plus this table hold every record bq-writer consumed, except replays below
-- the stored positions and dead letters.
--
-- The table is also what makes the choice independent of arrival order: when a preferred copy
-- arrives after a worse one was kept, the worse one moves here; a copy here moves back to
-- fact_events when the copy it duplicated is replaced and it is no longer within the window of a
-- kept one. loaded_at is when the row entered this table.
--
-- Small (~2% of traffic at the source duplicate rate); rows arrive in event_timestamp order like
-- fact_events, so the dedup's range probes skip old row groups by zone map.
CREATE TABLE IF NOT EXISTS fact_events_duplicates (
    event_id         VARCHAR     NOT NULL,
    event_timestamp  TIMESTAMPTZ NOT NULL,
    event_date       DATE        NOT NULL,
    date_key         INTEGER     NOT NULL,
    event_type       VARCHAR     NOT NULL,
    user_id          VARCHAR,
    anonymous_id     VARCHAR,
    session_id       VARCHAR     NOT NULL,
    page_url         VARCHAR     NOT NULL,
    referrer         VARCHAR,
    user_agent       VARCHAR,
    device_type      VARCHAR,
    os               VARCHAR,
    browser          VARCHAR,
    country          VARCHAR,
    region           VARCHAR,
    city             VARCHAR,
    product_id       VARCHAR,
    search_query     VARCHAR,
    quantity         INTEGER,
    price_minor      BIGINT,
    currency         VARCHAR,
    order_id         VARCHAR,
    source           VARCHAR     NOT NULL,
    received_at      TIMESTAMPTZ NOT NULL,
    trace_id         VARCHAR,
    source_topic     VARCHAR     NOT NULL,
    source_partition INTEGER     NOT NULL,
    source_offset    BIGINT      NOT NULL,
    loaded_at        TIMESTAMPTZ NOT NULL,
    client_ip        VARCHAR,
    collector_source VARCHAR,
    dq_warnings      VARCHAR
);

ALTER TABLE fact_events_duplicates ADD COLUMN IF NOT EXISTS client_ip VARCHAR;
ALTER TABLE fact_events_duplicates ADD COLUMN IF NOT EXISTS collector_source VARCHAR;
ALTER TABLE fact_events_duplicates ADD COLUMN IF NOT EXISTS dq_warnings VARCHAR;

COMMENT ON TABLE fact_events_duplicates IS 'Copies of events that bq-writer did not keep: within DEDUP_WINDOW of the kept copy of the same event_id.';
COMMENT ON COLUMN fact_events_duplicates.event_id IS 'Producer-assigned id; the kept copy is in fact_events.';
COMMENT ON COLUMN fact_events_duplicates.loaded_at IS 'When bq-writer put the row in this table.';
