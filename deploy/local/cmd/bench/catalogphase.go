package main

// Phase 5, catalog: catalog-sync's snapshot and change data capture on a
// slice of its own (a PostgreSQL schema "sf_<prefix>" loaded with
// -catalog-products products and -catalog-customers customers, catalog-sync,
// the validator and bq-writer as processes).
//
// Snapshot: POST /v1/sync of both tables into an empty warehouse. It reports
// the run's duration (GET /v1/runs: started_at to finished_at), rows read,
// changes sent and rows/s, and the end-to-end time from the run's start to
// the last loaded_at once dim_products and dim_users hold a current version
// of every row; catalog-sync's peak resident memory, sampled, and the CPU of
// every process over that window.
//
// CDC: the mutator (catalogdb) then changes the catalog at -catalog-cdc-rate
// transactions/s for -catalog-cdc-duration, one transaction per change, each
// logged with its commit timestamp (catalog-log.jsonl in the run folder).
// Afterwards every logged row change is matched to the warehouse: bq-writer
// logs each change it receives in dim_products_changes / dim_users_changes
// with valid_from = the change's commit time (CDC's changed_at is the
// transaction's commit timestamp from BEGIN, the log's commit_time is
// pg_xact_commit_timestamp of the same transaction) and source_ordinal = its
// position in the transaction (the log's ordinal), so (natural key,
// valid_from, ordinal) finds it exactly. Its latency is that row's loaded_at
// minus commit_time. The change's version row is written in the same DuckDB
// transaction with the same loaded_at, but rewritten (with a newer loaded_at)
// whenever a later change of its key closes it, so the change log's loaded_at
// is the time the dimension first showed the change, the figure wanted.
// Changes that make no version (a no-op, a hard delete that only closes one)
// are in the change log all the same and have a latency; the phase checks
// from the log and the state before it which changes must start a version and
// which close one, and counts the warehouse's disagreements.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ecomstream/platform/deploy/local/catalogdb"
	"github.com/ecomstream/platform/deploy/local/slice"
	"github.com/ecomstream/platform/deploy/local/svcrun"
)

// catalogSeed is the mutator's random seed: the same change stream on every
// run, so runs (and -compare's two revisions) get the same kinds of change.
const catalogSeed = 8

// validateCatalog checks the catalog phase's flags.
func validateCatalog(o options) error {
	switch {
	case o.catalogProducts < 1:
		return fmt.Errorf("-catalog-products %d: want at least 1", o.catalogProducts)
	case o.catalogCustomers < 1:
		return fmt.Errorf("-catalog-customers %d: want at least 1", o.catalogCustomers)
	case !(o.catalogRate > 0 && o.catalogRate <= 1000):
		return fmt.Errorf("-catalog-cdc-rate %g: want transactions per second in (0, 1000]", o.catalogRate)
	case o.catalogDuration <= 0:
		return fmt.Errorf("-catalog-cdc-duration %s: want a positive duration", o.catalogDuration)
	case !(o.catalogBad >= 0 && o.catalogBad <= 1):
		return fmt.Errorf("-catalog-cdc-bad %g: want a fraction in [0, 1]", o.catalogBad)
	}
	return nil
}

// catalogMissing says why the binaries in binDir cannot run the catalog path
// ("" when they can): a revision before catalog-sync has none, and one whose
// validator or bq-writer does not read PRODUCTS_INPUT_TOPIC (the variable's
// name is in the binary, as a struct tag) has no catalog in its pipeline.
func catalogMissing(binDir string) (string, error) {
	if _, err := os.Stat(filepath.Join(binDir, "catalog-sync")); errors.Is(err, os.ErrNotExist) {
		return fmt.Sprintf("%s has no catalog-sync (a revision before the catalog path)", binDir), nil
	} else if err != nil {
		return "", err
	}
	for _, name := range []string{"validator", "bq-writer"} {
		b, err := os.ReadFile(filepath.Join(binDir, name))
		if err != nil {
			return "", err
		}
		if !bytes.Contains(b, []byte("PRODUCTS_INPUT_TOPIC")) {
			return fmt.Sprintf("%s does not read the catalog (it does not know PRODUCTS_INPUT_TOPIC)", filepath.Join(binDir, name)), nil
		}
	}
	return "", nil
}

