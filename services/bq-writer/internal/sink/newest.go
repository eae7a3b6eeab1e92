package sink

import (
	"context"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/ecomstream/platform/services/bq-writer/internal/warehouse"
)

// newestRows is the gauge ecom.warehouse.newest_row.timestamp{table} (Prometheus
// ecom_warehouse_newest_row_timestamp_seconds): per table, the unix time at which the platform
// received the newest row committed to it (fact_events and fact_orders: received_at; dim_products
// and dim_users: synced_at, when catalog-sync read the change). time() minus it is the
// warehouse's end-to-end freshness, the alert signal; it grows when the pipeline stalls anywhere
// upstream, and also when a source sends nothing.
//
// It is kept above the Warehouse seam, from the batches the sink committed, so every backend
// reports it the same way; at start a backend that can read it cheaply
// (warehouse.NewestReader: DuckDB) seeds it, so a restart does not blank it until the next commit.
// A fact table it cannot seed (BigQuery: reading it would be a billed scan; an empty table) reads
// the process's start time until its first commit replaces it, older or not: without a series the
// freshness alert could not fire after a restart into a stalled pipeline; with the start time it
// fires once nothing arrived for its threshold.
// The platform's clock, not the event's, is used: a client's event_timestamp or the shop's
// updated_at can run ahead (the simulator's shop clock does) and would hide a stall.
type newestRows struct {
	mu          sync.Mutex
	newest      map[string]time.Time // by table
	provisional map[string]bool      // the start time stands in; the first commit replaces it
}

// Tables of the gauge.
const (
	tableEvents   = "fact_events"
	tableOrders   = "fact_orders"
	tableProducts = "dim_products"
	tableUsers    = "dim_users"
)

func newNewestRows(meter metric.Meter) (*newestRows, error) {
	n := &newestRows{newest: map[string]time.Time{}, provisional: map[string]bool{}}
	_, err := meter.Float64ObservableGauge("ecom.warehouse.newest_row.timestamp", metric.WithUnit("s"),
		metric.WithDescription("Unix time at which the platform received the newest row committed to the table (received_at; dim_*: synced_at). time() minus it is the end-to-end freshness."),
		metric.WithFloat64Callback(func(_ context.Context, o metric.Float64Observer) error {
			n.mu.Lock()
			defer n.mu.Unlock()
			for table, t := range n.newest {
				o.Observe(float64(t.UnixNano())/1e9, metric.WithAttributes(attribute.String("table", table)))
			}
			return nil
		}))
	return n, err
}

// seed takes the stored newest rows from wh when it can tell them (a failure is returned for
// the log), and gives the fact tables still without one the start time, provisionally.
func (n *newestRows) seed(ctx context.Context, wh warehouse.Warehouse, start time.Time) error {
	var err error
	if r, ok := wh.(warehouse.NewestReader); ok {
		var stored map[string]time.Time
		if stored, err = r.Newest(ctx); err == nil {
			n.mu.Lock()
			for table, t := range stored {
				n.advance(table, t)
			}
			n.mu.Unlock()
		}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, table := range []string{tableEvents, tableOrders} {
		if _, ok := n.newest[table]; !ok {
			n.newest[table], n.provisional[table] = start, true
		}
	}
	return err
}

// committed advances the gauge with the rows of a batch that Write committed. Every row counts,
// whatever Write did with it (kept, duplicate, a superseded order version): each is data that
// reached the warehouse. The gauge never moves back (a replay carries old times).
func (n *newestRows) committed(b *warehouse.Batch) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for i := range b.Events {
		n.advance(tableEvents, b.Events[i].ReceivedAt)
	}
	for i := range b.Orders {
		if t := b.Orders[i].ReceivedAt; t != nil { // nil: v1 data, never received by ingest-orders
			n.advance(tableOrders, *t)
		}
	}
	for i := range b.Products {
		n.advance(tableProducts, b.Products[i].SyncedAt)
	}
	for i := range b.Users {
		n.advance(tableUsers, b.Users[i].SyncedAt)
	}
}

// advance is called with n.mu held.
func (n *newestRows) advance(table string, t time.Time) {
	if t.IsZero() {
		return
	}
	if n.provisional[table] || t.After(n.newest[table]) {
		n.newest[table] = t
		delete(n.provisional, table)
	}
}
