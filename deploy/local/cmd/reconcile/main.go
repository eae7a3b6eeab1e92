// Command reconcile prints the reconciliation of a source (clickstream, orders or catalog) in a time window: the records its
// path consumed (read_committed) and where each went (the warehouse, deduplicated, dead-lettered,
// superseded, stale, still in flight), for the source end to end and for each stage, with every
// record that does not balance (package reconcile; its DESIGN.md has the argument).
//
//	go run ./cmd/reconcile -source clickstream -from 2026-12-01T20:00:00Z -to 2026-12-01T21:00:00Z
//
// It reads Kafka (KAFKA_BROKERS), the schema registry (SCHEMA_REGISTRY_URL) and the DuckDB
// warehouse through bq-writer's query endpoint (-warehouse, WAREHOUSE_QUERY_TOKEN). Exit status:
// 0 balanced, 2 a difference in a settled window, 3 not settled (records still in flight; run
// it again later), 1 it could not reconcile. -metrics-file writes the figures in the Prometheus
// text format (ecom_reconciliation_difference{source} and the terms) for a textfile collector or
// a push; -listen keeps it running, reconciling every -every with -from/-to relative to the
// clock (e.g. -from 20m -to 5m: the window ending 5 minutes ago, settled), and serves them on
// /metrics for Prometheus to scrape.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ecomstream/platform/deploy/local/reconcile"
	"github.com/ecomstream/platform/pkg/avroserde"
	"github.com/ecomstream/platform/pkg/deadletter"
	protoavro "github.com/ecomstream/platform/proto/avro"
)

// Exit statuses.
const (
	exitError      = 1
	exitDifference = 2
	exitUnsettled  = 3
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code, err := run(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "reconcile: %v\n", err)
	}
	os.Exit(code)
}

func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func run(ctx context.Context, args []string) (int, error) {
	fs := flag.NewFlagSet("reconcile", flag.ContinueOnError)
	source := fs.String("source", reconcile.SourceClickstream, "source to reconcile: clickstream, orders or catalog")
	from := fs.String("from", "", "window start, RFC 3339 (e.g. 2026-12-01T20:00:00Z), or a duration before now (e.g. 1h)")
	to := fs.String("to", "", "window end (exclusive), RFC 3339 or a duration before now; empty = now")
	prefix := fs.String("prefix", "", "topic and consumer group prefix of a slice (e.g. e2e-1234.); empty = the platform's names")
	brokers := fs.String("brokers", env("KAFKA_BROKERS", "127.0.0.1:19092"), "Kafka bootstrap brokers, comma-separated (KAFKA_BROKERS)")
	registry := fs.String("registry", env("SCHEMA_REGISTRY_URL", "http://127.0.0.1:18081/apis/ccompat/v7"), "schema registry URL (SCHEMA_REGISTRY_URL)")
	wh := fs.String("warehouse", env("WAREHOUSE_URL", "http://127.0.0.1:8084"), "bq-writer's HTTP base URL, whose /v1/warehouse/query serves the DuckDB warehouse (WAREHOUSE_URL)")
	lateness := fs.Duration("lateness", 10*time.Minute, "how far before -from the topics are read (producer timestamps are not monotonic)")
	metricsFile := fs.String("metrics-file", "", "write the figures here in the Prometheus text format")
	listen := fs.String("listen", "", "keep running: reconcile every -every (relative -from/-to move with the clock) and serve the figures on http://<listen>/metrics")
	every := fs.Duration("every", time.Minute, "with -listen, how often to reconcile")
	if err := fs.Parse(args); err != nil {
		return exitError, err
	}
	switch *source {
	case reconcile.SourceClickstream, reconcile.SourceOrders, reconcile.SourceCatalog:
	default:
		return exitError, fmt.Errorf("-source %q: want clickstream, orders or catalog", *source)
	}
	if _, err := window(*from, *to, time.Now()); err != nil {
		return exitError, err
	}
	if *listen != "" && *every <= 0 {
		return exitError, fmt.Errorf("-every %v: must be positive", *every)
	}
	token := os.Getenv("WAREHOUSE_QUERY_TOKEN")
	if token == "" {
		return exitError, errors.New("WAREHOUSE_QUERY_TOKEN: must be set (bq-writer's query endpoint token)")
	}

	opts := []kgo.Opt{kgo.SeedBrokers(strings.Split(*brokers, ",")...)}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return exitError, fmt.Errorf("kafka: %w", err)
	}
	defer cl.Close()
	reg, err := avroserde.New(avroserde.Config{URL: *registry, Timeout: 5 * time.Second})
	if err != nil {
		return exitError, err
	}
	log := &reconcile.Log{Opts: opts, Adm: kadm.NewClient(cl), Lateness: *lateness}
	api := &reconcile.QueryAPI{URL: strings.TrimRight(*wh, "/"), Token: token}
	dlq, err := reg.Codec(ctx, avroserde.SubjectFor(deadletter.Topic), protoavro.DeadLetter)
	if err != nil {
		return exitError, err
	}
	once := func(ctx context.Context) (*reconcile.Report, error) {
		w, err := window(*from, *to, time.Now())
		if err != nil {
			return nil, err
		}
		switch *source {
		case reconcile.SourceCatalog:
			c := &reconcile.Catalog{Log: log, Warehouse: api, DeadLetter: dlq}
			c.CatalogNames(*prefix)
			for i, ent := range []string{protoavro.ProductChange, protoavro.CustomerChange} {
				if c.Entities[i].Codec, err = reg.Codec(ctx, avroserde.SubjectFor(c.Entities[i].Topic), ent); err != nil {
					return nil, err
				}
			}
			return c.Reconcile(ctx, w)
		case reconcile.SourceOrders:
			o := &reconcile.Orders{Log: log, Warehouse: api, DeadLetter: dlq}
			o.OrdersNames(*prefix)
			if o.Order, err = reg.Codec(ctx, avroserde.SubjectFor(o.Topic), protoavro.Order); err != nil {
				return nil, err
			}
			return o.Reconcile(ctx, w)
		default:
			c := &reconcile.Clickstream{Log: log, Warehouse: api, DeadLetter: dlq}
			c.ClickstreamNames(*prefix)
			if c.Click, err = reg.Codec(ctx, avroserde.SubjectFor(c.Events), protoavro.ClickEvent); err != nil {
				return nil, err
			}
			return c.Reconcile(ctx, w)
		}
	}
	if *listen != "" {
		return serve(ctx, *listen, *every, once)
	}
	rep, err := once(ctx)
	if err != nil {
		return exitError, err
	}
	rep.Print(os.Stdout)
	if *metricsFile != "" {
		pr := prometheus.NewRegistry()
		m, err := reconcile.NewMetrics(pr)
		if err != nil {
			return exitError, err
		}
		m.Set(rep)
		if err := prometheus.WriteToTextfile(*metricsFile, pr); err != nil {
			return exitError, err
		}
	}
	switch {
	case !rep.Settled():
		return exitUnsettled, nil
	case !rep.Balanced():
		return exitDifference, nil
	}
	return 0, nil
}

