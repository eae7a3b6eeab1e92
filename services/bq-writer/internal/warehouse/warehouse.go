// Package warehouse is bq-writer's sink: it writes batches of click events read from Kafka into the
// warehouse together with the Kafka positions they cover, so that every event lands exactly once.
//
// Warehouse is the seam between the consumer loop and a concrete store. DuckDB (one embedded file,
// the default and the one `make demo` uses) is implemented here; the BigQuery Storage Write API
// backend (package bqwh) implements it too, and Committer, because its positions are the group's
// Kafka commits (see sql/README.md for its exactly-once design). What every backend decides the
// same way (batch invariants, row validity, replays below a stored position, the log a position
// belongs to, the dedup, order-version and SCD2 rules) lives in the neutral files (batch.go,
// dedup.go, orders.go, dims.go); the duckdb*.go files hold only DuckDB.
package warehouse

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ecomstream/platform/pkg/events"
)

// Partition names one Kafka topic partition.
type Partition struct {
	Topic     string
	Partition int32
}

// EventRow is one click event plus where bq-writer read it from. The source coordinates are stored
// with the row: they make replays recognisable and every row traceable to its Kafka record.
type EventRow struct {
	events.ClickEvent
	// TraceID is the W3C trace id (32 lower-case hex chars) from the record's traceparent header;
	// empty when the record carried none (stored as NULL).
	TraceID string
	// DQWarnings is the validator's ecom-dq-warnings header: the ids of the warn rules the
	// event failed, comma-separated; empty when it had none (stored as NULL).
	DQWarnings      string
	SourceTopic     string
	SourcePartition int32
	SourceOffset    int64
}

// OrderRow is one version of an order plus where bq-writer read it from. The warehouse keeps the
// latest version of each order (orders.go has the rule) in fact_orders and its lines in
// fact_order_items.
type OrderRow struct {
	events.Order
	// TraceID and DQWarnings are as in EventRow.
	TraceID         string
	DQWarnings      string
	SourceTopic     string
	SourcePartition int32
	SourceOffset    int64
}

// Position is where a consumer group stands in one partition, and which log that offset belongs
// to. An offset alone is not enough: a topic that is deleted and recreated, or the same topic name
// on another cluster after a failover, restarts its offsets, and comparing them with a stored
// offset would silently drop (as stale) or skip records.
type Position struct {
	// Next is the next offset to consume: the last offset written plus one.
	Next int64
	// TopicID is the Kafka topic id (base64url, as Kafka's tools print it) of the topic
	// incarnation Next belongs to; "" when unknown (a broker without topic ids, or a position
	// stored before ids were recorded).
	TopicID string
	// ClusterID is the Kafka cluster id Next belongs to; "" when unknown.
	ClusterID string
	// UpdatedAt is when the position last moved (zero in positions passed to ResetPositions).
	UpdatedAt time.Time
}

// SameLog reports whether p and the log identified by topicID and clusterID are the same log, as
// far as the ids tell: an id unknown on either side matches.
func (p Position) SameLog(topicID, clusterID string) bool {
	return (p.TopicID == "" || topicID == "" || p.TopicID == topicID) &&
		(p.ClusterID == "" || clusterID == "" || p.ClusterID == clusterID)
}

// Batch is the unit of atomic work: its rows and the positions they cover commit together.
type Batch struct {
	Events []EventRow
	// Orders are order versions, written to fact_orders and fact_order_items in the same
	// transaction as Events and Positions.
	Orders []OrderRow
	// Products and Users are dimension changes, applied to dim_products and dim_users as SCD
	// Type 2 (dims.go) in the same transaction.
	Products []ProductRow
	Users    []UserRow
	// Positions holds, per partition, the next offset to consume: the last offset the batch covers
	// plus one. Every row's partition must be present, with SourceOffset < Positions[p]. A partition
	// may be present without rows (its records were all dead-lettered): its position still moves.
	Positions map[Partition]int64
	// ClusterID and TopicIDs (by topic name) identify the log the records were read from; empty
	// when unknown. Write stores them with the positions and refuses a batch whose ids differ from
	// those stored for a partition (ErrPositionConflict).
	ClusterID string
	TopicIDs  map[string]string
}

// WriteResult counts what Write did with a batch. Inserted+Duplicates+Stale == len(Batch.Events).
type WriteResult struct {
	// Inserted rows are now in the warehouse.
	Inserted int
	// Duplicates are source duplicates (a copy of an event_id within the dedup window of the copy
	// kept; see the DuckDB dedup rule): stored in fact_events_duplicates, not fact_events.
	Duplicates int
	// Replaced counts stored rows (not of this batch) that changed table because of it: kept rows
	// a preferred copy of the batch made duplicates, and duplicates that became kept again. Rare:
	// it takes a preferred copy arriving after a worse one.
	Replaced int
	// Stale rows were dropped because their offset is below the stored position of their
	// partition: a replay of records that were already written.
	Stale int
	// Bytes approximates the size of the inserted rows (string lengths plus 8 bytes per
	// fixed-width value), for the warehouse bytes metric.
	Bytes int64
	// Orders counts what Write did with Batch.Orders.
	Orders OrderResult
	// Products and Users count what Write did with Batch.Products and Batch.Users.
	Products, Users DimResult
	// Commits is, for a Committer, the metadata the sink must commit with Batch.Positions
	// (Kafka's committed_metadata, via kgo.PreCommitFnContext), by partition; nil for DuckDB.
	// A batch of positions only, after a Claim, gives the claim commit's metadata (Committer).
	Commits map[Partition]string
}

