// Command bench measures the clickstream slice end to end on this machine:
// raw JSON produced to Kafka -> ingest-clickstream -> validator -> bq-writer
// -> DuckDB, each a separate process, against the local stack.
//
// Phase 1 (throughput) produces N events as fast as possible and reports
// events/s from the first produce to the last warehouse commit. Phase 2
// (latency) produces at a steady rate and reports p50/p99/max from produce to
// warehouse write, and what the steady rate costs: the CPU of every process
// (the services, this producer, the broker, the registry, PostgreSQL) from
// /proc, and each stage's transactions per second. Phase 3 (HTTP) drives
// ingest-clickstream's HTTP collector with concurrent keep-alive clients at
// each batch size of -http-runs and reports requests/s, events/s accepted and
// end to end, response times and CPU (httpphase.go). Phase 4 (orders) runs
// the orders path on a slice of its own: the storefront simulator at a 20x
// burst of its nominal rate, ingest-orders (poll and webhooks), the validator
// and bq-writer, and reports orders and versions per second made, produced and
// landed in fact_orders, the latency of each version from its updated_at to
// the warehouse by the source that won, the drain after the burst, the cursor
// lag and CPU (ordersphase.go). Phase 5 (catalog) runs catalog-sync on a
// slice and a PostgreSQL schema of its own: the snapshot of 100k products
// (run time, rows/s, until the dimensions hold every row) and the latency of
// CDC changes from their commit in PostgreSQL to the dimension at p50/p99
// (catalogphase.go). Phase 6 (bigquery, only when -phases names it) runs the
// clickstream into bq-writer on the BigQuery emulator at -bq-rate and reports
// rows/s and bytes/s appended and the lag, next to bqwh's benchmark on its
// fake and DuckDB's throughput (bqphase.go). -phases picks the phases. It
// prints figures; it asserts nothing.
//
// With -compare REF it measures two revisions instead: REF's service binaries
// and this tree's, alternately, with this bench as the driver (see compare.go).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ecomstream/platform/deploy/local/clickgen"
	"github.com/ecomstream/platform/deploy/local/otlpsink"
	"github.com/ecomstream/platform/deploy/local/slice"
	"github.com/ecomstream/platform/deploy/local/stacktest"
	"github.com/ecomstream/platform/deploy/local/storefront"
	"github.com/ecomstream/platform/deploy/local/svcrun"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

type options struct {
	events      int
	broken      float64
	latRate     int
	latDuration time.Duration
	traceExport bool
	maxPoll     int
	profileDir  string
	profPhase   int
	warmup      int
	binDir      string // prebuilt service binaries; "" builds this tree's
	jsonOut     string // also write the figures here, for -compare
	compare     string // a git revision to compare this tree with
	runs        int    // runs per revision in -compare
	phases      string // which phases run
	httpRuns    string // batch:events pairs of the HTTP phase
	httpClients int    // concurrent keep-alive clients of the HTTP phase
	// The orders phase (ordersphase.go).
	ordersRate     float64       // the storefront's base rate, orders per minute
	ordersBurst    float64       // its burst factor: the phase runs at rate x burst
	ordersDuration time.Duration // length of the burst
	ordersCount    int           // end the burst after this many orders too; 0 = no cap
	ordersPoll     time.Duration // ingest-orders' ORDERS_POLL_INTERVAL
	ordersWebhooks bool
	ordersFaults   float64 // the storefront's -fault-rate
	// The catalog phase (catalogphase.go).
	catalogProducts  int           // products loaded into the slice's schema
	catalogCustomers int           // customers loaded
	catalogRate      float64       // the mutator's transactions per second
	catalogDuration  time.Duration // how long the mutator runs
	catalogBad       float64       // share of the mutator's changes bad on purpose
	// The bigquery phase (bqphase.go).
	bqRate     int           // events per second offered
	bqDuration time.Duration // how long they are offered
}

// phaseNames are the phases -phases may name, in the order they run.
var phaseNames = []string{"throughput", "latency", "http", "orders", "catalog", "bigquery"}

// defaultPhases run without -phases: all but bigquery, which takes over a
// minute (its slice, the emulator's DDL, the load, the drain, and building
// and running bqwh's benchmark) and needs the emulator.
var defaultPhases = phaseNames[:len(phaseNames)-1]

