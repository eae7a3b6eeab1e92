package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ecomstream/platform/deploy/local/catalogdb"
)

func TestValidateCatalog(t *testing.T) {
	ok := options{catalogProducts: 100_000, catalogCustomers: 1000, catalogRate: 20, catalogDuration: 30 * time.Second}
	tests := []struct {
		name    string
		give    func(*options)
		wantErr string
	}{
		{"defaults", func(*options) {}, ""},
		{"bad changes", func(o *options) { o.catalogBad = 0.05 }, ""},
		{"all bad", func(o *options) { o.catalogBad = 1 }, ""},
		{"no products", func(o *options) { o.catalogProducts = 0 }, "-catalog-products"},
		{"no customers", func(o *options) { o.catalogCustomers = 0 }, "-catalog-customers"},
		{"zero rate", func(o *options) { o.catalogRate = 0 }, "-catalog-cdc-rate"},
		{"rate too high", func(o *options) { o.catalogRate = 5000 }, "-catalog-cdc-rate"},
		{"no duration", func(o *options) { o.catalogDuration = 0 }, "-catalog-cdc-duration"},
		{"bad above 1", func(o *options) { o.catalogBad = 1.5 }, "-catalog-cdc-bad"},
		{"bad negative", func(o *options) { o.catalogBad = -0.1 }, "-catalog-cdc-bad"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := ok
			tt.give(&o)
			err := validateCatalog(o)
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.HasPrefix(err.Error(), tt.wantErr)) {
				t.Errorf("validateCatalog() = %v, want an error starting %q", err, tt.wantErr)
			}
		})
	}
}

func TestCatalogMissing(t *testing.T) {
	tests := []struct {
		name    string
		files   map[string]string // binary name -> contents
		wantWhy string            // substring; "" = runs
		wantErr bool
	}{
		{"all there", map[string]string{"catalog-sync": "x", "validator": "..PRODUCTS_INPUT_TOPIC..", "bq-writer": "PRODUCTS_INPUT_TOPIC"}, "", false},
		{"no catalog-sync", map[string]string{"validator": "PRODUCTS_INPUT_TOPIC", "bq-writer": "PRODUCTS_INPUT_TOPIC"}, "has no catalog-sync", false},
		{"old validator", map[string]string{"catalog-sync": "x", "validator": "ORDERS_INPUT_TOPIC", "bq-writer": "PRODUCTS_INPUT_TOPIC"}, "validator does not read the catalog", false},
		{"old bq-writer", map[string]string{"catalog-sync": "x", "validator": "PRODUCTS_INPUT_TOPIC", "bq-writer": "INPUT_TOPIC"}, "bq-writer does not read the catalog", false},
		{"no bq-writer", map[string]string{"catalog-sync": "x", "validator": "PRODUCTS_INPUT_TOPIC"}, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, body := range tt.files {
				if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			why, err := catalogMissing(dir)
			if (err != nil) != tt.wantErr {
				t.Fatalf("catalogMissing() error = %v, want error %v", err, tt.wantErr)
			}
			if tt.wantWhy == "" && why != "" || !strings.Contains(why, tt.wantWhy) {
				t.Errorf("catalogMissing() = %q, want it to contain %q", why, tt.wantWhy)
			}
		})
	}
}

var commit0 = time.Date(2026, 12, 1, 15, 0, 0, 123456000, time.UTC)

func strPtr(s string) *string { return &s }

func product(id, name string, price int64) catalogdb.ProductRow {
	return catalogdb.ProductRow{ProductID: id, SKU: "SKU-" + id, Name: name, Category: strPtr("shoes"), Brand: strPtr("Acme"),
		PriceMinor: price, Currency: "EUR", IsActive: true, CreatedAt: catalogdb.ShopOpened, UpdatedAt: catalogdb.ShopOpened}
}

func customer(id, email, country string) catalogdb.CustomerRow {
	return catalogdb.CustomerRow{CustomerID: id, Email: email, Name: "N " + id, Country: country, IsActive: true,
		CreatedAt: catalogdb.ShopOpened, UpdatedAt: catalogdb.ShopOpened}
}

