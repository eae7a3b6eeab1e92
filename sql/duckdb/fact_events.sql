-- fact_events: one row per click event that reached the warehouse (DuckDB, the embedded default).
--
-- Same model as bigquery/fact_events.sql. Differences are dialect only:
--   * TIMESTAMPTZ for instants (BigQuery TIMESTAMP is always UTC), INTEGER where BigQuery has INT64.
--   * No partitioning or clustering clause: DuckDB keeps min/max zone maps per row group, and rows
--     arrive roughly in event_timestamp order, so range filters on event_timestamp (the dedup
--     window of bq-writer, dashboards) skip old row groups without an explicit partition.
--   * No key on event_id: a unique index would make every insert probe an in-memory ART that grows
--     with the table. bq-writer removes source duplicates within a bounded window instead, and the
--     planned prod layer (views over this table) will guarantee one row per event_id.
--   * date_key refers to the future dim_date(date_key); not declared as a FOREIGN KEY because DuckDB
--     checks foreign keys row by row on insert and BigQuery does not enforce them either.
--
-- event_date and date_key are derived from event_timestamp in UTC by the writer (not generated
-- columns: DuckDB's DATE cast of a TIMESTAMPTZ follows the session TimeZone, and the appender cannot
-- write tables with generated columns).
CREATE TABLE IF NOT EXISTS fact_events (
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

-- Columns added after the first release are also added to files made before it (ADD COLUMN appends
-- at the end, which is why they come after loaded_at in CREATE TABLE too: every file has one
-- column order, and fact_events_duplicates the same one).
ALTER TABLE fact_events ADD COLUMN IF NOT EXISTS client_ip VARCHAR;
ALTER TABLE fact_events ADD COLUMN IF NOT EXISTS collector_source VARCHAR;
ALTER TABLE fact_events ADD COLUMN IF NOT EXISTS dq_warnings VARCHAR;

COMMENT ON TABLE fact_events IS 'One row per click event written by bq-writer; source duplicates removed within a bounded window.';
COMMENT ON COLUMN fact_events.event_id IS 'Producer-assigned unique id; the deduplication key.';
COMMENT ON COLUMN fact_events.event_timestamp IS 'When the event happened on the client (UTC).';
COMMENT ON COLUMN fact_events.event_date IS 'UTC date of event_timestamp (the BigQuery partition).';
COMMENT ON COLUMN fact_events.date_key IS 'event_date as yyyymmdd; joins dim_date.date_key.';
COMMENT ON COLUMN fact_events.event_type IS 'page_view, product_view, search, add_to_cart, remove_from_cart, begin_checkout or purchase.';
COMMENT ON COLUMN fact_events.user_id IS 'Logged-in customer id; NULL for anonymous visitors.';
COMMENT ON COLUMN fact_events.anonymous_id IS 'First-party cookie id of the browser or app install.';
COMMENT ON COLUMN fact_events.session_id IS 'Storefront session id.';
COMMENT ON COLUMN fact_events.page_url IS 'URL of the page the event happened on.';
COMMENT ON COLUMN fact_events.referrer IS 'HTTP referrer of the page.';
COMMENT ON COLUMN fact_events.user_agent IS 'Raw User-Agent header.';
COMMENT ON COLUMN fact_events.device_type IS 'desktop, mobile or tablet.';
COMMENT ON COLUMN fact_events.os IS 'Operating system parsed from the user agent.';
COMMENT ON COLUMN fact_events.browser IS 'Browser parsed from the user agent.';
COMMENT ON COLUMN fact_events.country IS 'ISO 3166-1 alpha-2 country code.';
COMMENT ON COLUMN fact_events.region IS 'Region or state.';
COMMENT ON COLUMN fact_events.city IS 'City.';
COMMENT ON COLUMN fact_events.product_id IS 'Catalog product id for product events.';
COMMENT ON COLUMN fact_events.search_query IS 'Search terms for search events.';
COMMENT ON COLUMN fact_events.quantity IS 'Cart quantity for add_to_cart / remove_from_cart.';
COMMENT ON COLUMN fact_events.price_minor IS 'Unit price in minor units of currency (cents for USD).';
COMMENT ON COLUMN fact_events.currency IS 'ISO 4217 currency code.';
COMMENT ON COLUMN fact_events.order_id IS 'Order id, set on purchase events.';
COMMENT ON COLUMN fact_events.source IS 'Where ingest read the event: kafka or http.';
COMMENT ON COLUMN fact_events.received_at IS 'When the platform received the event (UTC): the raw record''s Kafka timestamp, or when the HTTP collector received the request.';
COMMENT ON COLUMN fact_events.trace_id IS 'W3C trace id (32 hex chars) of the event''s trace; NULL when the record carried none.';
COMMENT ON COLUMN fact_events.source_topic IS 'Kafka topic bq-writer read the row from.';
COMMENT ON COLUMN fact_events.source_partition IS 'Kafka partition bq-writer read the row from.';
COMMENT ON COLUMN fact_events.source_offset IS 'Kafka offset bq-writer read the row from.';
COMMENT ON COLUMN fact_events.loaded_at IS 'When bq-writer committed the row.';
COMMENT ON COLUMN fact_events.client_ip IS 'Client IP truncated for privacy (IPv4 /24, IPv6 /48) when the HTTP collector keeps it; NULL otherwise.';
COMMENT ON COLUMN fact_events.collector_source IS 'Source name of the write key of an HTTP collector request (e.g. web); NULL for Kafka input.';
COMMENT ON COLUMN fact_events.dq_warnings IS 'Ids of the warn-severity data-quality rules the event failed at the validator, comma-separated (e.g. click.commerce_fields); NULL when it passed them all.';