// OrderResult counts what Write did with a batch's order versions.
// Inserted+Replaced+Stale+Duplicates == len(Batch.Orders).
type OrderResult struct {
	// Inserted versions are of orders the warehouse did not hold.
	Inserted int
	// Replaced versions were newer than the stored one and replaced its row and lines.
	Replaced int
	// Stale versions were dropped: older than the stored or a newer version in the batch, or
	// below the stored position of their partition (a replay).
	Stale int
	// Duplicates were the same version (order_version and updated_at) as the one kept: a replay,
	// or the poll and the webhook both delivering it. Of the copies of a version the one with the
	// lowest source coordinates is kept (orders.go), so a copy from lower coordinates than the
	// stored one replaces its row, and is counted here.
	Duplicates int
}

// Warehouse stores event batches exactly once.
//
// Write is called from one goroutine. Positions, Query-style reads and Ping may run concurrently
// with it (HTTP handlers, rebalance callbacks).
type Warehouse interface {
	// Migrate applies the DDL idempotently. Call it once at start, before Write.
	Migrate(ctx context.Context) error
	// Positions returns the group's position per partition, as last committed by Write (or
	// ResetPositions). The consumer checks them against the log and seeks there on assignment;
	// partitions absent from the map have never been written.
	Positions(ctx context.Context, group string) (map[Partition]Position, error)
	// ResetPositions replaces the group's stored positions of the given partitions, also moving
	// them back. It is the explicit re-anchoring step after an operator allowed a start from
	// another offset or another log (POSITION_RECOVERY); Write never moves a position back.
	ResetPositions(ctx context.Context, group string, positions map[Partition]Position) error
	// Write stores the batch and its positions atomically: all of it or, on error, none of it.
	// The caller retries an error for which IsTransient is true, with backoff, and never skips it.
	Write(ctx context.Context, group string, b Batch) (WriteResult, error)
	// Ping reports whether the warehouse can serve a query, for /readyz.
	Ping(ctx context.Context) error
	// Close waits for an in-flight Write, cancels in-flight reads, makes everything durable and
	// releases the store.
	Close() error
}

var (
	// ErrTransient marks a failure that retrying the same call can fix: I/O, memory pressure, a
	// transaction conflict, an interrupted statement, a per-attempt deadline.
	ErrTransient = errors.New("warehouse: transient failure")
	// ErrInvalidBatch marks a batch that breaks Batch's invariants. Retrying cannot help: it is a
	// bug in the caller.
	ErrInvalidBatch = errors.New("warehouse: invalid batch")
	// ErrInvalidQuery marks a Query rejected before it ran: not exactly one SELECT statement, a
	// part of it off the allow-list (query_allow.go), or a bad row limit.
	ErrInvalidQuery = errors.New("warehouse: invalid query")
	// ErrClosed is returned by every method after Close.
	ErrClosed = errors.New("warehouse: closed")
	// ErrPositionConflict marks a batch read from another log (topic id or cluster id) than the
	// one the stored position of its partition belongs to. Retrying cannot help.
	ErrPositionConflict = errors.New("warehouse: position belongs to another log")
)

// RowError is an ErrInvalidBatch caused by the content of one row (no event_id, a string that is
// not UTF-8, a value out of range): no retry can store it. The caller dead-letters
// Batch.Events[Index] (Batch.Orders, Products or Users[Index] by Entity) with Reason — keeping its
// offset covered by Positions — and writes the rest.
type RowError struct {
	// Entity is the slice of the batch Index points into.
	Entity Entity
	Index  int
	Reason string
}

// Entity names one kind of row a Batch carries.
type Entity string

const (
	// EntityEvent rows are Batch.Events.
	EntityEvent Entity = "event"
	// EntityOrder rows are Batch.Orders.
	EntityOrder Entity = "order"
	// EntityProduct rows are Batch.Products.
	EntityProduct Entity = "product"
	// EntityUser rows are Batch.Users.
	EntityUser Entity = "user"
)

func (e *RowError) Error() string {
	return fmt.Sprintf("%v: %s row %d: %s", ErrInvalidBatch, e.entity(), e.Index, e.Reason)
}

func (e *RowError) entity() Entity {
	if e.Entity == "" {
		return EntityEvent
	}
	return e.Entity
}

// Unwrap makes errors.Is(err, ErrInvalidBatch) true for a RowError.
func (e *RowError) Unwrap() error { return ErrInvalidBatch }

// IsTransient reports whether err is worth retrying. Everything else — an invalid batch, a
// constraint or conversion error, a missing table, a fatal database error — will fail the same
// way again: the service should stop and let its supervisor restart it (a restart resumes from the
// stored positions, so nothing is lost or duplicated).
func IsTransient(err error) bool {
	return errors.Is(err, ErrTransient)
}
