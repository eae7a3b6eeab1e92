package catalogdb

// Integration tests against the local stack's PostgreSQL (deploy/local/stack.sh
// up; DATABASE_URL from `stack.sh env`). Each test has its own schema, dropped
// at the end. Skipped under -short only.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ecomstream/platform/deploy/local/seed"
	"github.com/ecomstream/platform/deploy/local/stacktest"
)

// testSchema connects as ecom and returns a fresh schema name, dropped (with its publication) at the end.
func testSchema(t *testing.T) (*pgxpool.Pool, string, stacktest.Endpoints) {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: needs the local stack (deploy/local/stack.sh up); skipped under -short")
	}
	eps := stacktest.Require(t)
	pool, err := pgxpool.New(context.Background(), eps.DatabaseURL)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(pool.Close)
	var b [4]byte
	_, _ = rand.Read(b[:])
	schema := "sf_cdb_" + hex.EncodeToString(b[:])
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := Drop(ctx, pool, schema); err != nil {
			t.Errorf("drop %s: %v", schema, err)
		}
	})
	return pool, schema, eps
}

func count(t *testing.T, db DB, schema, table string) int64 {
	t.Helper()
	var n int64
	if err := db.QueryRow(context.Background(), "SELECT count(*) FROM "+pgx.Identifier{schema, table}.Sanitize()).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestIntegrationInitLoadsSeed(t *testing.T) {
	pool, schema, _ := testSchema(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	res, err := Init(ctx, pool, schema)
	if err != nil {
		t.Fatal(err)
	}
	set := seed.Default()
	if res.Products != int64(len(set.Products)) || res.Customers != int64(len(set.Customers)) || res.Categories != int64(len(seed.Categories())) {
		t.Fatalf("Init inserted %+v, want %d products, %d customers, %d categories", res, len(set.Products), len(set.Customers), len(seed.Categories()))
	}
	t.Logf("Init of the default seed took %s", res.Took)
	st, err := LoadState(ctx, pool, schema)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range set.Products {
		got := st.Products[p.ProductID]
		want := ProductRow{ProductID: p.ProductID, SKU: p.SKU, Name: p.Name, Category: &p.Category, Brand: &p.Brand, PriceMinor: p.PriceMinor,
			Currency: p.Currency, IsActive: true, CreatedAt: ShopOpened, UpdatedAt: ShopOpened}
		got.CreatedAt, got.UpdatedAt = got.CreatedAt.UTC(), got.UpdatedAt.UTC()
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("product %s = %+v, want %+v", p.ProductID, got, want)
		}
	}
	for _, c := range set.Customers {
		got := st.Customers[c.CustomerID]
		if got.Email != c.Email || got.Name != c.Name || got.Country != c.Country || !got.CreatedAt.Equal(c.CreatedAt) || !got.UpdatedAt.Equal(c.CreatedAt) || !got.IsActive {
			t.Fatalf("customer %s = %+v, want %+v", c.CustomerID, got, c)
		}
	}
	var parent *string
	if err := pool.QueryRow(ctx, "SELECT parent_slug FROM "+schema+".categories WHERE slug = 'shoes'").Scan(&parent); err != nil || parent == nil || *parent != "apparel" {
		t.Errorf("shoes' parent = %v, %v; want apparel", parent, err)
	}

	// A second Init inserts nothing, also after hard deletes (a customer's
	// erasure stays erased); a changed row is left as it is.
	if res, err = Init(ctx, pool, schema); err != nil || res.Products+res.Customers+res.Categories != 0 {
		t.Fatalf("second Init inserted %+v, %v; want nothing", res, err)
	}
	if _, err := pool.Exec(ctx, "DELETE FROM "+schema+".products WHERE product_id = 'p-00042'; DELETE FROM "+schema+".customers WHERE customer_id = 'u-000042'; UPDATE "+schema+".products SET name = 'Changed' WHERE product_id = 'p-00043'"); err != nil {
		t.Fatal(err)
	}
	if res, err = Init(ctx, pool, schema); err != nil || res.Products+res.Customers+res.Categories != 0 {
		t.Fatalf("Init after hard deletes inserted %+v, %v; want nothing", res, err)
	}
	if n := count(t, pool, schema, "products"); n != int64(len(set.Products)-1) {
		t.Errorf("%d products after Init, want the deleted one still gone", n)
	}
	if n := count(t, pool, schema, "customers"); n != int64(len(set.Customers)-1) {
		t.Errorf("%d customers after Init, want the erased one still gone", n)
	}
	// WithReseed puts the missing rows back, stamped now(), not 2022-01-01.
	var before time.Time
	if err := pool.QueryRow(ctx, "SELECT now()").Scan(&before); err != nil {
		t.Fatal(err)
	}
	if res, err = Init(ctx, pool, schema, WithReseed()); err != nil || res.Products != 1 || res.Customers != 1 || res.Categories != 0 {
		t.Fatalf("Init WithReseed after deletes inserted %+v, %v; want the one product and the one customer", res, err)
	}
	for _, q := range []string{"SELECT created_at, updated_at FROM " + schema + ".products WHERE product_id = 'p-00042'",
		"SELECT created_at, updated_at FROM " + schema + ".customers WHERE customer_id = 'u-000042'"} {
		var created, updated time.Time
		if err := pool.QueryRow(ctx, q).Scan(&created, &updated); err != nil || created.Before(before) || updated.Before(before) {
			t.Errorf("%s: reseeded row stamped %s / %s, %v; want now() (after %s)", q, created, updated, err, before)
		}
	}
	var name string
	if err := pool.QueryRow(ctx, "SELECT name FROM "+schema+".products WHERE product_id = 'p-00043'").Scan(&name); err != nil || name != "Changed" {
		t.Errorf("Init overwrote a changed row: name %q, %v", name, err)
	}
	// A table Init creates is loaded, also in an existing schema.
	if _, err := pool.Exec(ctx, "DROP TABLE "+schema+".categories"); err != nil {
		t.Fatal(err)
	}
	if res, err = Init(ctx, pool, schema); err != nil || res.Categories != int64(len(seed.Categories())) || res.Products+res.Customers != 0 {
		t.Fatalf("Init after a table's drop inserted %+v, %v; want only the categories", res, err)
	}
	// The publication and the replication role's grants are there.
	var tables int
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM pg_publication_tables WHERE pubname = $1", schema+"_catalog").Scan(&tables); err != nil || tables != 2 {
		t.Errorf("publication %s_catalog has %d tables, %v; want 2", schema, tables, err)
	}
	var canRead bool
	if err := pool.QueryRow(ctx, "SELECT has_table_privilege($1, $2, 'SELECT')", CDCRole, schema+".products").Scan(&canRead); err != nil || !canRead {
		t.Errorf("%s cannot read %s.products: %v", CDCRole, schema, err)
	}
}

