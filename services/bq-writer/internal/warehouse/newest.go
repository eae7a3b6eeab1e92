package warehouse

import (
	"context"
	"time"
)

// NewestReader is implemented by a backend that can read cheaply, at start, when the platform
// received the newest row of each table (fact_events and fact_orders: max(received_at);
// dim_products and dim_users: max(synced_at) of their change logs), keyed by table name. It
// seeds bq-writer's ecom.warehouse.newest_row.timestamp gauge, which is otherwise kept from the
// committed batches. DuckDB implements it; BigQuery does not (the max would be a billed scan of
// the column across every partition), so there the gauge starts at the first commit.
type NewestReader interface {
	Newest(ctx context.Context) (map[string]time.Time, error)
}
