-- prod.dim_date (BigQuery, production): a table in the prod dataset, the only one there (it is
-- not derived from anything bq-writer appends). Template: placeholders as in raw/fact_events.sql.
-- Calendar days 2020..2035, as duckdb/dim_date.sql. Not partitioned or clustered: 5,844 rows.
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
OPTIONS (description = 'Calendar days 2020..2035; date_key (yyyymmdd) joins the facts'' date_key.');

INSERT INTO `${project}.${prod}.dim_date`
SELECT CAST(FORMAT_DATE('%Y%m%d', d) AS INT64), d, EXTRACT(YEAR FROM d), EXTRACT(QUARTER FROM d), EXTRACT(MONTH FROM d),
  EXTRACT(DAY FROM d), MOD(EXTRACT(DAYOFWEEK FROM d) + 5, 7) + 1, EXTRACT(ISOWEEK FROM d), EXTRACT(DAYOFWEEK FROM d) IN (1, 7)
FROM UNNEST(GENERATE_DATE_ARRAY('2020-01-01', '2035-12-31')) AS d
WHERE d NOT IN (SELECT date FROM `${project}.${prod}.dim_date`);