// serve reconciles every interval until ctx ends, printing each report and serving the latest
// figures on addr's /metrics. A failed round is printed and the previous figures stay.
func serve(ctx context.Context, addr string, every time.Duration, once func(context.Context) (*reconcile.Report, error)) (int, error) {
	reg := prometheus.NewRegistry()
	m, err := reconcile.NewMetrics(reg)
	if err != nil {
		return exitError, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return exitError, fmt.Errorf("-listen: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	fmt.Printf("serving the figures on http://%s/metrics, reconciling every %s\n", ln.Addr(), every)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		rep, err := once(ctx)
		switch {
		case ctx.Err() != nil:
			return 0, nil
		case err != nil:
			fmt.Fprintf(os.Stderr, "reconcile: %v\n", err)
		default:
			rep.Print(os.Stdout)
			m.Set(rep)
		}
		select {
		case <-ctx.Done():
			return 0, nil
		case <-t.C:
		}
	}
}

// window parses -from and -to: RFC 3339 times or durations before now.
func window(from, to string, now time.Time) (reconcile.Window, error) {
	at := func(name, s string) (time.Time, error) {
		if s == "" && name == "-to" {
			return now, nil
		}
		if d, err := time.ParseDuration(s); err == nil {
			return now.Add(-d), nil
		}
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return time.Time{}, fmt.Errorf("%s %q: want an RFC 3339 time or a duration before now", name, s)
		}
		return t, nil
	}
	f, err := at("-from", from)
	if err != nil {
		return reconcile.Window{}, err
	}
	t, err := at("-to", to)
	if err != nil {
		return reconcile.Window{}, err
	}
	if !f.Before(t) {
		return reconcile.Window{}, fmt.Errorf("-from %v is not before -to %v", f, t)
	}
	return reconcile.Window{From: f, To: t}, nil
}
