package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ecomstream/platform/deploy/local/catalogdb"
	"github.com/ecomstream/platform/deploy/local/slice"
)

// The catalog path of the demo: catalog-sync streams the stack's own
// storefront schema (CDC from the slot ecom_catalog_sync) into the
// dimensions while a mutator changes it like a shop's application, and every
// report measures how long each change took from its commit in PostgreSQL to
// its row in the warehouse.

// mutatorLogName is the mutator's JSON Lines log in the run folder (one
// entry per changed row with its transaction's commit time), new each run.
const mutatorLogName = "catalog-mutator.jsonl"

// catalogFlags are the mutator's flags.
type catalogFlags struct {
	rate  float64       // changes per minute; 0 = none
	burst time.Duration // a category re-price every so often; 0 = none
	bad   float64       // share of changes bad on purpose, 0..1
}

// check names the first flag out of range.
func (f catalogFlags) check() error {
	switch {
	case f.rate < 0:
		return fmt.Errorf("-catalog-rate %g: must be 0 (no changes) or more changes per minute", f.rate)
	case f.burst < 0:
		return fmt.Errorf("-catalog-burst %s: must be 0 (no bursts) or a positive interval", f.burst)
	case f.bad < 0 || f.bad > 1:
		return fmt.Errorf("-catalog-bad %g: must be in 0..1", f.bad)
	}
	return nil
}

// mutatorConfig checks the flags and maps them to the mutator's config, whose
// zero values mean its defaults and negative ones none.
func (f catalogFlags) mutatorConfig(schema string, seed uint64, log io.Writer) (catalogdb.MutatorConfig, error) {
	if err := f.check(); err != nil {
		return catalogdb.MutatorConfig{}, err
	}
	none := func(v float64) float64 {
		if v == 0 {
			return -1
		}
		return v
	}
	burst := f.burst
	if burst == 0 {
		burst = -1
	}
	return catalogdb.MutatorConfig{Schema: schema, RatePerMinute: none(f.rate), BurstEvery: burst, BadFraction: none(f.bad),
		Seed: seed, Log: log}, nil
}

// catalogDemo is the running catalog path: the mutator and its log.
type catalogDemo struct {
	sl      *slice.Slice
	mut     *catalogdb.Mutator
	log     *mutatorLog
	start   time.Time // the mutator's start: versions valid from then on are this run's
	conn    *pgx.Conn
	cancel  context.CancelFunc
	done    chan error // the mutator's Run
	stopped bool
}

// initLine says what slice.Start's catalogdb.Init did to the schema.
func initLine(c *slice.Catalog) string {
	if r := c.Init; r.Products+r.Customers+r.Categories > 0 {
		return fmt.Sprintf("catalog: created schema %s and loaded the id seed: %d products, %d customers, %d categories in %s",
			c.Schema, r.Products, r.Customers, r.Categories, r.Took.Round(time.Millisecond))
	}
	return fmt.Sprintf("catalog: schema %s is there from an earlier run (kept as the mutator left it; nothing loaded)", c.Schema)
}

// initialSnapshot runs the first snapshot of the run and says what it sent.
// It is incremental when the warehouse file already has both dimensions; a
// file without them (new, or from before the catalog) gets a full re-send
// (backfill): the state topic is the stack's and remembers what was sent to
// any earlier run's warehouse, so an incremental run would send it nothing.
func initialSnapshot(ctx context.Context, sl *slice.Slice) error {
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	p, errP := sl.QueryInt(qctx, "SELECT count(*) FROM dim_products")
	u, errU := sl.QueryInt(qctx, "SELECT count(*) FROM dim_users")
	cancel()
	full := errP != nil || errU != nil || p == 0 || u == 0
	run, _, err := sl.CatalogSync(ctx, "", full)
	if err != nil {
		return err
	}
	wctx, wcancel := context.WithTimeout(ctx, 2*time.Minute)
	defer wcancel()
	if run, err = sl.CatalogWait(wctx, run.ID); err != nil {
		return err
	}
	fmt.Println(snapshotLine(run, full))
	return nil
}

