package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ecomstream/platform/deploy/local/catalogdb"
	"github.com/ecomstream/platform/deploy/local/clickgen"
	"github.com/ecomstream/platform/deploy/local/reconcile"
	"github.com/ecomstream/platform/deploy/local/slice"
	"github.com/ecomstream/platform/deploy/local/stacktest"
	"github.com/ecomstream/platform/deploy/local/svcrun"
	"github.com/ecomstream/platform/deploy/observability"
)

// TestIntegrationMetricsExist holds the dashboards and the alerting and recording rules to the
// services' real /metrics: it starts every service (clickstream, orders, catalog, dead-letter
// store) against the local stack, pushes a few records of every kind through, scrapes every
// service, and fails naming each metric a dashboard or rule selects that no service exposes.
func TestIntegrationMetricsExist(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: runs without -short, against the local stack")
	}
	eps := stacktest.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	began := time.Now()
	progress := func(format string, args ...any) {
		t.Logf("%5.1fs "+format, append([]any{time.Since(began).Seconds()}, args...)...)
	}

	root, binDir, _, err := svcrun.BuildTree(ctx)
	if err != nil {
		t.Fatal(err)
	}
	refs, err := observability.ReferencedMetrics(root)
	if err != nil {
		t.Fatalf("the dashboards' and rules' queries: %v", err)
	}
	progress("%d metrics referenced by %s and %s", len(refs), observability.DashboardsDir, observability.RulesGlob)

	runDir := filepath.Join(root, ".run", "e2e", t.Name()+"-"+time.Now().Format("20060102-150405"))
	prefix := "e2e-" + stacktest.UniqueName(t, "") + "."
	sl, err := slice.New(slice.Options{
		BinDir: binDir, RunDir: runDir, Brokers: eps.KafkaBrokers, Registry: eps.SchemaRegistryURL,
		Prefix: prefix, QueryToken: token, DLQ: &slice.DLQOptions{},
		Orders: &slice.OrdersOptions{PollInterval: time.Second, Args: []string{"-rate=20", "-max-orders=40", "-broken=0.1", "-fault-rate=0.1"}},
		Catalog: &slice.CatalogOptions{DatabaseURL: eps.DatabaseURL, CDCDatabaseURL: eps.CatalogDatabaseURL,
			Init: []catalogdb.InitOption{catalogdb.WithProducts(20), catalogdb.WithCustomers(20)}},
		// Refresh the gauges within the test's few seconds.
		Env: map[string][]string{"bq-writer": {"WAREHOUSE_STORAGE_REFRESH_INTERVAL=10s"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cctx, ccancel := context.WithTimeout(context.Background(), time.Minute)
		defer ccancel()
		if err := sl.Stop(); err != nil {
			t.Errorf("stop: %v", err)
		}
		if err := sl.DropCatalog(cctx); err != nil {
			t.Errorf("drop catalog: %v", err)
		}
		if err := sl.DropDLQ(cctx); err != nil {
			t.Errorf("drop the dead-letter store: %v", err)
		}
	})
	progress("service logs: %s", runDir)
	if err := sl.Start(ctx); err != nil {
		t.Fatal(err)
	}
	progress("slice up: %s", strings.Join(sl.Names, ", "))

	// Click events, some broken (dead letters) and some duplicated, on the raw topic and
	// through the HTTP collector.
	prod, err := kgo.NewClient(kgo.SeedBrokers(eps.KafkaBrokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	gen := clickgen.New(clickgen.WithSeed(uint64(began.UnixNano())), clickgen.WithBrokenFraction(0.1), clickgen.WithDuplicateFraction(0.05))
	var recs []*kgo.Record
	for range 300 {
		r := gen.Next()
		recs = append(recs, &kgo.Record{Topic: sl.Topics.Raw, Key: r.Key, Value: r.Value})
	}
	if err := prod.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	var batch [][]byte
	for range 20 {
		batch = append(batch, gen.Next().Value)
	}
	for i, body := range [][]byte{append(append([]byte("["), bytes.Join(batch, []byte(","))...), ']'), []byte("not json")} {
		// The batch must be accepted (a collector just started may answer 503 until its
		// producer connects: retried); the broken body is refused, whatever the code.
		for attempt := 0; ; attempt++ {
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, sl.CollectorURL(), bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("X-Write-Key", sl.WriteKey)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_ = resp.Body.Close()
			if i > 0 || resp.StatusCode == http.StatusOK {
				break
			}
			if resp.StatusCode != http.StatusServiceUnavailable || attempt >= 20 {
				t.Fatalf("the collector answered the batch %d, want 200", resp.StatusCode)
			}
			time.Sleep(500 * time.Millisecond)
		}
	}

	// Catalog: a snapshot, then CDC changes (some invalid: dead letters).
	run, _, err := sl.CatalogSync(ctx, "", false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sl.CatalogWait(ctx, run.ID); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, eps.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	m, err := catalogdb.NewMutator(ctx, conn, catalogdb.MutatorConfig{Schema: sl.CatalogSchema(), Seed: uint64(began.UnixNano()), BadFraction: 0.2})
	if err != nil {
		t.Fatal(err)
	}
	for range 20 {
		if _, err := m.Step(ctx); err != nil {
			progress("catalog change: %v", err) // a key taken meanwhile: nothing changed
		}
	}
	progress("records sent: 300 raw, 21 through the collector, a snapshot and 20 catalog changes; orders from the storefront")

	// Wait until the warehouse holds click events, orders and dimension rows, and the gauges
	// refreshed, then scrape every service.
	deadline := time.Now().Add(90 * time.Second)
	for {
		var counts []int64
		for _, table := range []string{"fact_events", "fact_orders", "dim_products"} {
			n, err := sl.QueryInt(ctx, "SELECT count(*) FROM "+table)
			if err != nil {
				n = 0
			}
			counts = append(counts, n)
		}
		if !slices.Contains(counts, 0) {
			progress("warehouse: %v rows (fact_events, fact_orders, dim_products)", counts)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the warehouse holds %v rows (fact_events, fact_orders, dim_products) after 90s: see %s", counts, runDir)
		}
		time.Sleep(time.Second)
	}
	dlqWorkload(ctx, t, sl, prod)
	progress("dead-letter store: a replay, a retention run, an undecodable record and a re-delivered dead letter")
	time.Sleep(15 * time.Second) // readiness (15s), lag, storage and dead-letter store refreshes

	exposed := map[string][]string{} // sample name -> services
	for _, name := range sl.Names {
		p := sl.Procs[name]
		if !slices.Contains(observability.Services, name) {
			continue // the storefront simulator
		}
		series, err := slice.Scrape(ctx, p.HTTPAddr, "")
		if err != nil {
			t.Fatalf("scrape %s: %v", name, err)
		}
		for _, s := range series {
			if svcs := exposed[s.Name]; !slices.Contains(svcs, name) {
				exposed[s.Name] = append(svcs, name)
			}
		}
	}
	// The reconciliation's figures (the reconcile command's -listen serves these gauges),
	// from a real report of the slice's clickstream, which must balance.
	rep := assertReconciled(ctx, t, sl, reconcile.SourceClickstream, reconcile.Window{From: began, To: time.Now()})
	recReg := prometheus.NewRegistry()
	rm, err := reconcile.NewMetrics(recReg)
	if err != nil {
		t.Fatal(err)
	}
	rm.Set(rep)
	families, err := recReg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		exposed[f.GetName()] = append(exposed[f.GetName()], "reconcile")
	}

	var missing []string
	for _, r := range refs {
		if len(exposed[r.Metric]) == 0 {
			missing = append(missing, fmt.Sprintf("%s (in %s)", r.Metric, strings.Join(r.Where, "; ")))
		}
	}
	sort.Strings(missing)
	progress("%d of %d referenced metrics exposed", len(refs)-len(missing), len(refs))
	if len(missing) > 0 {
		t.Errorf("%d metrics the dashboards or rules select are exposed by no service (service logs: %s):\n  %s",
			len(missing), runDir, strings.Join(missing, "\n  "))
	}
}

// dlqWorkload makes dlq-handler do what its counters count: a replay, a retention run, a record
// on its topic that is not a DeadLetter, and a dead letter delivered twice.
func dlqWorkload(ctx context.Context, t *testing.T, sl *slice.Slice, prod *kgo.Client) {
	t.Helper()
	var dls []slice.DeadLetter
	for deadline := time.Now().Add(60 * time.Second); len(dls) == 0; time.Sleep(time.Second) {
		var err error
		if dls, err = sl.DLQ.List(ctx, url.Values{"stage": {"validator"}}); err != nil {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatal("no dead letter of the validator stored after 60s")
		}
	}
	if _, err := sl.DLQ.Replay(ctx, slice.ReplayRequest{IDs: []string{dls[0].ID}}); err != nil {
		t.Fatalf("replay: %v", err)
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, sl.DLQ.URL+"/v1/retention", strings.NewReader("{}"))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+sl.DLQ.OperatorToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /v1/retention: %s", resp.Status)
	}
	// The first record on the store's topic, delivered again: a duplicate.
	cl, err := kgo.NewClient(kgo.SeedBrokers(sl.Opts.Brokers...), kgo.ConsumeTopics(sl.DLQ.Topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var first *kgo.Record
	for first == nil {
		fs := cl.PollRecords(ctx, 1)
		if err := fs.Err0(); err != nil {
			t.Fatalf("read %s: %v", sl.DLQ.Topic, err)
		}
		if recs := fs.Records(); len(recs) > 0 {
			first = recs[0]
		}
	}
	again := &kgo.Record{Topic: first.Topic, Key: first.Key, Value: first.Value, Headers: first.Headers}
	junk := &kgo.Record{Topic: sl.DLQ.Topic, Value: []byte("not a dead letter")}
	if err := prod.ProduceSync(ctx, again, junk).FirstErr(); err != nil {
		t.Fatal(err)
	}
}
