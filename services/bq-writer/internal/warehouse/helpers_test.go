package warehouse

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/ecomstream/platform/pkg/events"
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
