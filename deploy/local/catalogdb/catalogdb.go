// Package catalogdb is the storefront's source database in the local stack:
// it creates the catalog schema (sql/postgres/storefront.sql) in PostgreSQL,
// loads the shared id seed (deploy/local/seed) into it, and changes it the way
// a shop's application does (the mutator), logging every committed row change
// with its transaction's commit timestamp so a test can compute the expected
// dimension history independently of catalog-sync.
package catalogdb

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/ecomstream/platform/deploy/local/seed"
	ddl "github.com/ecomstream/platform/sql"
)

// DefaultSchema is the schema of the local stack's catalog; tests use their own.
const DefaultSchema = "storefront"

// CDCRole is the replication role the schema's grants name (created by stack.sh).
const CDCRole = "ecom_cdc"

// DB is what the package needs of a connection: *pgx.Conn and *pgxpool.Pool both are one.
type DB interface {
	Begin(ctx context.Context) (pgx.Tx, error)
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// ShopOpened is created_at and updated_at of every loaded product and category
// (the seed has no product dates): the day the shop opened, the seed's first
// sign-up. Loaded customers get their seed created_at as both. So a snapshot
// of a freshly loaded schema is the same on every machine, and a version's
// valid_from lies before any simulated event.
var ShopOpened = time.Date(2022, 1, 1, 0, 0, 0, 0, time.UTC)

// categoryInfo: display names and the taxonomy's one nesting (shoes are apparel).
var categoryInfo = map[string]struct{ name, parent string }{
	"shoes":       {"Shoes", "apparel"},
	"apparel":     {"Apparel", ""},
	"electronics": {"Electronics", ""},
	"home":        {"Home & Kitchen", ""},
	"beauty":      {"Beauty", ""},
	"sports":      {"Sports & Outdoors", ""},
	"toys":        {"Toys & Games", ""},
	"books":       {"Books", ""},
}

type initOptions struct {
	idSeed              uint64
	customers, products int
	reseed              bool
}

// InitOption changes what Init loads.
type InitOption interface{ apply(*initOptions) }

type optionFunc func(*initOptions)

func (f optionFunc) apply(o *initOptions) { f(o) }

// WithProducts loads n products instead of seed.DefaultProducts. The rows come
// from seed.Generate, so the first 2000 are the default seed's and the rest are
// synthetic products of the same shape (p-02001 ...; ids above p-99999 have six digits).
func WithProducts(n int) InitOption { return optionFunc(func(o *initOptions) { o.products = n }) }

// WithCustomers loads n customers instead of seed.DefaultCustomers.
func WithCustomers(n int) InitOption { return optionFunc(func(o *initOptions) { o.customers = n }) }

// WithIDSeed generates the rows from another seed number than seed.DefaultSeed.
func WithIDSeed(s uint64) InitOption { return optionFunc(func(o *initOptions) { o.idSeed = s }) }

// WithReseed also inserts, into tables that already existed, the seed rows
// whose key is missing (a hard-deleted seed row comes back; changed rows stay
// as they are), stamped created_at = updated_at = now() like an insert of the
// shop's application: a re-created row is newer than its delete. The inserts
// reach CDC but are in no mutator log; an explicit repair, never the default.
func WithReseed() InitOption { return optionFunc(func(o *initOptions) { o.reseed = true }) }

// InitResult says what Init did: rows inserted per table (0 for rows already there) and how long it took.
type InitResult struct {
	Categories, Products, Customers int64
	Took                            time.Duration
}

// Init creates the catalog schema (ddl.Storefront with the role ecom_cdc; run it
// connected as the schema owner, ecom) and loads the id seed with COPY into
// the tables it created, all in one transaction. It is idempotent: the DDL is,
// and a table that existed before is not loaded (even if empty), so a second
// Init inserts nothing: a hard-deleted row (a customer's erasure) stays
// deleted and no insert reaches CDC that the mutator's log lacks. WithReseed
// puts missing seed rows back explicitly.
func Init(ctx context.Context, db DB, schema string, opts ...InitOption) (InitResult, error) {
	o := initOptions{idSeed: seed.DefaultSeed, customers: seed.DefaultCustomers, products: seed.DefaultProducts}
	for _, opt := range opts {
		opt.apply(&o)
	}
	if o.customers < 0 || o.products < 0 {
		return InitResult{}, fmt.Errorf("catalogdb: init %s: negative row count (customers %d, products %d)", schema, o.customers, o.products)
	}
	st, err := ddl.Storefront(schema, CDCRole)
	if err != nil {
		return InitResult{}, fmt.Errorf("catalogdb: init: %w", err)
	}
	start := time.Now()
	var set *seed.Set
	if o.idSeed == seed.DefaultSeed && o.customers == seed.DefaultCustomers && o.products == seed.DefaultProducts {
		set = seed.Default()
	} else {
		set = seed.Generate(o.idSeed, o.customers, o.products)
	}

	tx, err := db.Begin(ctx)
	if err != nil {
		return InitResult{}, fmt.Errorf("catalogdb: init %s: %w", schema, err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // a no-op after Commit
	// Two Inits of one schema at once would both run CREATE ... IF NOT EXISTS
	// and one fail on a catalog race; serialise them per schema.
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(hashtext('catalogdb.init.' || $1))", schema); err != nil {
		return InitResult{}, fmt.Errorf("catalogdb: init %s: lock: %w", schema, err)
	}
	existed := map[string]bool{}
	for _, table := range []string{"categories", "products", "customers"} {
		var ok bool
		if err := tx.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", pgx.Identifier{schema, table}.Sanitize()).Scan(&ok); err != nil {
			return InitResult{}, fmt.Errorf("catalogdb: init %s: %s: %w", schema, table, err)
		}
		existed[table] = ok
	}
	if _, err := tx.Exec(ctx, st.SQL); err != nil {
		return InitResult{}, fmt.Errorf("catalogdb: init %s: %s: %w", schema, st.Name, err)
	}
	var res InitResult
	cats := make([][]any, 0, len(seed.Categories()))
	for _, slug := range seed.Categories() {
		info, ok := categoryInfo[slug]
		if !ok {
			info.name = strings.ToUpper(slug[:1]) + slug[1:]
		}
		var parent *string
		if info.parent != "" {
			parent = &info.parent
		}
		cats = append(cats, []any{slug, info.name, parent, ShopOpened})
	}
	mode := func(table string) loadMode {
		switch {
		case !existed[table]:
			return loadNew
		case o.reseed:
			return loadMissing
		}
		return loadNone
	}
	if res.Categories, err = load(ctx, tx, schema, "categories", "slug", mode("categories"), []string{"slug", "name", "parent_slug", "updated_at"}, pgx.CopyFromRows(cats)); err != nil {
		return InitResult{}, err
	}
	prods := pgx.CopyFromSlice(len(set.Products), func(i int) ([]any, error) {
		p := set.Products[i]
		return []any{p.ProductID, p.SKU, p.Name, p.Category, p.Brand, p.PriceMinor, p.Currency, ShopOpened, ShopOpened}, nil
	})
	if res.Products, err = load(ctx, tx, schema, "products", "product_id", mode("products"),
		[]string{"product_id", "sku", "name", "category", "brand", "price_minor", "currency", "created_at", "updated_at"}, prods); err != nil {
		return InitResult{}, err
	}
	custs := pgx.CopyFromSlice(len(set.Customers), func(i int) ([]any, error) {
		c := set.Customers[i]
		return []any{c.CustomerID, c.Email, c.Name, c.Country, c.CreatedAt, c.CreatedAt}, nil
	})
	if res.Customers, err = load(ctx, tx, schema, "customers", "customer_id", mode("customers"),
		[]string{"customer_id", "email", "name", "country", "created_at", "updated_at"}, custs); err != nil {
		return InitResult{}, err
	}
	if err := tx.Commit(ctx); err != nil {
		return InitResult{}, fmt.Errorf("catalogdb: init %s: commit: %w", schema, err)
	}
	res.Took = time.Since(start)
	return res, nil
}

type loadMode int

const (
	loadNone    loadMode = iota // the table existed: leave it as it is
	loadNew                     // the table was just created: copy every row
	loadMissing                 // reseed: insert rows whose key is missing, stamped now()
)

// load copies rows into a table Init created, or (reseed) into a temporary
// staging table shaped like the target, stamps them now() and inserts those
// whose key is missing.
func load(ctx context.Context, tx pgx.Tx, schema, table, key string, mode loadMode, cols []string, rows pgx.CopyFromSource) (int64, error) {
	target := pgx.Identifier{schema, table}.Sanitize()
	switch mode {
	case loadNone:
		return 0, nil
	case loadNew:
		n, err := tx.CopyFrom(ctx, pgx.Identifier{schema, table}, cols, rows)
		if err != nil {
			return 0, fmt.Errorf("catalogdb: init %s: copy %s: %w", schema, table, err)
		}
		return n, nil
	}
	stage := "catalogdb_stage_" + table
	if _, err := tx.Exec(ctx, "CREATE TEMP TABLE "+stage+" (LIKE "+target+" INCLUDING DEFAULTS) ON COMMIT DROP"); err != nil {
		return 0, fmt.Errorf("catalogdb: init %s: staging %s: %w", schema, table, err)
	}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{stage}, cols, rows); err != nil {
		return 0, fmt.Errorf("catalogdb: init %s: copy %s: %w", schema, table, err)
	}
	stamp := "UPDATE " + stage + " SET updated_at = now()"
	if table != "categories" {
		stamp += ", created_at = now()"
	}
	if _, err := tx.Exec(ctx, stamp); err != nil {
		return 0, fmt.Errorf("catalogdb: init %s: stamp %s: %w", schema, table, err)
	}
	tag, err := tx.Exec(ctx, "INSERT INTO "+target+" SELECT * FROM "+stage+" ON CONFLICT ("+key+") DO NOTHING")
	if err != nil {
		return 0, fmt.Errorf("catalogdb: init %s: insert %s: %w", schema, table, err)
	}
	return tag.RowsAffected(), nil
}

// Drop removes the schema and its publication (tests drop what they create).
// Replication slots are the creator's to drop: a schema cannot own one.
func Drop(ctx context.Context, db DB, schema string) error {
	if _, err := ddl.Storefront(schema, CDCRole); err != nil {
		return fmt.Errorf("catalogdb: drop: %w", err)
	}
	pub := pgx.Identifier{schema + "_catalog"}.Sanitize()
	if _, err := db.Exec(ctx, "DROP PUBLICATION IF EXISTS "+pub+"; DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE"); err != nil {
		return fmt.Errorf("catalogdb: drop %s: %w", schema, err)
	}
	return nil
}
