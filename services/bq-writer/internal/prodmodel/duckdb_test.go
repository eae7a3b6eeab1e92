package prodmodel

import (
	"context"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/ecomstream/platform/services/bq-writer/internal/warehouse"
)

// openDuckDB opens a migrated warehouse in a fresh file, closed at the end of the test.
func openDuckDB(t *testing.T) *warehouse.DuckDB {
	t.Helper()
	d, err := warehouse.OpenDuckDB(filepath.Join(t.TempDir(), "warehouse.duckdb"), warehouse.WithDedupWindow(time.Minute))
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
	return d
}

func query(t *testing.T, d *warehouse.DuckDB, sql string) [][]any {
	t.Helper()
	_, rows, err := d.Query(context.Background(), sql, 10000)
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return rows
}

// The DuckDB prod schema has exactly the BigQuery prod relations, with their columns in order,
// and the operator query endpoint reads them.
func TestDuckDBProdRelationsMatchBigQuery(t *testing.T) {
	d := openDuckDB(t)
	rels, err := Relations()
	if err != nil {
		t.Fatal(err)
	}
	var wantNames []string
	for _, r := range rels {
		wantNames = append(wantNames, r.Name)
		var got []string
		for _, row := range query(t, d, "SELECT column_name FROM information_schema.columns WHERE table_schema = 'prod' AND table_name = '"+
			r.Name+"' ORDER BY ordinal_position") {
			got = append(got, row[0].(string))
		}
		if !slices.Equal(got, r.Columns) {
			t.Errorf("prod.%s columns:\nduckdb   %v\nbigquery %v", r.Name, got, r.Columns)
		}
		if n := query(t, d, "SELECT count(*) FROM prod."+r.Name)[0][0].(int64); r.Name == "dim_date" && n != 5844 {
			t.Errorf("prod.dim_date has %d days, want 5844 (2020..2035)", n)
		}
	}
	var gotNames []string
	for _, row := range query(t, d, "SELECT table_name FROM information_schema.tables WHERE table_schema = 'prod' ORDER BY table_name") {
		gotNames = append(gotNames, row[0].(string))
	}
	slices.Sort(wantNames)
	if !slices.Equal(gotNames, wantNames) {
		t.Errorf("prod relations: duckdb %v, bigquery %v", gotNames, wantNames)
	}
}

// The fixture written through Write, record by record in arrival order, reads back from the prod
// views as the Go rules say: one row per event_id (the first copy in dedup order, however old
// the duplicate), the latest order version and its lines, the dimension versions of History,
// and the point-in-time keys. A tie between order versions keeps the lowest source coordinates,
// as on BigQuery, whatever the arrival order.
func TestDuckDBProdViewsFollowTheRules(t *testing.T) {
	d := openDuckDB(t)
	recs := fixture()
	ctx := context.Background()
	for _, r := range recs {
		b := warehouse.Batch{Positions: map[warehouse.Partition]int64{}}
		switch {
		case r.event != nil:
			b.Events = []warehouse.EventRow{*r.event}
		case r.order != nil:
			b.Orders = []warehouse.OrderRow{*r.order}
		case r.product != nil:
			b.Products = []warehouse.ProductRow{*r.product}
		default:
			b.Users = []warehouse.UserRow{*r.user}
		}
		topic, part, off := r.coords()
		b.Positions[warehouse.Partition{Topic: topic, Partition: part}] = off + 1
		if _, err := d.Write(ctx, "prodmodel", b); err != nil {
			t.Fatalf("write arrival %d: %v", r.arrival, err)
		}
	}
	// Copies beyond the window are separate rows of main.fact_events; prod has one per event_id.
	if n := query(t, d, "SELECT count(*) FROM main.fact_events")[0][0].(int64); n <= 20 {
		t.Fatalf("main.fact_events holds %d rows: the fixture should leave several copies of some event_ids", n)
	}
	w := want(recs, false)
	for _, c := range checks {
		rows := query(t, d, c.sql(func(rel string) string { return "prod." + rel }))
		compareRows(t, c.name, rows, w[c.name])
	}
}
