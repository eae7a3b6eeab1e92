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
// partition's offset: {"v":1,"s":{"<table>":"<stream>"},"r":{"<table>":<rows>}}, r being the
// stream's row count once the committed offset's records are in it. The Kafka commit is therefore
// one atomic record of both sides: "records below offset o are exactly rows [0, r) of stream s".
//
// # Takeover by finalize
//
// Claim runs on every assignment, before anything is consumed. For each partition with metadata it
// calls FinalizeWriteStream on every stream named there and reads the final row count f. After
// finalize, BigQuery refuses every append to the stream (STREAM_FINALIZED), whoever sends it: an
// earlier owner still running (a zombie: paused, partitioned away, not yet told of the
// rebalance) is fenced; it sees ErrFenced on its next append and stops, and the rows it appended
// before the finalize are all counted in f. The new owner never appends to a finalized stream: for
// a table with nothing past the commit Claim opens the owner's own stream at once (so the metadata
// of the next commit names it), otherwise after the skip below.
//
// # The gap skip
//
// If f > r, rows [r, f) were appended after the commit: by the zombie, or by this group's own
// last writer that died between the acknowledgement and the Kafka commit, or whose
// acknowledgement was lost. They belong to the records right after the committed offset, in offset
// order (see Streams and rows). The new owner consumes from the committed offset and, per table,
// skips the first f-r rows it would append (WriteResult.Stale, Orders.Stale, Products.Stale,
// Users.Stale), then appends the rest to its own stream. While a skip is pending the metadata keeps
// naming the finalized stream with r advanced by the rows matched so far, so a crash mid-skip
// hands the rest of the skip on to the next owner. A failed Write does the same for its own
// appends: rows it appended before the error are owed, and the sink's retry of the same batch skips
// them instead of appending them twice.
//
// # Why offsets and finalize fence a zombie
//
// A COMMITTED stream is a log only its creator appends to; the explicit offset makes an append
// idempotent (ALREADY_EXISTS: the rows at that offset are there, our resend after a lost
// acknowledgement) and refuses a gap (OUT_OF_RANGE: a bug). Finalize freezes the log at f
// atomically: an append is either before it (counted in f, skipped by the new owner) or refused.
// So every record below the new owner's first commit is in the raw table exactly once, whatever
// the interleaving of the two writers.
//
// # Errors
//
// RESOURCE_EXHAUSTED (the AppendRows quota) and ambiguous failures (UNAVAILABLE, a dropped
// connection, NotFound with an empty entity as bqemulator answers every second append of a
// connection) are retried at the same offset with capped backoff, after GetWriteStream confirmed
// the stream exists; when the retries give up the error wraps warehouse.ErrTransient. A
// finalized stream (ErrFenced), OUT_OF_RANGE, a stream that is gone and row errors are not
// transient: the sink stops and the next owner claims.
//
// # What is at-least-once, and why the prod layer absorbs it
//
//   - A stream named by a commit that no longer exists at Claim (deleted with its table, or
//     expired): its f is unknown, so the records after the commit are appended again. Claim logs
//     it and counts ecom.bigquery.streams{event="gone"}.
//   - A stream opened after a claim, before the first Kafka commit naming it: a crash (or a
//     takeover) in that window, the first batch of each stream, leaves rows the next owner cannot
//     find through the metadata, and it appends those records again; a zombie in that window is
//     not fenced on that stream. Claim opens the new streams at once, so a sink that commits the
//     claimed offsets with the metadata of an empty Write (Batch.Positions only) before it
//     consumes closes the window for every table the partition fed before
//     (TestFirstBatchOfAStream); what stays open is a table's first stream on a partition, and the
//     stream opened by the batch that ends a skip.
//
// Both only ever repeat a Kafka record that is already stored, with the same source_topic,
// source_partition and source_offset. The staging views keep one row per source coordinates (the
// earliest loaded_at), and the prod layer's rules (first copy per event_id, greatest order
// version, SCD2 by source sequence) are functions of the deduplicated rows, so analysts see the
// same result as with exactly-once appends; raw keeps every copy by design.
package bqwh