// changeClass is what a logged row change must do to its dimension.
type changeClass int

const (
	classVersion  changeClass = iota // starts a version
	classNoop                        // alters no tracked attribute (or deletes a key without a version): logged, no version
	classClose                       // a hard delete: ends the version in force, makes none
	classRejected                    // a row with a defect: the validator dead-letters it, it never lands
)

func (c changeClass) String() string {
	return [...]string{"new version", "no new version", "closes a version", "rejected"}[c]
}

// expectedChange is one row change of the mutator's log and what it must do.
type expectedChange struct {
	ref   changeRef
	class changeClass
}

// changeRef finds a change in the warehouse's change logs: table (products
// or customers), natural key, valid_from (µs since the epoch) and ordinal.
type changeRef struct {
	table, key string
	at         int64 // commit time = valid_from, µs
	ordinal    int64
}

// productAttrs are dim_products' tracked attributes of a row (its attr_hash's inputs).
func productAttrs(p catalogdb.ProductRow) string {
	opt := func(s *string) string {
		if s == nil {
			return "N"
		}
		return strconv.Quote(*s)
	}
	return strings.Join([]string{strconv.Quote(p.SKU), strconv.Quote(p.Name), opt(p.Category), opt(p.Brand),
		strconv.FormatInt(p.PriceMinor, 10), strconv.Quote(p.Currency), strconv.FormatBool(p.IsActive)}, "|")
}

// customerAttrs are dim_users' tracked attributes of a row: email_hash and
// email_domain are functions of the normalised email (lower(trim(email))),
// then country and is_active.
func customerAttrs(c catalogdb.CustomerRow) string {
	return strings.Join([]string{strconv.Quote(strings.ToLower(strings.TrimSpace(c.Email))), strconv.Quote(c.Country),
		strconv.FormatBool(c.IsActive)}, "|")
}

// classify says, for every entry of the log (in commit order), what it must
// do to the dimension, starting from the versions in force before it: one
// per row of st without a defect (what the snapshot loaded). It follows
// bq-writer's rule (dims.go): an upsert whose tracked attributes equal the
// version in force makes none; a hard delete ends the version in force; a
// rejected row changes nothing.
func classify(st *catalogdb.State, log []catalogdb.Entry) ([]expectedChange, error) {
	inForce := map[string]string{} // table|key -> tracked attributes
	for id, p := range st.Products {
		if len(catalogdb.ProductDefects(p)) == 0 {
			inForce["products|"+id] = productAttrs(p)
		}
	}
	for id, c := range st.Customers {
		if len(catalogdb.CustomerDefects(c)) == 0 {
			inForce["customers|"+id] = customerAttrs(c)
		}
	}
	out := make([]expectedChange, 0, len(log))
	for i, e := range log {
		if e.CommitTime.IsZero() || e.Ordinal < 1 || e.Key == "" {
			return nil, fmt.Errorf("catalog log entry %d (%s %s): no commit time, ordinal or key", i+1, e.Table, e.Key)
		}
		k := e.Table + "|" + e.Key
		x := expectedChange{ref: changeRef{table: e.Table, key: e.Key, at: e.CommitTime.UnixMicro(), ordinal: int64(e.Ordinal)}}
		var attrs string
		switch {
		case e.Table == "products" && e.Product != nil:
			attrs = productAttrs(*e.Product)
		case e.Table == "customers" && e.Customer != nil:
			attrs = customerAttrs(*e.Customer)
		default:
			return nil, fmt.Errorf("catalog log entry %d: table %q without its row", i+1, e.Table)
		}
		old, open := inForce[k]
		switch {
		case e.Op == "delete" && open:
			x.class = classClose
			delete(inForce, k)
		case e.Op == "delete":
			x.class = classNoop
		case len(e.Defects) > 0:
			x.class = classRejected
		case open && old == attrs:
			x.class = classNoop
		default:
			x.class = classVersion
			inForce[k] = attrs
		}
		out = append(out, x)
	}
	return out, nil
}

