// Package bqwh is bq-writer's BigQuery backend: it appends every row of a warehouse.Batch to the
// raw dataset's append-only tables through the Storage Write API (storage/managedwriter) and keeps
// its positions in the consumer group's Kafka commits (warehouse.Committer).
//
// # Streams and rows
//
// Each (assigned partition, raw table it feeds) has one COMMITTED write stream: events go to
// fact_events; an order version to fact_orders and its lines to fact_order_items (with the order
// record's source coordinates); product changes to dim_products_changes and customer changes to
// dim_users_changes, with product_key/user_key = warehouse.SurrogateKey(id, seq). A stream's rows
// are in source-offset order (lines by line number within their order), and one record always
// converts to the same rows, so "the first k rows of table T from partition p after offset o" names
// the same records in every process. Rows are dynamic protos built from the table's schema
// (Catalog.Schema -> adapt.StorageSchemaToProto2Descriptor -> adapt.NormalizeDescriptor); writer
// columns a table lacks are added first (Catalog.AddColumns), table columns the writer does not
// know stay NULL. Every append carries an explicit offset: the stream's row count before it.
//
// # Commit metadata
//
// Write returns, per partition of Batch.Positions, the metadata the sink commits with the
// partition's offset: {"v":1,"s":{"<table>":"<stream>"},"r":{"<table>":<rows>},"k":{"<table>":<skip>}},
// r being the stream's row count once the committed offset's records are in it and k (omitted
// when 0) the rows of the records after the committed offset that are already stored in older,
// finalized streams. The Kafka commit is therefore one atomic record of both sides: "records below
// offset o are exactly rows [0, r) of stream s and what came before it; the next k rows of the
// table from this partition are stored already, and whatever s holds past r comes after them".
//
// # Every append goes to a stream a commit names
//
// Claim (called on every assignment, before anything is consumed, with every newly assigned
// partition and the entity its topic carries) opens a new stream at once on every table the
// entity feeds (EntityTables: an orders partition gets fact_orders and fact_order_items even
// before its first order line), and the sink commits the claimed offsets (the log start of a
// never-committed partition, or a reset offset) with the metadata of a Write of those positions
// only, synchronously, before it consumes. Write never opens a stream: a row of a partition or
// table that was not claimed is an error. So from the first append on, a commit names every
// stream this owner appends to, with r = 0 and k = the skip the claim found: a crash at any point
// leaves the next owner every row to skip, and every stream to fence, in the metadata.
//
// # Takeover by finalize
//
// For each table the commit names, Claim calls FinalizeWriteStream and reads the final row count
// f. After finalize, BigQuery refuses every append to the stream (STREAM_FINALIZED), whoever
// sends it: an earlier owner still running (a zombie: paused, partitioned away, not yet told of
// the rebalance) is fenced; it sees ErrFenced on its next append and stops, and the rows it
// appended before the finalize are all counted in f. The new owner never appends to a finalized
// stream. A claim can be repeated (a retried Claim; a claim that died before its commit, so the
// next one finds the same, already finalized, streams): finalizing a finalized stream answers the
// row count again on bqfake and bqemulator; BigQuery does not document the answer, so a
// STREAM_FINALIZED answer without a count is taken as "count unknown" (see below), never as an
// error that would make the sink retry for ever, and the same process remembers the counts it
// read, per stream name (the last 4096 streams), also across Release: Claim, a claim commit
// refused by a rebalance, Release, Claim finalizes nothing twice (TestClaimReleaseClaim).
//
// # A commit that is no position
//
// A Kafka commit whose metadata is not bq-writer's (empty: an offset reset with the Kafka CLI;
// anything but a JSON object with "v": franz-go's default, the member id, when the group ran on
// DuckDB; another tool's), or that names a stream outside this project, raw dataset and table
// (BIGQUERY_PROJECT or BIGQUERY_DATASET_PREFIX changed, the group kept), is no BigQuery position:
// Claim logs it, finalizes nothing of it, opens the partition's streams and returns no position
// for it, so that the sink stops with a *PositionError unless POSITION_RECOVERY allows a start
// (as for a DuckDB file without a position). Metadata of bq-writer's that does not decode (another
// version) is an error (TestClaimWithoutPosition).
//
// # The skip
//
// The new owner skips, per table, skip = k + (f - r) rows: the k the commit carries (stored in
// streams finalized before s) and rows [r, f) of s, appended after the commit by the zombie, or by
// the group's last writer that died between the acknowledgement and the Kafka commit, or whose
// acknowledgement was lost. They belong to the records right after the committed offset, in
// offset order (see Streams and rows), because an owner appends only once its skip is done. It
// consumes from the committed offset and skips the first skip rows it would append
// (WriteResult.Stale, Orders.Stale, Products.Stale, Users.Stale), then appends the rest to its own
// stream, which the claim commit already named. Every commit while the skip is pending carries
// the rest of it as k, so a crash or a takeover mid-skip, also in the batch that ends it, hands the
// rest on: the next owner finalizes this owner's stream and skips k + what it holds. A failed
// Write does the same for its own appends: rows it appended before the error are owed (the last
// rows of its stream: r excludes them), and the sink's retry of the same batch skips them instead
// of appending them twice. Before the skip, Write drops the rows below the partition's position
// (the claimed one, moved by every Write: warehouse.FreshRows, as DuckDB does), a re-delivery of
// committed records, and counts them as Stale too: the skip applies to the records after the
// commit only (TestStaleRows).
//
// # Why offsets and finalize fence a zombie
//
// A COMMITTED stream is a log only its creator appends to; the explicit offset makes an append
// idempotent (ALREADY_EXISTS: rows at that offset are there) and refuses a gap (OUT_OF_RANGE: a
// bug). ALREADY_EXISTS says nothing of whose rows they are or how many (bqemulator answers it for
// an append that straddles the end), so it counts as "stored" only for a resend of exactly the
// append that may have landed unacknowledged, same offset and same rows, also when the sink's
// retry of a failed Write resends it; any other ALREADY_EXISTS is fatal (another writer on the
// stream, or a bug). Finalize freezes the log at f
// atomically: an append is either before it (counted in f, skipped by the new owner) or refused.
// Every stream an owner appends to is named by a commit before its first append, so every
// earlier owner's stream is finalized by the next claim. So every record below the new owner's
// first commit is in the raw table exactly once, whatever the interleaving of the writers
// (TestCrashPoints, TestZombieOnATableNotFedBefore, TestIntegrationTakeoverEmulator).
//
// # Errors
//
// RESOURCE_EXHAUSTED (the AppendRows quota) and ambiguous failures (UNAVAILABLE, a dropped
// connection, NotFound with an empty entity as bqemulator answers every second append of a
// connection, no answer within the append timeout of 2 minutes) are retried at the same offset
// with capped exponential backoff and equal jitter (a pause drawn from [d/2, d]), after
// GetWriteStream confirmed the stream exists; an append that timed out is resent at once on a new
// writer (a new connection: one sent on the hung one would queue behind it), so a hung connection
// never holds Write, and with it the rebalance and Close, for ever. When the retries give up the
// error wraps warehouse.ErrTransient. A
// finalized stream (ErrFenced), OUT_OF_RANGE, a stream that is gone and row errors are not
// transient: the sink stops and the next owner claims.
//
// # What is at-least-once, and why the prod layer absorbs it
//
//   - A stream named by a commit that no longer exists at Claim (deleted with its table, expired,
//     or lost by a bqemulator restart): its f is unknown, so the records after the commit (beyond
//     the k already known) are appended again. Claim logs it and counts
//     ecom.bigquery.streams{event="gone"}.
//   - A stream named by a commit that a claim in another process finalized before, on a service
//     that then answers STREAM_FINALIZED without the row count: the same, counted as
//     ecom.bigquery.streams{event="unknown"} (never seen on bqfake or bqemulator, which answer the
//     count; TestFinalizeAgain).
//   - A caller that appends without committing the claim's metadata first (the sink never does).
//
// All only ever repeat a Kafka record that is already stored, with the same source_topic,
// source_partition and source_offset. The staging views keep one row per source coordinates (the
// earliest loaded_at), and the prod layer's rules (first copy per event_id, greatest order
// version, SCD2 by source sequence) are functions of the deduplicated rows, so analysts see the
// same result as with exactly-once appends; raw keeps every copy by design.
package bqwh
