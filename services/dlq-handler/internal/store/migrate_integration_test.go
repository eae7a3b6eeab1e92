package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	ddl "github.com/ecomstream/platform/sql"
)

// testPool connects to the local stack's PostgreSQL (DATABASE_URL) and
// returns a fresh schema name that is dropped when the test ends.
func testPool(t *testing.T) (*pgxpool.Pool, string) {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: runs without -short, against the local stack")
	}
	url := os.Getenv("DATABASE_URL")
	if url == "" {
		t.Fatal(`DATABASE_URL is not set: start the local stack and eval "$(deploy/local/stack.sh env)"`)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	if err := pool.Ping(ctx); err != nil {
		t.Fatalf("postgres (DATABASE_URL): %v", err)
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	schema := "dlq_test_" + hex.EncodeToString(b)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := pool.Exec(ctx, "DROP SCHEMA IF EXISTS "+schema+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
		pool.Close()
	})
	return pool, schema
}

// TestIntegrationMigrate: a new schema gets every migration, a second run
// applies none, replicas starting at once apply each migration once, and a
// schema newer than the binary is refused.
func TestIntegrationMigrate(t *testing.T) {
	pool, schema := testPool(t)
	ctx := context.Background()
	ms, err := ddl.DLQMigrations()
	if err != nil {
		t.Fatal(err)
	}
	last := ms[len(ms)-1].Version

	// Four replicas at once on a new schema.
	var wg sync.WaitGroup
	results := make([]MigrateResult, 4)
	errs := make([]error, 4)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = Migrate(ctx, pool, schema)
		}()
	}
	wg.Wait()
	applied := 0
	for i := range results {
		if errs[i] != nil {
			t.Fatalf("replica %d: %v", i, errs[i])
		}
		if results[i].Version != last {
			t.Errorf("replica %d: version %d, want %d", i, results[i].Version, last)
		}
		applied += len(results[i].Applied)
	}
	if applied != len(ms) {
		t.Errorf("the replicas applied %d migrations in all, want each of the %d once", applied, len(ms))
	}
	var tables int
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM information_schema.tables WHERE table_schema = $1 AND table_name = ANY($2)",
		schema, []string{"dead_letters", "consumer_positions", "replays", "replay_jobs", "audit_log", "schema_migrations"}).Scan(&tables); err != nil {
		t.Fatal(err)
	}
	if tables != 6 {
		t.Errorf("schema %s has %d of the 6 tables", schema, tables)
	}

	// Again: nothing to do.
	res, err := Migrate(ctx, pool, schema)
	if err != nil || len(res.Applied) != 0 || res.Version != last {
		t.Errorf("second Migrate = %+v, %v; want nothing applied, version %d", res, err, last)
	}

	// A version this binary does not know.
	if _, err := pool.Exec(ctx, "INSERT INTO "+schema+".schema_migrations (version, name) VALUES ($1, 'future')", last+1); err != nil {
		t.Fatal(err)
	}
	if _, err := Migrate(ctx, pool, schema); err == nil {
		t.Errorf("Migrate on a schema at version %d (this binary knows %d): no error", last+1, last)
	}

	if _, err := Migrate(ctx, pool, "Bad-Name"); err == nil {
		t.Error("Migrate accepted the schema name Bad-Name")
	}
}