// landedChange is one row of a dimension's change log.
type landedChange struct {
	lsn    int64
	loaded int64 // loaded_at, µs
}

// warehouseView is what the warehouse holds of the CDC changes.
type warehouseView struct {
	changes  map[changeRef]landedChange
	versions map[string]bool // table|key|source_lsn|source_ordinal of version rows
	closed   map[string]bool // table|key|valid_to (µs) of versions a hard delete ended
}

// catalogChangesSQL reads the CDC rows of both change logs:
// table, key, source_lsn, source_ordinal, valid_from and loaded_at in µs.
const catalogChangesSQL = `SELECT 'products', product_id, source_lsn, source_ordinal,
	CAST(epoch_us(valid_from) AS BIGINT), CAST(epoch_us(loaded_at) AS BIGINT) FROM dim_products_changes WHERE source = 'cdc'
	UNION ALL SELECT 'customers', user_id, source_lsn, source_ordinal,
	CAST(epoch_us(valid_from) AS BIGINT), CAST(epoch_us(loaded_at) AS BIGINT) FROM dim_users_changes WHERE source = 'cdc'`

// catalogVersionsSQL reads the version rows CDC changes started and those a
// hard delete ended: table, key, source_lsn, source_ordinal, deleted, valid_to (µs or NULL).
const catalogVersionsSQL = `SELECT 'products', product_id, source_lsn, source_ordinal, deleted, CAST(epoch_us(valid_to) AS BIGINT)
	FROM dim_products WHERE source = 'cdc' OR deleted
	UNION ALL SELECT 'customers', user_id, source_lsn, source_ordinal, deleted, CAST(epoch_us(valid_to) AS BIGINT)
	FROM dim_users WHERE source = 'cdc' OR deleted`

// catalogCountSQL counts the CDC rows of both change logs.
const catalogCountSQL = `SELECT (SELECT count(*) FROM dim_products_changes WHERE source = 'cdc') + (SELECT count(*) FROM dim_users_changes WHERE source = 'cdc')`

// parseWarehouse reads the answers of catalogChangesSQL and catalogVersionsSQL.
func parseWarehouse(changes, versions [][]any) (warehouseView, error) {
	w := warehouseView{changes: map[changeRef]landedChange{}, versions: map[string]bool{}, closed: map[string]bool{}}
	for i, r := range changes {
		if len(r) != 6 {
			return w, fmt.Errorf("change log row %d: %d values, want 6", i, len(r))
		}
		table, ok1 := r[0].(string)
		key, ok2 := r[1].(string)
		lsn, ok3 := micros(r[2])
		ord, ok4 := micros(r[3])
		from, ok5 := micros(r[4])
		loaded, ok6 := micros(r[5])
		if !ok1 || !ok2 || !ok3 || !ok4 || !ok5 || !ok6 {
			return w, fmt.Errorf("change log row %d: %v: want table, key, lsn, ordinal, valid_from, loaded_at", i, r)
		}
		ref := changeRef{table: table, key: key, at: from, ordinal: ord}
		if old, ok := w.changes[ref]; !ok || loaded < old.loaded {
			w.changes[ref] = landedChange{lsn: lsn, loaded: loaded}
		}
	}
	for i, r := range versions {
		if len(r) != 6 {
			return w, fmt.Errorf("version row %d: %d values, want 6", i, len(r))
		}
		table, ok1 := r[0].(string)
		key, ok2 := r[1].(string)
		lsn, ok3 := micros(r[2])
		ord, ok4 := micros(r[3])
		deleted, ok5 := r[4].(bool)
		if !ok1 || !ok2 || !ok3 || !ok4 || !ok5 {
			return w, fmt.Errorf("version row %d: %v: want table, key, lsn, ordinal, deleted, valid_to", i, r)
		}
		w.versions[versionID(table, key, lsn, ord)] = true
		if to, ok := micros(r[5]); ok && deleted {
			w.closed[table+"|"+key+"|"+strconv.FormatInt(to, 10)] = true
		}
	}
	return w, nil
}

