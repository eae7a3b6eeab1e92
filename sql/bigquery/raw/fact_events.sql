-- raw.fact_events: every copy of every click event bq-writer appended (BigQuery, production):
-- source duplicates, replays after a crash and every copy the Storage Write API fallback
-- re-appends. staging.fact_events removes the replays, prod.fact_events keeps one row per
-- event_id (sql/README.md).
--
-- Template: ${project}, ${raw}, ${staging} and ${prod} are placeholders (the project and the
-- three datasets), in the syntax of Terraform's templatefile() so Terraform and bq-writer
-- (ddl.BigQuery in sql/ddl.go) fill the same file. No other "$" + "{" or "%" + "{" sequence may
-- appear in this file.
--
-- Same columns as duckdb/fact_events.sql. event_date and date_key are stored (not computed in views)
-- so both engines hold identical rows; partitioning uses DATE(event_timestamp), which is the same
-- day as event_date (UTC).
--
-- Exactly-once into this table comes from Storage Write API committed streams with explicit row
-- offsets, not from a positions table: see sql/README.md.
CREATE TABLE IF NOT EXISTS `${project}.${raw}.fact_events` (
    event_id         STRING    NOT NULL OPTIONS (description = 'Producer-assigned unique id; the deduplication key.'),
    event_timestamp  TIMESTAMP NOT NULL OPTIONS (description = 'When the event happened on the client (UTC). Partitioning column.'),
    event_date       DATE      NOT NULL OPTIONS (description = 'UTC date of event_timestamp, equal to the partition date.'),
    date_key         INT64     NOT NULL OPTIONS (description = 'event_date as yyyymmdd; joins dim_date.date_key.'),
    event_type       STRING    NOT NULL OPTIONS (description = 'page_view, product_view, search, add_to_cart, remove_from_cart, begin_checkout or purchase.'),
    user_id          STRING             OPTIONS (description = 'Logged-in customer id; NULL for anonymous visitors.'),
    anonymous_id     STRING             OPTIONS (description = 'First-party cookie id of the browser or app install.'),
    session_id       STRING    NOT NULL OPTIONS (description = 'Storefront session id.'),
    page_url         STRING    NOT NULL OPTIONS (description = 'URL of the page the event happened on.'),
    referrer         STRING             OPTIONS (description = 'HTTP referrer of the page.'),
    user_agent       STRING             OPTIONS (description = 'Raw User-Agent header.'),
    device_type      STRING             OPTIONS (description = 'desktop, mobile or tablet.'),
    os               STRING             OPTIONS (description = 'Operating system parsed from the user agent.'),
    browser          STRING             OPTIONS (description = 'Browser parsed from the user agent.'),
    country          STRING             OPTIONS (description = 'ISO 3166-1 alpha-2 country code.'),
    region           STRING             OPTIONS (description = 'Region or state.'),
    city             STRING             OPTIONS (description = 'City.'),
    product_id       STRING             OPTIONS (description = 'Catalog product id for product events.'),
    search_query     STRING             OPTIONS (description = 'Search terms for search events.'),
    quantity         INT64              OPTIONS (description = 'Cart quantity for add_to_cart / remove_from_cart.'),
    price_minor      INT64              OPTIONS (description = 'Unit price in minor units of currency (cents for USD).'),
    currency         STRING             OPTIONS (description = 'ISO 4217 currency code.'),
    order_id         STRING             OPTIONS (description = 'Order id, set on purchase events.'),
    source           STRING    NOT NULL OPTIONS (description = 'Where ingest read the event: kafka or http.'),
    received_at      TIMESTAMP NOT NULL OPTIONS (description = 'When the platform received the event (UTC): the raw record''s Kafka timestamp, or when the HTTP collector received the request.'),
    trace_id         STRING             OPTIONS (description = 'W3C trace id (32 hex chars) of the trace of the event; NULL when the record carried none.'),
    source_topic     STRING    NOT NULL OPTIONS (description = 'Kafka topic bq-writer read the row from.'),
    source_partition INT64     NOT NULL OPTIONS (description = 'Kafka partition bq-writer read the row from.'),
    source_offset    INT64     NOT NULL OPTIONS (description = 'Kafka offset bq-writer read the row from.'),
    loaded_at        TIMESTAMP NOT NULL OPTIONS (description = 'When bq-writer appended the row.'),
    client_ip        STRING             OPTIONS (description = 'Client IP truncated for privacy (IPv4 /24, IPv6 /48) when the HTTP collector keeps it; NULL otherwise.'),
    collector_source STRING             OPTIONS (description = 'Source name of the write key of an HTTP collector request (e.g. web); NULL for Kafka input.'),
    dq_warnings      STRING             OPTIONS (description = 'Ids of the warn-severity data-quality rules the event failed at the validator, comma-separated (e.g. click.commerce_fields); NULL when it passed them all.')
)
PARTITION BY DATE(event_timestamp)
CLUSTER BY user_id, event_type
OPTIONS (
    -- Off so operators and the prod-layer dedup can scan recent rows by loaded_at or source_offset
    -- without a date predicate; dashboards still filter on event_timestamp to prune partitions.
    require_partition_filter = FALSE,
    description = 'Every copy of every click event bq-writer appended (append-only); prod.fact_events has one row per event_id.'
);

-- Columns added after the first release, for tables created before it (a new table has them
-- already; IF NOT EXISTS makes these no-ops there).
-- One column per statement: the emulator refuses more in one (sql/README.md).
ALTER TABLE `${project}.${raw}.fact_events`
    ADD COLUMN IF NOT EXISTS client_ip STRING OPTIONS (description = 'Client IP truncated for privacy (IPv4 /24, IPv6 /48) when the HTTP collector keeps it; NULL otherwise.');
ALTER TABLE `${project}.${raw}.fact_events`
    ADD COLUMN IF NOT EXISTS collector_source STRING OPTIONS (description = 'Source name of the write key of an HTTP collector request (e.g. web); NULL for Kafka input.');
ALTER TABLE `${project}.${raw}.fact_events`
    ADD COLUMN IF NOT EXISTS dq_warnings STRING OPTIONS (description = 'Ids of the warn-severity data-quality rules the event failed at the validator, comma-separated (e.g. click.commerce_fields); NULL when it passed them all.');
