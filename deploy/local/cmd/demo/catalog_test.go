package main

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ecomstream/platform/deploy/local/catalogdb"
	"github.com/ecomstream/platform/deploy/local/slice"
)

func TestCatalogFlags(t *testing.T) {
	tests := []struct {
		name      string
		give      catalogFlags
		wantRate  float64
		wantBurst time.Duration
		wantBad   float64
		wantErr   string
	}{
		{name: "the demo's defaults", give: catalogFlags{rate: 6, burst: time.Minute, bad: 0.05}, wantRate: 6, wantBurst: time.Minute, wantBad: 0.05},
		// The mutator reads 0 as its default and a negative value as none.
		{name: "zeros are none", give: catalogFlags{}, wantRate: -1, wantBurst: -1, wantBad: -1},
		{name: "all bad", give: catalogFlags{rate: 60, burst: 10 * time.Second, bad: 1}, wantRate: 60, wantBurst: 10 * time.Second, wantBad: 1},
		{name: "negative rate", give: catalogFlags{rate: -1, bad: 0.05}, wantErr: "-catalog-rate -1: must be 0"},
		{name: "negative burst", give: catalogFlags{rate: 6, burst: -time.Second}, wantErr: "-catalog-burst -1s: must be 0"},
		{name: "bad above 1", give: catalogFlags{rate: 6, bad: 1.5}, wantErr: "-catalog-bad 1.5: must be in 0..1"},
		{name: "bad below 0", give: catalogFlags{rate: 6, bad: -0.1}, wantErr: "-catalog-bad -0.1: must be in 0..1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var log strings.Builder
			cfg, err := tt.give.mutatorConfig("storefront", 42, &log)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("mutatorConfig() error %v, want %q", err, tt.wantErr)
				}
				if cerr := tt.give.check(); cerr == nil || cerr.Error() != err.Error() {
					t.Errorf("check() = %v, want the same error as mutatorConfig", cerr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Schema != "storefront" || cfg.Seed != 42 || cfg.Log != &log || cfg.RatePerMinute != tt.wantRate ||
				cfg.BurstEvery != tt.wantBurst || cfg.BadFraction != tt.wantBad {
				t.Errorf("mutatorConfig() = %+v, want schema storefront, seed 42, the log, rate %v, burst %v, bad %v",
					cfg, tt.wantRate, tt.wantBurst, tt.wantBad)
			}
		})
	}
}

// at is a commit time with microseconds, as PostgreSQL gives it.
var at0 = time.Date(2026, 12, 1, 14, 3, 12, 123456000, time.UTC)

func entry(tx uint64, table, key string, kind catalogdb.Kind, commit time.Time, defects ...catalogdb.Bad) catalogdb.Entry {
	e := catalogdb.Entry{Table: table, Key: key, Op: "upsert", Kind: kind, TxID: tx, CommitTime: commit, Defects: defects}
	if kind == catalogdb.DeleteProduct || kind == catalogdb.DeleteCustomer {
		e.Op = "delete"
	}
	return e
}

func ts(t time.Time) string { return t.Format(time.RFC3339Nano) }

func TestMutatorLogReadsCompleteLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), mutatorLogName)
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	a := entry(1, "products", "p-00001", catalogdb.PriceChange, at0)
	b := entry(2, "customers", "u-000002", catalogdb.CustomerMove, at0.Add(time.Second))
	c := entry(3, "products", "p-00003", catalogdb.DeleteProduct, at0.Add(2*time.Second))
	if err := catalogdb.WriteLog(f, []catalogdb.Entry{a, b}); err != nil {
		t.Fatal(err)
	}
	var third strings.Builder
	if err := catalogdb.WriteLog(&third, []catalogdb.Entry{c}); err != nil {
		t.Fatal(err)
	}
	half := len(third.String()) / 2
	if _, err := f.WriteString(third.String()[:half]); err != nil { // the mutator is mid-write
		t.Fatal(err)
	}
	l := &mutatorLog{path: path}
	got, err := l.read()
	if err != nil || len(got) != 2 || got[0].Key != "p-00001" || got[1].Key != "u-000002" || !got[1].CommitTime.Equal(b.CommitTime) {
		t.Fatalf("read() = %+v, %v, want the two complete entries", got, err)
	}
	if _, err := f.WriteString(third.String()[half:]); err != nil {
		t.Fatal(err)
	}
	got, err = l.read()
	if err != nil || len(got) != 3 || got[2].Key != "p-00003" || got[2].Op != "delete" {
		t.Fatalf("read() after the line completed = %+v, %v, want 3 entries, the last the delete", got, err)
	}
	if got, _ := l.read(); len(got) != 3 {
		t.Errorf("read() with nothing new = %d entries, want 3", len(got))
	}
	if _, err := (&mutatorLog{path: filepath.Join(t.TempDir(), "none")}).read(); err == nil {
		t.Error("read() of a missing log: no error")
	}
}

func TestLandedOf(t *testing.T) {
	entries := []catalogdb.Entry{
		entry(1, "products", "p-00001", catalogdb.PriceChange, at0),
		// a burst: one transaction, three rows, one of a product with a negative price left by an earlier bad change
		entry(2, "products", "p-00010", catalogdb.CategoryReprice, at0.Add(time.Second)),
		entry(2, "products", "p-00011", catalogdb.CategoryReprice, at0.Add(time.Second)),
		entry(2, "products", "p-00012", catalogdb.CategoryReprice, at0.Add(time.Second), catalogdb.NegativePrice),
		entry(3, "customers", "u-000003", catalogdb.CustomerMove, at0.Add(2*time.Second)), // not loaded yet
		entry(4, "products", "p-00004", catalogdb.Touch, at0.Add(3*time.Second)),          // no version, but a change-log row
		entry(5, "products", "p-00005", catalogdb.Rename, at0.Add(4*time.Second), catalogdb.EmptyName),
		entry(6, "customers", "u-000006", catalogdb.DeleteCustomer, at0.Add(5*time.Second)),
	}
	rows := [][]any{
		{"products", "p-00001", ts(at0), ts(at0.Add(400 * time.Millisecond))},
		{"products", "p-00010", ts(at0.Add(time.Second)), ts(at0.Add(1600 * time.Millisecond))},
		{"products", "p-00011", ts(at0.Add(time.Second)), ts(at0.Add(1900 * time.Millisecond))},
		{"products", "p-00004", ts(at0.Add(3 * time.Second)), ts(at0.Add(3200 * time.Millisecond))},
		{"customers", "u-000006", ts(at0.Add(5 * time.Second)), ts(at0.Add(5300 * time.Millisecond))},
		// a change of another writer (not in the log): ignored
		{"products", "p-00099", ts(at0.Add(time.Second)), ts(at0.Add(9 * time.Second))},
		// same key as tx 1, another commit time: not tx 1's row
		{"customers", "u-000003", ts(at0), ts(at0.Add(time.Second))},
	}
	loaded, err := loadedChanges(rows)
	if err != nil {
		t.Fatal(err)
	}
	got := landedOf(entries, loaded)
	want := []time.Duration{400 * time.Millisecond, 900 * time.Millisecond, 200 * time.Millisecond, 300 * time.Millisecond}
	if !slices.Equal(got.latencies, want) || got.pending != 1 || got.dead != 2 {
		t.Errorf("landedOf() = %+v, want latencies %v (the burst's slowest row), 1 pending, 2 dead", got, want)
	}
	if _, err := loadedChanges([][]any{{"products", "p-1", "yesterday", ts(at0)}}); err == nil {
		t.Error("loadedChanges() of a bad timestamp: no error")
	}
	if _, err := loadedChanges([][]any{{"products", "p-1", ts(at0)}}); err == nil {
		t.Error("loadedChanges() of a short row: no error")
	}
}