func versionID(table, key string, lsn, ord int64) string {
	return table + "|" + key + "|" + strconv.FormatInt(lsn, 10) + "|" + strconv.FormatInt(ord, 10)
}

// cdcResult is the outcome of matching the log to the warehouse.
type cdcResult struct {
	latencies []time.Duration       // commit -> change log loaded_at, sorted: every change that landed
	byClass   map[changeClass][]int // landed changes by class (count in [0]); rejected: logged rejections
	missing   int                   // changes that should have landed and did not
	wrong     []string              // landed, but the dimension does not show what the class says
}

// matchCDC matches every expected change to the warehouse.
func matchCDC(exp []expectedChange, w warehouseView) cdcResult {
	r := cdcResult{byClass: map[changeClass][]int{}}
	count := func(c changeClass) {
		if r.byClass[c] == nil {
			r.byClass[c] = []int{0}
		}
		r.byClass[c][0]++
	}
	for _, x := range exp {
		l, ok := w.changes[x.ref]
		if x.class == classRejected {
			count(classRejected)
			if ok {
				r.wrong = append(r.wrong, fmt.Sprintf("%s %s at %d: a rejected change is in the warehouse", x.ref.table, x.ref.key, x.ref.at))
			}
			continue
		}
		if !ok {
			r.missing++
			continue
		}
		count(x.class)
		r.latencies = append(r.latencies, time.Duration(l.loaded-x.ref.at)*time.Microsecond)
		hasVersion := w.versions[versionID(x.ref.table, x.ref.key, l.lsn, x.ref.ordinal)]
		var bad string
		switch {
		case x.class == classVersion && !hasVersion:
			bad = "started no version"
		case x.class != classVersion && hasVersion:
			bad = "started a version, want none (" + x.class.String() + ")"
		case x.class == classClose && !w.closed[x.ref.table+"|"+x.ref.key+"|"+strconv.FormatInt(x.ref.at, 10)]:
			bad = "closed no version"
		}
		if bad != "" {
			r.wrong = append(r.wrong, fmt.Sprintf("%s %s at %d: %s", x.ref.table, x.ref.key, x.ref.at, bad))
		}
	}
	slices.Sort(r.latencies)
	return r
}

// landed is the number of changes that landed, of every class.
func (r cdcResult) landed() int { return len(r.latencies) }

// peakRSS samples the resident memory of processes every interval until stop.
type peakRSS struct {
	mu   sync.Mutex
	peak map[string]int64 // kB
	stop chan struct{}
	done chan struct{}
}

func samplePeakRSS(pids map[string]int, every time.Duration) *peakRSS {
	p := &peakRSS{peak: map[string]int64{}, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			p.mu.Lock()
			for name, pid := range pids {
				p.peak[name] = max(p.peak[name], rssKB(procRoot, []int{pid}))
			}
			p.mu.Unlock()
			select {
			case <-p.stop:
				return
			case <-t.C:
			}
		}
	}()
	return p
}

// end stops the sampling and returns the peaks.
func (p *peakRSS) end() map[string]int64 {
	close(p.stop)
	<-p.done
	return p.peak
}

