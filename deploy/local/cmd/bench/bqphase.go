package main

// Phase 6, bigquery: bq-writer on WAREHOUSE=bigquery. (a) The clickstream
// through a slice of its own whose bq-writer appends to the local stack's
// BigQuery emulator (datasets of its own, dropped after), at a fixed offered
// rate for -bq-duration: rows/s and bytes/s appended from bq-writer's
// /metrics (ecom_bigquery_append_rows/bytes, the Storage Write API counters of
// internal/bqwh) over the window, and the end-to-end lag (produce ->
// loaded_at) of every row, read back once the writer is idle. (b) bqwh's own
// benchmark on its in-process fake (go test -bench in services/bq-writer):
// what the backend does without the emulator's cost. Both are printed next to
// the DuckDB throughput phase's figure when that ran too.
//
// The emulator is queried only while nothing appends: bqemulator 1.4.0
// deadlocks when a REST job (a query) and an AppendRows meet on its one DuckDB
// connection (deploy/local/README.md), so the drain is watched on /metrics.

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"cloud.google.com/go/bigquery"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ecomstream/platform/deploy/local/clickgen"
	"github.com/ecomstream/platform/deploy/local/slice"
	"github.com/ecomstream/platform/deploy/local/svcrun"
)

// validateBigQuery checks the bigquery phase's flags. The phase does not run
// under -compare: its fake benchmark builds this tree's bqwh whatever the
// revision (compare that with go test -bench on each revision instead).
func validateBigQuery(o options, phases map[string]bool) error {
	switch {
	case phases["bigquery"] && o.compare != "":
		return fmt.Errorf("-phases bigquery does not run with -compare (its fake benchmark is this tree's); leave bigquery out of -phases")
	case o.bqRate <= 0:
		return fmt.Errorf("-bq-rate %d: want a positive number of events per second", o.bqRate)
	case o.bqDuration <= 0:
		return fmt.Errorf("-bq-duration %s: want a positive duration", o.bqDuration)
	}
	return nil
}

// appendCounters are bq-writer's Storage Write API counters, summed over
// tables: rows, bytes, and the append duration histogram's sum and count.
type appendCounters struct{ rows, bytes, durSum, durCount float64 }

// appendCountersOf sums ecom_bigquery_append_rows_total and
// ecom_bigquery_append_bytes_total over every table (the exporter may add a
// unit suffix to the bytes counter: any name of that family counts once).
func appendCountersOf(s []slice.Series) appendCounters {
	var c appendCounters
	for _, x := range s {
		switch {
		case x.Name == "ecom_bigquery_append_rows_total":
			c.rows += x.Value
		case strings.HasPrefix(x.Name, "ecom_bigquery_append_bytes") && strings.HasSuffix(x.Name, "_total"):
			c.bytes += x.Value
		case x.Name == "ecom_bigquery_append_duration_seconds_sum":
			c.durSum += x.Value
		case x.Name == "ecom_bigquery_append_duration_seconds_count":
			c.durCount += x.Value
		}
	}
	return c
}

// goBench is one result line of `go test -bench`.
type goBench struct {
	Name    string
	N       int
	Metrics map[string]float64 // unit -> value, e.g. "ns/op", "rows/s"
}

// parseGoBench reads `go test -bench` output and returns its result lines
// ("BenchmarkX-2  1  123 ns/op  4.5 rows/s ...").
func parseGoBench(r io.Reader) ([]goBench, error) {
	var out []goBench
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") || len(f)%2 != 0 {
			continue
		}
		n, err := strconv.Atoi(f[1])
		if err != nil {
			continue
		}
		b := goBench{Name: f[0], N: n, Metrics: map[string]float64{}}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				return nil, fmt.Errorf("benchmark line %q: value %q: %w", sc.Text(), f[i], err)
			}
			b.Metrics[f[i+1]] = v
		}
		out = append(out, b)
	}
	return out, sc.Err()
}

// fakeBench runs bqwh's benchmark on its in-process fake and returns its
// rows/s and bytes/s (the units BenchmarkWrite100kEvents reports).
func fakeBench(ctx context.Context, root string) (goBench, error) {
	cmd := exec.CommandContext(ctx, "go", "test", "-run", "^$", "-bench", ".", "-benchtime", "1x", "./internal/bqwh/")
	cmd.Dir = filepath.Join(root, "services", "bq-writer")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return goBench{}, fmt.Errorf("go test -bench ./internal/bqwh/: %w\n%s", err, out)
	}
	bs, err := parseGoBench(strings.NewReader(string(out)))
	if err != nil {
		return goBench{}, err
	}
	for _, b := range bs {
		if _, ok := b.Metrics["rows/s"]; ok {
			return b, nil
		}
	}
	return goBench{}, fmt.Errorf("go test -bench ./internal/bqwh/: no result with rows/s in:\n%s", out)
}

// lagStats are the produce -> loaded_at lags of the rows of the window.
type lagStats struct {
	n             int
	p50, p99, max time.Duration
}

