package warehouse

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ecomstream/platform/pkg/events"
)

const (
	productsTopic  = "ecom.products.valid.v1"
	customersTopic = "ecom.customers.valid.v1"
)

var testEmailKey = []byte("test-email-hash-key-0123456789abcdef")

// product builds an upsert of product id at LSN lsn (ordinal 1), changed at t0+lsn minutes,
// with price price, read from offset off of the products topic.
func product(off int64, id string, lsn int64, price int64) ProductRow {
	ch := t0.Add(time.Duration(lsn) * time.Minute)
	return ProductRow{ProductChange: events.ProductChange{ProductID: id, Op: OpUpsert, Sku: ptr("SKU-" + id), Name: "Mug " + id,
		Category: ptr("kitchen"), Brand: ptr("Acme"), PriceMinor: price, Currency: "EUR", IsActive: true, UpdatedAt: ch, SyncedAt: ch.Add(time.Second),
		Source: "cdc", SourceLsn: lsn, SourceOrdinal: 1, ChangedAt: &ch}, SourceTopic: productsTopic, SourceOffset: off}
}

func productDelete(off int64, id string, lsn int64) ProductRow {
	r := product(off, id, lsn, 0)
	r.Op, r.Sku, r.Name, r.Category, r.Brand, r.Currency = OpDelete, nil, "", nil, nil, ""
	return r
}

func customer(off int64, id string, lsn int64, email, country string) UserRow {
	ch := t0.Add(time.Duration(lsn) * time.Minute)
	created := t0.Add(-time.Hour)
	c := events.CustomerChange{CustomerID: id, Op: OpUpsert, Email: ptr(email), Name: ptr("Jane Doe"), Country: ptr(country), IsActive: true,
		CreatedAt: &created, UpdatedAt: ch, SyncedAt: ch, Source: "cdc", SourceLsn: lsn, SourceOrdinal: 1, ChangedAt: &ch}
	u := NewUserRow(&c, testEmailKey)
	u.SourceTopic, u.SourceOffset = customersTopic, off
	return u
}

// dimBatch builds a batch of dimension changes whose positions are the highest offset per
// partition + 1.
func dimBatch(products []ProductRow, users []UserRow) Batch {
	b := Batch{Products: products, Users: users, Positions: map[Partition]int64{}}
	for _, r := range products {
		p := Partition{r.SourceTopic, r.SourcePartition}
		b.Positions[p] = max(b.Positions[p], r.SourceOffset+1)
	}
	for _, r := range users {
		p := Partition{r.SourceTopic, r.SourcePartition}
		b.Positions[p] = max(b.Positions[p], r.SourceOffset+1)
	}
	return b
}