// catalogPhase runs phase 5 on a slice of its own and returns its figures.
func catalogPhase(ctx context.Context, prep slice.Env, otlp string, o options) (figs []figure, err error) {
	why, err := catalogMissing(prep.BinDir)
	if err != nil {
		return nil, err
	}
	if why != "" { // a revision before the catalog path (-compare's base, say)
		fmt.Printf("phase 5, catalog: skipped, %s\n\n", why)
		return nil, nil
	}
	root, eps := prep.Root, prep.Stack
	stamp := time.Now().Format("20060102-150405")
	prefix := "bench-catalog-" + stamp + "."
	runDir := filepath.Join(root, ".run", "bench", "catalog-"+stamp)
	sl, err := slice.New(slice.Options{
		BinDir: prep.BinDir, RunDir: runDir, Brokers: eps.KafkaBrokers,
		Registry: eps.SchemaRegistryURL, OTLP: otlp, Prefix: prefix, QueryToken: "bench-token-0123456789abcdef",
		LogLevel: "warn", Env: serviceEnv(o, append(slices.Clone(svcrun.CatalogServices), svcrun.Services...)),
		Catalog: &slice.CatalogOptions{DatabaseURL: eps.DatabaseURL, CDCDatabaseURL: eps.CatalogDatabaseURL,
			Init: []catalogdb.InitOption{catalogdb.WithProducts(o.catalogProducts), catalogdb.WithCustomers(o.catalogCustomers)}},
	})
	if err != nil {
		return nil, err
	}
	// On every way out, an interrupt included (ctx is done then): catalog-sync
	// stops and its slot and schema go (a slot left behind holds WAL for
	// ever), then the other services and the run's topics.
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		if derr := sl.DropCatalog(cctx); derr != nil {
			fmt.Fprintln(os.Stderr, "bench: dropping the catalog run's slot and schema:", derr)
			err = errors.Join(err, derr)
		}
		_ = sl.Stop()
		if derr := dropRun(eps.KafkaBrokers, prefix); derr != nil {
			fmt.Fprintln(os.Stderr, "bench: cleaning up the catalog run's topics:", derr)
		}
	}()
	initStart := time.Now()
	if err := sl.Start(ctx); err != nil {
		return nil, err
	}
	if in := sl.Catalog.Init; in.Products != int64(o.catalogProducts) || in.Customers != int64(o.catalogCustomers) {
		return nil, fmt.Errorf("catalog schema %s: loaded %d products and %d customers, want %d and %d (a schema left by an earlier run?)",
			sl.Catalog.Schema, in.Products, in.Customers, o.catalogProducts, o.catalogCustomers)
	}
	procs, err := watchList(sl, root, eps)
	if err != nil {
		return nil, err
	}
	fmt.Printf("phase 5, catalog: schema %s loaded with %d products and %d customers (COPY, %.1f s; slice up in %.1f s); logs in %s\n",
		sl.Catalog.Schema, o.catalogProducts, o.catalogCustomers, sl.Catalog.Init.Took.Seconds(), time.Since(initStart).Seconds(), runDir)
	fmt.Printf("  measured processes: %s\n", describe(procs.list))

	sf, err := catalogSnapshot(ctx, sl, o, procs)
	if err != nil {
		return nil, err
	}
	figs = append(figs, sf...)
	cf, err := catalogCDC(ctx, sl, o, procs, runDir)
	if err != nil {
		return nil, err
	}
	figs = append(figs, cf...)
	fmt.Println()
	return figs, nil
}