// snapshotLine is what the demo says about its initial snapshot.
func snapshotLine(run slice.CatalogRun, full bool) string {
	kind := "incremental snapshot"
	if full {
		kind = "full snapshot (backfill: this warehouse file has no dimension rows yet)"
	}
	took := ""
	if run.Finished != nil {
		took = fmt.Sprintf(" in %s", run.Finished.Sub(run.Started).Round(10*time.Millisecond))
	}
	return fmt.Sprintf("catalog: %s %s read %d rows and sent %d changes (%d deletes)%s",
		kind, run.ID, run.RowsRead, run.ChangesSent, run.Deletes, took)
}

// startCatalog starts the mutator against the slice's schema, logging into
// the run folder.
func startCatalog(ctx context.Context, sl *slice.Slice, f catalogFlags, runDir string, seed uint64) (*catalogDemo, error) {
	path := filepath.Join(runDir, mutatorLogName)
	logFile, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	cfg, err := f.mutatorConfig(sl.Catalog.Schema, seed, logFile)
	if err != nil {
		logFile.Close()
		return nil, err
	}
	conn, err := pgx.Connect(ctx, sl.Catalog.DatabaseURL)
	if err != nil {
		logFile.Close()
		return nil, fmt.Errorf("catalog database: %w", err)
	}
	m, err := catalogdb.NewMutator(ctx, conn, cfg)
	if err != nil {
		logFile.Close()
		conn.Close(context.Background())
		return nil, err
	}
	mctx, cancel := context.WithCancel(ctx)
	c := &catalogDemo{sl: sl, mut: m, log: &mutatorLog{path: path}, start: time.Now(), conn: conn, cancel: cancel, done: make(chan error, 1)}
	go func() {
		err := m.Run(mctx)
		c.done <- errors.Join(err, logFile.Close())
	}()
	return c, nil
}

// stop ends the mutator and closes its connection; the log is complete after it.
func (c *catalogDemo) stop() {
	if c.stopped {
		return
	}
	c.stopped = true
	c.cancel()
	if err := <-c.done; err != nil {
		fmt.Println("  catalog mutator:", err)
	}
	c.conn.Close(context.Background())
}

// mutatorLog reads the mutator's log as it grows: complete lines only (the
// last may be half written).
type mutatorLog struct {
	path    string
	off     int64
	entries []catalogdb.Entry
}

// read adds the lines written since the last call and returns every entry so far.
func (l *mutatorLog) read() ([]catalogdb.Entry, error) {
	f, err := os.Open(l.path)
	if err != nil {
		return l.entries, err
	}
	defer f.Close()
	if _, err := f.Seek(l.off, io.SeekStart); err != nil {
		return l.entries, err
	}
	r := bufio.NewReader(f)
	for {
		line, err := r.ReadBytes('\n')
		if err != nil { // EOF, or a line not yet complete: read it next time
			return l.entries, nil
		}
		var e catalogdb.Entry
		if err := json.Unmarshal(line, &e); err != nil {
			return l.entries, fmt.Errorf("%s at byte %d: %w", l.path, l.off, err)
		}
		l.off += int64(len(line))
		l.entries = append(l.entries, e)
	}
}

// reaches says whether a logged change should reach the warehouse: a delete
// always, an upsert when the row has no defect (the validator dead-letters
// the others, e.g. a negative price).
func reaches(e catalogdb.Entry) bool { return e.Op == "delete" || len(e.Defects) == 0 }

// makesVersion says whether it also starts or ends a dimension version: a
// touch changes no tracked attribute and makes none.
func makesVersion(e catalogdb.Entry) bool { return reaches(e) && e.Kind != catalogdb.Touch }

// changeKey names a change in the warehouse: table (products or customers),
// natural key and commit time (valid_from of its change-log row), in µs.
type changeKey struct {
	table, key string
	at         int64
}

