// Package cost turns what bq-writer does to the warehouse into money: it counts the warehouse
// API calls (ecom_warehouse_api_calls_total{api}), prices the bytes appended with the Storage
// Write API's unit price (ecom_warehouse_cost_usd_total{table,item="storage_write"}) and the
// bytes stored with the storage price (ecom_warehouse_storage_cost_usd_per_day{table}, from
// sizes refreshed on an interval).
//
// With BigQuery the calls and the appended bytes are counted where they leave the process: a
// gRPC interceptor on the Storage Write API client and an HTTP transport under the REST client,
// so no call path can be missed. With DuckDB a write transaction is the call (api=duckdb_write)
// and its bytes are priced as if they were appended to BigQuery: the figures say what the same
// load would cost there.
package cost

import (
	"math"
	"time"

	"github.com/ecomstream/platform/pkg/config"
)

// Config holds the unit prices (USD) and the storage refresh interval.
type Config struct {
	StorageWritePerGiB float64       `env:"BIGQUERY_PRICE_STORAGE_WRITE_USD_PER_GIB" default:"0.025" usage:"Storage Write API price per GiB appended (USD), for ecom_warehouse_cost_usd_total{item=\"storage_write\"}; 0 = no estimate. With DuckDB it prices the rows written as if appended to BigQuery"`
	StoragePerGiBMonth float64       `env:"BIGQUERY_PRICE_STORAGE_USD_PER_GIB_MONTH" default:"0.02" usage:"storage price per GiB-month (USD; BigQuery active logical storage), for ecom_warehouse_storage_cost_usd_per_day = stored bytes x price / 30; 0 = no estimate"`
	StorageInterval    time.Duration `env:"WAREHOUSE_STORAGE_REFRESH_INTERVAL" default:"10m" usage:"how often the stored bytes per table are read for the storage cost gauge (BigQuery: one tables.get per raw table; DuckDB: two catalog queries), at least 10s"`
}

// MaxPrice bounds the unit prices: a price above it is a typo (cents for dollars, a per-TiB
// price), not a contract.
const MaxPrice = 1000

// MinStorageInterval is the shortest WAREHOUSE_STORAGE_REFRESH_INTERVAL.
const MinStorageInterval = 10 * time.Second

// Validate implements config.Validator.
func (c *Config) Validate() error {
	return config.First(
		price("BIGQUERY_PRICE_STORAGE_WRITE_USD_PER_GIB", c.StorageWritePerGiB),
		price("BIGQUERY_PRICE_STORAGE_USD_PER_GIB_MONTH", c.StoragePerGiBMonth),
		config.Between("WAREHOUSE_STORAGE_REFRESH_INTERVAL", c.StorageInterval, MinStorageInterval, 24*time.Hour),
	)
}

// price checks a unit price; NaN needs its own test, every comparison with it being false.
func price(name string, p float64) error {
	if math.IsNaN(p) {
		return config.Errorf(name, "must be a number of USD between 0 and %d, got NaN", MaxPrice)
	}
	return config.Between(name, p, 0, MaxPrice)
}
