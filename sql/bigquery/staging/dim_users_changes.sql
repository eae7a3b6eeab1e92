-- staging.dim_users_changes (BigQuery): raw.dim_users_changes without the replays of a Kafka record.
-- raw is append-only (and typed already: the writer appends typed columns) and holds a record
-- more than once when bq-writer re-appended it (a stream lost to a restart, or gone: the
-- at-least-once fallback in sql/README.md); the copy appended first (earliest loaded_at)
-- stands for the record. Template: placeholders as in raw/fact_events.sql.
--
-- SELECT *: a column added to raw (schema evolution) shows here without a change to this file
-- (the view's stored schema lists it from the next DDL apply, which re-creates the view); prod
-- names its columns, so it shows a new column only when its file does.
-- valid_from is in PARTITION BY although a replay of a record always carries the same value (the
-- conversion is deterministic): a filter on the table's partitioning column then accepts or
-- rejects whole window partitions, so the optimizer may push it below the window and prune
-- partitions (to be confirmed with a dry run on BigQuery: the emulator ignores partitioning).
-- "WHERE TRUE": BigQuery has required a WHERE, GROUP BY or HAVING beside QUALIFY.
CREATE OR REPLACE VIEW `${project}.${staging}.dim_users_changes`
OPTIONS (description = 'raw.dim_users_changes without replays: one row per Kafka record (source coordinates), the earliest appended.')
AS
SELECT *
FROM `${project}.${raw}.dim_users_changes`
WHERE TRUE
QUALIFY ROW_NUMBER() OVER (PARTITION BY source_topic, source_partition, source_offset, valid_from ORDER BY loaded_at) = 1;