func keyOf(e catalogdb.Entry) changeKey {
	return changeKey{e.Table, e.Key, e.CommitTime.UnixMicro()}
}

// loadedSQL reads the CDC changes committed since a time (%[1]s, RFC 3339)
// from the dimensions' change logs, with when bq-writer wrote them: the same
// loaded_at, in the same transaction, as the version row a change starts or
// ends (a version row's own loaded_at moves when a later change closes it).
const loadedSQL = `SELECT 'products', product_id, valid_from, loaded_at FROM dim_products_changes
WHERE source = 'cdc' AND valid_from >= TIMESTAMPTZ '%[1]s'
UNION ALL
SELECT 'customers', user_id, valid_from, loaded_at FROM dim_users_changes
WHERE source = 'cdc' AND valid_from >= TIMESTAMPTZ '%[1]s'`

// loadedChanges maps loadedSQL's rows to each change's loaded_at.
func loadedChanges(rows [][]any) (map[changeKey]time.Time, error) {
	out := make(map[changeKey]time.Time, len(rows))
	for _, r := range rows {
		if len(r) != 4 {
			return nil, fmt.Errorf("changes: a row of %d columns, want 4", len(r))
		}
		from, err := parseTime(r[2])
		if err != nil {
			return nil, err
		}
		at, err := parseTime(r[3])
		if err != nil {
			return nil, err
		}
		out[changeKey{cell(r[0]), cell(r[1]), from.UnixMicro()}] = at
	}
	return out, nil
}

// parseTime reads a timestamp of a query answer (RFC 3339 text).
func parseTime(v any) (time.Time, error) {
	s, ok := v.(string)
	if !ok {
		return time.Time{}, fmt.Errorf("timestamp %v: %T, want text", v, v)
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("timestamp %q: %w", s, err)
	}
	return t, nil
}

// landed is how this run's changes reached the warehouse, per source
// transaction (a burst is one): the latency of each that landed whole, from
// its commit to the last of its rows loaded.
type landed struct {
	latencies []time.Duration // of the transactions landed, in commit order
	pending   int             // transactions with a row that should land and has not yet
	dead      int             // rows with a defect (dead-lettered, never land)
}

// landedOf matches the log against the loaded changes.
func landedOf(entries []catalogdb.Entry, loaded map[changeKey]time.Time) landed {
	var l landed
	type tx struct {
		commit  time.Time
		last    time.Time
		waiting bool
		any     bool
	}
	var order []uint64
	txs := map[uint64]*tx{}
	for _, e := range entries {
		t := txs[e.TxID]
		if t == nil {
			t = &tx{commit: e.CommitTime}
			txs[e.TxID] = t
			order = append(order, e.TxID)
		}
		if !reaches(e) {
			l.dead++
			continue
		}
		t.any = true
		at, ok := loaded[keyOf(e)]
		if !ok {
			t.waiting = true
			continue
		}
		if at.After(t.last) {
			t.last = at
		}
	}
	for _, id := range order {
		switch t := txs[id]; {
		case !t.any:
		case t.waiting:
			l.pending++
		default:
			l.latencies = append(l.latencies, t.last.Sub(t.commit))
		}
	}
	return l
}

// percentile is the nearest-rank p-quantile (0 < p <= 1) of ds; 0 for none.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(math.Ceil(float64(len(s))*p)) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// latestChange is the newest logged change that starts or ends a
// dimension version (the last row of the latest such transaction).
func latestChange(entries []catalogdb.Entry) (catalogdb.Entry, bool) {
	for i := len(entries) - 1; i >= 0; i-- {
		if makesVersion(entries[i]) {
			return entries[i], true
		}
	}
	return catalogdb.Entry{}, false
}

// dimOf is the dimension table and its natural key column of a source table.
func dimOf(table string) (dim, key string) {
	if table == "customers" {
		return "dim_users", "user_id"
	}
	return "dim_products", "product_id"
}

