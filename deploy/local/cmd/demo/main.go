// Command demo runs the platform locally: it builds the services, starts them
// as separate processes against the local stack (make demo starts the stack
// first), feeds them realistic clickstream traffic with ~1% broken records,
// serves a small storefront whose tracking snippet sends the visitor's own
// clicks to the HTTP collector, and prints where to look and what happened.
// Ctrl-C stops everything.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ecomstream/platform/deploy/local/clickgen"
	"github.com/ecomstream/platform/deploy/local/otlpsink"
	"github.com/ecomstream/platform/deploy/local/slice"
	"github.com/ecomstream/platform/deploy/local/stacktest"
	"github.com/ecomstream/platform/deploy/local/svcrun"
	"github.com/ecomstream/platform/deploy/local/webdemo"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	rate := flag.Int("rate", 1000, "clickstream events per second")
	broken := flag.Float64("broken", 0.01, "fraction of deliberately broken records")
	keepStack := flag.Bool("keep-stack", false, "leave Kafka, PostgreSQL and the registry running on exit")
	every := flag.Duration("report", 10*time.Second, "how often to print progress")
	shopAddr := flag.String("shop", webdemo.DefaultAddr, "listen address of the demo shop (its origin is allowed by the collector)")
	collectorAddr := flag.String("collector", "127.0.0.1:8090", "listen address of ingest-clickstream's HTTP collector")
	flag.Parse()

	// Taken first, so a busy port fails before anything starts.
	shopLn, collectorLn, err := takePorts(*shopAddr, *collectorAddr)
	if err != nil {
		return err
	}
	defer shopLn.Close()
	defer collectorLn.Close()
	origins := shopOrigins(shopLn.Addr())
	collectorURL := "http://" + browserAddr(collectorLn.Addr())

	env, err := slice.Prepare(ctx)
	if err != nil {
		return err
	}
	root, binDir, eps := env.Root, env.BinDir, env.Stack
	// Traces go to OTEL_EXPORTER_OTLP_ENDPOINT (e.g. a Jaeger) when set;
	// otherwise to an in-process receiver so the demo can show them.
	otlp := os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT")
	var sink *otlpsink.Sink
	if otlp == "" {
		if sink, err = otlpsink.Start(); err != nil {
			return err
		}
		defer sink.Close()
		otlp = sink.URL
	}
	token := randomToken()
	runDir := filepath.Join(root, ".run", "demo")
	sl, err := slice.New(slice.Options{
		BinDir: binDir, RunDir: runDir, Brokers: eps.KafkaBrokers, Registry: eps.SchemaRegistryURL,
		OTLP: otlp, QueryToken: token,
		Addrs:         map[string]string{"ingest-clickstream": "127.0.0.1:8081", "validator": "127.0.0.1:8084", "bq-writer": "127.0.0.1:8086"},
		CollectorAddr: collectorLn.Addr().String(), CollectorOrigins: origins,
	})
	if err != nil {
		return err
	}
	fmt.Println("starting ingest-clickstream, validator and bq-writer…")
	collectorLn.Close() // held until now; ingest-clickstream listens there next
	if err := sl.Start(ctx); err != nil {
		_ = sl.Stop()
		return err
	}
	defer func() {
		fmt.Println("\nstopping services…")
		if err := sl.Stop(); err != nil {
			fmt.Println("  ", err)
		}
		if !*keepStack {
			fmt.Println("stopping the local stack…")
			cmd := exec.Command(filepath.Join(root, "deploy/local/stack.sh"), "down")
			cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
			_ = cmd.Run()
		}
	}()
	shop, err := webdemo.New(webdemo.Config{CollectorURL: collectorURL, WriteKey: sl.WriteKey})
	if err != nil {
		return err
	}
	shopCtx, stopShop := context.WithCancel(ctx)
	shopDone := make(chan error, 1)
	go func() { shopDone <- shop.Serve(shopCtx, shopLn) }()
	defer func() {
		stopShop()
		if err := <-shopDone; err != nil {
			fmt.Println("  demo shop:", err)
		}
	}()
	printWhereToLook(sl, eps, token, runDir, origins[0], collectorURL+"/v1/events")
	// The warehouse file outlives a demo run; count this run's rows apart.
	qctx, qcancel := context.WithTimeout(ctx, 5*time.Second)
	var before counts
	before.rows, _ = sl.QueryInt(qctx, "SELECT count(*) FROM fact_events")
	before.shop, _ = sl.QueryInt(qctx, shopCount)
	qcancel()

	prod, err := kgo.NewClient(kgo.SeedBrokers(eps.KafkaBrokers...), kgo.ProducerLinger(5*time.Millisecond),
		kgo.ProducerBatchCompression(kgo.Lz4Compression()))
	if err != nil {
		return err
	}
	defer prod.Close()
	gen := clickgen.New(clickgen.WithBrokenFraction(*broken))
	sent := 0
	start := time.Now()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	report := time.NewTicker(*every)
	defer report.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_ = prod.Flush(fctx)
			cancel()
			fmt.Printf("\nsent %d events in %s; letting the pipeline drain…\n", sent, time.Since(start).Round(time.Second))
			time.Sleep(3 * time.Second)
			printStatus(sl, sink, sent, before, start)
			return nil
		case <-report.C:
			printStatus(sl, sink, sent, before, start)
		case <-tick.C:
			want := int(time.Since(start).Seconds() * float64(*rate))
			for ; sent < want; sent++ {
				r := gen.Next()
				prod.Produce(ctx, &kgo.Record{Topic: sl.Topics.Raw, Key: r.Key, Value: r.Value}, nil)
			}
		}
	}
}

