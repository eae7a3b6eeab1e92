package warehouse

// The backend-neutral half of Write: what every backend checks and decides the same way before it
// touches its store (batch invariants, row validity, which rows are replays of written records, the
// log a stored position belongs to). A backend calls these; it does not re-implement them.

import (
	"cmp"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"unicode/utf8"
)

// ValidateBatch checks the invariants every backend's Write relies on; call it first in Write. A broken batch invariant is a bug in the
// caller; a bad row is reported as a *RowError so the caller can dead-letter it. Neither is
// transient.
func ValidateBatch(group string, b Batch) error {
	if group == "" {
		return fmt.Errorf("%w: empty consumer group", ErrInvalidBatch)
	}
	for p, next := range b.Positions {
		if err := CheckPosition(p, next); err != nil {
			return err
		}
	}
	for i := range b.Events {
		r := &b.Events[i]
		if err := checkCovered(b, "event", i, Partition{r.SourceTopic, r.SourcePartition}, r.SourceOffset); err != nil {
			return err
		}
		if reason := invalidRow(r); reason != "" {
			return &RowError{Entity: EntityEvent, Index: i, Reason: reason}
		}
	}
	for i := range b.Orders {
		r := &b.Orders[i]
		if err := checkCovered(b, "order", i, Partition{r.SourceTopic, r.SourcePartition}, r.SourceOffset); err != nil {
			return err
		}
		if reason := invalidOrder(r); reason != "" {
			return &RowError{Entity: EntityOrder, Index: i, Reason: reason}
		}
	}
	for i := range b.Products {
		r := &b.Products[i]
		if err := checkCovered(b, "product", i, Partition{r.SourceTopic, r.SourcePartition}, r.SourceOffset); err != nil {
			return err
		}
		if reason := invalidProduct(r); reason != "" {
			return &RowError{Entity: EntityProduct, Index: i, Reason: reason}
		}
	}
	for i := range b.Users {
		r := &b.Users[i]
		if err := checkCovered(b, "user", i, Partition{r.SourceTopic, r.SourcePartition}, r.SourceOffset); err != nil {
			return err
		}
		if reason := invalidUser(r); reason != "" {
			return &RowError{Entity: EntityUser, Index: i, Reason: reason}
		}
	}
	return nil
}

// checkCovered checks that the batch's positions cover a row at off of p.
func checkCovered(b Batch, what string, i int, p Partition, off int64) error {
	next, ok := b.Positions[p]
	switch {
	case !ok:
		return fmt.Errorf("%w: %s row %d (%s/%d@%d) has no position in the batch", ErrInvalidBatch, what, i, p.Topic, p.Partition, off)
	case off < 0 || off >= next:
		return fmt.Errorf("%w: %s row %d offset %d is not below the batch position %d of %s/%d", ErrInvalidBatch, what, i, off, next, p.Topic, p.Partition)
	}
	return nil
}

// invalidRow returns why the row cannot be stored faithfully, or "". Strings must be UTF-8 (every
// backend: BigQuery's STRING is UTF-8, and the DuckDB appender silently stores NULL for one that is not (duckdb-go v2.10506.0; seen in
// testing), bound parameters refuse it, and the JSON-encoded dedup ids must round-trip exactly).
func invalidRow(r *EventRow) string {
	e := &r.ClickEvent
	if e.EventID == "" {
		return "empty event_id"
	}
	if e.Quantity != nil && (*e.Quantity > math.MaxInt32 || *e.Quantity < math.MinInt32) {
		return fmt.Sprintf("quantity %d overflows INTEGER", *e.Quantity)
	}
	for _, f := range [...]struct {
		name string
		v    string
	}{
		{"event_id", e.EventID}, {"event_type", e.EventType}, {"session_id", e.SessionID},
		{"page_url", e.PageURL}, {"source", e.Source}, {"trace_id", r.TraceID}, {"source_topic", r.SourceTopic}, {"dq_warnings", r.DQWarnings},
	} {
		if !utf8.ValidString(f.v) {
			return f.name + " is not valid UTF-8"
		}
	}
	for _, f := range [...]struct {
		name string
		v    *string
	}{
		{"user_id", e.UserID}, {"anonymous_id", e.AnonymousID}, {"referrer", e.Referrer},
		{"user_agent", e.UserAgent}, {"device_type", e.DeviceType}, {"os", e.Os}, {"browser", e.Browser},
		{"country", e.Country}, {"region", e.Region}, {"city", e.City}, {"product_id", e.ProductID},
		{"search_query", e.SearchQuery}, {"currency", e.Currency}, {"order_id", e.OrderID},
		{"client_ip", e.ClientIP}, {"collector_source", e.CollectorSource},
	} {
		if f.v != nil && !utf8.ValidString(*f.v) {
			return f.name + " is not valid UTF-8"
		}
	}
	return ""
}

