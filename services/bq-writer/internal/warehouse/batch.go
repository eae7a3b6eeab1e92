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
	"time"
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
		if reason := cmp.Or(invalidRow(r), eventLimits(r)); reason != "" {
			return &RowError{Entity: EntityEvent, Index: i, Reason: reason}
		}
	}
	for i := range b.Orders {
		r := &b.Orders[i]
		if err := checkCovered(b, "order", i, Partition{r.SourceTopic, r.SourcePartition}, r.SourceOffset); err != nil {
			return err
		}
		if reason := cmp.Or(invalidOrder(r), orderLimits(r)); reason != "" {
			return &RowError{Entity: EntityOrder, Index: i, Reason: reason}
		}
	}
	for i := range b.Products {
		r := &b.Products[i]
		if err := checkCovered(b, "product", i, Partition{r.SourceTopic, r.SourcePartition}, r.SourceOffset); err != nil {
			return err
		}
		if reason := cmp.Or(invalidProduct(r), productLimits(r)); reason != "" {
			return &RowError{Entity: EntityProduct, Index: i, Reason: reason}
		}
	}
	for i := range b.Users {
		r := &b.Users[i]
		if err := checkCovered(b, "user", i, Partition{r.SourceTopic, r.SourcePartition}, r.SourceOffset); err != nil {
			return err
		}
		if reason := cmp.Or(invalidUser(r), userLimits(r)); reason != "" {
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

// BigQuery's limits on a stored value. Every backend refuses a row outside them (as a *RowError,
// dead-lettered as INVALID_VALUE), DuckDB too although it could store it: BigQuery would refuse the
// append with INVALID_ARGUMENT, a fatal error, and the sink would restart on the same batch
// forever; refusing it in both keeps the two backends' prod layers equal.
var (
	// MinTimestamp is the earliest TIMESTAMP (and, as its date, DATE) BigQuery stores.
	MinTimestamp = time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC)
	// MaxTimestamp is the first instant after the latest TIMESTAMP BigQuery stores
	// (9999-12-31 23:59:59.999999 UTC); event_date and order_date are the UTC dates of timestamps
	// in range, so in DATE's range too.
	MaxTimestamp = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
)

// MaxRowStringBytes caps the string bytes of one record: a Storage Write API row must fit in one
// append request (10 MB, and bqwh's appends are at most 9 MiB of rows). 8 MiB leaves room for the
// other columns (a few hundred bytes) and the request's own fields; a Kafka record is far smaller
// unless the broker's message.max.bytes was raised. An order counts its lines' strings too.
const MaxRowStringBytes = 8 << 20

// namedTime is a timestamp column for timeOutOfRange; v nil is NULL.
type namedTime struct {
	name string
	v    *time.Time
}

// timeOutOfRange returns why the first timestamp outside BigQuery's range cannot be stored, or "".
func timeOutOfRange(ts ...namedTime) string {
	for _, t := range ts {
		if t.v != nil && (t.v.Before(MinTimestamp) || !t.v.Before(MaxTimestamp)) {
			return fmt.Sprintf("%s %s is outside the TIMESTAMP range 0001-01-01..9999-12-31", t.name, t.v.UTC().Format(time.RFC3339Nano))
		}
	}
	return ""
}

// tooLarge returns why a row of n string bytes cannot be stored, or "".
func tooLarge(n int) string {
	if n > MaxRowStringBytes {
		return fmt.Sprintf("%d string bytes exceed the row limit of %d", n, MaxRowStringBytes)
	}
	return ""
}

// stringBytes returns the bytes of ss and of the non-nil ps.
func stringBytes(ss []string, ps ...*string) int {
	n := 0
	for _, s := range ss {
		n += len(s)
	}
	for _, p := range ps {
		if p != nil {
			n += len(*p)
		}
	}
	return n
}

// eventLimits returns why the event exceeds a BigQuery limit, or "".
func eventLimits(r *EventRow) string {
	e := &r.ClickEvent
	return cmp.Or(
		timeOutOfRange(namedTime{"event_timestamp", &e.EventTimestamp}, namedTime{"received_at", &e.ReceivedAt}),
		tooLarge(stringBytes([]string{e.EventID, e.EventType, e.SessionID, e.PageURL, e.Source, r.TraceID, r.DQWarnings, r.SourceTopic},
			e.UserID, e.AnonymousID, e.Referrer, e.UserAgent, e.DeviceType, e.Os, e.Browser, e.Country, e.Region, e.City,
			e.ProductID, e.SearchQuery, e.Currency, e.OrderID, e.ClientIP, e.CollectorSource)))
}

// orderLimits returns why the order version or one of its lines exceeds a BigQuery limit, or "".
func orderLimits(r *OrderRow) string {
	o := &r.Order
	n := stringBytes([]string{o.OrderID, o.UserID, o.Status, o.Currency, o.Source, r.TraceID, r.DQWarnings, r.SourceTopic},
		o.ShippingCountry, o.WebhookDeliveryID)
	for i := range o.Items {
		n += stringBytes([]string{o.Items[i].ProductID}, o.Items[i].LineID)
	}
	return cmp.Or(
		timeOutOfRange(namedTime{"order_timestamp", &o.OrderTimestamp}, namedTime{"updated_at", &o.UpdatedAt},
			namedTime{"paid_at", o.PaidAt}, namedTime{"shipped_at", o.ShippedAt}, namedTime{"delivered_at", o.DeliveredAt},
			namedTime{"cancelled_at", o.CancelledAt}, namedTime{"refunded_at", o.RefundedAt}, namedTime{"received_at", o.ReceivedAt}),
		tooLarge(n))
}

// productLimits returns why the product change exceeds a BigQuery limit, or "".
func productLimits(r *ProductRow) string {
	p := &r.ProductChange
	return cmp.Or(
		timeOutOfRange(namedTime{"updated_at", &p.UpdatedAt}, namedTime{"synced_at", &p.SyncedAt},
			namedTime{"changed_at", p.ChangedAt}, namedTime{"deleted_at", p.DeletedAt}),
		tooLarge(stringBytes([]string{p.ProductID, p.Op, p.Name, p.Currency, p.Source, r.SourceTopic}, p.Sku, p.Category, p.Brand)))
}

// userLimits returns why the customer change exceeds a BigQuery limit, or "".
func userLimits(r *UserRow) string {
	return cmp.Or(
		timeOutOfRange(namedTime{"created_at", r.CreatedAt}, namedTime{"updated_at", &r.UpdatedAt}, namedTime{"synced_at", &r.SyncedAt},
			namedTime{"changed_at", r.ChangedAt}, namedTime{"deleted_at", r.DeletedAt}),
		tooLarge(stringBytes([]string{r.UserID, r.Op, r.Source, r.SourceTopic}, r.EmailHash, r.EmailDomain, r.Country)))
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