// versionSQL reads a key's version rows (the key comes from the mutator's log).
func versionSQL(e catalogdb.Entry) string {
	dim, key := dimOf(e.Table)
	return fmt.Sprintf("SELECT valid_from, valid_to, deleted, loaded_at FROM %s WHERE %s = '%s'", dim, key, strings.ReplaceAll(e.Key, "'", "''"))
}

// versionLatency finds the version row of change e among versionSQL's rows
// (an upsert starts the version valid from its commit time; a hard delete
// ends the one valid until then, deleted = true) and returns loaded_at - commit.
func versionLatency(e catalogdb.Entry, rows [][]any) (time.Duration, bool, error) {
	for _, r := range rows {
		if len(r) != 4 {
			return 0, false, fmt.Errorf("versions: a row of %d columns, want 4", len(r))
		}
		at := r[0]
		if e.Op == "delete" {
			if r[2] != true || r[1] == nil {
				continue
			}
			at = r[1]
		}
		t, err := parseTime(at)
		if err != nil {
			return 0, false, err
		}
		if t.UnixMicro() != e.CommitTime.UnixMicro() {
			continue
		}
		loaded, err := parseTime(r[3])
		if err != nil {
			return 0, false, err
		}
		return loaded.Sub(e.CommitTime), true, nil
	}
	return 0, false, nil
}

// dimCounts are a dimension's row counts.
type dimCounts struct {
	versions, current, thisRun int64 // thisRun: versions valid from the mutator's start on
}

// dimCountSQL counts a dimension's (%[1]s) versions, current ones and
// those valid from a time on (%[2]s, RFC 3339).
const dimCountSQL = "SELECT count(*), count(*) FILTER (WHERE is_current), count(*) FILTER (WHERE valid_from >= TIMESTAMPTZ '%[2]s') FROM %[1]s"

func queryDimCounts(ctx context.Context, sl *slice.Slice, dim string, since time.Time) (dimCounts, error) {
	_, rows, err := sl.Query(ctx, fmt.Sprintf(dimCountSQL, dim, since.UTC().Format(time.RFC3339Nano)))
	if err != nil {
		return dimCounts{}, err
	}
	if len(rows) != 1 || len(rows[0]) != 3 {
		return dimCounts{}, fmt.Errorf("%s counts: %d rows", dim, len(rows))
	}
	n := func(v any) int64 { f, _ := v.(float64); return int64(f) }
	return dimCounts{n(rows[0][0]), n(rows[0][1]), n(rows[0][2])}, nil
}

// catalogStatus is what the progress report says about the catalog.
type catalogStatus struct {
	mutator         catalogdb.Stats
	products, users dimCounts
	dead            map[string]float64 // change records dead-lettered, by entity
	landed          landed
	latest          *catalogdb.Entry // the newest change that makes a version; nil = none yet
	latestLatency   time.Duration
	latestLoaded    bool // false: not in the dimension yet
	latestAge       time.Duration
	warehouseE      error
}

