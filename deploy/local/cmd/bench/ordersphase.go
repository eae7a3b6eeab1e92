package main

// Phase 4, orders: the orders path end to end at a sale-day burst. A slice of
// its own (the storefront simulator, ingest-orders, the validator and
// bq-writer as processes) runs the simulator at its base rate, turns the burst
// on for -orders-duration (or -orders-count orders), turns it off and waits
// until the warehouse holds the latest valid version of every order made so
// far. Rates come from the simulator's stats (made), ingest-orders' /metrics
// (produced, by source) and bq-writer's /metrics (landed), each over the burst
// window; latency from the warehouse itself: fact_orders is sampled every
// second for the rows loaded since the last sample, each row giving one order
// version's updated_at (shop time, which at speed 1 is wall time), the
// received_at of the delivery that won (api or webhook: the first one in; the
// same version again is a duplicate and leaves the row alone) and its
// loaded_at.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/ecomstream/platform/deploy/local/slice"
	"github.com/ecomstream/platform/deploy/local/storefront"
	"github.com/ecomstream/platform/deploy/local/svcrun"
)

// validateOrders checks the orders phase's flags.
func validateOrders(o options) error {
	switch {
	case !(o.ordersRate > 0):
		return fmt.Errorf("-orders-rate %g: want a positive number of orders per minute", o.ordersRate)
	case !(o.ordersBurst >= 1):
		return fmt.Errorf("-orders-burst %g: want at least 1", o.ordersBurst)
	case o.ordersDuration <= 0:
		return fmt.Errorf("-orders-duration %s: want a positive duration", o.ordersDuration)
	case o.ordersCount < 0:
		return fmt.Errorf("-orders-count %d: want 0 (no cap) or more", o.ordersCount)
	case o.ordersPoll <= 0:
		return fmt.Errorf("-orders-poll %s: want a positive duration", o.ordersPoll)
	case !(o.ordersFaults >= 0 && o.ordersFaults <= 1):
		return fmt.Errorf("-orders-fault-rate %g: want a fraction in [0, 1]", o.ordersFaults)
	}
	return nil
}

// ordersMissing says why the binaries in binDir cannot run the orders path
// ("" when they can): a revision before ingest-orders has none, and one whose
// validator or bq-writer does not read ORDERS_INPUT_TOPIC (the variable's
// name is in the binary, as a struct tag) has no orders in its pipeline.
func ordersMissing(binDir string) (string, error) {
	if _, err := os.Stat(filepath.Join(binDir, "ingest-orders")); errors.Is(err, os.ErrNotExist) {
		return fmt.Sprintf("%s has no ingest-orders (a revision before the orders path)", binDir), nil
	} else if err != nil {
		return "", err
	}
	for _, name := range []string{"validator", "bq-writer"} {
		b, err := os.ReadFile(filepath.Join(binDir, name))
		if err != nil {
			return "", err
		}
		if !bytes.Contains(b, []byte("ORDERS_INPUT_TOPIC")) {
			return fmt.Sprintf("%s does not read orders (it does not know ORDERS_INPUT_TOPIC)", filepath.Join(binDir, name)), nil
		}
	}
	if _, err := os.Stat(filepath.Join(binDir, "storefront")); err != nil {
		return "", fmt.Errorf("the storefront simulator: %w", err)
	}
	return "", nil
}

// versionKey is one order version.
type versionKey struct {
	id      string
	version int
}

// madeVersion is one line of the simulator's version log.
type madeVersion struct {
	versionKey
	updated time.Time
	broken  bool // the validator dead-letters it: it never lands
	late    bool // updated_at stamped in the past: its latency is not measured
}

// parseVersion reads one line of the version log (a storefront.Version).
func parseVersion(line []byte) (madeVersion, error) {
	var v storefront.Version
	if err := json.Unmarshal(line, &v); err != nil {
		return madeVersion{}, fmt.Errorf("version log line %q: %w", truncate(line), err)
	}
	if v.Order.ID == "" || v.Order.Version < 1 || v.Order.UpdatedAt.IsZero() {
		return madeVersion{}, fmt.Errorf("version log line %q: no order id, version or updated_at", truncate(line))
	}
	return madeVersion{versionKey: versionKey{v.Order.ID, v.Order.Version}, updated: v.Order.UpdatedAt, broken: v.Broken != "", late: v.Late}, nil
}

