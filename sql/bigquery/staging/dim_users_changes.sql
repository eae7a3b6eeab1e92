-- staging.dim_users_changes (BigQuery): raw.dim_users_changes without the replays of a Kafka record.
-- raw is append-only (and typed already: the writer appends typed columns) and holds a record
-- more than once when bq-writer re-appended it (a stream lost to a restart, or gone: the
-- at-least-once fallback in sql/README.md); the copy appended first (earliest loaded_at)
-- stands for the record. Template: placeholders as in raw/fact_events.sql.
--
-- SELECT *: a column added to raw (schema evolution) shows here without a change; prod names
-- its columns.
-- valid_from is in PARTITION BY although a replay of a record always carries the same value (the
-- conversion is deterministic): it lets a filter on the table's partitioning column be pushed
-- below the window, so a query of recent days scans recent partitions only.
-- "WHERE TRUE": BigQuery has required a WHERE, GROUP BY or HAVING beside QUALIFY.
CREATE OR REPLACE VIEW `${project}.${staging}.dim_users_changes`
OPTIONS (description = 'raw.dim_users_changes without replays: one row per Kafka record (source coordinates), the earliest appended.')
AS
SELECT *
FROM `${project}.${raw}.dim_users_changes`
WHERE TRUE
QUALIFY ROW_NUMBER() OVER (PARTITION BY source_topic, source_partition, source_offset, valid_from ORDER BY loaded_at) = 1;
