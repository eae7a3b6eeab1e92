package warehouse

import (
	"testing"

	"go.uber.org/goleak"
)

// database/sql starts a connection-opener goroutine per DB and duckdb-go one interrupt watcher per
// cancellable statement: all must be gone once every test has closed its warehouse.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
