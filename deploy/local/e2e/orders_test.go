package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/ecomstream/platform/deploy/local/reconcile"
	"github.com/ecomstream/platform/deploy/local/slice"
	"github.com/ecomstream/platform/deploy/local/stacktest"
	"github.com/ecomstream/platform/deploy/local/storefront"
	"github.com/ecomstream/platform/deploy/local/svcrun"
	"github.com/ecomstream/platform/pkg/avroserde"
	"github.com/ecomstream/platform/pkg/deadletter"
	protoavro "github.com/ecomstream/platform/proto/avro"
)

// The orders scenario. At -speed 86400 a shop day passes every wall second:
// an order's longest life (paid within 30 minutes, shipped within 36 hours,
// delivered within 4 days, refunds up to 14 days later, a chain of partial
// refunds a few days apart) ends within about 40 wall seconds. Arrivals are
// paced in wall time: ordersRate/burstFactor a minute until the pipeline
// flows, then the burst (ordersRate a minute) until ordersTotal.
const (
	ordersTotal     = 2500
	ordersRate      = 2400 // orders per wall minute in the burst
	ordersBurst     = 16   // -burst-factor
	ordersSpeed     = 86400
	ordersKillAfter = 300 // fact_orders rows before each kill -9 (real progress, not a start-up)
)

