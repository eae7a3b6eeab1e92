package warehouse

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/ecomstream/platform/pkg/events"
	ddl "github.com/ecomstream/platform/sql"
)

const testGroup = "bq-writer"

var t0 = time.Date(2025, 3, 14, 23, 30, 0, 0, time.UTC)

// openTest opens a migrated warehouse in a fresh file and closes it at the end of the test.
func openTest(t testing.TB, opts ...Option) (*DuckDB, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "warehouse.duckdb")
	d, err := OpenDuckDB(path, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	if err := d.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	return d, path
}

func ptr[T any](v T) *T { return &v }

// row builds an event with every optional field set, as the validator would pass it on.
func row(topic string, part int32, off int64, id string, ts time.Time) EventRow {
	return EventRow{
		ClickEvent: events.ClickEvent{
			EventID:        id,
			EventTimestamp: ts,
			ReceivedAt:     ts.Add(150 * time.Millisecond),
			EventType:      "add_to_cart",
			UserID:         ptr(fmt.Sprintf("user-%06d", off%50000)),
			AnonymousID:    ptr("anon-5f1c2e9a7b"),
			SessionID:      "sess-" + id[:min(8, len(id))],
			PageURL:        "https://shop.example.com/p/sku-12345?utm_source=newsletter",
			Referrer:       ptr("https://www.google.com/"),
			UserAgent:      ptr("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"),
			DeviceType:     ptr("desktop"),
			Os:             ptr("Linux"),
			Browser:        ptr("Chrome"),
			Country:        ptr("DE"),
			Region:         ptr("BE"),
			City:           ptr("Berlin"),
			ProductID:      ptr("sku-12345"),
			SearchQuery:    nil,
			Quantity:       ptr(2),
			PriceMinor:     ptr(int64(1999)),
			Currency:       ptr("EUR"),
			OrderID:        nil,
			Source:         "kafka",
		},
		TraceID:         "4bf92f3577b34da6a3ce929d0e0e4736",
		SourceTopic:     topic,
		SourcePartition: part,
		SourceOffset:    off,
	}
}

// batch builds a batch whose positions are the highest offset per partition + 1.
func batch(rows ...EventRow) Batch {
	b := Batch{Events: rows, Positions: map[Partition]int64{}}
	for _, r := range rows {
		p := Partition{r.SourceTopic, r.SourcePartition}
		if r.SourceOffset+1 > b.Positions[p] {
			b.Positions[p] = r.SourceOffset + 1
		}
	}
	return b
}

// seq builds n rows of one partition from offset from, with ids prefix-<offset>, one second apart.
func seq(prefix string, part int32, from int64, n int) []EventRow {
	rows := make([]EventRow, n)
	for i := range rows {
		off := from + int64(i)
		rows[i] = row("ecom.events.valid.v1", part, off, fmt.Sprintf("%s-%08d", prefix, off), t0.Add(time.Duration(off)*time.Second))
	}
	return rows
}

func count(t testing.TB, d *DuckDB, query string) int64 {
	t.Helper()
	_, rows, err := d.Query(context.Background(), query, 1)
	if err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	switch v := rows[0][0].(type) {
	case int64:
		return v
	case nil:
		return 0
	default:
		t.Fatalf("%s: unexpected %T", query, v)
		return 0
	}
}

func mustWrite(t testing.TB, d *DuckDB, b Batch) WriteResult {
	t.Helper()
	res, err := d.Write(context.Background(), testGroup, b)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// olderFile makes a warehouse file at path as an earlier release left it: every DDL file of
// this one passed through edit, which returns the SQL that release ran (ok false: the file did
// not exist then). The caller closes the returned warehouse.
func olderFile(t testing.TB, path string, edit func(s ddl.Statement) (sql string, ok bool)) *DuckDB {
	t.Helper()
	old, err := OpenDuckDB(path)
	if err != nil {
		t.Fatal(err)
	}
	stmts, err := ddl.DuckDB()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range stmts {
		q, ok := edit(s)
		if !ok {
			continue
		}
		if err := old.writerTx(context.Background(), func(tx *sql.Tx) error {
			_, err := tx.Exec(q)
			return err
		}); err != nil {
			t.Fatalf("old DDL %s: %v", s.Name, err)
		}
	}
	return old
}

// tableColumns lists the columns of the main-schema table in their order.
func tableColumns(t testing.TB, d *DuckDB, table string) []string {
	t.Helper()
	_, rows, err := d.Query(context.Background(), `SELECT column_name FROM information_schema.columns WHERE table_schema = 'main' AND table_name = '`+
		table+`' ORDER BY ordinal_position`, 100)
	if err != nil {
		t.Fatal(err)
	}
	var cols []string
	for _, r := range rows {
		cols = append(cols, r[0].(string))
	}
	return cols
}