// lines are the catalog's progress lines.
func (c catalogStatus) lines() string {
	var b strings.Builder
	bad := 0
	for _, n := range c.mutator.Bad {
		bad += n
	}
	fmt.Fprintf(&b, "      catalog: mutator %s (%s, %s), %d bad on purpose, %d failed",
		plural(c.mutator.Transactions, "change"), plural(c.mutator.Rows, "row"), plural(c.mutator.Bursts, "burst"), bad, c.mutator.Failed)
	if c.warehouseE != nil {
		fmt.Fprintf(&b, " | warehouse: %v", c.warehouseE)
	} else {
		fmt.Fprintf(&b, " | dim_products %d versions (%d current, %d this run) | dim_users %d versions (%d current, %d this run)",
			c.products.versions, c.products.current, c.products.thisRun, c.users.versions, c.users.current, c.users.thisRun)
	}
	b.WriteString(" | dead-lettered")
	for i, e := range slices.Sorted(maps.Keys(c.dead)) {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, " %s %.0f", e, c.dead[e])
	}
	b.WriteString("\n      catalog latency, commit in PostgreSQL -> dimension row: ")
	switch {
	case c.latest == nil:
		b.WriteString("no change yet")
	case !c.latestLoaded:
		dim, _ := dimOf(c.latest.Table)
		fmt.Fprintf(&b, "latest change %s %s %s committed %s ago, not in %s yet", c.latest.Table, c.latest.Key, c.latest.Kind,
			seconds(c.latestAge), dim)
	default:
		fmt.Fprintf(&b, "latest %s (%s %s %s at %s)", seconds(c.latestLatency), c.latest.Table, c.latest.Key, c.latest.Kind,
			c.latest.CommitTime.Local().Format("15:04:05.000"))
	}
	if l := c.landed; len(l.latencies) > 0 {
		fmt.Fprintf(&b, " | this run %s landed: p50 %s, max %s", plural(len(l.latencies), "change"),
			seconds(percentile(l.latencies, 0.5)), seconds(percentile(l.latencies, 1)))
	}
	if c.landed.pending > 0 {
		fmt.Fprintf(&b, " | %d on the way", c.landed.pending)
	}
	return b.String()
}

// plural is n and the noun, with an s unless n is 1.
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// seconds shows a latency in seconds with two decimals.
func seconds(d time.Duration) string { return fmt.Sprintf("%.2fs", d.Seconds()) }

// status gathers the catalog's figures: the mutator's counters and log, the
// dimensions, and the latencies.
func (c *catalogDemo) status(ctx context.Context, dead map[string]float64) catalogStatus {
	st := catalogStatus{mutator: c.mut.Stats(), dead: dead}
	entries, err := c.log.read()
	if err != nil {
		fmt.Println("  catalog mutator log:", err)
	}
	if st.products, err = queryDimCounts(ctx, c.sl, "dim_products", c.start); err != nil {
		st.warehouseE = err
		return st
	}
	if st.users, err = queryDimCounts(ctx, c.sl, "dim_users", c.start); err != nil {
		st.warehouseE = err
		return st
	}
	if len(entries) == 0 {
		return st
	}
	_, rows, err := c.sl.Query(ctx, fmt.Sprintf(loadedSQL, entries[0].CommitTime.Add(-time.Millisecond).Format(time.RFC3339Nano)))
	if err != nil {
		st.warehouseE = err
		return st
	}
	loaded, err := loadedChanges(rows)
	if err != nil {
		st.warehouseE = err
		return st
	}
	st.landed = landedOf(entries, loaded)
	if e, ok := latestChange(entries); ok {
		st.latest, st.latestAge = &e, time.Since(e.CommitTime)
		_, rows, err := c.sl.Query(ctx, versionSQL(e))
		if err == nil {
			st.latestLatency, st.latestLoaded, err = versionLatency(e, rows)
		}
		if err != nil {
			st.warehouseE = err
		}
	}
	return st
}

// repriced are the change kinds that set a product's price.
var repriced = map[catalogdb.Kind]bool{catalogdb.PriceChange: true, catalogdb.SaleStart: true, catalogdb.SaleEnd: true, catalogdb.CategoryReprice: true}

// repricedProducts are the products the log re-priced (good changes only),
// in key order.
func repricedProducts(entries []catalogdb.Entry) []string {
	set := map[string]bool{}
	for _, e := range entries {
		if e.Table == "products" && repriced[e.Kind] && e.Op != "delete" && reaches(e) {
			set[e.Key] = true
		}
	}
	return slices.Sorted(maps.Keys(set))
}