// productHistory renders dim_products as "id:price@from-to[*][D]" (minutes after t0), in
// product and valid_from order, checking the surrogate keys.
func productHistory(t *testing.T, d *DuckDB) string {
	t.Helper()
	_, rows, err := d.Query(context.Background(), `SELECT product_id, price_minor, valid_from, valid_to, is_current, deleted, product_key,
  source_lsn, source_ordinal FROM dim_products ORDER BY product_id, source_lsn, source_ordinal`, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var parts []string
	for _, r := range rows {
		to := ""
		if r[3] != nil {
			to = fmt.Sprint(int(r[3].(time.Time).Sub(t0).Minutes()))
		}
		s := fmt.Sprintf("%v:%v@%d-%s", r[0], r[1], int(r[2].(time.Time).Sub(t0).Minutes()), to)
		if r[4].(bool) {
			s += "*"
		}
		if r[5].(bool) {
			s += "D"
		}
		if want := SurrogateKey(r[0].(string), Seq{r[7].(int64), r[8].(int64)}); r[6] != want {
			t.Errorf("%s: product_key %v, want %s", s, r[6], want)
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, " ")
}

// Several batches, out of order, with a replay, a no-op, a late delete and a re-create: the
// stored history is the one the sequence gives, version by version.
func TestDimProductsHistoryAcrossBatches(t *testing.T) {
	d, _ := openTest(t)
	ctx := context.Background()
	steps := []struct {
		name  string
		rows  []ProductRow
		want  string
		wantR DimResult
	}{
		{"first", []ProductRow{product(0, "p-1", 1, 100), product(1, "p-2", 1, 500)}, "p-1:100@1-* p-2:500@1-*", DimResult{Logged: 2, Versions: 2}},
		{"price change", []ProductRow{product(2, "p-1", 3, 120)}, "p-1:100@1-3 p-1:120@3-* p-2:500@1-*", DimResult{Logged: 1, Versions: 2}},
		{"late change at its place", []ProductRow{product(3, "p-1", 2, 110)}, "p-1:100@1-2 p-1:110@2-3 p-1:120@3-* p-2:500@1-*", DimResult{Logged: 1, Versions: 2}},
		{"replay at new offsets", []ProductRow{product(4, "p-1", 2, 110), product(5, "p-1", 3, 120)}, "p-1:100@1-2 p-1:110@2-3 p-1:120@3-* p-2:500@1-*", DimResult{Duplicates: 2}},
		{"no-op change", []ProductRow{product(6, "p-2", 4, 500)}, "p-1:100@1-2 p-1:110@2-3 p-1:120@3-* p-2:500@1-*", DimResult{Logged: 1}},
		{"delete", []ProductRow{productDelete(7, "p-2", 6)}, "p-1:100@1-2 p-1:110@2-3 p-1:120@3-* p-2:500@1-6D", DimResult{Logged: 1, Versions: 1}},
		{"late delete, the later change still applies", []ProductRow{product(8, "p-1", 9, 130), productDelete(9, "p-1", 5)},
			"p-1:100@1-2 p-1:110@2-3 p-1:120@3-5D p-1:130@9-* p-2:500@1-6D", DimResult{Logged: 2, Versions: 2}},
		{"re-create with the old attributes", []ProductRow{product(10, "p-2", 7, 500)}, "p-1:100@1-2 p-1:110@2-3 p-1:120@3-5D p-1:130@9-* p-2:500@1-6D p-2:500@7-*",
			DimResult{Logged: 1, Versions: 1}},
	}
	for _, st := range steps {
		res, err := d.Write(ctx, testGroup, dimBatch(st.rows, nil))
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if got := productHistory(t, d); got != st.want {
			t.Fatalf("%s: history\n%s\nwant\n%s", st.name, got, st.want)
		}
		if res.Products != st.wantR {
			t.Errorf("%s: result %+v, want %+v", st.name, res.Products, st.wantR)
		}
	}
	if n := count(t, d, `SELECT count(*) FROM dim_products_changes`); n != 9 {
		t.Errorf("change log has %d rows, want 9", n)
	}
}

// The dimension rows commit with the positions or not at all; a crash after a commit replays the
// batch from the stored positions without changing anything.
func TestDimWriteSameTransactionAndReplay(t *testing.T) {
	d, path := openTest(t)
	ctx := context.Background()
	b := dimBatch([]ProductRow{product(0, "p-1", 1, 100), product(1, "p-1", 2, 90)}, []UserRow{customer(0, "u-1", 1, "a@x.io", "DE")})
	d.beforeCommit = func() error { return errors.New("crash before commit") }
	if _, err := d.Write(ctx, testGroup, b); err == nil {
		t.Fatal("want the injected error")
	}
	for _, table := range []string{"dim_products", "dim_products_changes", "dim_users", "dim_users_changes", "stream_positions"} {
		if n := count(t, d, `SELECT count(*) FROM `+table); n != 0 {
			t.Fatalf("%s has %d rows after a rolled-back write", table, n)
		}
	}
	d.beforeCommit = nil
	mustWrite(t, d, b)
	want := productHistory(t, d)
	users := count(t, d, `SELECT count(*) FROM dim_users`)
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	// Restart: the sink replays from the stored positions, so the same records come again.
	d2, err := OpenDuckDB(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d2.Close() })
	if err := d2.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	res, err := d2.Write(ctx, testGroup, b)
	if err != nil {
		t.Fatal(err)
	}
	if res.Products.Stale != 2 || res.Users.Stale != 1 || res.Products.Versions+res.Users.Versions != 0 {
		t.Fatalf("replay result %+v", res)
	}
	if got := productHistory(t, d2); got != want || got != "p-1:100@1-2 p-1:90@2-*" {
		t.Fatalf("history after replay %q, want %q", got, want)
	}
	if n := count(t, d2, `SELECT count(*) FROM dim_users`); n != users || n != 1 {
		t.Fatalf("dim_users has %d rows, want %d", n, users)
	}
}

// dim_users holds the keyed hash and the domain, never the email or name; a move to another
// country is a new version.
func TestDimUsersPII(t *testing.T) {
	d, _ := openTest(t)
	mustWrite(t, d, dimBatch(nil, []UserRow{customer(0, "u-1", 1, " Jane@Example.com", "DE"), customer(1, "u-1", 2, "jane@example.com", "FR")}))
	_, rows, err := d.Query(context.Background(), `SELECT user_key, email_hash, email_domain, country, valid_to IS NULL, is_current FROM dim_users ORDER BY valid_from`, 10)
	if err != nil {
		t.Fatal(err)
	}
	want := EmailHash(testEmailKey, "jane@example.com")
	if len(rows) != 2 || rows[0][1] != want || rows[1][1] != want || rows[0][2] != "example.com" || rows[0][3] != "DE" || rows[1][3] != "FR" ||
		rows[0][4] != false || rows[1][5] != true {
		t.Fatalf("rows %v", rows)
	}
	if n := count(t, d, `SELECT count(*) FROM dim_users_changes WHERE email_hash <> '`+want+`'`); n != 0 {
		t.Fatalf("%d logged changes with another hash", n)
	}
	for _, table := range []string{"dim_users", "dim_users_changes"} {
		cols := tableColumns(t, d, table)
		if slices.Contains(cols, "email") || slices.Contains(cols, "name") {
			t.Fatalf("%s has columns %v", table, cols)
		}
	}
}

// The point-in-time views resolve the version valid at the fact's time, including a version that
// arrives after the fact (late-arriving dimension).
func TestPointInTimeViews(t *testing.T) {
	d, _ := openTest(t)
	ev := row("ecom.events.valid.v1", 0, 0, "e-1", t0.Add(150*time.Second)) // between the versions at 1 and 3 minutes
	ev.ProductID, ev.UserID = ptr("p-1"), ptr("u-1")
	o := order(0, "o-1", 1, 1)
	o.OrderTimestamp, o.UserID, o.Items[0].ProductID = t0.Add(210*time.Second), "u-1", "p-1"
	b := batch(ev)
	b.Orders = []OrderRow{o}
	b.Positions[Partition{ordersTopic, 0}] = 1
	mustWrite(t, d, b)
	pit := func() string {
		_, rows, err := d.Query(context.Background(), `SELECT
  (SELECT p.price_minor FROM fact_events_pit e LEFT JOIN dim_products p USING (product_key)),
  (SELECT u.country FROM fact_events_pit e LEFT JOIN dim_users u USING (user_key)),
  (SELECT u.country FROM fact_orders_pit o LEFT JOIN dim_users u USING (user_key)),
  (SELECT p.price_minor FROM fact_order_items_pit i LEFT JOIN dim_products p USING (product_key)),
  (SELECT count(*) FROM fact_events_pit) + (SELECT count(*) FROM fact_orders_pit) + (SELECT count(*) FROM fact_order_items_pit)`, 1)
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprint(rows[0])
	}
	if got := pit(); got != "[<nil> <nil> <nil> <nil> 3]" {
		t.Fatalf("before the dimensions: %s", got)
	}
	// The dimensions arrive after the facts, the later version first.
	mustWrite(t, d, dimBatch([]ProductRow{product(0, "p-1", 3, 120)}, []UserRow{customer(0, "u-1", 3, "a@x.io", "FR")}))
	if got := pit(); got != "[<nil> <nil> FR 120 3]" {
		t.Fatalf("with the versions from 3 minutes: %s", got)
	}
	mustWrite(t, d, dimBatch([]ProductRow{product(1, "p-1", 1, 100)}, []UserRow{customer(1, "u-1", 1, "a@x.io", "DE")}))
	if got := pit(); got != "[100 DE FR 120 3]" {
		t.Fatalf("with both versions: %s", got)
	}
}

func TestDimRowErrors(t *testing.T) {
	tests := []struct {
		name   string
		b      Batch
		entity Entity
		reason string
	}{
		{"empty product id", dimBatch([]ProductRow{product(0, "p-1", 1, 1), product(1, "", 1, 1)}, nil), EntityProduct, "empty product_id"},
		{"bad op", func() Batch { r := product(0, "p-1", 1, 1); r.Op = "merge"; return dimBatch([]ProductRow{r}, nil) }(), EntityProduct, `op "merge" is neither upsert nor delete`},
		{"no time", func() Batch {
			r := product(0, "p-1", 1, 1)
			r.ChangedAt, r.UpdatedAt = nil, time.Time{}
			return dimBatch([]ProductRow{r}, nil)
		}(), EntityProduct, "zero changed_at and updated_at"},
		{"bad utf-8", func() Batch { r := product(0, "p-1", 1, 1); r.Name = "\xff"; return dimBatch([]ProductRow{r}, nil) }(), EntityProduct, "a string field is not valid UTF-8"},
		{"empty customer id", dimBatch(nil, []UserRow{customer(0, "", 1, "a@b.c", "DE")}), EntityUser, "empty customer_id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, _ := openTest(t)
			_, err := d.Write(context.Background(), testGroup, tt.b)
			var re *RowError
			if !errors.As(err, &re) || re.Entity != tt.entity || re.Reason != tt.reason {
				t.Fatalf("err = %v, want a %s RowError: %s", err, tt.entity, tt.reason)
			}
		})
	}
	d, _ := openTest(t)
	b := dimBatch([]ProductRow{product(0, "p-1", 1, 1)}, nil)
	b.Positions = map[Partition]int64{}
	if _, err := d.Write(context.Background(), testGroup, b); !errors.Is(err, ErrInvalidBatch) {
		t.Fatalf("uncovered row: err = %v", err)
	}
}