// pEntry and cEntry are log entries of the n-th transaction (one change each, ordinal 1).
func pEntry(n int, kind catalogdb.Kind, p catalogdb.ProductRow) catalogdb.Entry {
	e := catalogdb.Entry{Table: "products", Key: p.ProductID, Op: kind.Op(), Kind: kind, Product: &p,
		Ordinal: 1, TxChanges: 1, CommitTime: commit0.Add(time.Duration(n) * time.Second)}
	if e.Op != "delete" {
		e.Defects = catalogdb.ProductDefects(p)
	}
	return e
}

func cEntry(n int, kind catalogdb.Kind, c catalogdb.CustomerRow) catalogdb.Entry {
	e := catalogdb.Entry{Table: "customers", Key: c.CustomerID, Op: kind.Op(), Kind: kind, Customer: &c,
		Ordinal: 1, TxChanges: 1, CommitTime: commit0.Add(time.Duration(n) * time.Second)}
	if e.Op != "delete" {
		e.Defects = catalogdb.CustomerDefects(c)
	}
	return e
}

func TestClassify(t *testing.T) {
	p1, p2 := product("p-00001", "Runner", 8999), product("p-00002", "Trail", 12999)
	broken := product("p-00003", "", 500) // loaded with a defect: the snapshot's version was dead-lettered
	u1 := customer("u-000001", "ann@example.com", "DE")
	state := func() *catalogdb.State {
		return &catalogdb.State{
			Products:  map[string]catalogdb.ProductRow{p1.ProductID: p1, p2.ProductID: p2, broken.ProductID: broken},
			Customers: map[string]catalogdb.CustomerRow{u1.CustomerID: u1},
		}
	}
	with := func(p catalogdb.ProductRow, f func(*catalogdb.ProductRow)) catalogdb.ProductRow { f(&p); return p }
	withC := func(c catalogdb.CustomerRow, f func(*catalogdb.CustomerRow)) catalogdb.CustomerRow { f(&c); return c }
	tests := []struct {
		name string
		log  []catalogdb.Entry
		want []changeClass
	}{
		{"price change then touch", []catalogdb.Entry{
			pEntry(1, catalogdb.PriceChange, with(p1, func(p *catalogdb.ProductRow) { p.PriceMinor = 7999 })),
			pEntry(2, catalogdb.Touch, with(p1, func(p *catalogdb.ProductRow) { p.PriceMinor = 7999; p.UpdatedAt = commit0 })),
		}, []changeClass{classVersion, classNoop}},
		{"sale and its end back to the list price are two versions", []catalogdb.Entry{
			pEntry(1, catalogdb.SaleStart, with(p1, func(p *catalogdb.ProductRow) { p.PriceMinor = 6999 })),
			pEntry(2, catalogdb.SaleEnd, p1),
		}, []changeClass{classVersion, classVersion}},
		{"discontinue is a version (is_active tracked, deleted_at not)", []catalogdb.Entry{
			pEntry(1, catalogdb.Discontinue, with(p2, func(p *catalogdb.ProductRow) { p.IsActive = false; p.DeletedAt = &commit0 })),
		}, []changeClass{classVersion}},
		{"hard delete closes; re-created with equal attributes is a version", []catalogdb.Entry{
			pEntry(1, catalogdb.DeleteProduct, p2),
			pEntry(2, catalogdb.NewProduct, p2),
		}, []changeClass{classClose, classVersion}},
		{"delete of a key without a version in force closes nothing", []catalogdb.Entry{
			pEntry(1, catalogdb.DeleteProduct, p2),
			pEntry(2, catalogdb.DeleteProduct, p2),
		}, []changeClass{classClose, classNoop}},
		{"a rejected change leaves the version in force", []catalogdb.Entry{
			pEntry(1, catalogdb.PriceChange, with(p1, func(p *catalogdb.ProductRow) { p.PriceMinor = -1 })),
			pEntry(2, catalogdb.PriceChange, p1),
			pEntry(3, catalogdb.Rename, with(p1, func(p *catalogdb.ProductRow) { p.Name = "Runner 2" })),
		}, []changeClass{classRejected, classNoop, classVersion}},
		{"a row loaded with a defect has no version: its repair is one", []catalogdb.Entry{
			pEntry(1, catalogdb.Rename, with(broken, func(p *catalogdb.ProductRow) { p.Name = "Fixed" })),
		}, []changeClass{classVersion}},
		{"new product", []catalogdb.Entry{
			pEntry(1, catalogdb.NewProduct, product("p-00004", "New", 100)),
		}, []changeClass{classVersion}},
		{"customers: email case and spaces are no change, country and email are", []catalogdb.Entry{
			cEntry(1, catalogdb.CustomerEmail, withC(u1, func(c *catalogdb.CustomerRow) { c.Email = " Ann@Example.com" })),
			cEntry(2, catalogdb.CustomerMove, withC(u1, func(c *catalogdb.CustomerRow) { c.Email = " Ann@Example.com"; c.Country = "FR" })),
			cEntry(3, catalogdb.CustomerEmail, withC(u1, func(c *catalogdb.CustomerRow) { c.Email = "ann@example.org"; c.Country = "FR" })),
			cEntry(4, catalogdb.DeleteCustomer, withC(u1, func(c *catalogdb.CustomerRow) { c.Email = "ann@example.org"; c.Country = "FR" })),
		}, []changeClass{classNoop, classVersion, classVersion, classClose}},
		{"a customer's name is not tracked", []catalogdb.Entry{
			cEntry(1, catalogdb.CustomerMove, withC(u1, func(c *catalogdb.CustomerRow) { c.Name = "Ann B" })),
		}, []changeClass{classNoop}},
		{"same key in products and customers are different keys", []catalogdb.Entry{
			pEntry(1, catalogdb.DeleteProduct, p1),
			cEntry(2, catalogdb.NewCustomer, customer("p-00001", "x@example.com", "IT")),
		}, []changeClass{classClose, classVersion}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := classify(state(), tt.log)
			if err != nil {
				t.Fatal(err)
			}
			var classes []changeClass
			for i, x := range got {
				classes = append(classes, x.class)
				e := tt.log[i]
				if want := (changeRef{table: e.Table, key: e.Key, at: e.CommitTime.UnixMicro(), ordinal: 1}); x.ref != want {
					t.Errorf("entry %d: ref %+v, want %+v", i, x.ref, want)
				}
			}
			if !slices.Equal(classes, tt.want) {
				t.Errorf("classify() = %v, want %v", classes, tt.want)
			}
		})
	}
}