// TestIntegrationInitRepairsPublication: after a manual drop of the schema
// the publication survives without tables; Init sets them again (else CDC
// would stream nothing from the re-created tables), and drops a stray one.
func TestIntegrationInitRepairsPublication(t *testing.T) {
	pool, schema, _ := testSchema(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := Init(ctx, pool, schema, WithProducts(10), WithCustomers(10)); err != nil {
		t.Fatal(err)
	}
	published := func() []string {
		rows, err := pool.Query(ctx, "SELECT schemaname || '.' || tablename FROM pg_publication_tables WHERE pubname = $1 ORDER BY 1", schema+"_catalog")
		if err != nil {
			t.Fatal(err)
		}
		names, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		return names
	}
	want := []string{schema + ".customers", schema + ".products"}
	if _, err := pool.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
		t.Fatal(err)
	}
	if got := published(); len(got) != 0 {
		t.Fatalf("after DROP SCHEMA the publication has %v, want no tables", got)
	}
	if _, err := Init(ctx, pool, schema, WithProducts(10), WithCustomers(10)); err != nil {
		t.Fatal(err)
	}
	if got := published(); !slices.Equal(got, want) {
		t.Errorf("after Init the publication has %v, want %v", got, want)
	}
	if _, err := pool.Exec(ctx, "ALTER PUBLICATION "+schema+"_catalog ADD TABLE "+schema+".categories"); err != nil {
		t.Fatal(err)
	}
	if _, err := Init(ctx, pool, schema); err != nil {
		t.Fatal(err)
	}
	if got := published(); !slices.Equal(got, want) {
		t.Errorf("after Init the publication has %v, want %v", got, want)
	}
}