// catalogSnapshot runs the first snapshot (POST /v1/sync, both tables) and
// waits until both dimensions hold a current version of every row.
func catalogSnapshot(ctx context.Context, sl *slice.Slice, o options, procs watchedSet) ([]figure, error) {
	want := int64(o.catalogProducts + o.catalogCustomers)
	fmt.Printf("  snapshot: POST /v1/sync (both tables) into an empty warehouse: %d rows\n", want)
	snap0, err := readSnapshot(procRoot)
	if err != nil {
		return nil, err
	}
	rss := samplePeakRSS(map[string]int{"catalog-sync": sl.Procs["catalog-sync"].Pid(), "bq-writer": sl.Procs["bq-writer"].Pid()}, 100*time.Millisecond)
	var peaks map[string]int64 // set when the sampling ended
	defer func() {
		if peaks == nil {
			rss.end()
		}
	}()
	if o.profileDir != "" && o.profPhase == 5 {
		go profile(sl, o.profileDir)
	}
	run, joined, err := sl.CatalogSync(ctx, "", false)
	if err != nil {
		return nil, err
	}
	if joined {
		return nil, fmt.Errorf("POST /v1/sync joined run %s: catalog-sync runs on a schedule (CATALOG_SNAPSHOT_SCHEDULE should be off)", run.ID)
	}
	if run, err = sl.CatalogWait(ctx, run.ID); err != nil {
		return nil, err
	}
	// The warehouse: a current version of every row, products and customers.
	best, progressed := int64(-1), time.Now()
	for {
		n, err := sl.QueryInt(ctx, `SELECT (SELECT count(*) FROM dim_products WHERE is_current) + (SELECT count(*) FROM dim_users WHERE is_current)`)
		if err != nil {
			return nil, err
		}
		if n >= want {
			break
		}
		if n > best {
			best, progressed = n, time.Now()
		}
		if time.Since(progressed) > time.Minute {
			return nil, fmt.Errorf("snapshot: the warehouse holds %d of %d current versions and no more arrived for a minute", n, want)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(500 * time.Millisecond): // the figure is loaded_at's: polling more often only loads bq-writer
		}
	}
	snap1, err := readSnapshot(procRoot)
	if err != nil {
		return nil, err
	}
	peaks = rss.end()
	_, rows, err := sl.Query(ctx, `SELECT CAST(greatest((SELECT epoch_us(max(loaded_at)) FROM dim_products), (SELECT epoch_us(max(loaded_at)) FROM dim_users)) AS BIGINT),
		CAST((SELECT epoch_us(max(loaded_at)) FROM dim_products) AS BIGINT)`)
	if err != nil {
		return nil, err
	}
	lastAll, ok1 := micros(rows[0][0])
	lastProducts, ok2 := micros(rows[0][1])
	if !ok1 || !ok2 || run.Finished == nil {
		return nil, fmt.Errorf("snapshot: no loaded_at in the dimensions (%v) or no finished_at in run %s", rows[0], run.ID)
	}
	took := run.Finished.Sub(run.Started)
	e2e := time.UnixMicro(lastAll).Sub(run.Started)
	e2eProducts := time.UnixMicro(lastProducts).Sub(run.Started)
	rate := float64(run.RowsRead) / took.Seconds()
	fmt.Printf("  catalog-sync run %s: %.2f s (started_at to finished_at), %d rows read, %d changes sent = %.0f rows/s\n",
		run.ID, took.Seconds(), run.RowsRead, run.ChangesSent, rate)
	fmt.Printf("  end to end: run start to the last version's loaded_at %.2f s (dim_products complete after %.2f s); %.0f rows/s\n",
		e2e.Seconds(), e2eProducts.Seconds(), float64(want)/e2e.Seconds())
	if e2e < took {
		// The run's last pages commit no changes: the delete pass checks every
		// key of the state against the tables after the last row was sent.
		fmt.Printf("    (the warehouse held every row %.2f s before the run finished: its delete pass, after the last change, checks every key)\n", (took - e2e).Seconds())
	}
	fmt.Printf("  peak resident memory (sampled every 100 ms): catalog-sync %s, bq-writer %s\n", mb(peaks["catalog-sync"]), mb(peaks["bq-writer"]))
	c := measure(snap0, snap1, procs.list, numCPU(), func(pids []int) int64 { return rssKB(procRoot, pids) })
	c.print(os.Stdout, "phase 5, the snapshot until the warehouse held every row")
	figs := []figure{
		{Name: "catalog snapshot run", Unit: "s", Value: took.Seconds(), Lower: true},
		{Name: "catalog snapshot rows/s", Unit: "rows/s", Value: rate},
		{Name: "catalog snapshot end to end", Unit: "s", Value: e2e.Seconds(), Lower: true},
		{Name: "catalog snapshot catalog-sync peak rss", Unit: "MB", Value: float64(peaks["catalog-sync"]) / 1024, Lower: true},
	}
	return append(figs, c.figures("catalog snapshot ")...), nil
}