// latestValid is, per order, the highest version the warehouse must end up
// with: the highest valid one (broken versions are dead-lettered). Orders
// without a valid version are left out.
func latestValid(made []madeVersion) map[string]int {
	out := map[string]int{}
	for _, v := range made {
		if !v.broken && v.version > out[v.id] {
			out[v.id] = v.version
		}
	}
	return out
}

// landedVersion is one order version as a sample of fact_orders saw it.
type landedVersion struct {
	source                    string
	updated, received, loaded time.Time // received is zero when NULL (v1 data)
}

// landedSet is every order version the samples of fact_orders have seen.
// A version replaced by a newer one between two samples is never seen; its
// successor is.
type landedSet struct {
	versions map[versionKey]landedVersion
	latest   map[string]int // highest version seen per order
	maxLoad  int64          // newest loaded_at seen, epoch µs
}

func newLandedSet() *landedSet {
	return &landedSet{versions: map[versionKey]landedVersion{}, latest: map[string]int{}}
}

// sampleOverlap is how far before the newest loaded_at seen the next sample
// starts: bq-writer stamps a batch before it commits, so a batch committed
// just after a sample may carry an older stamp than the sample's newest.
const sampleOverlap = 5 * time.Second

// sampleSQL reads the rows loaded since the last sample, overlap included.
func (l *landedSet) sampleSQL() string {
	return fmt.Sprintf(`SELECT order_id, order_version, source, CAST(epoch_us(updated_at) AS BIGINT),
		CAST(epoch_us(received_at) AS BIGINT), CAST(epoch_us(loaded_at) AS BIGINT)
		FROM fact_orders WHERE epoch_us(loaded_at) >= %d`, l.maxLoad-sampleOverlap.Microseconds())
}

// add merges the rows of a sampleSQL answer; a version already seen keeps
// its first sight.
func (l *landedSet) add(rows [][]any) error {
	for i, r := range rows {
		if len(r) != 6 {
			return fmt.Errorf("fact_orders sample row %d: %d values, want 6", i, len(r))
		}
		id, ok1 := r[0].(string)
		src, ok2 := r[2].(string)
		ver, ok3 := micros(r[1])
		upd, ok4 := micros(r[3])
		load, ok5 := micros(r[5])
		if !ok1 || !ok2 || !ok3 || !ok4 || !ok5 {
			return fmt.Errorf("fact_orders sample row %d: %v: want id, version, source, updated_at, received_at, loaded_at", i, r)
		}
		k := versionKey{id, int(ver)}
		l.maxLoad = max(l.maxLoad, load)
		if _, seen := l.versions[k]; seen {
			continue
		}
		lv := landedVersion{source: src, updated: time.UnixMicro(upd), loaded: time.UnixMicro(load)}
		if rec, ok := micros(r[4]); ok {
			lv.received = time.UnixMicro(rec)
		}
		l.versions[k] = lv
		l.latest[id] = max(l.latest[id], k.version)
	}
	return nil
}

// micros reads a JSON number of the query endpoint (float64; the parser
// may also give int64 or json.Number); NULL is not ok.
func micros(v any) (int64, bool) {
	switch x := v.(type) {
	case float64:
		return int64(x), true
	case int64:
		return x, true
	case json.Number:
		n, err := x.Int64()
		return n, err == nil
	}
	return 0, false
}

// catchUp counts the orders whose expected version the warehouse does not
// hold yet and, when there are none, when the last of them landed: per order
// the first version seen at or above the expected one.
func (l *landedSet) catchUp(expected map[string]int) (missing int, at time.Time) {
	for id, want := range expected {
		got := l.latest[id]
		if got < want {
			missing++
			continue
		}
		for v := want; v <= got; v++ {
			if lv, ok := l.versions[versionKey{id, v}]; ok {
				if lv.loaded.After(at) {
					at = lv.loaded
				}
				break
			}
		}
	}
	if missing > 0 {
		return missing, time.Time{}
	}
	return 0, at
}