// CheckPosition refuses a position no Kafka partition can have (an ErrInvalidBatch).
func CheckPosition(p Partition, next int64) error {
	if p.Topic == "" || p.Partition < 0 || next < 0 {
		return fmt.Errorf("%w: bad position %s/%d -> %d", ErrInvalidBatch, p.Topic, p.Partition, next)
	}
	return nil
}

// ValidatePositions checks the arguments of ResetPositions: a group and positions a Kafka
// partition can have.
func ValidatePositions(group string, positions map[Partition]Position) error {
	if group == "" {
		return fmt.Errorf("%w: empty consumer group", ErrInvalidBatch)
	}
	for p, pos := range positions {
		if err := CheckPosition(p, pos.Next); err != nil {
			return err
		}
	}
	return nil
}

// CheckSameLog returns an ErrPositionConflict when a partition of the batch has a stored position
// read from another log (topic incarnation or cluster) than the batch. It returns the stored next
// offsets, the map FreshRows and the Stale counts take.
func CheckSameLog(stored map[Partition]Position, b Batch) (map[Partition]int64, error) {
	next := make(map[Partition]int64, len(stored))
	for p, pos := range stored {
		next[p] = pos.Next
		if _, ok := b.Positions[p]; !ok {
			continue
		}
		if topicID := b.TopicIDs[p.Topic]; !pos.SameLog(topicID, b.ClusterID) {
			return nil, fmt.Errorf("%w: %s/%d: the stored position %d was read from topic id %q on cluster %q, this batch from topic id %q on cluster %q",
				ErrPositionConflict, p.Topic, p.Partition, pos.Next, pos.TopicID, pos.ClusterID, topicID, b.ClusterID)
		}
	}
	return next, nil
}

// FreshRows splits n rows, whose source coordinates at returns, into the fresh ones (their indexes,
// in order) and the count of stale ones: rows below the stored next offset of their partition,
// replays of records a committed write already covered. A partition without a stored position has
// no stale rows.
func FreshRows(n int, at func(i int) (Partition, int64), stored map[Partition]int64) (fresh []int, stale int) {
	fresh = make([]int, 0, n)
	for i := range n {
		p, off := at(i)
		if next, ok := stored[p]; ok && off < next {
			stale++
			continue
		}
		fresh = append(fresh, i)
	}
	return fresh, stale
}

// EventAt, OrderAt, ProductAt and UserAt return the source coordinates of a batch's row, for
// FreshRows.
func EventAt(b *Batch) func(int) (Partition, int64) {
	return func(i int) (Partition, int64) {
		r := &b.Events[i]
		return Partition{r.SourceTopic, r.SourcePartition}, r.SourceOffset
	}
}

// OrderAt: see EventAt.
func OrderAt(b *Batch) func(int) (Partition, int64) {
	return func(i int) (Partition, int64) {
		r := &b.Orders[i]
		return Partition{r.SourceTopic, r.SourcePartition}, r.SourceOffset
	}
}

// ProductAt: see EventAt.
func ProductAt(b *Batch) func(int) (Partition, int64) {
	return func(i int) (Partition, int64) {
		r := &b.Products[i]
		return Partition{r.SourceTopic, r.SourcePartition}, r.SourceOffset
	}
}

// UserAt: see EventAt.
func UserAt(b *Batch) func(int) (Partition, int64) {
	return func(i int) (Partition, int64) {
		r := &b.Users[i]
		return Partition{r.SourceTopic, r.SourcePartition}, r.SourceOffset
	}
}

// SortedPartitions returns m's partitions by topic, then partition: the order in which a backend
// writes positions, so that statements and logs are stable.
func SortedPartitions[V any](m map[Partition]V) []Partition {
	return slices.SortedFunc(maps.Keys(m), func(a, b Partition) int {
		if c := strings.Compare(a.Topic, b.Topic); c != 0 {
			return c
		}
		return cmp.Compare(a.Partition, b.Partition)
	})
}
