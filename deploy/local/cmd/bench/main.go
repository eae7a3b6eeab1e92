// Command bench measures the clickstream slice end to end on this machine:
// raw JSON produced to Kafka -> ingest-clickstream -> validator -> bq-writer
// -> DuckDB, each a separate process, against the local stack.
//
// Phase 1 (throughput) produces N events as fast as possible and reports
// events/s from the first produce to the last warehouse commit. Phase 2
// (latency) produces at a steady rate and reports p50/p99/max from produce to
// warehouse write. It prints figures; it asserts nothing.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ecomstream/platform/deploy/local/clickgen"
	"github.com/ecomstream/platform/deploy/local/otlpsink"
	"github.com/ecomstream/platform/deploy/local/slice"
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
	warmup      int
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
	flag.StringVar(&o.profileDir, "profile", "", "write 10 s CPU profiles of each service, taken during phase 1, into this folder")
	flag.Parse()

	prep, err := slice.Prepare(ctx)
	if err != nil {
		return err
	}
	root, binDir, eps := prep.Root, prep.BinDir, prep.Stack
	otlp := ""
	if o.traceExport {
		sink, err := otlpsink.Start()
		if err != nil {
			return err
		}
		defer sink.Close()
		otlp = sink.URL
	}
	stamp := time.Now().Format("20060102-150405")
	var env map[string][]string
	env = map[string][]string{}
	for _, name := range svcrun.Services {
		if o.maxPoll > 0 {
			env[name] = append(env[name], "KAFKA_MAX_POLL_RECORDS="+strconv.Itoa(o.maxPoll))
		}
		if o.profileDir != "" {
			env[name] = append(env[name], "HTTP_PPROF_ENABLED=true")
		}
	}
	sl, err := slice.New(slice.Options{
		BinDir: binDir, RunDir: filepath.Join(root, ".run", "bench", stamp), Brokers: eps.KafkaBrokers,
		Registry: eps.SchemaRegistryURL, OTLP: otlp, Prefix: "bench-" + stamp + ".", QueryToken: "bench-token-0123456789abcdef",
		LogLevel: "warn", Env: env,
	})
	if err != nil {
		return err
	}
	if err := sl.Start(ctx); err != nil {
		_ = sl.Stop()
		return err
	}
	defer sl.Stop()
	prod, err := kgo.NewClient(kgo.SeedBrokers(eps.KafkaBrokers...), kgo.ProducerLinger(5*time.Millisecond),
		kgo.ProducerBatchCompression(kgo.Lz4Compression()), kgo.MaxBufferedRecords(100_000))
	if err != nil {
		return err
	}
	defer prod.Close()

	fmt.Printf("\nmachine: %d cores; broker, registry, 3 services and this producer share them; trace export: %v\n\n", cpus(), o.traceExport)
	if o.warmup > 0 {
		fmt.Printf("warm-up: %d events, not measured\n", o.warmup)
		w := o
		w.events, w.profileDir = o.warmup, ""
		if err := push(ctx, sl, prod, w, true); err != nil {
			return err
		}
	}
	if err := push(ctx, sl, prod, o, false); err != nil {
		return err
	}
	if o.latDuration > 0 {
		if err := latency(ctx, sl, prod, o); err != nil {
			return err
		}
	}
	return nil
}

