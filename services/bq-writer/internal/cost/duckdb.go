package cost

import (
	"context"

	"github.com/ecomstream/platform/services/bq-writer/internal/warehouse"
)

// TableAll is the table label of DuckDB's storage_write cost: a write's result gives one byte
// count for all its tables.
const TableAll = "all"

// CountedDuckDB is the DuckDB warehouse whose every Write, one DuckDB write transaction, is
// counted (api=duckdb_write) and whose inserted bytes are priced as if appended to BigQuery
// (item storage_write, table "all"). It embeds *warehouse.DuckDB, so every other method, and
// every optional interface the sink asserts on the warehouse, stays visible. (The BigQuery
// warehouse is counted on the wire instead: GRPCDialOptions, Transport.)
type CountedDuckDB struct {
	*warehouse.DuckDB
	m *Meter
}

var _ warehouse.Warehouse = (*CountedDuckDB)(nil)

// CountWrites wraps the DuckDB warehouse.
func (m *Meter) CountWrites(d *warehouse.DuckDB) *CountedDuckDB {
	return &CountedDuckDB{DuckDB: d, m: m}
}

// Write implements warehouse.Warehouse.
func (c *CountedDuckDB) Write(ctx context.Context, group string, b warehouse.Batch) (warehouse.WriteResult, error) {
	return c.m.countWrite(ctx, c.DuckDB.Write, group, b)
}

// countWrite counts one write transaction (failed ones too: they were calls) and prices the
// bytes of a successful one.
func (m *Meter) countWrite(ctx context.Context, write func(context.Context, string, warehouse.Batch) (warehouse.WriteResult, error),
	group string, b warehouse.Batch) (warehouse.WriteResult, error) {
	m.Call(ctx, APIDuckDBWrite)
	res, err := write(ctx, group, b)
	if err == nil {
		m.Appended(ctx, TableAll, res.Bytes)
	}
	return res, err
}
