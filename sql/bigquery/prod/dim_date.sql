-- prod.dim_date (BigQuery, production): a table in the prod dataset, the only one there (it is
-- not derived from anything bq-writer appends). Template: placeholders as in raw/fact_events.sql.
-- Calendar days 2020..2035, as duckdb/dim_date.sql. Not partitioned or clustered: 5,844 rows.
--
-- One statement creates the table together with its rows (IF NOT EXISTS ... AS SELECT), so it is
-- idempotent under concurrency: the table and its days appear at once, or not at all. A separate
-- INSERT ... WHERE NOT IN after the create inserted every day twice when two replicas migrated a
-- fresh dataset at once (both saw the table empty). Where two such jobs race, the second finds
-- the table and does nothing (or fails "Already Exists", and Migrate's next run does nothing);
-- neither can add rows. The column list fixes names, types and NOT NULL; the query's aliases are
-- the same names in the same order.
CREATE TABLE IF NOT EXISTS `${project}.${prod}.dim_date` (
    date_key    INT64     NOT NULL,
    date        DATE      NOT NULL,
    year        INT64     NOT NULL,
    quarter     INT64     NOT NULL,
    month       INT64     NOT NULL,
    day         INT64     NOT NULL,
    day_of_week INT64     NOT NULL OPTIONS (description = 'ISO day of week: 1 = Monday .. 7 = Sunday.'),
    iso_week    INT64     NOT NULL OPTIONS (description = 'ISO 8601 week number (1..53).'),
    is_weekend  BOOL      NOT NULL
)
OPTIONS (description = 'Calendar days 2020..2035; date_key (yyyymmdd) joins the facts'' date_key.')
AS
SELECT CAST(FORMAT_DATE('%Y%m%d', d) AS INT64) AS date_key, d AS date, EXTRACT(YEAR FROM d) AS year,
  EXTRACT(QUARTER FROM d) AS quarter, EXTRACT(MONTH FROM d) AS month, EXTRACT(DAY FROM d) AS day,
  MOD(EXTRACT(DAYOFWEEK FROM d) + 5, 7) + 1 AS day_of_week, EXTRACT(ISOWEEK FROM d) AS iso_week,
  EXTRACT(DAYOFWEEK FROM d) IN (1, 7) AS is_weekend
FROM UNNEST(GENERATE_DATE_ARRAY('2020-01-01', '2035-12-31')) AS d;
