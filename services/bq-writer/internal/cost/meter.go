package cost

import (
	"context"
	"fmt"
	"maps"
	"sync"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// GiB is the unit BigQuery prices bytes in.
const GiB = 1 << 30

// DaysPerMonth converts a per-GiB-month storage price to a daily one, as BigQuery's pricing
// page does for its examples.
const DaysPerMonth = 30

// Items of ecom_warehouse_cost_usd_total.
const (
	// ItemStorageWrite is the Storage Write API's ingestion price on appended bytes.
	ItemStorageWrite = "storage_write"
)

// API names of ecom_warehouse_api_calls_total. The set is fixed, so the label's cardinality is.
const (
	APIAppendRows     = "append_rows"           // one AppendRows request (an append) on the Storage Write API
	APICreateStream   = "create_write_stream"   // CreateWriteStream (a stream opened)
	APIFinalizeStream = "finalize_write_stream" // FinalizeWriteStream (a stream fenced at a claim)
	APIGetStream      = "get_write_stream"      // GetWriteStream
	APIBatchCommit    = "batch_commit_write_streams"
	APIFlushRows      = "flush_rows"
	APIStorageOther   = "storage_other" // another Storage Write API method
	APIQuery          = "query"         // REST jobs and queries: the DDL at start, queries and their polls
	APITablesGet      = "tables_get"    // REST tables.get: schemas, the storage sizes
	APITablesList     = "tables_list"
	APITablesUpdate   = "tables_update" // REST tables.patch/update: columns added
	APIDatasets       = "datasets"      // REST datasets.*: created at start
	APIRESTOther      = "rest_other"    // another REST call
	APIDuckDBWrite    = "duckdb_write"  // one DuckDB write transaction (a Write of a batch)
)

// Meter records the cost metrics. Its methods are safe for concurrent use.
type Meter struct {
	cfg   Config
	calls metric.Int64Counter
	cost  metric.Float64Counter

	mu     sync.Mutex
	stored map[string]int64 // bytes by table, from the last refresh
}

// New registers the cost instruments on m.
func New(m metric.Meter, cfg Config) (*Meter, error) {
	out := &Meter{cfg: cfg, stored: map[string]int64{}}
	var err error
	if out.calls, err = m.Int64Counter("ecom.warehouse.api.calls",
		metric.WithDescription("Warehouse API calls by api: Storage Write API appends (append_rows), stream creations and finalizations, REST queries and DDL (query), table and dataset calls; duckdb_write is one DuckDB write transaction.")); err != nil {
		return nil, fmt.Errorf("cost: metric: %w", err)
	}
	if out.cost, err = m.Float64Counter("ecom.warehouse.cost.usd",
		metric.WithDescription("Estimated warehouse cost in USD by table and item: storage_write = appended bytes x BIGQUERY_PRICE_STORAGE_WRITE_USD_PER_GIB / GiB (with DuckDB: the bytes written, priced as if appended to BigQuery, table=all).")); err != nil {
		return nil, fmt.Errorf("cost: metric: %w", err)
	}
	if _, err = m.Int64ObservableGauge("ecom.warehouse.stored", metric.WithUnit("By"),
		metric.WithDescription("Bytes stored by table at the last refresh (WAREHOUSE_STORAGE_REFRESH_INTERVAL): BigQuery table metadata numBytes; DuckDB the database's used blocks and WAL, shared among tables by rows x columns."),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			for t, b := range out.Stored() {
				o.Observe(b, metric.WithAttributes(attribute.String("table", t)))
			}
			return nil
		})); err != nil {
		return nil, fmt.Errorf("cost: metric: %w", err)
	}
	if _, err = m.Float64ObservableGauge("ecom.warehouse.storage.cost.usd_per_day",
		metric.WithDescription("Estimated storage cost per day in USD by table: stored bytes x BIGQUERY_PRICE_STORAGE_USD_PER_GIB_MONTH / GiB / 30."),
		metric.WithFloat64Callback(func(_ context.Context, o metric.Float64Observer) error {
			for t, b := range out.Stored() {
				o.Observe(out.StoragePerDay(b), metric.WithAttributes(attribute.String("table", t)))
			}
			return nil
		})); err != nil {
		return nil, fmt.Errorf("cost: metric: %w", err)
	}
	return out, nil
}

// Call counts one API call.
func (m *Meter) Call(ctx context.Context, api string) {
	m.calls.Add(ctx, 1, metric.WithAttributes(attribute.String("api", api)))
}

// Appended prices bytes appended to table. It adds 0 for 0 bytes, so the series exists from
// the first call on (a rate over it is then 0, not absent).
func (m *Meter) Appended(ctx context.Context, table string, bytes int64) {
	m.cost.Add(ctx, m.WriteCost(bytes), metric.WithAttributes(attribute.String("table", table), attribute.String("item", ItemStorageWrite)))
}

// WriteCost is the Storage Write API price of bytes.
func (m *Meter) WriteCost(bytes int64) float64 {
	return float64(bytes) / GiB * m.cfg.StorageWritePerGiB
}

// StoragePerDay is the storage price of bytes for one day.
func (m *Meter) StoragePerDay(bytes int64) float64 {
	return float64(bytes) / GiB * m.cfg.StoragePerGiBMonth / DaysPerMonth
}

// SetStored replaces the stored bytes by table (a table missing from sizes is no longer
// reported).
func (m *Meter) SetStored(sizes map[string]int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.stored = maps.Clone(sizes)
}

// Stored returns the stored bytes by table from the last refresh.
func (m *Meter) Stored() map[string]int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return maps.Clone(m.stored)
}