// lagsOf computes lagStats from (event_timestamp, loaded_at) rows, of the
// events stamped at or after from (the window's: a source duplicate re-sends
// an earlier event, with its earlier timestamp).
func lagsOf(rows [][]bigquery.Value, from time.Time) (lagStats, error) {
	ds := make([]time.Duration, 0, len(rows))
	for _, r := range rows {
		if len(r) != 2 {
			return lagStats{}, fmt.Errorf("lag row %v: want 2 columns", r)
		}
		ev, ok1 := r[0].(time.Time)
		loaded, ok2 := r[1].(time.Time)
		if !ok1 || !ok2 {
			return lagStats{}, fmt.Errorf("lag row %v: want two timestamps, got %T and %T", r, r[0], r[1])
		}
		if !ev.Before(from) {
			ds = append(ds, loaded.Sub(ev))
		}
	}
	if len(ds) == 0 {
		return lagStats{}, fmt.Errorf("no rows to measure the lag (a failed query on the emulator looks empty)")
	}
	slices.Sort(ds)
	q := func(p float64) time.Duration { return ds[min(len(ds)-1, int(p*float64(len(ds))))] }
	return lagStats{n: len(ds), p50: q(0.50), p99: q(0.99), max: ds[len(ds)-1]}, nil
}

// bqResult is what the bigquery phase measured.
type bqResult struct {
	offered                 float64       // events per second produced
	rowsPerSec, bytesPerSec float64       // appended to the emulator over the window (bq-writer's /metrics)
	appends                 float64       // AppendRows acknowledged over the window
	appendMean              time.Duration // their mean duration, retries included
	lag                     lagStats
	fake                    goBench // bqwh's benchmark on its fake
}

