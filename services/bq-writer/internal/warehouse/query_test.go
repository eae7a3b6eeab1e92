package warehouse

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestQueryRejectsAnythingButOneRead(t *testing.T) {
	d, _ := openTest(t)
	mustWrite(t, d, batch(seq("q", 0, 0, 5)...))
	outside := filepath.Join(t.TempDir(), "out.csv")
	if err := os.WriteFile(outside, []byte("a,b\n1,2\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name  string
		query string
	}{
		{"insert", `INSERT INTO fact_events SELECT * FROM fact_events`},
		{"update", `UPDATE stream_positions SET next_offset = 0`},
		{"delete", `DELETE FROM fact_events`},
		{"create", `CREATE TABLE x (a INT)`},
		{"create as select", `CREATE TABLE x AS SELECT 1`},
		{"drop", `DROP TABLE fact_events`},
		{"alter", `ALTER TABLE fact_events ADD COLUMN x INT`},
		{"truncate", `TRUNCATE fact_events`},
		{"attach", `ATTACH '` + filepath.Join(t.TempDir(), "other.duckdb") + `' AS other`},
		{"detach", `DETACH warehouse`},
		{"copy to", `COPY fact_events TO '` + outside + `'`},
		{"copy from", `COPY fact_events FROM '` + outside + `'`},
		{"export", `EXPORT DATABASE '` + t.TempDir() + `'`},
		{"pragma", `PRAGMA enable_profiling`},
		{"set", `SET threads = 1`},
		{"reset", `RESET threads`},
		{"checkpoint", `CHECKPOINT`},
		{"call", `CALL pragma_table_info('fact_events')`},
		{"install", `INSTALL httpfs`},
		{"load", `LOAD httpfs`},
		{"use", `USE memory`},
		{"begin", `BEGIN TRANSACTION`},
		{"commit", `COMMIT`},
		{"vacuum", `VACUUM`},
		{"prepare", `PREPARE p AS DELETE FROM fact_events`},
		{"explain analyze delete", `EXPLAIN ANALYZE DELETE FROM fact_events`},
		{"select then delete", `SELECT 1; DELETE FROM fact_events`},
		{"delete then select", `DELETE FROM fact_events; SELECT 1`},
		{"commit, delete, select", `COMMIT; DELETE FROM fact_events; SELECT 1`},
		{"two selects", `SELECT 1; SELECT 2`},
		{"read another file", `SELECT * FROM read_csv('` + outside + `')`},
		{"empty", `  ;  `},
		{"syntax error", `SELEKT 1`},
		{"unknown table", `SELECT * FROM nope`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := d.Query(context.Background(), tt.query, 10)
			if err == nil {
				t.Fatalf("%q was accepted", tt.query)
			}
			if IsTransient(err) {
				t.Fatalf("%q: rejection marked transient: %v", tt.query, err)
			}
			t.Logf("%v", err)
		})
	}

	// Nothing changed, and the statements that must be rejected before running were.
	if n := count(t, d, `SELECT count(*) FROM fact_events`); n != 5 {
		t.Fatalf("fact_events has %d rows, want 5", n)
	}
	if n := count(t, d, `SELECT count(*) FROM duckdb_tables() WHERE table_name = 'x'`); n != 0 {
		t.Fatal("table x was created")
	}
	if n := count(t, d, `SELECT count(*) FROM duckdb_databases() WHERE database_name = 'other'`); n != 0 {
		t.Fatal("ATTACH ran")
	}
	if b, _ := os.ReadFile(outside); string(b) != "a,b\n1,2\n" {
		t.Fatal("COPY TO wrote the file")
	}
	pos, _ := d.Positions(context.Background(), testGroup)
	if pos[Partition{"ecom.events.valid.v1", 0}].Next != 5 {
		t.Fatalf("positions changed: %v", pos)
	}
	for _, q := range []string{"SELECT 1; DELETE FROM fact_events", "DELETE FROM fact_events; SELECT 1"} {
		if _, _, err := d.Query(context.Background(), q, 1); !errors.Is(err, ErrInvalidQuery) {
			t.Errorf("%q: %v, want ErrInvalidQuery", q, err)
		}
	}
}