func TestClassifyRefusesIncompleteEntries(t *testing.T) {
	p := product("p-00001", "Runner", 100)
	tests := []struct {
		name string
		give catalogdb.Entry
	}{
		{"no commit time", catalogdb.Entry{Table: "products", Key: p.ProductID, Op: "upsert", Product: &p, Ordinal: 1}},
		{"no ordinal", catalogdb.Entry{Table: "products", Key: p.ProductID, Op: "upsert", Product: &p, CommitTime: commit0}},
		{"no row", catalogdb.Entry{Table: "products", Key: p.ProductID, Op: "upsert", Ordinal: 1, CommitTime: commit0}},
		{"row of the other table", catalogdb.Entry{Table: "customers", Key: p.ProductID, Op: "upsert", Product: &p, Ordinal: 1, CommitTime: commit0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := classify(&catalogdb.State{}, []catalogdb.Entry{tt.give}); err == nil {
				t.Error("classify() = nil error, want one")
			}
		})
	}
}

func TestMatchCDC(t *testing.T) {
	at := func(s int) int64 { return commit0.Add(time.Duration(s) * time.Second).UnixMicro() }
	ref := func(table, key string, s int, ord int64) changeRef {
		return changeRef{table: table, key: key, at: at(s), ordinal: ord}
	}
	// The warehouse's answers, as the query endpoint gives them (JSON numbers are float64).
	row := func(table, key string, lsn int64, ord int64, s int, loadedMs int) []any {
		return []any{table, key, float64(lsn), float64(ord), float64(at(s)), float64(at(s) + int64(loadedMs)*1000)}
	}
	version := func(table, key string, lsn, ord int64, deleted bool, validTo any) []any {
		return []any{table, key, float64(lsn), float64(ord), deleted, validTo}
	}
	exp := []expectedChange{
		{ref("products", "p-1", 1, 1), classVersion},   // lands after 120 ms, version there
		{ref("products", "p-2", 1, 2), classVersion},   // same transaction, ordinal 2: 150 ms
		{ref("products", "p-1", 2, 1), classNoop},      // a touch: logged, no version, 90 ms
		{ref("products", "p-3", 3, 1), classClose},     // hard delete: closes the snapshot's version, 400 ms
		{ref("customers", "u-1", 4, 1), classVersion},  // 2000 ms
		{ref("products", "p-4", 5, 1), classVersion},   // never landed: missing
		{ref("products", "p-5", 6, 1), classRejected},  // dead-lettered: not missing
		{ref("customers", "u-2", 7, 1), classVersion},  // landed without its version: wrong
		{ref("products", "p-6", 8, 1), classClose},     // landed, nothing closed: wrong
		{ref("products", "p-7", 9, 1), classNoop},      // landed and started a version: wrong
		{ref("customers", "u-3", 10, 1), classVersion}, // the same key and time at another ordinal landed only: missing
		{ref("customers", "u-4", 11, 1), classVersion}, // landed twice in the log query (UNION of a replay): earliest counts, 50 ms
		{ref("products", "p-8", 12, 1), classRejected}, // rejected, yet in the warehouse: wrong
		{ref("products", "p-9", 13, 1), classVersion},  // landed at another commit time (µs off): missing
		{ref("products", "p-10", 14, 1), classVersion}, // 700 ms
		{ref("products", "p-11", 15, 1), classVersion}, // 10000 ms
		{ref("products", "p-12", 16, 1), classNoop},    // 30 ms
		{ref("products", "p-13", 17, 1), classVersion}, // 250 ms
		{ref("products", "p-14", 18, 1), classVersion}, // 300 ms
		{ref("products", "p-15", 19, 1), classVersion}, // 350 ms
		{ref("products", "p-16", 20, 1), classVersion}, // 110 ms
		{ref("products", "p-17", 21, 1), classVersion}, // 130 ms
		{ref("products", "p-18", 22, 1), classVersion}, // 140 ms
		{ref("products", "p-19", 23, 1), classVersion}, // 160 ms
		{ref("products", "p-20", 24, 1), classVersion}, // 170 ms
		{ref("products", "p-21", 25, 1), classVersion}, // 180 ms
		{ref("products", "p-22", 26, 1), classVersion}, // 190 ms
		{ref("products", "p-23", 27, 1), classVersion}, // 200 ms
		{ref("products", "p-24", 28, 1), classVersion}, // 210 ms
		{ref("products", "p-25", 29, 1), classVersion}, // 220 ms
	}
	changes := [][]any{
		row("products", "p-1", 100, 1, 1, 120), row("products", "p-2", 100, 2, 1, 150),
		row("products", "p-1", 200, 1, 2, 90), row("products", "p-3", 300, 1, 3, 400),
		row("customers", "u-1", 400, 1, 4, 2000),
		row("customers", "u-2", 700, 1, 7, 300), row("products", "p-6", 800, 1, 8, 300), row("products", "p-7", 900, 1, 9, 300),
		row("customers", "u-3", 1000, 2, 10, 300),
		row("customers", "u-4", 1100, 1, 11, 80), row("customers", "u-4", 1100, 1, 11, 50),
		row("products", "p-8", 1200, 1, 12, 300),
		{"products", "p-9", float64(1300), float64(1), float64(at(13) + 1), float64(at(13) + 300_000)},
		row("products", "p-10", 1400, 1, 14, 700), row("products", "p-11", 1500, 1, 15, 10000),
		row("products", "p-12", 1600, 1, 16, 30), row("products", "p-13", 1700, 1, 17, 250),
		row("products", "p-14", 1800, 1, 18, 300), row("products", "p-15", 1900, 1, 19, 350),
		row("products", "p-16", 2000, 1, 20, 110), row("products", "p-17", 2100, 1, 21, 130),
		row("products", "p-18", 2200, 1, 22, 140), row("products", "p-19", 2300, 1, 23, 160),
		row("products", "p-20", 2400, 1, 24, 170), row("products", "p-21", 2500, 1, 25, 180),
		row("products", "p-22", 2600, 1, 26, 190), row("products", "p-23", 2700, 1, 27, 200),
		row("products", "p-24", 2800, 1, 28, 210), row("products", "p-25", 2900, 1, 29, 220),
	}
	versions := [][]any{
		version("products", "p-1", 100, 1, false, float64(at(5))), version("products", "p-2", 100, 2, false, nil),
		version("products", "p-3", 7, 0, true, float64(at(3))), // the snapshot's version, ended by the delete
		version("customers", "u-1", 400, 1, false, nil),
		version("products", "p-7", 900, 1, false, nil),
		version("customers", "u-4", 1100, 1, false, nil),
		version("products", "p-6", 5, 0, true, float64(at(7))), // ended by an earlier delete, not p-6's at 8 s
		version("products", "p-9", 1300, 1, false, nil),
	}
	for i, k := range []string{"p-10", "p-11", "p-13", "p-14", "p-15", "p-16", "p-17", "p-18", "p-19", "p-20", "p-21", "p-22", "p-23", "p-24", "p-25"} {
		lsn := []int64{1400, 1500, 1700, 1800, 1900, 2000, 2100, 2200, 2300, 2400, 2500, 2600, 2700, 2800, 2900}[i]
		versions = append(versions, version("products", k, lsn, 1, false, nil))
	}
	w, err := parseWarehouse(changes, versions)
	if err != nil {
		t.Fatal(err)
	}
	r := matchCDC(exp, w)
	ms := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x) * time.Millisecond
		}
		slices.Sort(out)
		return out
	}
	wantLat := ms(120, 150, 90, 400, 2000, 300, 300, 300, 50, 700, 10000, 30, 250, 300, 350, 110, 130, 140, 160, 170, 180, 190, 200, 210, 220)
	if !slices.Equal(r.latencies, wantLat) {
		t.Errorf("latencies = %v, want %v", r.latencies, wantLat)
	}
	if r.missing != 3 {
		t.Errorf("missing = %d, want 3 (p-4, u-3, p-9)", r.missing)
	}
	wantWrong := []string{"u-2", "p-6", "p-7", "p-8"}
	if len(r.wrong) != len(wantWrong) {
		t.Fatalf("wrong = %q, want one each for %v", r.wrong, wantWrong)
	}
	for i, k := range wantWrong {
		if !strings.Contains(r.wrong[i], " "+k+" ") {
			t.Errorf("wrong[%d] = %q, want it about %s", i, r.wrong[i], k)
		}
	}
	wantClasses := map[changeClass]int{classVersion: 20, classNoop: 3, classClose: 2, classRejected: 2}
	for c, n := range wantClasses {
		if got := r.byClass[c]; got == nil || got[0] != n {
			t.Errorf("byClass[%s] = %v, want %d", c, got, n)
		}
	}
	// Nearest rank over the 25 latencies: p50 the 13th (200 ms), p90 the 23rd (700 ms), p99 and max the 25th.
	for _, q := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 200 * time.Millisecond}, {0.9, 700 * time.Millisecond}, {0.99, 10 * time.Second}, {1, 10 * time.Second}} {
		if got := percentile(r.latencies, q.q); got != q.want {
			t.Errorf("percentile(%g) = %s, want %s", q.q, got, q.want)
		}
	}
}

func TestParseWarehouseRefusesBadRows(t *testing.T) {
	tests := []struct {
		name              string
		changes, versions [][]any
	}{
		{"short change row", [][]any{{"products", "p-1", 1.0, 1.0, 2.0}}, nil},
		{"change without loaded_at", [][]any{{"products", "p-1", 1.0, 1.0, 2.0, nil}}, nil},
		{"change key not a string", [][]any{{"products", 7.0, 1.0, 1.0, 2.0, 3.0}}, nil},
		{"version deleted not a bool", nil, [][]any{{"products", "p-1", 1.0, 1.0, "yes", nil}}},
		{"short version row", nil, [][]any{{"products", "p-1", 1.0, 1.0}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := parseWarehouse(tt.changes, tt.versions); err == nil {
				t.Error("parseWarehouse() = nil error, want one")
			}
		})
	}
}
