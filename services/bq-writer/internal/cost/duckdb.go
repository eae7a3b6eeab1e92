package cost

import (
	"context"

	"github.com/ecomstream/platform/services/bq-writer/internal/warehouse"
)

// CountWrites wraps the DuckDB warehouse: every Write is one DuckDB write transaction
// (api=duckdb_write), and the bytes it inserted are priced as if appended to BigQuery
// (item storage_write, table "all": a write's result gives one byte count for all its tables).
// Only the DuckDB warehouse may be wrapped: the wrapper hides every method but Warehouse's
// (a Committer's Commit, for one), and the BigQuery one is counted on the wire instead.
func (m *Meter) CountWrites(wh warehouse.Warehouse) warehouse.Warehouse {
	return countedWrites{Warehouse: wh, m: m}
}

type countedWrites struct {
	warehouse.Warehouse
	m *Meter
}

// TableAll is the table label of DuckDB's storage_write cost.
const TableAll = "all"

func (c countedWrites) Write(ctx context.Context, group string, b warehouse.Batch) (warehouse.WriteResult, error) {
	c.m.Call(ctx, APIDuckDBWrite)
	res, err := c.Warehouse.Write(ctx, group, b)
	if err == nil {
		c.m.Appended(ctx, TableAll, res.Bytes)
	}
	return res, err
}