func TestPercentile(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	tests := []struct {
		give []time.Duration
		p    float64
		want time.Duration
	}{
		{give: nil, p: 0.5, want: 0},
		{give: ms(700), p: 0.5, want: 700 * time.Millisecond},
		{give: ms(900, 100, 500, 300), p: 0.5, want: 300 * time.Millisecond}, // nearest rank: the 2nd of 4
		{give: ms(900, 100, 500, 300, 700), p: 0.5, want: 500 * time.Millisecond},
		{give: ms(900, 100, 500, 300, 700), p: 1, want: 900 * time.Millisecond},
		{give: ms(900, 100, 500, 300, 700), p: 0.01, want: 100 * time.Millisecond},
	}
	for _, tt := range tests {
		in := slices.Clone(tt.give)
		if got := percentile(tt.give, tt.p); got != tt.want {
			t.Errorf("percentile(%v, %v) = %v, want %v", tt.give, tt.p, got, tt.want)
		}
		if !slices.Equal(in, tt.give) {
			t.Errorf("percentile sorted its argument: %v", tt.give)
		}
	}
}

func TestLatestChange(t *testing.T) {
	price := entry(1, "products", "p-00001", catalogdb.PriceChange, at0)
	del := entry(2, "products", "p-00002", catalogdb.DeleteProduct, at0.Add(time.Second))
	touch := entry(3, "products", "p-00003", catalogdb.Touch, at0.Add(2*time.Second))
	bad := entry(4, "customers", "u-000004", catalogdb.CustomerEmail, at0.Add(3*time.Second), catalogdb.MalformedEmail)
	tests := []struct {
		name   string
		give   []catalogdb.Entry
		want   string
		wantOK bool
	}{
		{name: "none", give: nil},
		{name: "only a touch and a bad one", give: []catalogdb.Entry{touch, bad}},
		{name: "skips the touch and the bad one", give: []catalogdb.Entry{price, touch, bad}, want: "p-00001", wantOK: true},
		{name: "a delete ends a version", give: []catalogdb.Entry{price, del, touch}, want: "p-00002", wantOK: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := latestChange(tt.give)
			if ok != tt.wantOK || got.Key != tt.want {
				t.Errorf("latestChange() = %s, %v, want %q, %v", got.Key, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestVersionLatency(t *testing.T) {
	up := entry(1, "products", "p-00001", catalogdb.PriceChange, at0)
	del := entry(2, "customers", "u-000002", catalogdb.DeleteCustomer, at0)
	old := at0.Add(-time.Hour)
	tests := []struct {
		name    string
		e       catalogdb.Entry
		rows    [][]any // valid_from, valid_to, deleted, loaded_at
		want    time.Duration
		wantOK  bool
		wantErr bool
	}{
		{name: "the upsert's version", e: up, rows: [][]any{
			{ts(old), ts(at0), false, ts(at0.Add(2 * time.Second))}, // the version it closed: rewritten later
			{ts(at0), nil, false, ts(at0.Add(450 * time.Millisecond))},
		}, want: 450 * time.Millisecond, wantOK: true},
		{name: "not there yet", e: up, rows: [][]any{{ts(old), nil, false, ts(old)}}},
		{name: "the delete ends a version", e: del, rows: [][]any{
			{ts(old), ts(at0), true, ts(at0.Add(800 * time.Millisecond))},
		}, want: 800 * time.Millisecond, wantOK: true},
		{name: "a version closed by a change is not the delete's", e: del, rows: [][]any{{ts(old), ts(at0), false, ts(at0.Add(time.Second))}}},
		{name: "a delete's open version", e: del, rows: [][]any{{ts(at0), nil, false, ts(at0.Add(time.Second))}}},
		{name: "short row", e: up, rows: [][]any{{ts(at0), nil, false}}, wantErr: true},
		{name: "bad loaded_at", e: up, rows: [][]any{{ts(at0), nil, false, 12.0}}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok, err := versionLatency(tt.e, tt.rows)
			if (err != nil) != tt.wantErr || ok != tt.wantOK || got != tt.want {
				t.Errorf("versionLatency() = %v, %v, %v, want %v, %v, error %v", got, ok, err, tt.want, tt.wantOK, tt.wantErr)
			}
		})
	}
	if got, want := versionSQL(del), "SELECT valid_from, valid_to, deleted, loaded_at FROM dim_users WHERE user_id = 'u-000002'"; got != want {
		t.Errorf("versionSQL() = %q, want %q", got, want)
	}
	if got := versionSQL(entry(1, "products", "p-'1", catalogdb.Rename, at0)); !strings.HasSuffix(got, "FROM dim_products WHERE product_id = 'p-''1'") {
		t.Errorf("versionSQL() of a quote = %q", got)
	}
}

func TestCatalogLines(t *testing.T) {
	latest := entry(7, "products", "p-00042", catalogdb.PriceChange, at0)
	stats := catalogdb.Stats{Transactions: 9, Rows: 260, Bursts: 1, Failed: 1, Bad: map[catalogdb.Bad]int{catalogdb.NegativePrice: 1, catalogdb.MalformedEmail: 2}}
	dims := func(s catalogStatus) catalogStatus {
		s.products, s.users = dimCounts{2010, 2001, 9}, dimCounts{20004, 20000, 4}
		return s
	}
	tests := []struct {
		name      string
		give      catalogStatus
		want      []string
		wantNotIn []string
	}{
		{
			name: "landed",
			give: dims(catalogStatus{mutator: stats, dead: map[string]float64{"product_change": 1, "customer_change": 2}, latest: &latest,
				latestLatency: 420 * time.Millisecond, latestLoaded: true,
				landed: landed{latencies: []time.Duration{300 * time.Millisecond, 420 * time.Millisecond, 1500 * time.Millisecond}}}),
			want: []string{
				"      catalog: mutator 9 changes (260 rows, 1 burst), 3 bad on purpose, 1 failed | dim_products 2010 versions (2001 current, 9 this run) | dim_users 20004 versions (20000 current, 4 this run) | dead-lettered customer_change 2, product_change 1\n",
				"      catalog latency, commit in PostgreSQL -> dimension row: latest 0.42s (products p-00042 price_change at " + at0.Local().Format("15:04:05.000") + ")",
				" | this run 3 changes landed: p50 0.42s, max 1.50s",
			},
			wantNotIn: []string{"on the way", "\n\n"},
		},
		{
			name:      "the latest not there yet",
			give:      dims(catalogStatus{latest: &latest, latestAge: 1200 * time.Millisecond, landed: landed{pending: 2}}),
			want:      []string{"latest change products p-00042 price_change committed 1.20s ago, not in dim_products yet", " | 2 on the way"},
			wantNotIn: []string{"changes landed"},
		},
		{
			name:      "nothing yet",
			give:      dims(catalogStatus{}),
			want:      []string{"mutator 0 changes (0 rows, 0 bursts), 0 bad on purpose, 0 failed", "dimension row: no change yet"},
			wantNotIn: []string{"landed", "on the way"},
		},
		{
			name: "one of each",
			give: dims(catalogStatus{mutator: catalogdb.Stats{Transactions: 1, Rows: 1}, latest: &latest, latestLoaded: true, latestLatency: time.Second,
				landed: landed{latencies: []time.Duration{time.Second}}}),
			want:      []string{"mutator 1 change (1 row, 0 bursts)", " | this run 1 change landed: p50 1.00s, max 1.00s"},
			wantNotIn: []string{"on the way"},
		},
		{
			name:      "warehouse down",
			give:      catalogStatus{warehouseE: errors.New("query: 503")},
			want:      []string{" | warehouse: query: 503 |"},
			wantNotIn: []string{"dim_products 0"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.give.lines()
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Errorf("lines() = %q, want it to say %q", got, w)
				}
			}
			for _, w := range tt.wantNotIn {
				if strings.Contains(got, w) {
					t.Errorf("lines() = %q, want no %q", got, w)
				}
			}
		})
	}
}

func TestRepriced(t *testing.T) {
	withPrice := func(e catalogdb.Entry, p int64) catalogdb.Entry {
		e.Product = &catalogdb.ProductRow{ProductID: e.Key, PriceMinor: p}
		return e
	}
	entries := []catalogdb.Entry{
		withPrice(entry(1, "products", "p-00020", catalogdb.SaleStart, at0), 1799),
		withPrice(entry(2, "products", "p-00010", catalogdb.PriceChange, at0.Add(time.Second)), -5),
		withPrice(entry(3, "products", "p-00030", catalogdb.Rename, at0.Add(2*time.Second)), 999),
		withPrice(entry(4, "products", "p-00020", catalogdb.SaleEnd, at0.Add(3*time.Second)), 1999),
		withPrice(entry(5, "products", "p-00040", catalogdb.CategoryReprice, at0.Add(4*time.Second)), 1100),
		entry(6, "customers", "u-000001", catalogdb.CustomerMove, at0.Add(5*time.Second)),
	}
	entries[1].Defects = []catalogdb.Bad{catalogdb.NegativePrice}
	if got, want := repricedProducts(entries), []string{"p-00020", "p-00040"}; !slices.Equal(got, want) {
		t.Errorf("repricedProducts() = %v, want %v (good price changes only)", got, want)
	}
	clock := func(t time.Time) string { return t.Local().Format("15:04:05.000") }
	if got, want := repriceNote(entries, "p-00020"), "sale_start at "+clock(at0)+" to 1799, sale_end at "+clock(at0.Add(3*time.Second))+" to 1999"; got != want {
		t.Errorf("repriceNote() = %q, want %q", got, want)
	}
	if got := repriceNote(entries, "p-00010"); !strings.HasSuffix(got, "to -5 (bad: dead-lettered)") {
		t.Errorf("repriceNote() of a bad change = %q", got)
	}
	if got, want := quoteList([]string{"p-1", "p-'2"}), "'p-1', 'p-''2'"; got != want {
		t.Errorf("quoteList() = %q, want %q", got, want)
	}
}

func TestSnapshotAndInitLines(t *testing.T) {
	started := at0
	finished := at0.Add(1234 * time.Millisecond)
	run := slice.CatalogRun{ID: "r-1", RowsRead: 22000, ChangesSent: 22000, Started: started, Finished: &finished}
	if got, want := snapshotLine(run, true), "catalog: full snapshot (backfill: this warehouse file has no dimension rows yet) r-1 read 22000 rows and sent 22000 changes (0 deletes) in 1.23s"; got != want {
		t.Errorf("snapshotLine(full) = %q, want %q", got, want)
	}
	run.ChangesSent, run.Deletes = 3, 1
	if got, want := snapshotLine(run, false), "catalog: incremental snapshot r-1 read 22000 rows and sent 3 changes (1 deletes) in 1.23s"; got != want {
		t.Errorf("snapshotLine(incremental) = %q, want %q", got, want)
	}
	c := &slice.Catalog{Schema: "storefront", Init: catalogdb.InitResult{Products: 2000, Customers: 20000, Categories: 8, Took: 190 * time.Millisecond}}
	if got, want := initLine(c), "catalog: created schema storefront and loaded the id seed: 2000 products, 20000 customers, 8 categories in 190ms"; got != want {
		t.Errorf("initLine() = %q, want %q", got, want)
	}
	c.Init = catalogdb.InitResult{Took: time.Millisecond}
	if got := initLine(c); !strings.Contains(got, "schema storefront is there from an earlier run") {
		t.Errorf("initLine() of an existing schema = %q", got)
	}
}
