// Package reconcile proves, per source and time window, that nothing was lost or duplicated on
// the way to the warehouse:
//
//	consumed = written + deduplicated + dead-lettered + superseded + stale + in flight + difference
//
// for the source end to end and for every stage on its path, listing each record that does not
// balance. Every term is counted where it is durable, so the report is the same after a kill -9
// of any stage: records read_committed from the topics (never offsets, which commit markers
// take too), the stages' committed positions (Kafka's for a transactional stage, the
// warehouse's stream_positions for bq-writer), the warehouse's rows by their source
// coordinates, and the dead-letter topic by its originals' coordinates. In-memory counters
// (ecom_warehouse_rows_total and the like) are not used: a kill -9 loses them. DESIGN.md has
// the argument; cmd/reconcile is the command.
package reconcile
