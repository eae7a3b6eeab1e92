// Command demo runs the platform locally: it builds the services, starts them
// as separate processes against the local stack (make demo starts the stack
// first) with the storefront simulator beside them, feeds them realistic
// clickstream traffic with ~1% broken records and orders at the simulator's
// normal rate (every clickstream purchase placed as the order behind it),
// serves a small shop whose tracking snippet sends the visitor's own clicks
// to the HTTP collector, and prints where to look and what happened,
// purchases joined to their orders included. Traces go to the stack's
// Jaeger (the status names the latest event's), metrics are scraped by the
// stack's Prometheus. Ctrl-C stops everything.
package main

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"flag"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/template"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ecomstream/platform/deploy/local/catalogdb"
	"github.com/ecomstream/platform/deploy/local/clickgen"
	"github.com/ecomstream/platform/deploy/local/jaegerq"
	"github.com/ecomstream/platform/deploy/local/slice"
	"github.com/ecomstream/platform/deploy/local/stacktest"
	"github.com/ecomstream/platform/deploy/local/storefront"
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
	keepStack := flag.Bool("keep-stack", false, "leave the local stack (Kafka, PostgreSQL, the registry, the BigQuery emulator, Jaeger, Prometheus) running on exit")
	every := flag.Duration("report", 10*time.Second, "how often to print progress")
	shopAddr := flag.String("shop", webdemo.DefaultAddr, "listen address of the demo shop (its origin is allowed by the collector)")
	collectorAddr := flag.String("collector", "127.0.0.1:8090", "listen address of ingest-clickstream's HTTP collector")
	storefrontAddr := flag.String("storefront", "127.0.0.1:8097", "listen address of the storefront simulator's orders API")
	ordersAddr := flag.String("ingest-orders", "127.0.0.1:8088", "HTTP address of ingest-orders (webhooks, metrics, readyz)")
	poll := flag.Duration("orders-poll", 5*time.Second, "how often ingest-orders polls the storefront's API")
	ordersBroken := flag.Float64("orders-broken", 0.01, "fraction of the storefront's own orders broken on purpose (dead-lettered by the validator)")
	catalogAddr := flag.String("catalog-sync", "127.0.0.1:8089", "HTTP address of catalog-sync (runs API, metrics, readyz)")
	dlqAddr := flag.String("dlq-handler", "127.0.0.1:8091", "HTTP address of dlq-handler (the dead-letter console and API)")
	var cf catalogFlags
	flag.Float64Var(&cf.rate, "catalog-rate", catalogdb.DefaultRatePerMinute, "catalog changes the mutator makes per minute (0 = none)")
	flag.DurationVar(&cf.burst, "catalog-burst", time.Minute, "how often the mutator re-prices a whole category in one transaction (0 = never)")
	flag.Float64Var(&cf.bad, "catalog-bad", 0.1, "fraction of catalog changes bad on purpose (dead-lettered by the validator)")
	flag.Parse()
	if err := cf.check(); err != nil {
		return err
	}

	// Taken first, so a busy port fails before anything starts.
	shopLn, collectorLn, err := takePorts(*shopAddr, *collectorAddr)
	if err != nil {
		return err
	}
	addrs := map[string]string{"ingest-clickstream": "127.0.0.1:8081", "validator": "127.0.0.1:8084", "bq-writer": "127.0.0.1:8086",
		"storefront": *storefrontAddr, "ingest-orders": *ordersAddr, "catalog-sync": *catalogAddr, "dlq-handler": *dlqAddr}
	if err := portsFree(addrs, map[string]string{"storefront": "-storefront", "ingest-orders": "-ingest-orders", "catalog-sync": "-catalog-sync",
		"dlq-handler": "-dlq-handler"}); err != nil {
		shopLn.Close()
		collectorLn.Close()
		return err
	}
	defer shopLn.Close()
	defer collectorLn.Close()
	origins := shopOrigins(shopLn.Addr())
	collectorURL := "http://" + browserAddr(collectorLn.Addr())

	// Jaeger is checked before the services are built, so its absence fails at once.
	repo, err := svcrun.RepoRoot()
	if err != nil {
		return err
	}
	obs, err := observability(ctx, repo)
	if err != nil {
		return err
	}
	env, err := slice.Prepare(ctx)
	if err != nil {
		return err
	}
	root, binDir, eps := env.Root, env.BinDir, env.Stack
	fmt.Printf("traces:  Jaeger %s (OTLP in at %s)\nmetrics: Prometheus %s (this demo's targets: %s)\n",
		obs.jaeger.URL(), obs.otlp, obs.prometheus, filepath.Join(obs.targets, "demo.json"))
	token := randomToken()
	runDir := filepath.Join(root, ".run", "demo")
	sl, err := slice.New(slice.Options{
		BinDir: binDir, RunDir: runDir, Brokers: eps.KafkaBrokers, Registry: eps.SchemaRegistryURL,
		OTLP: obs.otlp, PrometheusTargetsDir: obs.targets, QueryToken: token,
		Addrs:         addrs,
		CollectorAddr: collectorLn.Addr().String(), CollectorOrigins: origins,
		// Speed 1, the simulator's default rate, faults and broken share, webhooks
		// on. A new order stream every run: the same seed would make the same
		// order ids, which the warehouse file of an earlier run already holds.
		Orders: &slice.OrdersOptions{PollInterval: *poll, Args: []string{"-seed=" + strconv.FormatUint(randomUint64(), 10),
			"-broken=" + strconv.FormatFloat(*ordersBroken, 'g', -1, 64)}},
		// The stack's own catalog: schema storefront (created and loaded at the
		// first Start, kept across runs), slot ecom_catalog_sync, CDC on and
		// the service's hourly snapshot as the reconciliation.
		Catalog: &slice.CatalogOptions{SnapshotSchedule: "0 * * * *"},
		// The stack's own dead-letter store: schema dlq and group dlq-handler,
		// kept across runs (the first run stores the topic's backlog), tokens
		// new each run.
		DLQ: &slice.DLQOptions{},
		// The consumer groups are the stack's, shared by every checkout's demo, and
		// the warehouse file is this checkout's: a new file (or one from before the
		// orders tables) has no position where the group has committed offsets.
		// Start those partitions from the committed offset; the demo says so.
		Env: map[string][]string{"bq-writer": {"POSITION_RECOVERY=committed"}},
	})
	if err != nil {
		return err
	}
	writerLog := logMark(sl.Procs["bq-writer"].LogPath)
	fmt.Println("starting dlq-handler, bq-writer, validator, catalog-sync, ingest-clickstream, the storefront simulator and ingest-orders…")
	collectorLn.Close() // held until now; ingest-clickstream listens there next
	// The slot goes with the services: PostgreSQL's data outlives the demo
	// (and stack.sh down), and a slot nobody reads holds WAL forever.
	// catalog-sync creates it again at the next start, and that run's
	// snapshot sends whatever changed in between.
	stopServices := func() {
		if err := sl.Stop(); err != nil {
			fmt.Println("  ", err)
		}
		dctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := sl.DropSlot(dctx); err != nil {
			fmt.Println("  ", err)
		} else {
			fmt.Printf("dropped the replication slot %s (catalog-sync creates it again at the next start)\n", sl.Catalog.Slot)
		}
	}
	if err := sl.Start(ctx); err != nil {
		stopServices()
		return err
	}
	defer func() {
		fmt.Println("\nstopping services…")
		stopServices()
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
	fmt.Println(initLine(sl.Catalog))
	if err := initialSnapshot(ctx, sl); err != nil {
		return err
	}
	cat, err := startCatalog(ctx, sl, cf, runDir, randomUint64())
	if err != nil {
		return err
	}
	defer cat.stop()
	// The reconciliation every minute, scraped by the stack's Prometheus (job reconcile).
	rec, err := startReconciler(ctx, sl, obs.targets, time.Now())
	if err != nil {
		return err
	}
	defer rec.stop()
	printWhereToLook(sl, eps, obs, token, runDir, origins[0], collectorURL+"/v1/events", cat.log.path)
	// The warehouse file outlives a demo run; count this run's rows apart.
	qctx, qcancel := context.WithTimeout(ctx, 5*time.Second)
	var before counts
	before.rows, _ = sl.QueryInt(qctx, "SELECT count(*) FROM fact_events")
	before.shop, _ = sl.QueryInt(qctx, shopCount)
	before.orders, _ = queryOrderCounts(qctx, sl)
	qcancel()

	prod, err := kgo.NewClient(kgo.SeedBrokers(eps.KafkaBrokers...), kgo.ProducerLinger(5*time.Millisecond),
		kgo.ProducerBatchCompression(kgo.Lz4Compression()))
	if err != nil {
		return err
	}
	defer prod.Close()
	// Every purchase the generator makes is an order for a real customer and
	// real products: placed in the storefront once the event is in Kafka (so
	// no order lacks its click), it flows back through ingest-orders into
	// fact_orders, where the purchase joins it.
	placer, err := storefront.NewPlacer(storefront.PlacerConfig{URL: sl.Storefront.URL, Token: sl.Storefront.Token,
		Log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		return err
	}
	closePlacer := func() {
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := placer.Close(cctx); err != nil {
			fmt.Println("  placing purchases:", err)
		}
	}
	defer closePlacer() // the error paths; the end closes it before the last report
	gen := clickgen.New(clickgen.WithBrokenFraction(*broken))
	sent := 0
	joined := false // the example join is printed once after 30 s, and at the end
	pit := false    // the point-in-time example: from 30 s on once a product has views at two prices, and at the end
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
			closePlacer() // after the flush: every purchase in Kafka is given to the placer by now
			cat.stop()
			fmt.Printf("\nsent %d events in %s; letting the pipeline drain…\n", sent, time.Since(start).Round(time.Second))
			time.Sleep(3 * time.Second)
			printStatus(sl, obs.jaeger, placer, cat, sent, before, start, writerLog)
			printJoin(context.Background(), sl, start)
			cat.printPIT(context.Background(), start, true)
			return nil
		case <-report.C:
			printStatus(sl, obs.jaeger, placer, cat, sent, before, start, writerLog)
			fmt.Println(rec.line())
			if !joined && time.Since(start) >= 30*time.Second {
				printJoin(ctx, sl, start)
				joined = true
				if pit = cat.printPIT(ctx, start, false); !pit {
					fmt.Println(pitTitle)
					fmt.Println("    (shown once a product the mutator re-prices has views before and after the change, and at the end)")
				}
			} else if joined && !pit {
				pit = cat.printPIT(ctx, start, false)
			}
		case <-tick.C:
			want := int(time.Since(start).Seconds() * float64(*rate))
			for ; sent < want; sent++ {
				r := gen.Next()
				var placed func(*kgo.Record, error)
				if r.Purchase != nil {
					req := r.Purchase.PlaceRequest()
					placed = func(_ *kgo.Record, err error) {
						if err == nil {
							placer.Place(req)
						}
					}
				}
				prod.Produce(ctx, &kgo.Record{Topic: sl.Topics.Raw, Key: r.Key, Value: r.Value}, placed)
			}
		}
	}
}