// takePorts listens on the shop's address and on the collector's, so a busy
// port fails the demo before the services start; the caller closes the
// collector's listener just before ingest-clickstream takes the port.
func takePorts(shopAddr, collectorAddr string) (shop, collector net.Listener, err error) {
	shop, err = net.Listen("tcp", shopAddr)
	if err != nil {
		return nil, nil, fmt.Errorf("demo shop: %w (choose another with -shop)", err)
	}
	collector, err = net.Listen("tcp", collectorAddr)
	if err != nil {
		shop.Close()
		return nil, nil, fmt.Errorf("HTTP collector: %w (choose another with -collector)", err)
	}
	return shop, collector, nil
}

// browserAddr is the host:port a browser on this machine uses for a
// listener at addr: 127.0.0.1 for one on every address (":8095", "[::]:8095"
// or "0.0.0.0:8095"; a browser cannot open those).
func browserAddr(addr net.Addr) string {
	if ta, ok := addr.(*net.TCPAddr); ok && (ta.IP == nil || ta.IP.IsUnspecified()) {
		return net.JoinHostPort("127.0.0.1", fmt.Sprint(ta.Port))
	}
	return addr.String()
}

// shopOrigins are the origins a browser on this machine may give the shop at
// addr, the first the one to open: for a loopback IP the address itself and
// the same port on localhost; for every address (-shop :8095) 127.0.0.1,
// localhost and, on IPv6, [::1]; for another IP the address itself.
func shopOrigins(addr net.Addr) []string {
	ta, ok := addr.(*net.TCPAddr)
	if !ok {
		return []string{webdemo.Origin(addr.String())}
	}
	port := fmt.Sprint(ta.Port)
	switch {
	case ta.IP == nil || ta.IP.IsUnspecified():
		origins := []string{webdemo.Origin(net.JoinHostPort("127.0.0.1", port)), webdemo.Origin(net.JoinHostPort("localhost", port))}
		if ta.IP == nil || ta.IP.To4() == nil {
			origins = append(origins, webdemo.Origin(net.JoinHostPort("::1", port)))
		}
		return origins
	case ta.IP.IsLoopback():
		return []string{webdemo.Origin(addr.String()), webdemo.Origin(net.JoinHostPort("localhost", port))}
	default:
		return []string{webdemo.Origin(addr.String())}
	}
}