// TestIntegrationInitProducts: WithProducts loads synthetic products past the seed's 2000.
func TestIntegrationInitProducts(t *testing.T) {
	pool, schema, _ := testSchema(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := Init(ctx, pool, schema, WithProducts(5000), WithCustomers(100))
	if err != nil {
		t.Fatal(err)
	}
	if res.Products != 5000 || res.Customers != 100 || count(t, pool, schema, "products") != 5000 {
		t.Fatalf("Init inserted %+v, want 5000 products and 100 customers", res)
	}
	// The first 2000 are the default seed's.
	var name string
	if err := pool.QueryRow(ctx, "SELECT name FROM "+schema+".products WHERE product_id = 'p-02000'").Scan(&name); err != nil || name != seed.Default().Products[1999].Name {
		t.Errorf("p-02000 named %q, %v; want the seed's %q", name, err, seed.Default().Products[1999].Name)
	}
}

// TestIntegrationTriggerMovesUpdatedAt: an UPDATE sets updated_at to the
// statement's clock time, so two updates in one transaction differ.
func TestIntegrationTriggerMovesUpdatedAt(t *testing.T) {
	pool, schema, _ := testSchema(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := Init(ctx, pool, schema, WithProducts(20), WithCustomers(20)); err != nil {
		t.Fatal(err)
	}
	entries, err := Apply(ctx, pool, schema, Tx{Changes: []Change{
		{Kind: Touch, Key: "p-00001"},
		{Kind: PriceChange, Key: "p-00001", PriceMinor: 12345},
		{Kind: CustomerMove, Key: "u-000001", Country: "JP"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 3 {
		t.Fatalf("%d entries, want 3", len(entries))
	}
	first, second := entries[0].Product.UpdatedAt, entries[1].Product.UpdatedAt
	if !first.After(ShopOpened) || !second.After(first) {
		t.Errorf("updated_at %s then %s, want both after the load (%s) and increasing", first, second, ShopOpened)
	}
	if !entries[2].Customer.UpdatedAt.After(seed.Default().Customers[0].CreatedAt) {
		t.Errorf("customer updated_at %s did not move", entries[2].Customer.UpdatedAt)
	}
	if !entries[0].CommitTime.After(second) && !entries[0].CommitTime.Equal(second) {
		t.Errorf("commit time %s before the last change's updated_at %s", entries[0].CommitTime, second)
	}
}

// TestIntegrationMutatorLogMatchesTables: replaying the mutator's log gives
// the tables' final state, row for row; every entry carries its commit time
// and LSN interval, and a burst is one transaction.
func TestIntegrationMutatorLogMatchesTables(t *testing.T) {
	pool, schema, _ := testSchema(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := Init(ctx, pool, schema, WithProducts(300), WithCustomers(300)); err != nil {
		t.Fatal(err)
	}
	before, err := LoadState(ctx, pool, schema)
	if err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	m, err := NewMutator(ctx, pool, MutatorConfig{Schema: schema, Seed: 11, BadFraction: 0.2, Log: &log})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 300 {
		if _, err := m.Step(ctx); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if i%100 == 50 {
			burst, err := m.Burst(ctx)
			if err != nil {
				t.Fatalf("burst: %v", err)
			}
			if len(burst) < 2 {
				t.Fatalf("burst changed %d rows, want a category's worth", len(burst))
			}
			for _, e := range burst {
				if e.TxID != burst[0].TxID || !e.CommitTime.Equal(burst[0].CommitTime) || e.TxChanges != len(burst) || e.Kind != CategoryReprice {
					t.Fatalf("burst entry %+v not in the burst's one transaction %d", e, burst[0].TxID)
				}
			}
		}
	}
	entries, err := ReadLog(&log)
	if err != nil {
		t.Fatal(err)
	}
	st := m.Stats()
	if st.Transactions != 303 || st.Bursts != 3 || st.Rows != len(entries) || st.Failed != 0 {
		t.Fatalf("stats %+v with %d log entries", st, len(entries))
	}
	for _, b := range BadKinds() {
		if st.Bad[b] == 0 {
			t.Errorf("no %s change among %v", b, st.Bad)
		}
	}

	// Replay the log over the loaded state.
	want := before
	var lastCommit time.Time
	for _, e := range entries {
		if e.CommitTime.Before(lastCommit) {
			t.Errorf("entry %s/%s committed at %s, before the previous transaction (%s)", e.Table, e.Key, e.CommitTime, lastCommit)
		}
		lastCommit = e.CommitTime
		if e.Bad != "" && !slices.Contains(e.Defects, e.Bad) {
			t.Errorf("bad change %s %s (%s): row defects %v lack it", e.Kind, e.Key, e.Bad, e.Defects)
		}
		if e.CommitTime.IsZero() || e.CommitLSNMin == "" || e.CommitLSNMax == "" || e.TxID == 0 || e.Ordinal < 1 || e.Ordinal > e.TxChanges {
			t.Fatalf("incomplete entry %+v", e)
		}
		switch {
		case e.Product != nil && e.Op == "delete":
			delete(want.Products, e.Key)
		case e.Product != nil:
			want.Products[e.Key] = *e.Product
		case e.Customer != nil && e.Op == "delete":
			delete(want.Customers, e.Key)
		case e.Customer != nil:
			want.Customers[e.Key] = *e.Customer
		default:
			t.Fatalf("entry without a row: %+v", e)
		}
	}
	got, err := LoadState(ctx, pool, schema)
	if err != nil {
		t.Fatal(err)
	}
	if diff := diffRows(want.Products, got.Products); diff != "" {
		t.Errorf("products: the log's replay differs from the table:\n%s", diff)
	}
	if diff := diffRows(want.Customers, got.Customers); diff != "" {
		t.Errorf("customers: the log's replay differs from the table:\n%s", diff)
	}
}

func diffRows[R any](want, got map[string]R) string {
	var out []string
	for k, w := range want {
		g, ok := got[k]
		if !ok {
			out = append(out, fmt.Sprintf("%s: in the log, not in the table", k))
		} else if fmt.Sprint(normal(w)) != fmt.Sprint(normal(g)) {
			out = append(out, fmt.Sprintf("%s: log %+v, table %+v", k, normal(w), normal(g)))
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			out = append(out, fmt.Sprintf("%s: in the table, not in the log", k))
		}
	}
	if len(out) > 10 {
		out = append(out[:10], fmt.Sprintf("... %d more", len(out)-10))
	}
	return strings.Join(out, "\n")
}

// normal prints a row with its times in UTC and pointers dereferenced.
func normal(r any) string {
	switch v := r.(type) {
	case ProductRow:
		return fmt.Sprintf("%s|%s|%s|%s|%s|%d|%s|%v|%s|%s|%s", v.ProductID, v.SKU, v.Name, str(v.Category), str(v.Brand), v.PriceMinor, v.Currency,
			v.IsActive, ts(v.DeletedAt), v.CreatedAt.UTC().Format(time.RFC3339Nano), v.UpdatedAt.UTC().Format(time.RFC3339Nano))
	case CustomerRow:
		return fmt.Sprintf("%s|%s|%s|%s|%v|%s|%s|%s", v.CustomerID, v.Email, v.Name, v.Country, v.IsActive, ts(v.DeletedAt),
			v.CreatedAt.UTC().Format(time.RFC3339Nano), v.UpdatedAt.UTC().Format(time.RFC3339Nano))
	}
	return fmt.Sprint(r)
}

func str(s *string) string {
	if s == nil {
		return "<nil>"
	}
	return *s
}

func ts(t *time.Time) string {
	if t == nil {
		return "<nil>"
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// TestIntegrationScript applies the scripted history and checks the final
// state of the rows it names.
func TestIntegrationScript(t *testing.T) {
	pool, schema, _ := testSchema(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ids := seed.Generate(seed.DefaultSeed, 50, 200)
	if _, err := Init(ctx, pool, schema, WithProducts(200), WithCustomers(50)); err != nil {
		t.Fatal(err)
	}
	script, err := Script(ids)
	if err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	entries, err := ApplyScript(ctx, pool, schema, script, &log)
	if err != nil {
		t.Fatal(err)
	}
	fromLog, err := ReadLog(&log)
	if err != nil || len(fromLog) != len(entries) {
		t.Fatalf("log has %d entries (%v), ApplyScript returned %d", len(fromLog), err, len(entries))
	}
	st, err := LoadState(ctx, pool, schema)
	if err != nil {
		t.Fatal(err)
	}
	p := func(n int) ProductRow { return st.Products[ids.Products[n-1].ProductID] }
	if _, ok := st.Products["p-00004"]; ok {
		t.Error("p-00004 (discontinued, then hard-deleted) still exists")
	}
	if got := p(5); !strings.HasSuffix(got.Name, "Refresh") || got.DeletedAt != nil {
		t.Errorf("p-00005 after delete and re-create: %+v", got)
	}
	if got := p(2).PriceMinor; got != ids.Products[1].PriceMinor {
		t.Errorf("p-00002 after its sale: price %d, want the list price %d", got, ids.Products[1].PriceMinor)
	}
	if got := p(8).PriceMinor; got != ids.Products[7].PriceMinor {
		t.Errorf("p-00008 after the corrected bad price: %d, want %d", got, ids.Products[7].PriceMinor)
	}
	var last8 Entry
	for _, e := range entries {
		if e.Key == "p-00008" {
			last8 = e
		}
	}
	if last8.Kind != PriceChange || last8.Bad != "" || len(last8.Defects) != 0 {
		t.Errorf("p-00008's last entry (the corrected price) %+v: want a good change and no defects left", last8)
	}
	if _, ok := st.Customers["u-000051"]; !ok {
		t.Error("the new customer u-000051 is missing")
	}
	if got := st.Customers["u-000002"].Country; got != BadCountry {
		t.Errorf("u-000002 country %q, want the bad %q", got, BadCountry)
	}
	// Several changes of one row in one transaction: three entries, one txid, ordinals 1..3.
	var p7 []Entry
	for _, e := range entries {
		if e.Key == "p-00007" {
			p7 = append(p7, e)
		}
	}
	if len(p7) != 3 || p7[0].TxID != p7[2].TxID || p7[0].Ordinal != 1 || p7[2].Ordinal != 3 || !p7[2].Product.UpdatedAt.After(p7[0].Product.UpdatedAt) {
		t.Errorf("p-00007's entries: %+v", p7)
	}
}

// TestIntegrationApplyIsAtomic: a transaction whose second statement fails
// (a new product with an existing key) changes nothing and logs nothing.
func TestIntegrationApplyIsAtomic(t *testing.T) {
	pool, schema, _ := testSchema(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := Init(ctx, pool, schema, WithProducts(20), WithCustomers(20)); err != nil {
		t.Fatal(err)
	}
	dup := &ProductRow{ProductID: "p-00002", SKU: "X-1", Name: "Dup", Currency: "USD", PriceMinor: 100}
	entries, err := Apply(ctx, pool, schema, Tx{Changes: []Change{
		{Kind: PriceChange, Key: "p-00001", PriceMinor: 1},
		{Kind: NewProduct, Key: "p-00002", Product: dup},
	}})
	if err == nil || entries != nil {
		t.Fatalf("Apply with a duplicate key = %v, %v; want an error and no entries", entries, err)
	}
	var price int64
	if err := pool.QueryRow(ctx, "SELECT price_minor FROM "+schema+".products WHERE product_id = 'p-00001'").Scan(&price); err != nil || price != seed.Default().Products[0].PriceMinor {
		t.Errorf("p-00001 price %d, %v after the failed transaction; want the seed's %d", price, err, seed.Default().Products[0].PriceMinor)
	}
	// An update of a row that is gone commits and logs nothing.
	if entries, err = Apply(ctx, pool, schema, Tx{Changes: []Change{{Kind: Rename, Key: "p-99999", Name: "x"}}}); err != nil || len(entries) != 0 {
		t.Errorf("rename of a missing product: %v, %v; want no entries", entries, err)
	}
}

// TestIntegrationMutatorRun: Run makes bursts on its schedule, stops after
// MaxChanges, and writes the log.
func TestIntegrationMutatorRun(t *testing.T) {
	pool, schema, _ := testSchema(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := Init(ctx, pool, schema, WithProducts(100), WithCustomers(10)); err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	m, err := NewMutator(ctx, pool, MutatorConfig{Schema: schema, RatePerMinute: -1, BurstEvery: 20 * time.Millisecond, MaxChanges: 3, Log: &log})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Run(ctx); err != nil {
		t.Fatal(err)
	}
	entries, err := ReadLog(&log)
	if err != nil {
		t.Fatal(err)
	}
	txs := map[uint64]bool{}
	for _, e := range entries {
		txs[e.TxID] = true
		if e.Kind != CategoryReprice {
			t.Errorf("entry %+v: with -rate none only bursts run", e)
		}
	}
	if st := m.Stats(); st.Bursts != 3 || st.Transactions != 3 || len(txs) != 3 {
		t.Errorf("stats %+v, %d transactions in the log; want 3 bursts", st, len(txs))
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, fmt.Errorf("disk full") }

// TestIntegrationMutatorFailures: a failed change is counted and the run goes
// on; a failed log write stops the run (a gap in the oracle would be silent).
func TestIntegrationMutatorFailures(t *testing.T) {
	pool, schema, _ := testSchema(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := Init(ctx, pool, schema, WithProducts(50), WithCustomers(50)); err != nil {
		t.Fatal(err)
	}
	m, err := NewMutator(ctx, pool, MutatorConfig{Schema: schema, RatePerMinute: 600000, BurstEvery: -1, MaxChanges: 5, Log: failingWriter{}})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Run(ctx); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("Run with a failing log = %v, want the write error", err)
	}
	if st := m.Stats(); st.Transactions != 1 {
		t.Errorf("stats %+v: want the run stopped after the first change", st)
	}

	m, err = NewMutator(ctx, pool, MutatorConfig{Schema: schema, RatePerMinute: 600000, BurstEvery: -1, MaxChanges: 4})
	if err != nil {
		t.Fatal(err)
	}
	if err := Drop(ctx, pool, schema); err != nil {
		t.Fatal(err)
	}
	if err := m.Run(ctx); err != nil {
		t.Fatalf("Run over failing changes = %v, want it to go on", err)
	}
	if st := m.Stats(); st.Failed != 4 || st.Transactions != 0 {
		t.Errorf("stats %+v: want 4 failed changes", st)
	}
}

// faultDB injects failures around COMMIT: commit replaces the transaction's
// Commit; failCommitTime fails the commit-timestamp query that follows it.
type faultDB struct {
	DB
	commit         func(ctx context.Context, tx pgx.Tx) error
	failCommitTime bool
}

func (f faultDB) Begin(ctx context.Context) (pgx.Tx, error) {
	tx, err := f.DB.Begin(ctx)
	if err != nil || f.commit == nil {
		return tx, err
	}
	return faultTx{Tx: tx, commit: f.commit}, nil
}

func (f faultDB) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	if f.failCommitTime && strings.Contains(sql, "pg_xact_commit_timestamp") {
		return errRow{errors.New("connection reset by peer")}
	}
	return f.DB.QueryRow(ctx, sql, args...)
}

type faultTx struct {
	pgx.Tx
	commit func(ctx context.Context, tx pgx.Tx) error
}

func (t faultTx) Commit(ctx context.Context) error { return t.commit(ctx, t.Tx) }

type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }

// TestIntegrationMutatorUnloggedCommit: a transaction that committed, or
// may have (COMMIT unanswered), but could not be logged stops Run with an
// UnloggedCommitError (CDC has it, the log would not); a COMMIT the server
// refused is an ordinary failed change and the run goes on.
func TestIntegrationMutatorUnloggedCommit(t *testing.T) {
	tests := []struct {
		name          string
		db            func(DB) DB
		wantUnlogged  bool
		wantCommitted bool
		wantFailed    int
	}{
		{"commit timestamp unreadable", func(db DB) DB { return faultDB{DB: db, failCommitTime: true} }, true, true, 0},
		{"commit unanswered", func(db DB) DB {
			return faultDB{DB: db, commit: func(ctx context.Context, tx pgx.Tx) error {
				if err := tx.Commit(ctx); err != nil {
					return err
				}
				return fmt.Errorf("read tcp 127.0.0.1:15432: %w", context.DeadlineExceeded)
			}}
		}, true, false, 0},
		{"commit refused", func(db DB) DB {
			return faultDB{DB: db, commit: func(ctx context.Context, tx pgx.Tx) error {
				_ = tx.Rollback(ctx)
				return &pgconn.PgError{Code: "40001", Message: "could not serialize access"}
			}}
		}, false, false, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pool, schema, _ := testSchema(t)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if _, err := Init(ctx, pool, schema, WithProducts(50), WithCustomers(50)); err != nil {
				t.Fatal(err)
			}
			var log bytes.Buffer
			m, err := NewMutator(ctx, tt.db(pool), MutatorConfig{Schema: schema, RatePerMinute: 600000, BurstEvery: -1, MaxChanges: 3, Log: &log})
			if err != nil {
				t.Fatal(err)
			}
			err = m.Run(ctx)
			st := m.Stats()
			var unlogged *UnloggedCommitError
			if tt.wantUnlogged {
				if !errors.As(err, &unlogged) || unlogged.Committed != tt.wantCommitted || unlogged.TxID == "" {
					t.Fatalf("Run = %v, want an UnloggedCommitError (committed %v) with the txid", err, tt.wantCommitted)
				}
				if st.Unlogged != 1 || st.Failed != 0 || st.Transactions != 0 {
					t.Errorf("stats %+v: want the run stopped at the first, unlogged, transaction", st)
				}
			} else if err != nil || st.Failed != tt.wantFailed || st.Unlogged != 0 {
				t.Errorf("Run = %v, stats %+v: want the run to go on over %d failed changes", err, st, tt.wantFailed)
			}
			if log.Len() != 0 {
				t.Errorf("log has %q, want nothing", log.String())
			}
		})
	}
}