// cdcCommitLatency is catalog-sync's ecom_catalog_cdc_commit_latency_seconds
// (commit in PostgreSQL -> commit in Kafka, per transaction): sum and count.
func cdcCommitLatency(ctx context.Context, sl *slice.Slice) (sum, count float64, err error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	s, err := slice.Scrape(ctx, sl.Procs["catalog-sync"].HTTPAddr, "ecom_")
	if err != nil {
		return 0, 0, fmt.Errorf("catalog-sync /metrics: %w", err)
	}
	return slice.Sum(s, "ecom_catalog_cdc_commit_latency_seconds_sum", nil), slice.Sum(s, "ecom_catalog_cdc_commit_latency_seconds_count", nil), nil
}

// catalogCDC runs the mutator at a steady rate and measures each change's
// latency from its commit in PostgreSQL to its change log row in the warehouse.
func catalogCDC(ctx context.Context, sl *slice.Slice, o options, procs watchedSet, runDir string) ([]figure, error) {
	conn, err := pgx.Connect(ctx, sl.Catalog.DatabaseURL)
	if err != nil {
		return nil, fmt.Errorf("catalog database: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	schema := sl.Catalog.Schema
	before, err := catalogdb.LoadState(ctx, conn, schema)
	if err != nil {
		return nil, err
	}
	bad := o.catalogBad
	if bad == 0 {
		bad = -1 // MutatorConfig: 0 is the default (5%), negative is none
	}
	m, err := catalogdb.NewMutator(ctx, conn, catalogdb.MutatorConfig{Schema: schema, BurstEvery: -1, BadFraction: bad, Seed: catalogSeed})
	if err != nil {
		return nil, err
	}
	logPath := filepath.Join(runDir, "catalog-log.jsonl")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	fmt.Printf("  cdc: the mutator at %g transactions/s for %s (one change each, no bulk re-price, bad fraction %g); log %s\n",
		o.catalogRate, o.catalogDuration, o.catalogBad, logPath)
	maxPoll := "KAFKA_MAX_POLL_RECORDS=5000, the default"
	if o.maxPoll > 0 {
		maxPoll = "KAFKA_MAX_POLL_RECORDS=" + strconv.Itoa(o.maxPoll) + " from -max-poll"
	}
	fmt.Printf("    services: catalog-sync commits what the slot delivered (whole transactions, %s) to Kafka at once; validator and bq-writer at KAFKA_COMMIT_INTERVAL=100ms, the default\n", maxPoll)
	s0, c0, err := cdcCommitLatency(ctx, sl)
	if err != nil {
		return nil, err
	}
	snap0, err := readSnapshot(procRoot)
	if err != nil {
		return nil, err
	}
	var log []catalogdb.Entry
	failed := 0
	every := time.Duration(float64(time.Second) / o.catalogRate)
	tick := time.NewTicker(every)
	defer tick.Stop()
	from := time.Now()
	txs := 0
	for time.Since(from) < o.catalogDuration {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-tick.C:
		}
		entries, err := m.Step(ctx)
		var unlogged *catalogdb.UnloggedCommitError
		switch {
		case errors.As(err, &unlogged):
			return nil, err
		case err != nil:
			failed++ // changed nothing (a key taken meanwhile, say): the mutator starts again from the tables
			continue
		}
		txs++
		if err := catalogdb.WriteLog(logFile, entries); err != nil {
			return nil, fmt.Errorf("catalog log: %w", err)
		}
		log = append(log, entries...)
	}
	wall := time.Since(from)
	snap1, err := readSnapshot(procRoot)
	if err != nil {
		return nil, err
	}
	exp, err := classify(before, log)
	if err != nil {
		return nil, err
	}
	wantLanded := 0
	for _, x := range exp {
		if x.class != classRejected {
			wantLanded++
		}
	}
	// Until the change logs hold every change that should land; a minute
	// without progress ends the wait and the missing ones are counted.
	best, progressed := int64(-1), time.Now()
	for {
		n, err := sl.QueryInt(ctx, catalogCountSQL)
		if err != nil {
			return nil, err
		}
		if n >= int64(wantLanded) {
			break
		}
		if n > best {
			best, progressed = n, time.Now()
		}
		if time.Since(progressed) > time.Minute {
			fmt.Printf("  cdc: the warehouse holds %d of %d changes and no more arrived for a minute\n", n, wantLanded)
			break
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	s1, c1, err := cdcCommitLatency(ctx, sl)
	if err != nil {
		return nil, err
	}
	_, changes, err := sl.Query(ctx, catalogChangesSQL)
	if err != nil {
		return nil, err
	}
	_, versions, err := sl.Query(ctx, catalogVersionsSQL)
	if err != nil {
		return nil, err
	}
	w, err := parseWarehouse(changes, versions)
	if err != nil {
		return nil, err
	}
	r := matchCDC(exp, w)
	st := m.Stats()
	fmt.Printf("  mutator: %d transactions in %.1f s (%.1f/s), %d row changes, %d failed (changed nothing); kinds %v\n",
		txs, wall.Seconds(), float64(txs)/wall.Seconds(), len(log), failed, st.Kinds)
	n := func(c changeClass) int {
		if v := r.byClass[c]; v != nil {
			return v[0]
		}
		return 0
	}
	fmt.Printf("  landed: %d of %d row changes (%d new versions, %d no new version, %d closed a version by a hard delete); %d rejected by the rules (not expected); missing %d; wrong %d\n",
		r.landed(), len(exp), n(classVersion), n(classNoop), n(classClose), n(classRejected), r.missing, len(r.wrong))
	for _, s := range r.wrong[:min(len(r.wrong), 5)] {
		fmt.Println("    wrong:", s)
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	figs := []figure{
		{Name: "catalog cdc missing", Unit: "changes", Value: float64(r.missing), Lower: true},
	}
	if r.landed() > 0 {
		p50, p90, p99, pmax := percentile(r.latencies, 0.5), percentile(r.latencies, 0.9), percentile(r.latencies, 0.99), percentile(r.latencies, 1)
		fmt.Printf("  latency, commit in PostgreSQL -> loaded_at in the dimension's change log, %d changes: p50 %.0f ms, p90 %.0f ms, p99 %.0f ms, max %.0f ms\n",
			r.landed(), ms(p50), ms(p90), ms(p99), ms(pmax))
		figs = append(figs,
			figure{Name: "catalog cdc latency p50", Unit: "ms", Value: ms(p50), Lower: true},
			figure{Name: "catalog cdc latency p90", Unit: "ms", Value: ms(p90), Lower: true},
			figure{Name: "catalog cdc latency p99", Unit: "ms", Value: ms(p99), Lower: true},
			figure{Name: "catalog cdc latency max", Unit: "ms", Value: ms(pmax), Lower: true})
	}
	if c1 > c0 {
		mean := 1000 * (s1 - s0) / (c1 - c0)
		fmt.Printf("    of it, commit in PostgreSQL -> commit in Kafka (catalog-sync's ecom_catalog_cdc_commit_latency_seconds): mean %.0f ms over %.0f transactions\n", mean, c1-c0)
		figs = append(figs, figure{Name: "catalog cdc to kafka mean", Unit: "ms", Value: mean, Lower: true})
	}
	c := measure(snap0, snap1, procs.list, numCPU(), func(pids []int) int64 { return rssKB(procRoot, pids) })
	c.print(os.Stdout, fmt.Sprintf("phase 5, cdc at %g transactions/s", o.catalogRate))
	figs = append(figs, c.figures("catalog cdc ")...)
	return figs, nil
}