// dim_date holds every day of 2020..2035 once, however often Migrate runs, and its date_key is
// the facts' date_key.
func TestDimDate(t *testing.T) {
	d, _ := openTest(t)
	if err := d.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := count(t, d, `SELECT count(*) FROM dim_date`); n != 16*365+4 {
		t.Fatalf("dim_date has %d rows, want %d", n, 16*365+4)
	}
	_, rows, err := d.Query(context.Background(), `SELECT date_key, year, quarter, month, day, day_of_week, iso_week, is_weekend FROM dim_date
WHERE date = DATE '2025-03-15' OR date_key IN (20200101, 20351231) ORDER BY date_key`, 10)
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(rows); got != "[[20200101 2020 1 1 1 3 1 false] [20250315 2025 1 3 15 6 11 true] [20351231 2035 4 12 31 1 1 false]]" {
		t.Fatalf("rows %s", got)
	}
	mustWrite(t, d, batch(row("ecom.events.valid.v1", 0, 0, "e-1", t0))) // t0 is 2025-03-14 23:30 UTC
	if n := count(t, d, `SELECT count(*) FROM fact_events JOIN dim_date USING (date_key) WHERE dim_date.date = DATE '2025-03-14'`); n != 1 {
		t.Fatalf("the event's date_key joins %d days", n)
	}
}