// latencies is one population of order versions' latencies, sorted.
type latencies struct {
	total    []time.Duration // updated_at -> loaded_at
	ingest   []time.Duration // updated_at -> received_at: the webhook's delivery, or the wait for a poll
	pipeline []time.Duration // received_at -> loaded_at: Kafka, validator, bq-writer
}

// orderLatencies are the latencies of the versions made (valid, not stamped
// late) that a sample saw land, all together ("all") and by the source that
// won ("api", "webhook", ...).
func orderLatencies(made []madeVersion, landed map[versionKey]landedVersion) map[string]*latencies {
	out := map[string]*latencies{"all": {}}
	for _, v := range made {
		lv, ok := landed[v.versionKey]
		if !ok || v.broken || v.late {
			continue
		}
		for _, k := range []string{"all", lv.source} {
			if out[k] == nil {
				out[k] = &latencies{}
			}
			l := out[k]
			l.total = append(l.total, lv.loaded.Sub(v.updated))
			if !lv.received.IsZero() {
				l.ingest = append(l.ingest, lv.received.Sub(v.updated))
				l.pipeline = append(l.pipeline, lv.loaded.Sub(lv.received))
			}
		}
	}
	for _, l := range out {
		slices.Sort(l.total)
		slices.Sort(l.ingest)
		slices.Sort(l.pipeline)
	}
	return out
}

// orderCounters are the cumulative counters of the orders path's /metrics.
type orderCounters struct {
	produced     map[string]float64 // ingest-orders: versions produced by source (api, webhook)
	lag          float64            // ingest-orders: cursor lag, seconds of shop time
	rows         map[string]float64 // bq-writer: fact_orders rows by result (inserted, replaced, duplicate, stale)
	deadLettered float64            // validator: order versions dead-lettered
}

func orderCountersOf(ingest, validator, writer []slice.Series, ordersTopic string) orderCounters {
	c := orderCounters{produced: map[string]float64{}, rows: map[string]float64{}}
	for _, s := range ingest {
		switch s.Name {
		case "ecom_orders_produced_total":
			c.produced[s.Labels["source"]] += s.Value
		case "ecom_orders_cursor_lag_seconds":
			c.lag = s.Value
		}
	}
	for _, s := range writer {
		if s.Name == "ecom_warehouse_rows_total" && s.Labels["table"] == "fact_orders" {
			c.rows[s.Labels["result"]] += s.Value
		}
	}
	c.deadLettered = slice.Sum(validator, "ecom_records_processed_total", map[string]string{"topic": ordersTopic, "outcome": "dead_lettered"})
	return c
}

func scrapeOrders(ctx context.Context, sl *slice.Slice) (orderCounters, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var got [3][]slice.Series
	for i, name := range []string{"ingest-orders", "validator", "bq-writer"} {
		s, err := slice.Scrape(ctx, sl.Procs[name].HTTPAddr, "ecom_")
		if err != nil {
			return orderCounters{}, fmt.Errorf("%s /metrics: %w", name, err)
		}
		got[i] = s
	}
	return orderCountersOf(got[0], got[1], got[2], sl.Topics.Orders), nil
}