func TestQueryReturnsRows(t *testing.T) {
	d, _ := openTest(t)
	mustWrite(t, d, batch(seq("q", 0, 0, 30)...))
	mustWrite(t, d, orderBatch(order(0, "o-1", 2, 3)))
	tests := []struct {
		name     string
		query    string
		maxRows  int
		wantCols []string
		wantRows int
		first    string // fmt.Sprint of the first row
	}{
		{name: "aggregate", query: `SELECT count(*) AS n FROM fact_events`, maxRows: 10, wantCols: []string{"n"}, wantRows: 1, first: "[30]"},
		{name: "capped", query: `SELECT source_offset FROM fact_events`, maxRows: 7, wantCols: []string{"source_offset"}, wantRows: 7},
		{name: "order survives the cap", query: `SELECT source_offset AS o FROM fact_events ORDER BY o DESC`, maxRows: 3, wantCols: []string{"o"}, wantRows: 3, first: "[29]"},
		{name: "trailing semicolon and comment", query: "SELECT 42 AS answer; -- why not\n", maxRows: 5, wantCols: []string{"answer"}, wantRows: 1, first: "[42]"},
		{name: "line comment at the end", query: "SELECT 1 AS a -- trailing", maxRows: 5, wantCols: []string{"a"}, wantRows: 1, first: "[1]"},
		{name: "cte", query: `WITH x AS (SELECT event_type, count(*) c FROM fact_events GROUP BY 1) SELECT * FROM x`, maxRows: 5, wantCols: []string{"event_type", "c"}, wantRows: 1, first: "[add_to_cart 30]"},
		{name: "describe", query: `DESCRIBE fact_events`, maxRows: 100, wantRows: 33},
		{name: "show tables", query: `SHOW TABLES`, maxRows: 100, wantCols: []string{"name"}, wantRows: 13}, // 10 tables, 3 views,
		{name: "orders", query: `SELECT order_id, order_version, status FROM fact_orders`, maxRows: 10, wantCols: []string{"order_id", "order_version", "status"}, wantRows: 1, first: "[o-1 2 paid]"},
		{name: "order lines join", query: `SELECT o.order_id, sum(i.quantity) AS q FROM fact_orders o JOIN fact_order_items i USING (order_id) GROUP BY 1`, maxRows: 10, wantCols: []string{"order_id", "q"}, wantRows: 1, first: "[o-1 6]"},
		{name: "from first", query: `FROM stream_positions SELECT next_offset WHERE topic = 'ecom.events.valid.v1'`, maxRows: 100, wantCols: []string{"next_offset"}, wantRows: 1, first: "[30]"},
		{name: "no rows", query: `SELECT * FROM fact_events WHERE false`, maxRows: 10, wantCols: factColumns, wantRows: 0},
		{name: "large source, small cap", query: `SELECT * FROM range(100000000)`, maxRows: 2, wantCols: []string{"range"}, wantRows: 2, first: "[0]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cols, rows, err := d.Query(context.Background(), tt.query, tt.maxRows)
			if err != nil {
				t.Fatal(err)
			}
			if tt.wantCols != nil && !slices.Equal(cols, tt.wantCols) {
				t.Errorf("columns = %v, want %v", cols, tt.wantCols)
			}
			if len(rows) != tt.wantRows {
				t.Fatalf("got %d rows, want %d", len(rows), tt.wantRows)
			}
			if tt.first != "" && fmt.Sprint(rows[0]) != tt.first {
				t.Errorf("first row = %v, want %s", rows[0], tt.first)
			}
		})
	}
	if _, _, err := d.Query(context.Background(), "SELECT 1", 0); !errors.Is(err, ErrInvalidQuery) {
		t.Errorf("maxRows 0: %v, want ErrInvalidQuery", err)
	}
}

func TestQueryHonoursContext(t *testing.T) {
	d, _ := openTest(t)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, _, err := d.Query(ctx, `SELECT count(*) FROM range(1000000000000)`, 1)
	if err == nil {
		t.Fatal("endless query returned")
	}
	if elapsed := time.Since(start); elapsed > 5*time.Second {
		t.Fatalf("query ran %v after a 200ms deadline", elapsed)
	}
	// The pool connection is reusable afterwards.
	if err := d.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestPositionsAndPingAnswerWhileQueriesPile: more slow operator queries than the pool can spare
// must not take the connection Positions (the writer's assignment path) and Ping (/readyz) need.
// On 79700c6 three queries held every pooled connection and Positions waited until its deadline.
func TestPositionsAndPingAnswerWhileQueriesPile(t *testing.T) {
	d, _ := openTest(t)
	mustWrite(t, d, batch(seq("p", 0, 0, 3)...))
	ctx, cancel := context.WithCancel(context.Background())
	const queries = 3 // one more than the default slots; as many as 79700c6's pool could spare
	var wg sync.WaitGroup
	var returned atomic.Int32
	for range queries {
		wg.Go(func() {
			defer returned.Add(1)
			_, _, _ = d.Query(ctx, `SELECT count(*) FROM range(1000000000000)`, 1)
		})
	}
	defer func() { cancel(); wg.Wait() }()
	// Wait until each query holds a pool connection or has returned (the writer holds one too).
	deadline := time.Now().Add(20 * time.Second)
	for int(returned.Load())+d.db.Stats().InUse-1 < queries {
		if time.Now().After(deadline) {
			t.Fatalf("queries did not start: %d returned, %d connections in use", returned.Load(), d.db.Stats().InUse)
		}
		time.Sleep(10 * time.Millisecond)
	}
	for i := range 3 {
		pctx, pcancel := context.WithTimeout(context.Background(), 5*time.Second)
		pos, err := d.Positions(pctx, testGroup)
		if err != nil || pos[Partition{"ecom.events.valid.v1", 0}].Next != 3 {
			t.Errorf("round %d: positions = %v, %v while queries run", i, pos, err)
		}
		if err := d.Ping(pctx); err != nil {
			t.Errorf("round %d: ping while queries run: %v", i, err)
		}
		pcancel()
	}
	// The writer still writes.
	mustWrite(t, d, batch(seq("p", 0, 3, 3)...))
}