// parsePhases reads -phases: a comma list of phaseNames.
func parsePhases(s string) (map[string]bool, error) {
	out := map[string]bool{}
	for p := range strings.SplitSeq(s, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		if !slices.Contains(phaseNames, p) {
			return nil, fmt.Errorf("-phases %q: unknown phase %q; phases are %s", s, p, strings.Join(phaseNames, ", "))
		}
		out[p] = true
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("-phases %q: no phase; phases are %s", s, strings.Join(phaseNames, ", "))
	}
	return out, nil
}

// figure is one measured number, named for the comparison table.
type figure struct {
	Name  string  `json:"name"`
	Unit  string  `json:"unit"`
	Value float64 `json:"value"`
	Lower bool    `json:"lower_is_better,omitempty"`
}

func run(ctx context.Context) error {
	var o options
	flag.IntVar(&o.events, "events", 300_000, "events produced in the throughput phase")
	flag.Float64Var(&o.broken, "broken", 0.01, "fraction of broken records")
	flag.IntVar(&o.latRate, "latency-rate", 1000, "events per second in the latency phase")
	flag.DurationVar(&o.latDuration, "latency-duration", 30*time.Second, "length of the latency phase (0 skips it)")
	flag.BoolVar(&o.traceExport, "trace-export", false, "export spans over OTLP to an in-process receiver (adds its cost to this machine)")
	flag.IntVar(&o.maxPoll, "max-poll", 0, "KAFKA_MAX_POLL_RECORDS for the services (0 = their default)")
	flag.IntVar(&o.warmup, "warmup", 50_000, "events pushed through first, not measured (JIT-warms the broker, fills caches)")
	flag.StringVar(&o.profileDir, "profile", "", "write 10 s CPU profiles of each service, taken during the phase -profile-phase names, into this folder")
	flag.IntVar(&o.profPhase, "profile-phase", 1, "with -profile: 1 profiles the throughput phase, 2 the steady-rate phase, 3 the HTTP phase's largest batch, 4 the orders burst, 5 the catalog snapshot")
	flag.StringVar(&o.binDir, "bin-dir", "", "run the service binaries in this folder instead of building this tree's")
	flag.StringVar(&o.jsonOut, "json", "", "also write the figures to this file as JSON")
	flag.StringVar(&o.compare, "compare", "", "compare with this git revision: run the bench alternately on its services and this tree's")
	flag.IntVar(&o.runs, "runs", 3, "with -compare: runs per revision")
	flag.StringVar(&o.phases, "phases", strings.Join(defaultPhases, ","), "phases to run, comma-separated: "+strings.Join(phaseNames, ", "))
	flag.StringVar(&o.httpRuns, "http-runs", "1:20000,50:200000", "HTTP phase: batch size:events per run")
	flag.IntVar(&o.httpClients, "http-clients", 32, "HTTP phase: concurrent keep-alive clients")
	flag.Float64Var(&o.ordersRate, "orders-rate", storefront.DefaultRatePerMinute, "orders phase: the storefront's base rate, orders per minute")
	flag.Float64Var(&o.ordersBurst, "orders-burst", storefront.DefaultBurstFactor, "orders phase: the burst factor; the phase runs at -orders-rate x -orders-burst")
	flag.DurationVar(&o.ordersDuration, "orders-duration", 2*time.Minute, "orders phase: length of the burst")
	flag.IntVar(&o.ordersCount, "orders-count", 0, "orders phase: also end the burst after this many orders (0 = -orders-duration only)")
	flag.DurationVar(&o.ordersPoll, "orders-poll", 15*time.Second, "orders phase: ingest-orders' ORDERS_POLL_INTERVAL (15s is the service's default)")
	flag.BoolVar(&o.ordersWebhooks, "orders-webhooks", true, "orders phase: the storefront's webhooks to ingest-orders (false = poll only)")
	flag.Float64Var(&o.ordersFaults, "orders-fault-rate", 0, "orders phase: the storefront's -fault-rate (its default is 0.02)")
	flag.IntVar(&o.catalogProducts, "catalog-products", 100_000, "catalog phase: products loaded into the slice's schema, all sent by the snapshot")
	flag.IntVar(&o.catalogCustomers, "catalog-customers", 1000, "catalog phase: customers loaded into the slice's schema")
	flag.Float64Var(&o.catalogRate, "catalog-cdc-rate", 20, "catalog phase: the mutator's transactions per second during the CDC run")
	flag.DurationVar(&o.catalogDuration, "catalog-cdc-duration", 30*time.Second, "catalog phase: length of the CDC run")
	flag.Float64Var(&o.catalogBad, "catalog-cdc-bad", 0, "catalog phase: share of the mutator's changes bad on purpose (dead-lettered, not measured)")
	flag.IntVar(&o.bqRate, "bq-rate", 1000, "bigquery phase: events per second offered to the slice whose bq-writer appends to the BigQuery emulator")
	flag.DurationVar(&o.bqDuration, "bq-duration", 20*time.Second, "bigquery phase: how long the rate is offered")
	flag.Parse()
	phases, err := parsePhases(o.phases)
	if err != nil {
		return err
	}
	if _, err := parseHTTPRuns(o.httpRuns); err != nil {
		return err
	}
	if o.httpClients < 1 {
		return fmt.Errorf("-http-clients %d: want at least 1", o.httpClients)
	}
	if err := validateOrders(o); err != nil {
		return err
	}
	if err := validateCatalog(o); err != nil {
		return err
	}
	if err := validateBigQuery(o, phases); err != nil {
		return err
	}
	if o.compare != "" {
		return runCompare(ctx, o, passThrough(flag.CommandLine))
	}

	if phases["bigquery"] { // before the build: say at once that the emulator is missing
		if err := slice.CheckEmulator(ctx, slice.EmulatorFromEnv()); err != nil {
			return err
		}
	}
	prep, err := slice.PrepareWith(ctx, o.binDir)
	if err != nil {
		return err
	}
	otlp := slice.OTLPNone // not the stack's Jaeger either: the figures are without the export's cost
	if o.traceExport {
		sink, err := otlpsink.Start()
		if err != nil {
			return err
		}
		defer sink.Close()
		otlp = sink.URL
	}
	var figs []figure
	if phases["throughput"] || phases["latency"] || phases["http"] {
		cf, err := clickstream(ctx, prep, otlp, o, phases)
		if err != nil {
			return err
		}
		figs = append(figs, cf...)
	}
	if phases["orders"] {
		of, err := ordersPhase(ctx, prep, otlp, o)
		if err != nil {
			return err
		}
		figs = append(figs, of...)
	}
	if phases["catalog"] {
		cf, err := catalogPhase(ctx, prep, otlp, o)
		if err != nil {
			return err
		}
		figs = append(figs, cf...)
	}
	if phases["bigquery"] {
		bf, err := bigqueryPhase(ctx, prep, otlp, o, figs)
		if err != nil {
			return err
		}
		figs = append(figs, bf...)
	}
	if o.jsonOut != "" {
		b, _ := json.MarshalIndent(map[string]any{"figures": figs}, "", "  ")
		return os.WriteFile(o.jsonOut, b, 0o644)
	}
	return nil
}