// obsEndpoints are where the demo's traces and metrics go: the stack's
// Jaeger and Prometheus (stack.sh env; make demo starts both).
type obsEndpoints struct {
	jaeger     *jaegerq.Client
	otlp       string // OTLP/HTTP endpoint the services export to
	prometheus string // Prometheus URL
	targets    string // Prometheus's file_sd folder, where the slice writes demo.json
}

// Defaults of deploy/local/stack.sh (its env says otherwise for a second instance).
const (
	defaultJaegerOTLP = "http://127.0.0.1:14318"
	defaultPrometheus = "http://127.0.0.1:19090"
)

// observability finds the stack's Jaeger and Prometheus from the
// environment `stack.sh env` prints, defaulting to the stack's own ports
// and run folder. Traces go to OTEL_EXPORTER_OTLP_ENDPOINT instead when it is
// set; the status lines still read them from JAEGER_URL. Jaeger must answer
// (the demo shows its traces); Prometheus scrapes the targets file whenever
// it runs.
func observability(ctx context.Context, root string) (obsEndpoints, error) {
	get := func(key, def string) string {
		if v := strings.TrimSpace(os.Getenv(key)); v != "" {
			return v
		}
		return def
	}
	o := obsEndpoints{
		jaeger:     jaegerq.New(jaegerq.URLFromEnv()),
		otlp:       get("OTEL_EXPORTER_OTLP_ENDPOINT", get(slice.EnvJaegerOTLP, defaultJaegerOTLP)),
		prometheus: strings.TrimRight(get("PROMETHEUS_URL", defaultPrometheus), "/"),
		targets:    get(slice.EnvPrometheusTargets, filepath.Join(root, ".run", "prometheus", "targets")),
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return o, o.jaeger.Check(cctx)
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

// portsFree checks that each process's address can be listened on now, so
// a busy port fails the demo before anything starts, naming the process and
// the flag that moves it (flags[name]; none: the address is fixed).
func portsFree(addrs, flags map[string]string) error {
	for _, n := range slices.Sorted(maps.Keys(addrs)) {
		ln, err := net.Listen("tcp", addrs[n])
		if err != nil {
			if f := flags[n]; f != "" {
				return fmt.Errorf("%s: %w (choose another with %s)", n, err, f)
			}
			return fmt.Errorf("%s: %w (the demo's fixed address: stop what listens there)", n, err)
		}
		ln.Close()
	}
	return nil
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

// where is what the "where to look" block names.
type where struct {
	Ingest, Validator, Writer, IngestOrders string // HTTP addresses
	QueryToken, DuckDB, RunDir              string
	Brokers, Registry                       string
	Shop, Collector, WriteKey, WriteKeys    string
	Storefront                              *slice.Storefront
	Topics                                  slice.Topics
	CatalogSync, MutatorLog                 string
	Catalog                                 *slice.Catalog
	DLQ                                     *slice.DLQ
	Jaeger, Prometheus, TargetsFile         string
}

var whereText = template.Must(template.New("where").Parse(`
The platform is running. Where to look:

  Shop        open {{.Shop}} and click around; your events land in fact_events
              (the page shows what its tracking snippet sent and the collector's answer)
  Your events curl -s -H 'Authorization: Bearer {{.QueryToken}}' \
                --data "SELECT event_timestamp, event_type, product_id, order_id, session_id FROM fact_events WHERE source = 'http' ORDER BY event_timestamp DESC LIMIT 20" \
                http://{{.Writer}}/v1/warehouse/query
  Collector   POST {{.Collector}}   (write key {{.WriteKey}}, in {{.WriteKeys}})
  Storefront  the simulated shop's orders API (~50 orders/min of its own, 1% broken on purpose, webhooks to ingest-orders;
              plus every clickstream purchase placed as an order: ~0.5% of the events, ~300/min at -rate 1000):
              curl -s -H 'Authorization: Bearer {{.Storefront.Token}}' '{{.Storefront.URL}}/v1/orders?limit=2'
              curl -s -H 'Authorization: Bearer {{.Storefront.Token}}' {{.Storefront.URL}}/v1/admin/stats
              (every version it made: {{.Storefront.VersionsFile}})
  Catalog     PostgreSQL schema {{.Catalog.Schema}}, changed by the mutator (every row it changed, with its commit time: {{.MutatorLog}});
              catalog-sync streams it (CDC: slot {{.Catalog.Slot}}, publication {{.Catalog.Publication}}) into dim_products and dim_users:
              curl -s -H 'Authorization: Bearer {{.Catalog.OperatorToken}}' http://{{.CatalogSync}}/v1/runs
              curl -s -H 'Authorization: Bearer {{.Catalog.OperatorToken}}' -X POST http://{{.CatalogSync}}/v1/sync   (a snapshot now)
  Dead letters the console: open {{.DLQ.URL}}/console/   login: {{.DLQ.OperatorToken}}   (the operator token)
              the API:     curl -s -H 'Authorization: Bearer {{.DLQ.OperatorToken}}' '{{.DLQ.URL}}/v1/dead-letters?stage=validator&limit=5'
                           curl -s -H 'Authorization: Bearer {{.DLQ.OperatorToken}}' '{{.DLQ.URL}}/v1/stats?window=1h'
              (PostgreSQL schema {{.DLQ.Schema}}; every dead letter of ecom.dlq.v1, the stack's earlier ones too; viewer token {{.DLQ.ViewerToken}})
  Health      the pipeline health page: open {{.DLQ.URL}}/console/health   (same login; green, amber or red per service with the reason)
              curl -s -H 'Authorization: Bearer {{.DLQ.ViewerToken}}' {{.DLQ.URL}}/v1/health
              curl -s http://{{.Ingest}}/readyz   (ingest-clickstream)
              curl -s http://{{.IngestOrders}}/readyz   (ingest-orders)
              curl -s http://{{.CatalogSync}}/readyz   (catalog-sync)
              curl -s http://{{.Validator}}/readyz   (validator)
              curl -s http://{{.Writer}}/readyz   (bq-writer)
              curl -s {{.DLQ.URL}}/readyz   (dlq-handler)
  Traces      Jaeger {{.Jaeger}}   (every event is one trace; the status lines below link the latest one's)
              curl -s {{.Jaeger}}/api/traces/<trace id>   (a Jaeger built from source shows a placeholder UI page; its API is whole)
              curl -s '{{.Jaeger}}/api/traces?service=validator&limit=5'
  Prometheus  {{.Prometheus}}   (scrapes every service every 5 s; this demo's targets: {{.TargetsFile}})
              curl -s '{{.Prometheus}}/api/v1/query?query=up'
              curl -s {{.Prometheus}}/api/v1/alerts
  Metrics     curl -s http://{{.Ingest}}/metrics | grep ^ecom_
              curl -s http://{{.IngestOrders}}/metrics | grep ^ecom_orders   (cursor lag, produced by source)
              curl -s http://{{.CatalogSync}}/metrics | grep ^ecom_catalog   (runs, CDC commit latency, the slot's retained WAL)
              (same path on {{.Validator}} and {{.Writer}})
  Warehouse   curl -s -H 'Authorization: Bearer {{.QueryToken}}' \
                --data 'SELECT event_type, count(*) AS n FROM fact_events GROUP BY 1 ORDER BY 2 DESC' \
                http://{{.Writer}}/v1/warehouse/query
              curl -s -H 'Authorization: Bearer {{.QueryToken}}' \
                --data 'SELECT status, count(*) AS n, sum(total_minor) AS total_minor FROM fact_orders GROUP BY 1 ORDER BY 2 DESC' \
                http://{{.Writer}}/v1/warehouse/query
              curl -s -H 'Authorization: Bearer {{.QueryToken}}' \
                --data 'SELECT product_id, price_minor, valid_from, valid_to, source FROM dim_products WHERE valid_from > now() - INTERVAL 10 MINUTE ORDER BY valid_from DESC LIMIT 10' \
                http://{{.Writer}}/v1/warehouse/query
              (DuckDB file {{.DuckDB}}; open it with any DuckDB client after Ctrl-C)
  Logs        {{.RunDir}}/<service>.log   and the stack's in .run/logs/
  Kafka       {{.Brokers}}   topics {{.Topics.Raw}}, {{.Topics.Events}}, {{.Topics.Valid}},
              {{.Topics.Orders}}, {{.Topics.OrdersValid}}, {{.Topics.OrdersCursor}},
              {{.Topics.Products}}, {{.Topics.ProductsValid}}, {{.Topics.Customers}}, {{.Topics.CustomersValid}}, {{.Catalog.StateTopic}}, ecom.dlq.v1
  Registry    {{.Registry}}/subjects

Progress is printed every few seconds. Ctrl-C stops everything.

`))

func printWhereToLook(sl *slice.Slice, eps stacktest.Endpoints, obs obsEndpoints, token, runDir, shop, collector, mutatorLog string) {
	addr := func(n string) string { return sl.Procs[n].HTTPAddr }
	_ = whereText.Execute(os.Stdout, where{
		Ingest: addr("ingest-clickstream"), Validator: addr("validator"), Writer: addr("bq-writer"), IngestOrders: addr("ingest-orders"),
		QueryToken: token, DuckDB: sl.DuckDB, RunDir: runDir,
		Brokers: strings.Join(eps.KafkaBrokers, ","), Registry: eps.SchemaRegistryURL,
		Shop: shop, Collector: collector, WriteKey: sl.WriteKey, WriteKeys: sl.WriteKeysFile,
		Storefront: sl.Storefront, Topics: sl.Topics,
		CatalogSync: addr("catalog-sync"), MutatorLog: mutatorLog, Catalog: sl.Catalog, DLQ: sl.DLQ,
		Jaeger: obs.jaeger.URL(), Prometheus: obs.prometheus, TargetsFile: sl.TargetsFile(),
	})
}

// shopCount counts the rows the shop's snippet sent (through the HTTP collector).
const shopCount = "SELECT count(*) FROM fact_events WHERE source = 'http'"

// counts are the warehouse's row counts: all events, the shop's, and the orders'.
type counts struct {
	rows, shop int64
	orders     orderCounts
}

// statusLine is the progress line: what this run sent and landed (the
// warehouse file outlives runs, so now's counts less those at the start),
// and the table's total.
func statusLine(at time.Time, sent int, elapsed, dead float64, before, now counts) string {
	s := fmt.Sprintf("[%s] sent %d (%.0f/s) | landed in the warehouse %d (table total %d) | dead-lettered %.0f (%.2f%%)",
		at.Format("15:04:05"), sent, float64(sent)/max(elapsed, 1), now.rows-before.rows, now.rows, dead, 100*dead/float64(max(sent, 1)))
	if shop := now.shop - before.shop; shop > 0 {
		s += fmt.Sprintf(" | from the shop %d", shop)
	}
	return s
}

// traceLine names the latest event's trace: its page in Jaeger's UI and the
// services Jaeger has spans from (in pipeline order), or why it has none.
func traceLine(eventID any, jaegerURL, traceID string, tr jaegerq.Trace, err error) string {
	s := fmt.Sprintf("      latest event %v: trace %s", eventID, jaegerq.TraceURL(jaegerURL, traceID))
	if err != nil {
		return s + " (" + err.Error() + ")"
	}
	got := tr.Services()
	var svcs []string
	for _, name := range svcrun.Services {
		if got[name] {
			svcs = append(svcs, name)
		}
	}
	return s + " has spans from " + strings.Join(svcs, " -> ")
}

func printStatus(sl *slice.Slice, jaeger *jaegerq.Client, placer *storefront.Placer, cat *catalogDemo, sent int, before counts, start time.Time, writerLog *logCursor) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if rs := writerLog.recoveries(); len(rs) > 0 {
		fmt.Println("  bq-writer started these partitions at the group's committed offset (POSITION_RECOVERY=committed,")
		fmt.Println("  see services/bq-writer/README.md#positions): the consumer groups are the stack's, the warehouse file this checkout's")
		for _, r := range rs {
			fmt.Println("      " + r)
		}
	}
	var now counts
	var err error
	now.rows, err = sl.QueryInt(ctx, "SELECT count(*) FROM fact_events")
	if err != nil {
		fmt.Println("  warehouse:", err)
	}
	now.shop, _ = sl.QueryInt(ctx, shopCount)
	m := scrapeAll(ctx, sl)
	dead := splitDeadLetters(m, sl.Topics)
	fmt.Println(statusLine(time.Now(), sent, time.Since(start).Seconds(), dead.clicks, before, now))
	printReasons(dead.clickReasons)
	if now.rows > 0 {
		// Two seconds old: bq-writer's span is exported and stored by then.
		_, rs, err := sl.Query(ctx, "SELECT event_id, trace_id FROM fact_events WHERE loaded_at < now() - INTERVAL 2 SECOND ORDER BY loaded_at DESC LIMIT 1")
		if tid, _ := firstTraceID(rs); err == nil && tid != "" {
			tr, err := jaeger.Trace(ctx, tid)
			fmt.Println(traceLine(rs[0][0], jaeger.URL(), tid, tr, err))
		}
	}
	ps := placer.Stats()
	o := ordersStatus{placer: &ps, before: before.orders, produced: producedBySource(m["ingest-orders"]), dead: dead.orders}
	o.lag, o.lagKnown = cursorLag(m["ingest-orders"])
	var st storefrontStats
	if err := sl.StorefrontDo(ctx, http.MethodGet, "/v1/admin/stats", nil, &st); err == nil {
		o.stats = &st
	}
	o.now, o.warehouseE = queryOrderCounts(ctx, sl)
	fmt.Println(o.lines())
	printReasons(dead.orderReasons)
	cctx, ccancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer ccancel()
	fmt.Println(cat.status(cctx, dead.catalog).lines())
	printReasons(dead.catalogReasons)
	dctx, dcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer dcancel()
	fmt.Println(dlqLine(sl.DLQ.Stats(dctx, url.Values{"window": {"1h"}, "buckets": {"1"}})))
}

// firstTraceID is the trace id of the first row of (event_id, trace_id) rows.
func firstTraceID(rows [][]any) (string, bool) {
	if len(rows) != 1 || len(rows[0]) != 2 {
		return "", false
	}
	tid, ok := rows[0][1].(string)
	return tid, ok
}

// dlqLine is the dead-letter store's status: what it holds by state (all
// time), and what failed in the last hour.
func dlqLine(st slice.DLQStats, err error) string {
	if err != nil {
		return "  dead-letter store: " + err.Error()
	}
	total := 0
	var parts []string
	for _, state := range []string{"new", "replayed", "failed_again", "resolved", "discarded"} {
		total += st.ByState[state]
		if n := st.ByState[state]; n > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", state, n))
		}
	}
	if len(parts) == 0 {
		parts = []string{"empty"}
	}
	return fmt.Sprintf("  dead-letter store: %d stored (%s) | %d failed in the last hour", total, strings.Join(parts, ", "), st.Total)
}

func randomUint64() uint64 {
	b := make([]byte, 8)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return binary.LittleEndian.Uint64(b)
}

func randomToken() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