// TestE2EOrders runs the orders path on the real stack (the storefront
// simulator, ingest-orders, validator and bq-writer as processes) for a few
// thousand orders through every life-cycle step, with API faults of every
// kind, webhooks (some twice, some out of order) next to the cursor poll,
// and kill -9 of ingest-orders in the middle of a poll and of bq-writer
// while orders flow. Once the simulator has no open life cycle left, it
// proves against the simulator's own log of every version it made:
//   - every order is in fact_orders once, at its latest well-formed version,
//     with that version's status, amounts and stage timestamps, and that
//     version's lines in fact_order_items, row by row;
//   - every version of a deliberately broken order is dead-lettered by the
//     validator with exactly the rule its defect names, no broken version is
//     stored, and no good version is dead-lettered;
//   - poll and webhook both delivered, and the warehouse kept each version once;
//   - late updates (stamped in the past) are stored like any other;
//   - every fault kind was served, and ingest-orders counted the failing ones;
//   - the run balances in the reconciliation (assertReconciled), across both kills.
func TestE2EOrders(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test: runs without -short, against the local stack")
	}
	eps := stacktest.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	began := time.Now()

	root, binDir, _, err := svcrun.BuildTree(ctx)
	if err != nil {
		t.Fatal(err)
	}
	dlqFrom := endOffsets(ctx, t, eps.KafkaBrokers, deadletter.Topic)

	runDir := filepath.Join(root, ".run", "e2e", t.Name()+"-"+time.Now().Format("20060102-150405"))
	prefix := "e2e-" + stacktest.UniqueName(t, "") + "."
	simSeed := uint64(time.Now().UnixNano())
	sl, err := slice.New(slice.Options{
		BinDir: binDir, RunDir: runDir, Brokers: eps.KafkaBrokers, Registry: eps.SchemaRegistryURL,
		Prefix: prefix, QueryToken: token,
		Orders: &slice.OrdersOptions{
			Speed: ordersSpeed, PollInterval: time.Second,
			Args: []string{
				"-seed=" + strconv.FormatUint(simSeed, 10),
				"-rate=" + strconv.Itoa(ordersRate/ordersBurst), "-burst-factor=" + strconv.Itoa(ordersBurst),
				"-max-orders=" + strconv.Itoa(ordersTotal),
				"-broken=0.03", // and the default 5% of changes stamped late
				// Random faults of every kind, besides the ones queued below.
				"-fault-rate=0.03", "-slow-delay=2s", "-retry-after=1",
				"-webhook-duplicates=0.05", "-webhook-reorder=0.1",
			},
		},
		Env: map[string][]string{
			// Small pages, so rounds have several (a repeat fault needs a page_token),
			// and a short backoff cap, so faults delay rounds by seconds, not a minute.
			"ingest-orders": {"ORDERS_PAGE_SIZE=50", "ORDERS_BACKOFF_MAX=2s"},
			"validator":     {"KAFKA_MAX_POLL_RECORDS=200"},
			"bq-writer":     {"KAFKA_MAX_POLL_RECORDS=200"},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("service logs: %s; storefront seed %d", runDir, simSeed)
	if err := sl.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer sl.Stop()

	stats := func() storefront.Stats {
		var st storefront.Stats
		if err := sl.StorefrontDo(ctx, "GET", "/v1/admin/stats", nil, &st); err != nil {
			t.Fatalf("storefront stats: %v", err)
		}
		return st
	}
	faults := func() storefront.FaultStatus {
		var fs storefront.FaultStatus
		if err := sl.StorefrontDo(ctx, "GET", "/v1/admin/faults", nil, &fs); err != nil {
			t.Fatalf("storefront faults: %v", err)
		}
		return fs
	}
	rows := func() int64 {
		n, err := sl.QueryInt(ctx, "SELECT count(*) FROM fact_orders")
		if err != nil {
			return -1 // bq-writer is down or starting: no progress to see
		}
		return n
	}
	ingest := sl.Procs["ingest-orders"]
	scrapeIngest := func() []slice.Series {
		s, err := slice.Scrape(ctx, ingest.HTTPAddr, "ecom_orders_")
		if err != nil {
			t.Fatalf("ingest-orders metrics: %v", err)
		}
		return s
	}
	// waitUntil polls cond until it holds, printing progress every 5 s, and
	// reports whether it held within limit; waitFor fails the test at once if not.
	waitUntil := func(what string, limit time.Duration, cond func() (bool, string)) bool {
		t.Helper()
		deadline, next := time.Now().Add(limit), time.Now().Add(5*time.Second)
		for {
			ok, progress := cond()
			if ok {
				t.Logf("%s after %s: %s", what, time.Since(began).Round(time.Second), progress)
				return true
			}
			if time.Now().After(deadline) {
				t.Errorf("%s: not within %s: %s", what, limit, progress)
				return false
			}
			if time.Now().After(next) {
				t.Logf("waiting for %s: %s", what, progress)
				next = time.Now().Add(5 * time.Second)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	waitFor := func(what string, limit time.Duration, cond func() (bool, string)) {
		t.Helper()
		if !waitUntil(what, limit, cond) {
			t.FailNow()
		}
	}

	// The pipeline flows by both paths; then the sale starts.
	waitFor("first orders stored by poll and webhook", time.Minute, func() (bool, string) {
		m := scrapeIngest()
		api, hook := slice.Sum(m, "ecom_orders_produced_total", map[string]string{"source": "api"}), slice.Sum(m, "ecom_orders_produced_total", map[string]string{"source": "webhook"})
		n := rows()
		return api > 0 && hook > 0 && n > 0, fmt.Sprintf("produced api %.0f webhook %.0f, fact_orders %d", api, hook, n)
	})
	if err := sl.StorefrontDo(ctx, "POST", "/v1/admin/burst", map[string]bool{"on": true}, nil); err != nil {
		t.Fatal(err)
	}

	// kill -9 ingest-orders in the middle of a poll: a queued slow fault holds
	// a page request open for -slow-delay, and the kill lands inside it.
	waitFor("progress before killing ingest-orders", 2*time.Minute, func() (bool, string) {
		n := rows()
		return n >= ordersKillAfter, fmt.Sprintf("fact_orders %d", n)
	})
	slowBefore := faults().Served[storefront.FaultSlow]
	if err := sl.StorefrontDo(ctx, "POST", "/v1/admin/faults", storefront.FaultRequest{Next: []string{storefront.FaultSlow}}, nil); err != nil {
		t.Fatal(err)
	}
	waitFor("a page request held by the slow fault", 30*time.Second, func() (bool, string) {
		fs := faults()
		return fs.Served[storefront.FaultSlow] > slowBefore && len(fs.Queued) == 0, fmt.Sprintf("faults %+v", fs)
	})
	abortedBefore := faults().Aborted
	beforeKill := scrapeIngest()
	if err := ingest.Kill(); err != nil {
		t.Fatal(err)
	}
	// The kill landed inside a held page request: the simulator saw its client
	// go away while the slow fault held the answer (-slow-delay is 2 s, and the
	// kill follows the fault's start within a poll of 200 ms).
	waitFor("the simulator saw the held page request aborted", 10*time.Second, func() (bool, string) {
		n := faults().Aborted
		return n > abortedBefore, fmt.Sprintf("aborted slow answers %d (before the kill %d)", n, abortedBefore)
	})
	t.Logf("kill -9 ingest-orders mid-poll at %d orders (%s): produced api %.0f webhook %.0f", stats().Orders, time.Since(began).Round(time.Second),
		slice.Sum(beforeKill, "ecom_orders_produced_total", map[string]string{"source": "api"}),
		slice.Sum(beforeKill, "ecom_orders_produced_total", map[string]string{"source": "webhook"}))
	time.Sleep(time.Second) // webhooks fail and back off meanwhile
	if err := sl.StartOne(ctx, "ingest-orders"); err != nil {
		t.Fatalf("restart ingest-orders: %v", err)
	}
	// Every fault kind at least once for sure, besides the random ones; the
	// repeat last, since it waits for a request with a page_token.
	queued := []string{storefront.FaultRateLimit, storefront.FaultServerError, storefront.FaultUnavailable,
		storefront.FaultDrop, storefront.FaultSlow, storefront.FaultRepeat}
	if err := sl.StorefrontDo(ctx, "POST", "/v1/admin/faults", storefront.FaultRequest{Next: queued}, nil); err != nil {
		t.Fatal(err)
	}

	// kill -9 bq-writer while orders flow, once it has stored more since.
	base := rows()
	waitFor("progress before killing bq-writer", 2*time.Minute, func() (bool, string) {
		n := rows()
		return n >= base+ordersKillAfter, fmt.Sprintf("fact_orders %d (was %d)", n, base)
	})
	// Kill it while it writes: order rows went into the warehouse within the
	// last 200 ms (its batches close every KAFKA_COMMIT_INTERVAL, 100 ms). This
	// proves the kill lands in a stream of batches, with records fetched and
	// gathered but not yet written, not in an idle writer; which batch was cut
	// and how far is not visible from outside the process. What the kill may
	// lose or repeat, the comparison with the version log below finds.
	bqRows := func() float64 {
		m, err := slice.Scrape(ctx, sl.Procs["bq-writer"].HTTPAddr, "ecom_warehouse_rows_total")
		if err != nil {
			t.Fatalf("bq-writer metrics: %v", err)
		}
		return slice.Sum(m, "ecom_warehouse_rows_total", map[string]string{"table": "fact_orders"})
	}
	waitFor("bq-writer writing order rows", 30*time.Second, func() (bool, string) {
		a := bqRows()
		time.Sleep(200 * time.Millisecond)
		b := bqRows()
		return b > a, fmt.Sprintf("fact_orders rows written %.0f, 200 ms later %.0f", a, b)
	})
	if err := sl.Procs["bq-writer"].Kill(); err != nil {
		t.Fatal(err)
	}
	t.Logf("kill -9 bq-writer at %d orders (%s)", stats().Orders, time.Since(began).Round(time.Second))
	time.Sleep(time.Second)
	if err := sl.StartOne(ctx, "bq-writer"); err != nil {
		t.Fatalf("restart bq-writer: %v", err)
	}

	// The arrivals stop at ordersTotal; every life cycle runs to its end.
	waitFor("every life cycle ended", 4*time.Minute, func() (bool, string) {
		st := stats()
		return st.ArrivalsDone && st.Open == 0, fmt.Sprintf("orders %d/%d, open %d, versions %d, shop time %s, fact_orders %d",
			st.Orders, ordersTotal, st.Open, st.Versions, st.ShopTime.Format(time.DateOnly), rows())
	})
	final := stats()
	orders, nVersions, err := readVersionLog(sl)
	if err != nil {
		t.Fatal(err)
	}
	if len(orders) != final.Orders || nVersions != final.Versions {
		t.Fatalf("version log has %d orders and %d versions, the simulator's stats say %d and %d", len(orders), nVersions, final.Orders, final.Versions)
	}
	wantVersion := map[string]int64{}
	for id, l := range orders {
		if v, ok := l.want(); ok {
			wantVersion[id] = int64(v.Order.Version)
		}
	}
	// Not caught up in time: the comparison below says what differs.
	waitUntil("the warehouse caught up", 90*time.Second, func() (bool, string) {
		at, n, err := warehouseProgress(ctx, sl, wantVersion)
		return err == nil && at == len(wantVersion) && n == len(wantVersion),
			fmt.Sprintf("%d of %d orders at their latest version, %d rows (err %v)", at, len(wantVersion), n, err)
	})
	// Whatever ingest-orders has produced so far, a duplicate or an older
	// version included, has landed once the validator and bq-writer have
	// consumed every committed record of the order topics; the comparison
	// below then sees it.
	waitFor("the validator and bq-writer at the end of the order topics", time.Minute, func() (bool, string) {
		ok, progress, err := groupsCaughtUp(ctx, eps.KafkaBrokers,
			groupTopic{prefix + "validator", sl.Topics.Orders}, groupTopic{prefix + "bq-writer", sl.Topics.OrdersValid})
		if err != nil {
			return false, err.Error()
		}
		return ok, progress
	})

	// 1. The warehouse against the version log, row by row.
	wh := checkWarehouse(ctx, t, sl, orders)

	// 2. Dead letters.
	reg, err := avroserde.New(avroserde.Config{URL: eps.SchemaRegistryURL, AutoRegister: true, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	dlqCodec, err := reg.Codec(ctx, avroserde.SubjectFor(deadletter.Topic), protoavro.DeadLetter)
	if err != nil {
		t.Fatal(err)
	}
	orderCodec, err := reg.Codec(ctx, avroserde.SubjectFor(sl.Topics.Orders), protoavro.Order)
	if err != nil {
		t.Fatal(err)
	}
	wantDead := map[string]bool{}
	kinds := map[string]int{}
	for id, l := range orders {
		if l.broken != "" {
			kinds[l.broken]++
		}
		for _, v := range l.versions {
			if v.Broken != "" {
				wantDead[versionKey(id, int64(v.Order.Version))] = true
			}
		}
	}
	dead := consumeOrderDeadLetters(ctx, t, eps.KafkaBrokers, dlqFrom, dlqCodec, orderCodec, prefix, wantDead,
		func(id string) bool { return orders[id] != nil })
	brokenVersions := checkDeadLetters(t, orders, dead)
	for _, k := range storefront.BrokenKinds() {
		if kinds[k] == 0 {
			t.Errorf("no order broken as %s among %d orders: the scenario did not cover it", k, len(orders))
		}
	}

	// Every life-cycle step happened, and the final states are in the warehouse.
	steps := map[string]int{}
	for _, l := range orders {
		if l.broken == "" {
			for _, v := range l.versions {
				steps[v.Order.Status]++
			}
		}
	}
	for _, s := range storefront.Statuses() {
		if steps[s] == 0 {
			t.Errorf("no well-formed order went through %s: the scenario did not cover every life-cycle step (%v)", s, steps)
		}
	}
	for _, s := range []string{storefront.StatusDelivered, storefront.StatusCancelled, storefront.StatusPartiallyRefunded, storefront.StatusRefunded} {
		if wh.byStatus[s] == 0 {
			t.Errorf("fact_orders has no %s order (%v)", s, wh.byStatus)
		}
	}

	// 3. Poll and webhook both delivered, and the warehouse kept each version once.
	after := scrapeIngest()
	produced := func(src string) float64 {
		m := map[string]string{"source": src}
		return slice.Sum(beforeKill, "ecom_orders_produced_total", m) + slice.Sum(after, "ecom_orders_produced_total", m)
	}
	if produced("api") == 0 || produced("webhook") == 0 {
		t.Errorf("ecom_orders_produced_total: api %.0f, webhook %.0f; want both paths to deliver", produced("api"), produced("webhook"))
	}
	bq, err := slice.Scrape(ctx, sl.Procs["bq-writer"].HTTPAddr, "ecom_warehouse_rows_total")
	if err != nil {
		t.Fatal(err)
	}
	dupRows := slice.Sum(bq, "ecom_warehouse_rows_total", map[string]string{"table": "fact_orders", "result": "duplicate"})
	if dupRows == 0 {
		t.Errorf("bq-writer (since its restart) counted no duplicate order version although poll and webhook both deliver every one: %v", bq)
	}

	// 4. Late updates.
	if wh.lateLatest == 0 {
		t.Errorf("no stored order's version is a late update (%d late versions in the log): the scenario did not cover them", wh.lateVersions)
	}

	// Faults: every kind served, and the failing ones counted by ingest-orders.
	fs := faults()
	for _, k := range storefront.FaultKinds() {
		if fs.Served[k] == 0 {
			t.Errorf("fault %s was never served (faults %+v)", k, fs)
		}
	}
	if len(fs.Queued) > 0 {
		t.Errorf("queued faults %v were never served", fs.Queued)
	}
	apiErrors := map[string]float64{}
	for _, m := range [][]slice.Series{beforeKill, after} {
		for _, s := range m {
			if s.Name == "ecom_orders_api_errors_total" {
				apiErrors[s.Labels["status"]] += s.Value
			}
		}
	}
	for _, status := range []string{"429", "500", "503", "body"} {
		if apiErrors[status] == 0 {
			t.Errorf("ecom_orders_api_errors_total{status=%q} is 0 (all: %v; faults served %v)", status, apiErrors, fs.Served)
		}
	}

	// Every webhook delivery got through in the end, the kill of ingest-orders included.
	if wst := stats().Webhooks; wst == nil || wst.Abandoned != 0 || wst.Dropped != 0 || wst.Delivered == 0 {
		t.Errorf("webhook deliveries: %+v, want some delivered and none abandoned or dropped", wst)
	}

	// Every version balances in the reconciliation across both kills: written, superseded
	// by a later one, deduplicated (poll and webhook) or dead-lettered.
	assertReconciled(ctx, t, sl, reconcile.SourceOrders, reconcile.Window{From: began, To: time.Now()})

	t.Logf("%d orders (%d versions, %d late; broken %v, %d broken versions, %d dead-lettered versions); fact_orders %d rows by source %v, by status %v; "+
		"fact_order_items %d rows; %d stored versions are late updates; produced api %.0f webhook %.0f; bq-writer duplicates since restart %.0f; "+
		"faults served %v, api errors %v; %s in all",
		len(orders), nVersions, wh.lateVersions, kinds, brokenVersions, len(dead), wh.rows, wh.bySource, wh.byStatus,
		wh.items, wh.lateLatest, produced("api"), produced("webhook"), dupRows, fs.Served, apiErrors, time.Since(began).Round(time.Second))
}