// ordersPhase runs phase 4 on a slice of its own and returns its figures.
func ordersPhase(ctx context.Context, prep slice.Env, otlp string, o options) ([]figure, error) {
	why, err := ordersMissing(prep.BinDir)
	if err != nil {
		return nil, err
	}
	if why != "" { // a revision before the orders path (-compare's base, say)
		fmt.Printf("phase 4, orders: skipped, %s\n\n", why)
		return nil, nil
	}
	root, eps := prep.Root, prep.Stack
	stamp := time.Now().Format("20060102-150405")
	prefix := "bench-orders-" + stamp + "."
	g := func(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }
	sl, err := slice.New(slice.Options{
		BinDir: prep.BinDir, RunDir: filepath.Join(root, ".run", "bench", "orders-"+stamp), Brokers: eps.KafkaBrokers,
		Registry: eps.SchemaRegistryURL, OTLP: otlp, Prefix: prefix, QueryToken: "bench-token-0123456789abcdef",
		LogLevel: "warn", Env: serviceEnv(o, append(slices.Clone(svcrun.OrderServices), svcrun.Services...)),
		Orders: &slice.OrdersOptions{
			Speed: 1, NoWebhooks: !o.ordersWebhooks, PollInterval: o.ordersPoll,
			Args: []string{"-rate=" + g(o.ordersRate), "-burst-factor=" + g(o.ordersBurst), "-fault-rate=" + g(o.ordersFaults), "-broken=" + g(o.broken)},
		},
	})
	if err != nil {
		return nil, err
	}
	defer func() {
		_ = sl.Stop()
		if err := dropRun(eps.KafkaBrokers, prefix); err != nil {
			fmt.Fprintln(os.Stderr, "bench: cleaning up the orders run's topics:", err)
		}
	}()
	if err := sl.Start(ctx); err != nil {
		return nil, err
	}
	procs, err := watchList(sl, root, eps)
	if err != nil {
		return nil, err
	}
	perMin := o.ordersRate * o.ordersBurst
	hooks := "on (16 concurrent deliveries, 2% sent twice, 5% held back 2 s)"
	if !o.ordersWebhooks {
		hooks = "off (poll only)"
	}
	faults := "off"
	if o.ordersFaults > 0 {
		faults = g(o.ordersFaults) + " of the list requests"
	}
	end := o.ordersDuration.String()
	if o.ordersCount > 0 {
		end = fmt.Sprintf("%d orders or %s, whichever comes first", o.ordersCount, o.ordersDuration)
	}
	fmt.Printf("phase 4, orders: the storefront at %g orders/min x %g burst = %g orders/min (%.1f/s) for %s, speed 1 (shop time = wall time)\n",
		o.ordersRate, o.ordersBurst, perMin, perMin/60, end)
	fmt.Printf("  webhooks %s; API faults %s; broken orders %g; ingest-orders polls every %s (its default: 15s)\n", hooks, faults, o.broken, o.ordersPoll)
	fmt.Printf("  measured processes: %s\n", describe(procs.list))

	var st0, st1 storefront.Stats
	if err := sl.StorefrontDo(ctx, http.MethodGet, "/v1/admin/stats", nil, &st0); err != nil {
		return nil, err
	}
	m0, err := scrapeOrders(ctx, sl)
	if err != nil {
		return nil, err
	}
	stages0 := scrapeStages(ctx, sl)
	snap0, err := readSnapshot(procRoot)
	if err != nil {
		return nil, err
	}
	if o.profileDir != "" && o.profPhase == 4 {
		go profile(sl, o.profileDir)
	}
	if err := sl.StorefrontDo(ctx, http.MethodPost, "/v1/admin/burst", map[string]bool{"on": true}, nil); err != nil {
		return nil, err
	}
	t0 := time.Now()
	landed := newLandedSet()
	sample := func() error {
		_, rows, err := sl.Query(ctx, landed.sampleSQL())
		if err != nil {
			return err
		}
		return landed.add(rows)
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for time.Since(t0) < o.ordersDuration {
		select {
		case <-tick.C:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if err := sample(); err != nil {
			return nil, err
		}
		if o.ordersCount > 0 {
			var st storefront.Stats
			if err := sl.StorefrontDo(ctx, http.MethodGet, "/v1/admin/stats", nil, &st); err != nil {
				return nil, err
			}
			if st.Orders-st0.Orders >= o.ordersCount {
				break
			}
		}
	}
	if err := sl.StorefrontDo(ctx, http.MethodPost, "/v1/admin/burst", map[string]bool{"on": false}, nil); err != nil {
		return nil, err
	}
	t1 := time.Now()
	// The burst's cost and rates: sampled when it ends, before the tail drains.
	snap1, err := readSnapshot(procRoot)
	if err != nil {
		return nil, err
	}
	stages1 := scrapeStages(ctx, sl)
	m1, err := scrapeOrders(ctx, sl)
	if err != nil {
		return nil, err
	}
	if err := sl.StorefrontDo(ctx, http.MethodGet, "/v1/admin/stats", nil, &st1); err != nil {
		return nil, err
	}

	// Every version made up to the burst's end, from the simulator's log.
	var made []madeVersion
	err = sl.StorefrontVersions(func(line []byte) error {
		if len(made) == st1.Versions {
			return nil
		}
		v, err := parseVersion(line)
		if err != nil {
			return err
		}
		made = append(made, v)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(made) < st1.Versions {
		return nil, fmt.Errorf("the version log %s has %d lines, the simulator made %d versions", sl.Storefront.VersionsFile, len(made), st1.Versions)
	}
	burst := made[min(st0.Versions, len(made)):]
	expected := latestValid(made)

	// Until the warehouse holds the latest valid version of every order made
	// by the burst's end; one that makes no progress for two poll intervals
	// and a minute failed.
	stall := 2*o.ordersPoll + time.Minute
	best, progressed := -1, time.Now()
	var caught time.Time
	for {
		if err := sample(); err != nil {
			return nil, err
		}
		missing, at := landed.catchUp(expected)
		if missing == 0 {
			caught = at
			break
		}
		if best < 0 || missing < best {
			best, progressed = missing, time.Now()
		}
		if time.Since(progressed) > stall {
			return nil, fmt.Errorf("the warehouse lacks the latest version of %d of the %d orders made, and no more arrived for %s; logs in %s",
				missing, len(expected), stall.Round(time.Second), sl.Opts.RunDir)
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	m2, err := scrapeOrders(ctx, sl)
	if err != nil {
		return nil, err
	}

	wall := t1.Sub(t0).Seconds()
	rate := func(a, b float64) float64 { return (b - a) / wall }
	ordersMade, versionsMade := float64(st1.Orders-st0.Orders)/wall, float64(st1.Versions-st0.Versions)/wall
	api, hook := rate(m0.produced["api"], m1.produced["api"]), rate(m0.produced["webhook"], m1.produced["webhook"])
	ordersLanded := rate(m0.rows["inserted"], m1.rows["inserted"])
	versionsLanded := rate(m0.rows["inserted"]+m0.rows["replaced"], m1.rows["inserted"]+m1.rows["replaced"])
	drain := max(caught.Sub(t1).Seconds(), 0)

	// End to end: the burst's new orders, first burst start to the last one's first landing.
	firstLoad := map[string]time.Time{}
	for k, lv := range landed.versions {
		if f, ok := firstLoad[k.id]; !ok || lv.loaded.Before(f) {
			firstLoad[k.id] = lv.loaded
		}
	}
	var newOrders int
	var lastNew time.Time
	for _, v := range burst {
		if v.version != 1 {
			continue
		}
		if f, ok := firstLoad[v.id]; ok {
			newOrders++
			if f.After(lastNew) {
				lastNew = f
			}
		}
	}
	e2e := 0.0
	if newOrders > 0 {
		e2e = float64(newOrders) / lastNew.Sub(t0).Seconds()
	}

	fmt.Printf("  burst of %.1f s: the simulator made %d orders (%.1f/s) and %d versions (%.1f/s)\n",
		wall, st1.Orders-st0.Orders, ordersMade, st1.Versions-st0.Versions, versionsMade)
	fmt.Printf("  ingest-orders produced %.1f versions/s: %.1f/s by webhook, %.1f/s by poll (api)\n", api+hook, hook, api)
	fmt.Printf("  fact_orders, during the burst: %.1f orders/s new, %.1f versions/s written (new orders and newer versions; from bq-writer's /metrics)\n",
		ordersLanded, versionsLanded)
	fmt.Printf("  end to end: %d of the burst's orders in the warehouse, burst start to the last one's load in %.1f s = %.1f orders/s\n",
		newOrders, lastNew.Sub(t0).Seconds(), e2e)
	fmt.Printf("  drain: every order's latest valid version made by the burst's end was in the warehouse %.1f s after it ended (%d orders)\n", drain, len(expected))
	rows := func(m orderCounters, r string) float64 { return m.rows[r] - m0.rows[r] }
	fmt.Printf("  repeats dropped by bq-writer (burst and drain): %.0f the same version again, %.0f older versions; validator dead-lettered %.0f versions (broken orders)\n",
		rows(m2, "duplicate"), rows(m2, "stale"), m2.deadLettered-m0.deadLettered)
	fmt.Printf("  cursor lag (shop time): %.1f s at the burst's end, %.1f s after the drain\n", m1.lag, m2.lag)

	figs := []figure{
		{Name: "orders made", Unit: "orders/s", Value: ordersMade},
		{Name: "orders versions made", Unit: "1/s", Value: versionsMade},
		{Name: "orders produced webhook", Unit: "1/s", Value: hook},
		{Name: "orders produced api", Unit: "1/s", Value: api},
		{Name: "orders landed", Unit: "orders/s", Value: ordersLanded},
		{Name: "orders versions landed", Unit: "1/s", Value: versionsLanded},
		{Name: "orders end to end", Unit: "orders/s", Value: e2e},
		{Name: "orders drain", Unit: "s", Value: drain, Lower: true},
		{Name: "orders cursor lag", Unit: "s", Value: m1.lag, Lower: true},
	}
	figs = append(figs, printOrderLatencies(burst, landed)...)
	if o.ordersFaults > 0 {
		var fs storefront.FaultStatus
		if err := sl.StorefrontDo(ctx, http.MethodGet, "/v1/admin/faults", nil, &fs); err == nil {
			fmt.Printf("  API faults served: %v\n", fs.Served)
		}
	}
	c := measure(snap0, snap1, procs.list, numCPU(), func(pids []int) int64 { return rssKB(procRoot, pids) })
	c.print(os.Stdout, fmt.Sprintf("phase 4, the burst at %g orders/min", perMin))
	figs = append(figs, c.figures("orders ")...)
	figs = append(figs, printStageRates("orders", sl.Names, stages0, stages1, c.wall)...)
	fmt.Println()
	return figs, nil
}

// printOrderLatencies prints the burst's latencies, all and by winning
// source, split at received_at, and returns the figures.
func printOrderLatencies(burst []madeVersion, landed *landedSet) []figure {
	lat := orderLatencies(burst, landed.versions)
	valid := 0
	for _, v := range burst {
		if !v.broken && !v.late {
			valid++
		}
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	all := lat["all"]
	fmt.Printf("  latency, updated_at -> loaded_at, of %d of the burst's %d valid versions not stamped late (the others were replaced within a 1 s sample):\n",
		len(all.total), valid)
	var figs []figure
	for _, src := range []string{"all", "webhook", "api"} {
		l := lat[src]
		if l == nil || len(l.total) == 0 {
			fmt.Printf("    %-8s none landed first by this source\n", src)
			continue
		}
		p50, p99, pmax := ms(percentile(l.total, 0.5)), ms(percentile(l.total, 0.99)), ms(percentile(l.total, 1))
		fmt.Printf("    %-8s %6d (%3.0f%%)  p50 %7.0f ms, p99 %7.0f ms, max %7.0f ms; to received_at p50 %6.0f / p99 %6.0f ms, then to the warehouse p50 %5.0f / p99 %5.0f ms\n",
			src, len(l.total), 100*float64(len(l.total))/float64(max(len(all.total), 1)), p50, p99, pmax,
			ms(percentile(l.ingest, 0.5)), ms(percentile(l.ingest, 0.99)), ms(percentile(l.pipeline, 0.5)), ms(percentile(l.pipeline, 0.99)))
		pre := "orders latency "
		if src != "all" {
			pre += src + " "
		}
		figs = append(figs, figure{Name: pre + "p50", Unit: "ms", Value: p50, Lower: true}, figure{Name: pre + "p99", Unit: "ms", Value: p99, Lower: true})
		if src == "all" {
			figs = append(figs, figure{Name: pre + "max", Unit: "ms", Value: pmax, Lower: true})
		}
	}
	return figs
}