// pickSQL picks, among the re-priced products (%[2]s, a quoted list), the
// one whose views this run (since %[1]s) saw the most prices, then the most views.
const pickSQL = `SELECT e.product_id, count(DISTINCT p.price_minor) AS prices, count(*) AS views
FROM fact_events_pit e JOIN dim_products p ON p.product_key = e.product_key
WHERE e.event_type = 'product_view' AND e.event_timestamp >= TIMESTAMPTZ '%[1]s' AND e.product_id IN (%[2]s)
GROUP BY 1 ORDER BY 2 DESC, 3 DESC, 1 LIMIT 1`

// pitSQL is the example point-in-time query: a product's views this run
// (%[2]s: since), each with the price valid at the view (its version in
// dim_products, resolved by fact_events_pit) beside the current price.
const pitSQL = `SELECT p.price_minor AS price_at_view, c.price_minor AS price_now,
       p.valid_from, p.valid_to, count(*) AS views, max(e.event_timestamp) AS last_view
FROM fact_events_pit e
JOIN dim_products p ON p.product_key = e.product_key
LEFT JOIN dim_products c ON c.product_id = e.product_id AND c.is_current
WHERE e.event_type = 'product_view' AND e.product_id = '%[1]s'
  AND e.event_timestamp >= TIMESTAMPTZ '%[2]s'
GROUP BY 1, 2, 3, 4
ORDER BY p.valid_from`

// quoteList is keys as a SQL list of text literals.
func quoteList(keys []string) string {
	q := make([]string, len(keys))
	for i, k := range keys {
		q[i] = "'" + strings.ReplaceAll(k, "'", "''") + "'"
	}
	return strings.Join(q, ", ")
}

// repriceNote lists the mutator's price changes of a product: kind, commit time and new price.
func repriceNote(entries []catalogdb.Entry, product string) string {
	var parts []string
	for _, e := range entries {
		if e.Key == product && e.Table == "products" && repriced[e.Kind] && e.Product != nil {
			note := fmt.Sprintf("%s at %s to %d", e.Kind, e.CommitTime.Local().Format("15:04:05.000"), e.Product.PriceMinor)
			if !reaches(e) {
				note += " (bad: dead-lettered)"
			}
			parts = append(parts, note)
		}
	}
	return strings.Join(parts, ", ")
}

const pitTitle = "\n  Point in time: product views with the price valid when viewed (fact_events_pit -> dim_products) and the current price:"

// printPIT prints and runs the example point-in-time query for a product
// the mutator re-priced this run, the one viewed at the most prices, and
// says whether it was viewed at two or more. Unless final, it prints nothing
// until there is such a product (a view before the change and one after).
func (c *catalogDemo) printPIT(ctx context.Context, since time.Time, final bool) bool {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	entries, _ := c.log.read()
	products := repricedProducts(entries)
	if len(products) == 0 {
		if final {
			fmt.Println(pitTitle)
			fmt.Println("    (the mutator re-priced no product this run)")
		}
		return false
	}
	from := since.UTC().Format(time.RFC3339Nano)
	_, rows, err := c.sl.Query(ctx, fmt.Sprintf(pickSQL, from, quoteList(products)))
	if err != nil || len(rows) == 0 || len(rows[0]) != 3 {
		if final {
			fmt.Println(pitTitle)
			if err != nil {
				fmt.Println("    ", err)
			} else {
				fmt.Printf("    (none of the %d products the mutator re-priced has a view in the warehouse yet)\n", len(products))
			}
		}
		return false
	}
	twoPrices := cell(rows[0][1]) != "1"
	if !twoPrices && !final {
		return false
	}
	fmt.Println(pitTitle)
	product := cell(rows[0][0])
	fmt.Printf("    %s, re-priced by the mutator: %s\n", product, repriceNote(entries, product))
	q := fmt.Sprintf(pitSQL, product, from)
	fmt.Print(indent(q, "    "))
	cols, rows, err := c.sl.Query(ctx, q)
	if err != nil {
		fmt.Println("    ", err)
		return twoPrices
	}
	fmt.Print(indent(formatTable(cols, rows), "    "))
	return twoPrices
}
