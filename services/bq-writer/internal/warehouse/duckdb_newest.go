package warehouse

import (
	"context"
	"database/sql"
	"time"
)

var _ NewestReader = (*DuckDB)(nil)

// selectNewest reads the newest received_at / synced_at per table: one column scan each, which
// DuckDB answers from its row groups' min/max statistics.
const selectNewest = `SELECT
  (SELECT max(received_at) FROM fact_events),
  (SELECT max(received_at) FROM fact_orders),
  (SELECT max(synced_at) FROM dim_products_changes),
  (SELECT max(synced_at) FROM dim_users_changes)`

// Newest implements NewestReader; a table without rows is absent from the map.
func (d *DuckDB) Newest(ctx context.Context) (_ map[string]time.Time, err error) {
	defer func() { err = wrap("newest rows", err) }()
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.closed {
		return nil, ErrClosed
	}
	var ts [4]sql.NullTime
	if err := d.db.QueryRowContext(ctx, selectNewest).Scan(&ts[0], &ts[1], &ts[2], &ts[3]); err != nil {
		return nil, err
	}
	out := map[string]time.Time{}
	for i, table := range []string{"fact_events", "fact_orders", "dim_products", "dim_users"} {
		if ts[i].Valid {
			out[table] = ts[i].Time.UTC()
		}
	}
	return out, nil
}