// serviceEnv is the environment every service of a bench slice gets from the
// flags: -max-poll and, with -profile, pprof.
func serviceEnv(o options, names []string) map[string][]string {
	env := map[string][]string{}
	for _, name := range names {
		if o.maxPoll > 0 {
			env[name] = append(env[name], "KAFKA_MAX_POLL_RECORDS="+strconv.Itoa(o.maxPoll))
		}
		if o.profileDir != "" {
			env[name] = append(env[name], "HTTP_PPROF_ENABLED=true")
		}
	}
	return env
}

// clickstream runs the clickstream phases (throughput, latency, http) on a
// slice of their own, stopped (and its topics dropped) before it returns.
func clickstream(ctx context.Context, prep slice.Env, otlp string, o options, phases map[string]bool) ([]figure, error) {
	root, binDir, eps := prep.Root, prep.BinDir, prep.Stack
	stamp := time.Now().Format("20060102-150405")
	env := serviceEnv(o, svcrun.Services)
	// The collector's per-key rate limit (5,000 events/s by default) would
	// measure itself; the bench measures the collector behind it.
	env["ingest-clickstream"] = append(env["ingest-clickstream"], "COLLECTOR_RATE_LIMIT=10000000", "COLLECTOR_RATE_BURST=10000000")
	prefix := "bench-" + stamp + "."
	sl, err := slice.New(slice.Options{
		BinDir: binDir, RunDir: filepath.Join(root, ".run", "bench", stamp), Brokers: eps.KafkaBrokers,
		Registry: eps.SchemaRegistryURL, OTLP: otlp, Prefix: prefix, QueryToken: "bench-token-0123456789abcdef",
		LogLevel: "warn", Env: env,
	})
	if err != nil {
		return nil, err
	}
	// Stop the services, then drop this run's topics so that repeated runs
	// (-compare) do not pile partitions onto the shared broker.
	defer func() {
		_ = sl.Stop()
		if err := dropRun(eps.KafkaBrokers, prefix); err != nil {
			fmt.Fprintln(os.Stderr, "bench: cleaning up this run's topics:", err)
		}
	}()
	if err := sl.Start(ctx); err != nil {
		return nil, err
	}
	procs, err := watchList(sl, root, eps)
	if err != nil {
		return nil, err
	}
	prod, err := kgo.NewClient(kgo.SeedBrokers(eps.KafkaBrokers...), kgo.ProducerLinger(5*time.Millisecond),
		kgo.ProducerBatchCompression(kgo.Lz4Compression()), kgo.MaxBufferedRecords(100_000))
	if err != nil {
		return nil, err
	}
	defer prod.Close()

	fmt.Printf("\nmachine: %d cores; broker, registry, 3 services and this producer share them; trace export: %v\n", numCPU(), o.traceExport)
	fmt.Printf("measured processes: %s\n", describe(procs.list))
	for _, n := range procs.notes {
		fmt.Println("  not measured:", n)
	}
	fmt.Println()
	if o.warmup > 0 {
		fmt.Printf("warm-up: %d events, not measured\n", o.warmup)
		w := o
		w.events, w.profileDir = o.warmup, ""
		if _, err := push(ctx, sl, prod, w, procs, true); err != nil {
			return nil, err
		}
	}
	idle, err := idleLoad(ctx, procs)
	if err != nil {
		return nil, err
	}
	figs := idle
	if phases["throughput"] {
		more, err := push(ctx, sl, prod, o, procs, false)
		if err != nil {
			return nil, err
		}
		figs = append(figs, more...)
	}
	if phases["latency"] && o.latDuration > 0 {
		lf, err := latency(ctx, sl, prod, o, procs)
		if err != nil {
			return nil, err
		}
		figs = append(figs, lf...)
	}
	if phases["http"] {
		hf, err := httpPhase(ctx, sl, o, procs)
		if err != nil {
			return nil, err
		}
		figs = append(figs, hf...)
	}
	printStages(ctx, sl)
	fmt.Println()
	return figs, nil
}