// figures are the phase's named figures, for -json and -compare.
func (r bqResult) figures() []figure {
	figs := []figure{
		{Name: "bigquery emulator appended", Unit: "rows/s", Value: r.rowsPerSec},
		{Name: "bigquery emulator appended bytes", Unit: "bytes/s", Value: r.bytesPerSec},
		{Name: "bigquery emulator append mean", Unit: "ms", Value: ms(r.appendMean), Lower: true},
		{Name: "bigquery emulator lag p50", Unit: "ms", Value: ms(r.lag.p50), Lower: true},
		{Name: "bigquery emulator lag p99", Unit: "ms", Value: ms(r.lag.p99), Lower: true},
		{Name: "bigquery emulator lag max", Unit: "ms", Value: ms(r.lag.max), Lower: true},
	}
	if v, ok := r.fake.Metrics["rows/s"]; ok {
		figs = append(figs, figure{Name: "bqwh fake appended", Unit: "rows/s", Value: v})
	}
	if v, ok := r.fake.Metrics["bytes/s"]; ok {
		figs = append(figs, figure{Name: "bqwh fake appended bytes", Unit: "bytes/s", Value: v})
	}
	return figs
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// printWarehouses prints the warehouse backends side by side: DuckDB's
// end-to-end throughput (the throughput phase's figure, when it ran), bq-writer
// on the emulator at its offered rate, and bqwh on its fake.
func printWarehouses(w io.Writer, figs []figure, r bqResult) {
	fmt.Fprintln(w, "  warehouse backends side by side:")
	fmt.Fprintf(w, "    %-44s %12s %14s  %s\n", "", "rows/s", "bytes/s", "lag p50 / p99 / max")
	for _, f := range figs {
		if f.Name == "throughput end to end" {
			fmt.Fprintf(w, "    %-44s %12.0f %14s  %s\n", "duckdb (throughput phase, as fast as it goes)", f.Value, "-", "-")
		}
	}
	fmt.Fprintf(w, "    %-44s %12.0f %14.0f  %.0f / %.0f / %.0f ms (%d rows)\n",
		fmt.Sprintf("bigquery emulator (%.0f events/s offered)", r.offered), r.rowsPerSec, r.bytesPerSec,
		ms(r.lag.p50), ms(r.lag.p99), ms(r.lag.max), r.lag.n)
	fmt.Fprintf(w, "    %-44s %12.0f %14.0f  %s\n", "bqwh on its in-process fake ("+r.fake.Name+")",
		r.fake.Metrics["rows/s"], r.fake.Metrics["bytes/s"], "-")
}

// bigqueryPhase runs phase 6; figs are the figures of the phases before it.
func bigqueryPhase(ctx context.Context, prep slice.Env, otlp string, o options, figs []figure) ([]figure, error) {
	root, eps := prep.Root, prep.Stack
	emu := slice.EmulatorFromEnv()
	if err := slice.CheckEmulator(ctx, emu); err != nil {
		return nil, err
	}
	stamp := time.Now().Format("20060102-150405")
	prefix := "bench-bq-" + stamp + "."
	emu.DatasetPrefix = "bench_" + strings.ReplaceAll(stamp, "-", "_")
	sl, err := slice.New(slice.Options{
		BinDir: prep.BinDir, RunDir: filepath.Join(root, ".run", "bench", "bigquery-"+stamp), Brokers: eps.KafkaBrokers,
		Registry: eps.SchemaRegistryURL, OTLP: otlp, Prefix: prefix, QueryToken: "bench-token-0123456789abcdef",
		LogLevel: "warn", Env: serviceEnv(o, svcrun.Services), BigQuery: &emu,
	})
	if err != nil {
		return nil, err
	}
	bq := sl.BigQuery
	defer func() {
		_ = sl.Stop()
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if err := bq.Drop(dctx); err != nil {
			fmt.Fprintln(os.Stderr, "bench: dropping this run's datasets:", err)
		}
		if err := dropRun(eps.KafkaBrokers, prefix); err != nil {
			fmt.Fprintln(os.Stderr, "bench: cleaning up this run's topics:", err)
		}
	}()
	if err := sl.Start(ctx); err != nil {
		return nil, err
	}
	prod, err := kgo.NewClient(kgo.SeedBrokers(eps.KafkaBrokers...), kgo.ProducerLinger(5*time.Millisecond))
	if err != nil {
		return nil, err
	}
	defer prod.Close()
	writer := sl.Procs["bq-writer"].HTTPAddr
	scrape := func() (appendCounters, error) {
		s, err := slice.Scrape(ctx, writer, "ecom_bigquery_")
		return appendCountersOf(s), err
	}

	fmt.Printf("phase 6, bigquery: %d events/s for %s into bq-writer on the BigQuery emulator (datasets %s_*)\n", o.bqRate, o.bqDuration, emu.DatasetPrefix)
	gen := clickgen.New(clickgen.WithBrokenFraction(o.broken))
	c0, err := scrape()
	if err != nil {
		return nil, err
	}
	from := time.Now()
	sent, valid := 0, 0
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for time.Since(from) < o.bqDuration {
		select {
		case <-tick.C:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		for want := int(time.Since(from).Seconds() * float64(o.bqRate)); sent < want; sent++ {
			r := gen.Next()
			if r.Expect.Valid {
				valid++
			}
			prod.Produce(ctx, &kgo.Record{Topic: sl.Topics.Raw, Key: r.Key, Value: r.Value}, nil)
		}
	}
	if err := prod.Flush(ctx); err != nil {
		return nil, err
	}
	wall := time.Since(from)
	// The window's rates: at the end of producing, before the tail drains.
	c1, err := scrape()
	if err != nil {
		return nil, err
	}
	res := bqResult{offered: float64(sent) / wall.Seconds(),
		rowsPerSec: (c1.rows - c0.rows) / wall.Seconds(), bytesPerSec: (c1.bytes - c0.bytes) / wall.Seconds(), appends: c1.durCount - c0.durCount}
	if res.appends > 0 {
		res.appendMean = time.Duration(float64(time.Second) * (c1.durSum - c0.durSum) / res.appends)
	}
	// Drain: every valid event appended (one writer, no restart: exactly once).
	deadline := time.Now().Add(2 * time.Minute)
	for c1.rows-c0.rows < float64(valid) {
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("bigquery phase: %.0f of %d valid events appended after 2 minutes; see %s", c1.rows-c0.rows, valid, sl.Procs["bq-writer"].LogPath)
		}
		time.Sleep(200 * time.Millisecond)
		if c1, err = scrape(); err != nil {
			return nil, err
		}
	}
	drained := time.Since(from)
	if err := sl.Procs["bq-writer"].Stop(30 * time.Second); err != nil { // nothing appends while we query
		return nil, err
	}
	// prod: one row per event, its first copy's loaded_at (as the latency phase reads DuckDB's fact_events).
	rows, err := bq.Query(ctx, "SELECT event_timestamp, loaded_at FROM prod.fact_events")
	if err != nil {
		return nil, err
	}
	if res.lag, err = lagsOf(rows, from.Truncate(time.Microsecond)); err != nil {
		return nil, err
	}
	fmt.Printf("  %d events (%d valid) in %s = %.0f events/s offered; all appended after %s\n", sent, valid, wall.Round(time.Millisecond), res.offered, drained.Round(time.Millisecond))
	fmt.Printf("  appended over the window: %.0f rows/s, %.0f bytes/s (%.0f bytes/row), %.1f appends/s of %.1f ms mean\n",
		res.rowsPerSec, res.bytesPerSec, res.bytesPerSec/max(res.rowsPerSec, 1), res.appends/wall.Seconds(), ms(res.appendMean))
	fmt.Printf("  lag produce -> loaded_at (prod.fact_events): p50 %.0f ms, p99 %.0f ms, max %.0f ms over %d events\n",
		ms(res.lag.p50), ms(res.lag.p99), ms(res.lag.max), res.lag.n)

	fmt.Println("  bqwh's benchmark on its in-process fake (go test -bench ./internal/bqwh/ in services/bq-writer)…")
	if res.fake, err = fakeBench(ctx, root); err != nil {
		return nil, err
	}
	printWarehouses(os.Stdout, figs, res)
	fmt.Println()
	return res.figures(), nil
}
