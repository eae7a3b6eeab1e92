-- dim_date: one row per calendar day 2020-01-01..2035-12-31 (DuckDB). Same model as
-- bigquery/prod/dim_date.sql. date_key is yyyymmdd, as fact_events.date_key and fact_orders.date_key.
-- Filled at every start with the days it lacks (none after the first), so it is idempotent; a
-- DuckDB file has one writer (its lock), so the INSERT cannot race as it could on BigQuery, whose
-- prod/dim_date.sql therefore creates the table with its rows in one statement.
CREATE TABLE IF NOT EXISTS dim_date (
    date_key    INTEGER  NOT NULL,
    date        DATE     NOT NULL,
    year        INTEGER  NOT NULL,
    quarter     INTEGER  NOT NULL,
    month       INTEGER  NOT NULL,
    day         INTEGER  NOT NULL,
    day_of_week INTEGER  NOT NULL,
    iso_week    INTEGER  NOT NULL,
    is_weekend  BOOLEAN  NOT NULL
);

INSERT INTO dim_date
SELECT CAST(strftime(d, '%Y%m%d') AS INTEGER), d, year(d), quarter(d), month(d), day(d), isodow(d), week(d), isodow(d) >= 6
FROM (SELECT CAST(range AS DATE) AS d FROM range(DATE '2020-01-01', DATE '2036-01-01', INTERVAL 1 DAY)) AS days
WHERE d NOT IN (SELECT date FROM dim_date);

COMMENT ON TABLE dim_date IS 'Calendar days 2020..2035; date_key (yyyymmdd) joins the facts'' date_key.';
COMMENT ON COLUMN dim_date.day_of_week IS 'ISO day of week: 1 = Monday .. 7 = Sunday.';
COMMENT ON COLUMN dim_date.iso_week IS 'ISO 8601 week number (1..53).';
