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
// The platform's clock, not the event's, is used: a client's event_timestamp or the shop's
// updated_at can run ahead (the simulator's shop clock does) and would hide a stall.
type newestRows struct {
	mu     sync.Mutex
	newest map[string]time.Time // by table
}

// Tables of the gauge.
const (
	tableEvents   = "fact_events"
	tableOrders   = "fact_orders"
	tableProducts = "dim_products"
	tableUsers    = "dim_users"
)

func newNewestRows(meter metric.Meter) (*newestRows, error) {
	n := &newestRows{newest: map[string]time.Time{}}
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

// seed takes the stored newest rows from wh when it can tell them; a failure leaves the gauge to
// the first commit, and is returned for the log.
func (n *newestRows) seed(ctx context.Context, wh warehouse.Warehouse) error {
	r, ok := wh.(warehouse.NewestReader)
	if !ok {
		return nil
	}
	stored, err := r.Newest(ctx)
	if err != nil {
		return err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	for table, t := range stored {
		n.advance(table, t)
	}
	return nil
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
	if !t.IsZero() && t.After(n.newest[table]) {
		n.newest[table] = t
	}
}