// push produces o.events as fast as possible and waits until the valid ones
// are in the warehouse; unless quiet it prints the throughput figures.
func push(ctx context.Context, sl *slice.Slice, prod *kgo.Client, o options, quiet bool) error {
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
		return err
	}
	if !quiet {
		fmt.Printf("phase 1, throughput: %d events (%d valid) produced as fast as possible\n", o.events, valid)
	}
	cpu0 := cpuTimes(sl)
	if o.profileDir != "" {
		go profile(sl, o.profileDir)
	}
	start := time.Now()
	for _, r := range recs {
		prod.Produce(ctx, r, nil)
	}
	if err := prod.Flush(ctx); err != nil {
		return err
	}
	produced := time.Since(start)
	var n int64
	for {
		var err error
		n, err = sl.QueryInt(ctx, "SELECT count(*) FROM fact_events")
		if err != nil {
			return err
		}
		if n >= already+int64(valid) {
			break
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		time.Sleep(200 * time.Millisecond)
	}
	_, rows, err := sl.Query(ctx, "SELECT CAST(epoch_us(max(loaded_at)) AS BIGINT) FROM fact_events")
	if err != nil {
		return err
	}
	last := time.UnixMicro(int64(rows[0][0].(float64)))
	elapsed := last.Sub(start)
	n -= already
	if quiet {
		return nil
	}
	cpu1 := cpuTimes(sl)
	fmt.Printf("  produce: %s (%.0f events/s offered)\n", produced.Round(time.Millisecond), float64(o.events)/produced.Seconds())
	fmt.Printf("  end to end: %d events into the warehouse in %s = %.0f events/s (raw records handled: %.0f/s)\n",
		n, elapsed.Round(time.Millisecond), float64(n)/elapsed.Seconds(), float64(o.events)/elapsed.Seconds())
	for _, name := range svcrun.Services {
		used := cpu1[name] - cpu0[name]
		fmt.Printf("  %-19s cpu %5.1f s (%3.0f%% of one core), rss %s\n", name, used, 100*used/elapsed.Seconds(), rss(sl.Procs[name]))
	}
	fmt.Println()
	return nil
}

func latency(ctx context.Context, sl *slice.Slice, prod *kgo.Client, o options) error {
	fmt.Printf("phase 2, latency: %d events/s for %s, produce -> warehouse write\n", o.latRate, o.latDuration)
	gen := clickgen.New(clickgen.WithBrokenFraction(o.broken))
	from := time.Now()
	sent, valid := 0, 0
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for time.Since(from) < o.latDuration {
		<-tick.C
		want := int(time.Since(from).Seconds() * float64(o.latRate))
		for ; sent < want; sent++ {
			r := gen.Next() // event_timestamp = now, just before the produce
			if r.Expect.Valid {
				valid++
			}
			prod.Produce(ctx, &kgo.Record{Topic: sl.Topics.Raw, Key: r.Key, Value: r.Value}, nil)
		}
	}
	if err := prod.Flush(ctx); err != nil {
		return err
	}
	where := fmt.Sprintf("event_timestamp >= make_timestamp(%d)", from.UnixMicro())
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		n, err := sl.QueryInt(ctx, "SELECT count(*) FROM fact_events WHERE "+where)
		if err != nil {
			return err
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
		return err
	}
	r := rows[0]
	fmt.Printf("  %v events: p50 %.1f ms, p99 %.1f ms, max %.1f ms\n", r[0], r[1], r[2], r[3])
	printStages(ctx, sl)
	return nil
}

// printStages prints, per service, its batches (transactions or warehouse
// writes) and their mean size and duration, from its /metrics.
func printStages(ctx context.Context, sl *slice.Slice) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	fmt.Println("  per stage, over both phases (from /metrics):")
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

// profile saves a 10 s CPU profile of every service into dir.
func profile(sl *slice.Slice, dir string) {
	_ = os.MkdirAll(dir, 0o755)
	for _, name := range svcrun.Services {
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

// cpuTimes returns each service's user+system CPU seconds from /proc.
func cpuTimes(sl *slice.Slice) map[string]float64 {
	out := map[string]float64{}
	for name, p := range sl.Procs {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.Pid()))
		if err != nil {
			continue
		}
		// Fields after the command name (which may contain spaces).
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
		if len(f) > 12 {
			u, _ := strconv.ParseFloat(f[11], 64)
			s, _ := strconv.ParseFloat(f[12], 64)
			out[name] = (u + s) / 100 // USER_HZ
		}
	}
	return out
}

func rss(p *svcrun.Process) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.Pid()))
	if err != nil {
		return "?"
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmHWM:") {
			return strings.Join(strings.Fields(l)[1:], " ") + " peak"
		}
	}
	return "?"
}

func cpus() int {
	b, _ := os.ReadFile("/proc/cpuinfo")
	return max(strings.Count(string(b), "processor\t:"), 1)
}
