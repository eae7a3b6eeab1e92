-- stream_positions: the Kafka position each consumer group has written up to (DuckDB only).
--
-- This table is where bq-writer's exactly-once comes from: the rows of a batch and the positions
-- that batch covers are committed in ONE DuckDB transaction, so after a crash the writer resumes
-- from next_offset and a replayed record (offset < next_offset) is recognised and skipped.
-- Kafka's own committed offsets are only a hint for this sink; this table is the truth.
--
-- BigQuery has no equivalent table: see README.md in this folder for why and what replaces it.
CREATE TABLE IF NOT EXISTS stream_positions (
    consumer_group VARCHAR     NOT NULL,
    topic          VARCHAR     NOT NULL,
    "partition"    INTEGER     NOT NULL,
    next_offset    BIGINT      NOT NULL,
    updated_at     TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (consumer_group, topic, "partition")
);

COMMENT ON TABLE stream_positions IS 'Next Kafka offset to consume per consumer group and partition, committed with the rows it covers.';
COMMENT ON COLUMN stream_positions.next_offset IS 'Last offset written + 1: the first offset not yet in the warehouse.';
COMMENT ON COLUMN stream_positions.updated_at IS 'When the position last moved.';

-- Which log each position belongs to (added after the first release; applied to existing files).
-- Offsets restart when a topic is deleted and recreated, and differ between clusters, so a stored
-- next_offset is only meaningful for the topic incarnation and cluster it was read from. bq-writer
-- compares both with the live ones on every partition assignment and refuses a batch from another
-- log. NULL: unknown (a row from before these columns, or a broker without topic ids); it is
-- filled in by the next write of the partition.
ALTER TABLE stream_positions ADD COLUMN IF NOT EXISTS topic_id VARCHAR;
ALTER TABLE stream_positions ADD COLUMN IF NOT EXISTS cluster_id VARCHAR;

COMMENT ON COLUMN stream_positions.topic_id IS 'Kafka topic id (base64url, as kafka-topics --describe prints it) of the topic incarnation next_offset belongs to; NULL = unknown.';
COMMENT ON COLUMN stream_positions.cluster_id IS 'Kafka cluster id next_offset belongs to; NULL = unknown.';