func printWhereToLook(sl *slice.Slice, eps stacktest.Endpoints, token, runDir, shop, collector string) {
	addr := func(n string) string { return sl.Procs[n].HTTPAddr }
	fmt.Printf(`
The platform is running. Where to look:

  Shop        open %[9]s and click around; your events land in fact_events
              (the page shows what its tracking snippet sent and the collector's answer)
  Your events curl -s -H 'Authorization: Bearer %[4]s' \
                --data "SELECT event_timestamp, event_type, product_id, order_id, session_id FROM fact_events WHERE source = 'http' ORDER BY event_timestamp DESC LIMIT 20" \
                http://%[3]s/v1/warehouse/query
  Collector   POST %[10]s   (write key %[11]s, in %[12]s)
  Health      curl -s http://%[1]s/readyz   (ingest-clickstream)
              curl -s http://%[2]s/readyz   (validator)
              curl -s http://%[3]s/readyz   (bq-writer)
  Metrics     curl -s http://%[1]s/metrics | grep ^ecom_
              (same path on %[2]s and %[3]s)
  Warehouse   curl -s -H 'Authorization: Bearer %[4]s' \
                --data 'SELECT event_type, count(*) AS n FROM fact_events GROUP BY 1 ORDER BY 2 DESC' \
                http://%[3]s/v1/warehouse/query
              (DuckDB file %[5]s; open it with any DuckDB client after Ctrl-C)
  Logs        %[6]s/<service>.log   and the stack's in .run/logs/
  Kafka       %[7]s   topics clickstream, ecom.events.v1, ecom.events.valid.v1, ecom.dlq.v1
  Registry    %[8]s/subjects

Progress is printed every few seconds. Ctrl-C stops everything.

`, addr("ingest-clickstream"), addr("validator"), addr("bq-writer"), token, sl.DuckDB, runDir,
		strings.Join(eps.KafkaBrokers, ","), eps.SchemaRegistryURL, shop, collector, sl.WriteKey, sl.WriteKeysFile)
}

// shopCount counts the rows the shop's snippet sent (through the HTTP collector).
const shopCount = "SELECT count(*) FROM fact_events WHERE source = 'http'"

// counts are the warehouse's row counts: all, and the shop's.
type counts struct{ rows, shop int64 }

// statusLine is the progress line: what this run sent and landed (the
// warehouse file outlives runs, so now's counts less those at the start),
// and the table's total.
func statusLine(at time.Time, sent int, elapsed, dead float64, before, now counts, spans int, withSpans bool) string {
	s := fmt.Sprintf("[%s] sent %d (%.0f/s) | landed in the warehouse %d (table total %d) | dead-lettered %.0f (%.2f%%)",
		at.Format("15:04:05"), sent, float64(sent)/max(elapsed, 1), now.rows-before.rows, now.rows, dead, 100*dead/float64(max(sent, 1)))
	if shop := now.shop - before.shop; shop > 0 {
		s += fmt.Sprintf(" | from the shop %d", shop)
	}
	if withSpans {
		s += fmt.Sprintf(" | spans %d", spans)
	}
	return s
}

func printStatus(sl *slice.Slice, sink *otlpsink.Sink, sent int, before counts, start time.Time) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var now counts
	var err error
	now.rows, err = sl.QueryInt(ctx, "SELECT count(*) FROM fact_events")
	if err != nil {
		fmt.Println("  warehouse:", err)
	}
	now.shop, _ = sl.QueryInt(ctx, shopCount)
	var dead float64
	byReason := map[string]float64{}
	for _, n := range svcrun.Services {
		series, err := slice.Scrape(ctx, sl.Procs[n].HTTPAddr, "ecom_dead_letters")
		if err != nil {
			continue
		}
		for _, s := range series {
			key := s.Labels["stage"] + " " + s.Labels["code"]
			if r := s.Labels["rule_id"]; r != "" {
				key += " " + r
			}
			byReason[key] += s.Value
			dead += s.Value
		}
	}
	spans := 0
	if sink != nil {
		spans = sink.Count()
	}
	fmt.Println(statusLine(time.Now(), sent, time.Since(start).Seconds(), dead, before, now, spans, sink != nil))
	keys := make([]string, 0, len(byReason))
	for k := range byReason {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Printf("      %-70s %6.0f\n", k, byReason[k])
	}
	if sink != nil && now.rows > 0 {
		_, rs, err := sl.Query(ctx, "SELECT event_id, trace_id FROM fact_events WHERE loaded_at < now() - INTERVAL 2 SECOND ORDER BY loaded_at DESC LIMIT 1")
		if err == nil && len(rs) == 1 {
			tid, _ := rs[0][1].(string)
			got := sink.Services(tid)
			var svcs []string
			for _, s := range svcrun.Services {
				if got[s] {
					svcs = append(svcs, s)
				}
			}
			fmt.Printf("      latest event %v: trace %s has spans from %s\n", rs[0][0], tid, strings.Join(svcs, " -> "))
		}
	}
}

func randomToken() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