// idleLoad samples the machine for a second while the slice is idle: what
// other work (the other users of a shared machine) takes from the figures.
func idleLoad(ctx context.Context, procs watchedSet) ([]figure, error) {
	s0, err := readSnapshot(procRoot)
	if err != nil {
		return nil, err
	}
	select {
	case <-time.After(time.Second):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	s1, err := readSnapshot(procRoot)
	if err != nil {
		return nil, err
	}
	c := measure(s0, s1, procs.list, numCPU(), nil)
	fmt.Printf("idle slice, 1 s: machine busy %.2f of %d cores, %.2f of it the measured processes; the rest is other work on this machine\n\n",
		c.machineCores, c.cpus, c.total())
	return []figure{{Name: "idle: machine busy", Unit: "cores", Value: c.machineCores, Lower: true}}, nil
}

// push produces o.events as fast as possible and waits until the valid ones
// are in the warehouse; unless quiet it prints the throughput figures.
func push(ctx context.Context, sl *slice.Slice, prod *kgo.Client, o options, procs watchedSet, quiet bool) ([]figure, error) {
	gen := clickgen.New(clickgen.WithBrokenFraction(o.broken))
	recs := make([]*kgo.Record, 0, o.events)
	valid := 0
	for range o.events {
		r := gen.Next()
		if r.Expect.Valid {
			valid++
		}
		recs = append(recs, &kgo.Record{Topic: sl.Topics.Raw, Key: r.Key, Value: r.Value})
	}
	already, err := sl.QueryInt(ctx, "SELECT count(*) FROM fact_events")
	if err != nil {
		return nil, err
	}
	if !quiet {
		fmt.Printf("phase 1, throughput: %d events (%d valid) produced as fast as possible\n", o.events, valid)
	}
	var snap0 snapshot // the warm-up (quiet) measures nothing
	if !quiet {
		var err error
		if snap0, err = readSnapshot(procRoot); err != nil {
			return nil, err
		}
	}
	if o.profileDir != "" && o.profPhase == 1 {
		go profile(sl, o.profileDir)
	}
	start := time.Now()
	for _, r := range recs {
		prod.Produce(ctx, r, nil)
	}
	if err := prod.Flush(ctx); err != nil {
		return nil, err
	}
	produced := time.Since(start)
	var n int64
	for {
		var err error
		n, err = sl.QueryInt(ctx, "SELECT count(*) FROM fact_events")
		if err != nil {
			return nil, err
		}
		if n >= already+int64(valid) {
			break
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		time.Sleep(200 * time.Millisecond)
	}
	if quiet {
		return nil, nil
	}
	snap1, err := readSnapshot(procRoot)
	if err != nil {
		return nil, err
	}
	_, rows, err := sl.Query(ctx, "SELECT CAST(epoch_us(max(loaded_at)) AS BIGINT) FROM fact_events")
	if err != nil {
		return nil, err
	}
	last := time.UnixMicro(int64(rows[0][0].(float64)))
	elapsed := last.Sub(start)
	n -= already
	fmt.Printf("  produce: %s (%.0f events/s offered)\n", produced.Round(time.Millisecond), float64(o.events)/produced.Seconds())
	fmt.Printf("  end to end: %d events into the warehouse in %s = %.0f events/s (raw records handled: %.0f/s)\n",
		n, elapsed.Round(time.Millisecond), float64(n)/elapsed.Seconds(), float64(o.events)/elapsed.Seconds())
	c := measure(snap0, snap1, procs.list, numCPU(), func(pids []int) int64 { return rssKB(procRoot, pids) })
	c.print(os.Stdout, "phase 1, first produce to the last row counted")
	fmt.Println()
	return []figure{
		{Name: "throughput end to end", Unit: "events/s", Value: float64(n) / elapsed.Seconds()},
		{Name: "produce (offered)", Unit: "events/s", Value: float64(o.events) / produced.Seconds()},
		{Name: "phase 1 cpu total", Unit: "cores", Value: c.total(), Lower: true},
	}, nil
}

func latency(ctx context.Context, sl *slice.Slice, prod *kgo.Client, o options, procs watchedSet) ([]figure, error) {
	fmt.Printf("phase 2, latency: %d events/s for %s, produce -> warehouse write\n", o.latRate, o.latDuration)
	gen := clickgen.New(clickgen.WithBrokenFraction(o.broken))
	stages0 := scrapeStages(ctx, sl)
	snap0, err := readSnapshot(procRoot)
	if err != nil {
		return nil, err
	}
	if o.profileDir != "" && o.profPhase == 2 {
		go profile(sl, o.profileDir)
	}
	from := time.Now()
	sent, valid := 0, 0
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for time.Since(from) < o.latDuration {
		select {
		case <-tick.C:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		want := int(time.Since(from).Seconds() * float64(o.latRate))
		for ; sent < want; sent++ {
			r := gen.Next() // event_timestamp = now, just before the produce
			if r.Expect.Valid {
				valid++
			}
			prod.Produce(ctx, &kgo.Record{Topic: sl.Topics.Raw, Key: r.Key, Value: r.Value}, nil)
		}
	}
	// The steady rate's cost: sampled when producing stops, before the tail
	// drains, so the window holds the steady rate only.
	snap1, err := readSnapshot(procRoot)
	if err != nil {
		return nil, err
	}
	stages1 := scrapeStages(ctx, sl)
	if err := prod.Flush(ctx); err != nil {
		return nil, err
	}
	where := fmt.Sprintf("event_timestamp >= make_timestamp(%d)", from.UnixMicro())
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		n, err := sl.QueryInt(ctx, "SELECT count(*) FROM fact_events WHERE "+where)
		if err != nil {
			return nil, err
		}
		if n >= int64(valid) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	_, rows, err := sl.Query(ctx, `SELECT count(*),
		quantile_cont(epoch_us(loaded_at) - epoch_us(event_timestamp), 0.50) / 1000.0,
		quantile_cont(epoch_us(loaded_at) - epoch_us(event_timestamp), 0.99) / 1000.0,
		max(epoch_us(loaded_at) - epoch_us(event_timestamp)) / 1000.0
		FROM fact_events WHERE `+where)
	if err != nil {
		return nil, err
	}
	r := rows[0]
	fmt.Printf("  %v events: p50 %.1f ms, p99 %.1f ms, max %.1f ms\n", r[0], r[1], r[2], r[3])
	figs := []figure{}
	for i, q := range []string{"p50", "p99", "max"} {
		if v, ok := r[i+1].(float64); ok {
			figs = append(figs, figure{Name: "latency " + q, Unit: "ms", Value: v, Lower: true})
		}
	}
	c := measure(snap0, snap1, procs.list, numCPU(), func(pids []int) int64 { return rssKB(procRoot, pids) })
	c.print(os.Stdout, fmt.Sprintf("phase 2 at %d events/s", o.latRate))
	figs = append(figs, c.figures("phase 2 ")...)
	figs = append(figs, printStageRates("phase 2", sl.Names, stages0, stages1, c.wall)...)
	fmt.Println()
	return figs, nil
}

// printStages prints, per service, its batches (transactions or warehouse
// writes) and their mean size and duration, from its /metrics.
func printStages(ctx context.Context, sl *slice.Slice) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	fmt.Println("  per stage, over every phase run, warm-up included (from /metrics):")
	for _, name := range svcrun.Services {
		s, err := slice.Scrape(ctx, sl.Procs[name].HTTPAddr, "ecom_")
		if err != nil {
			continue
		}
		n := slice.Sum(s, "ecom_batch_records_count", nil)
		recs := slice.Sum(s, "ecom_batch_records_sum", nil)
		dur := slice.Sum(s, "ecom_transaction_duration_seconds_sum", nil)
		line := fmt.Sprintf("    %-19s %6.0f batches, %6.0f records/batch, %6.1f ms/batch", name, n, recs/max(n, 1), 1000*dur/max(n, 1))
		if wn := slice.Sum(s, "ecom_warehouse_write_duration_seconds_count", nil); wn > 0 {
			line += fmt.Sprintf(" (warehouse write %.1f ms)", 1000*slice.Sum(s, "ecom_warehouse_write_duration_seconds_sum", nil)/wn)
		}
		fmt.Println(line)
	}
}

// profile saves a 10 s CPU profile of every service of the slice into dir.
func profile(sl *slice.Slice, dir string) {
	_ = os.MkdirAll(dir, 0o755)
	for _, name := range sl.Names {
		if !slices.Contains(svcrun.Services, name) && !slices.Contains(svcrun.OrderServices, name) && !slices.Contains(svcrun.CatalogServices, name) {
			continue // the storefront is the load, not a service
		}
		go func() {
			resp, err := http.Get("http://" + sl.Procs[name].HTTPAddr + "/debug/pprof/profile?seconds=10")
			if err != nil {
				fmt.Println("  profile", name, err)
				return
			}
			defer resp.Body.Close()
			f, err := os.Create(filepath.Join(dir, name+".pprof"))
			if err != nil {
				return
			}
			defer f.Close()
			_, _ = io.Copy(f, resp.Body)
		}()
	}
}

// procRoot is where the CPU figures come from; tests read fixtures instead.
const procRoot = "/proc"

// watchedSet is every process a phase measures, and what could not be found.
type watchedSet struct {
	list  []watched
	notes []string
}

// watchList is the slice's processes (the three services, and with the
// orders path ingest-orders and the storefront simulator), this process
// (producer and consumer of the figures) and the local stack's processes.
func watchList(sl *slice.Slice, root string, eps stacktest.Endpoints) (watchedSet, error) {
	var ws watchedSet
	for _, name := range sl.Names {
		ws.list = append(ws.list, watched{name: name, pid: sl.Procs[name].Pid(), how: "started by the bench"})
	}
	ws.list = append(ws.list, watched{name: "bench (producer)", pid: os.Getpid(), self: true, how: "this process"})
	s, err := readSnapshot(procRoot)
	if err != nil {
		return ws, err
	}
	runDir := os.Getenv(stackRunDirEnv)
	if runDir == "" {
		runDir = filepath.Join(root, ".run")
	}
	stack, notes := stackProcesses(procRoot, runDir, stackEndpoints(eps), s)
	ws.list = append(ws.list, stack...)
	ws.notes = notes
	return ws, nil
}

// dropRun deletes the topics named with this run's prefix (unique per run,
// so no one else's). Its consumer groups stay until the broker expires them:
// static members never leave, so the broker refuses to delete the groups.
func dropRun(brokers []string, prefix string) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	topics, err := adm.ListTopics(ctx)
	if err != nil {
		return err
	}
	var mine []string
	for _, t := range topics.Names() {
		if strings.HasPrefix(t, prefix) {
			mine = append(mine, t)
		}
	}
	if len(mine) == 0 {
		return nil
	}
	_, err = adm.DeleteTopics(ctx, mine...)
	return err
}
