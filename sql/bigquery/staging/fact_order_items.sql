-- staging.fact_order_items (BigQuery): raw.fact_order_items without the replays of a Kafka record.
-- raw is append-only (and typed already: the writer appends typed columns) and holds a record
-- more than once when bq-writer re-appended it (a stream lost to a restart, or gone: the
-- at-least-once fallback in sql/README.md); the copy appended first (earliest loaded_at)
-- stands for the record. Template: placeholders as in raw/fact_events.sql.
--
-- SELECT *: a column added to raw (schema evolution) shows here without a change to this file
-- (the view's stored schema lists it from the next DDL apply, which re-creates the view); prod
-- names its columns, so it shows a new column only when its file does.
-- line_number is in PARTITION BY because one record carries all the lines of its order version.
-- "WHERE TRUE": BigQuery has required a WHERE, GROUP BY or HAVING beside QUALIFY.
CREATE OR REPLACE VIEW `${project}.${staging}.fact_order_items`
OPTIONS (description = 'raw.fact_order_items without replays: one row per line of a Kafka record (source coordinates, line_number), the earliest appended.')
AS
SELECT *
FROM `${project}.${raw}.fact_order_items`
WHERE TRUE
QUALIFY ROW_NUMBER() OVER (PARTITION BY source_topic, source_partition, source_offset, line_number ORDER BY loaded_at) = 1;
