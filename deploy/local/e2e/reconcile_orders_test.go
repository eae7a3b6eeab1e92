package e2e

import (
	"context"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ecomstream/platform/deploy/local/reconcile"
	"github.com/ecomstream/platform/deploy/local/slice"
	"github.com/ecomstream/platform/deploy/local/stacktest"
	"github.com/ecomstream/platform/deploy/local/storefront"
	"github.com/ecomstream/platform/deploy/local/svcrun"
	"github.com/ecomstream/platform/pkg/avroserde"
	"github.com/ecomstream/platform/pkg/deadletter"
	"github.com/ecomstream/platform/pkg/events"
	protoavro "github.com/ecomstream/platform/proto/avro"
)

// TestE2EReconcileOrders: the orders path (the storefront simulator's versions by poll and
// webhook, broken orders among them) across a kill -9 of ingest-orders and bq-writer balances
// in the reconciliation, superseded versions and poll/webhook duplicates included; and a
// version the validator consumed without passing it on is a difference of 1 at the validator.
func TestE2EReconcileOrders(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test: runs without -short, against the local stack")
	}
	const orders = 400
	eps := stacktest.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	root, binDir, _, err := svcrun.BuildTree(ctx)
	if err != nil {
		t.Fatal(err)
	}
	runDir := filepath.Join(root, ".run", "e2e", t.Name()+"-"+time.Now().Format("20060102-150405"))
	prefix := "e2e-" + stacktest.UniqueName(t, "") + "."
	start := time.Now()
	sl, err := slice.New(slice.Options{BinDir: binDir, RunDir: runDir, Brokers: eps.KafkaBrokers, Registry: eps.SchemaRegistryURL,
		Prefix: prefix, QueryToken: token,
		Orders: &slice.OrdersOptions{Speed: 86400, PollInterval: time.Second, Args: []string{
			"-seed=" + strconv.FormatInt(time.Now().UnixNano(), 10), "-rate=1200", "-max-orders=" + strconv.Itoa(orders),
			"-broken=0.05", "-webhook-duplicates=0.05"}},
		Env: map[string][]string{"ingest-orders": {"ORDERS_PAGE_SIZE=50"}, "validator": {"KAFKA_MAX_POLL_RECORDS=100"}, "bq-writer": {"KAFKA_MAX_POLL_RECORDS=100"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("service logs: %s", runDir)
	if err := sl.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer sl.Stop()

	opts := []kgo.Opt{kgo.SeedBrokers(eps.KafkaBrokers...)}
	prod, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	adm := kadm.NewClient(prod)
	reg, err := avroserde.New(avroserde.Config{URL: eps.SchemaRegistryURL, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	o := &reconcile.Orders{Log: &reconcile.Log{Opts: opts, Adm: adm, Lateness: time.Minute},
		Warehouse: &reconcile.QueryAPI{URL: "http://" + sl.Procs["bq-writer"].HTTPAddr, Token: token}}
	o.OrdersNames(prefix)
	if o.DeadLetter, err = reg.Codec(ctx, avroserde.SubjectFor(deadletter.Topic), protoavro.DeadLetter); err != nil {
		t.Fatal(err)
	}

	stats := func() storefront.Stats {
		var st storefront.Stats
		if err := sl.StorefrontDo(ctx, "GET", "/v1/admin/stats", nil, &st); err != nil {
			t.Fatalf("storefront stats: %v", err)
		}
		return st
	}
	wait := func(what string, limit time.Duration, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(limit); !cond(); time.Sleep(200 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within %s", what, limit)
			}
		}
	}
	wait("orders flowing", 2*time.Minute, func() bool {
		n, err := sl.QueryInt(ctx, "SELECT count(*) FROM fact_orders")
		return err == nil && n >= 50
	})
	t.Log("kill -9 ingest-orders and bq-writer")
	for _, n := range []string{"ingest-orders", "bq-writer"} {
		if err := sl.Procs[n].Kill(); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(300 * time.Millisecond)
	for _, n := range []string{"bq-writer", "ingest-orders"} {
		if err := sl.StartOne(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	wait("every life cycle ended", 4*time.Minute, func() bool { st := stats(); return st.ArrivalsDone && st.Open == 0 })
	time.Sleep(3 * time.Second) // the last poll round
	// The schema is registered once ingest-orders produced.
	if o.Order, err = reg.Codec(ctx, avroserde.SubjectFor(o.Topic), protoavro.Order); err != nil {
		t.Fatal(err)
	}
	w := reconcile.Window{From: start, To: time.Now()}
	rep := settleReport(ctx, t, o.Reconcile, w)
	if !rep.Balanced() {
		t.Fatalf("the orders run does not balance:\n%s", reportText(rep))
	}
	if rep.Terms[reconcile.TermSuperseded] == 0 || rep.Terms[reconcile.TermDeduplicated] == 0 || rep.Terms[reconcile.TermDeadLettered] == 0 ||
		rep.Terms[reconcile.TermWritten] < orders*9/10 {
		t.Errorf("terms %v: want about %d written, and some superseded, deduplicated and dead-lettered", rep.Terms, orders)
	}
	t.Logf("balanced after kill -9:\n%s", reportText(rep))

	// The loss: the validator, stopped, has its committed offset moved past a version it
	// never handled.
	if err := sl.Procs["validator"].Stop(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := adm.LeaveGroup(ctx, kadm.LeaveGroup(o.ValidatorGroup).InstanceIDs(prefix+"validator-0")); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	lostID := "reconcile-lost-" + stacktest.UniqueName(t, "")
	b, err := o.Order.Encode(&events.Order{OrderID: lostID, OrderVersion: 1, UserID: "u", Status: "created", Currency: "EUR",
		OrderTimestamp: now, UpdatedAt: now, Source: "api", ReceivedAt: &now, Items: []events.OrderItem{}})
	if err != nil {
		t.Fatal(err)
	}
	lost, err := prod.ProduceSync(ctx, &kgo.Record{Topic: o.Topic, Key: []byte(lostID), Value: b, Timestamp: now}).First()
	if err != nil {
		t.Fatal(err)
	}
	offs := kadm.Offsets{}
	offs.Add(kadm.Offset{Topic: o.Topic, Partition: lost.Partition, At: lost.Offset + 1, LeaderEpoch: -1})
	if err := adm.CommitAllOffsets(ctx, o.ValidatorGroup, offs); err != nil {
		t.Fatalf("moving the validator's offset past the version: %v", err)
	}
	if err := sl.StartOne(ctx, "validator"); err != nil {
		t.Fatal(err)
	}
	w.To = time.Now().Add(time.Second)
	rep = settleReport(ctx, t, o.Reconcile, w)
	out := reportText(rep)
	if rep.Difference() != 1 || !strings.Contains(out, lostID) {
		t.Fatalf("a lost version: difference %d, want 1, listing %s:\n%s", rep.Difference(), lostID, out)
	}
	for _, h := range rep.Hops {
		if want := map[bool]int64{true: 1}[h.Stage == reconcile.StageValidator]; h.Difference() != want {
			t.Errorf("%s: difference %d, want %d", h.Stage, h.Difference(), want)
		}
	}
	t.Logf("the injected loss:\n%s", out)
}

// settleReport is settle for any source's Reconcile.
func settleReport(ctx context.Context, t *testing.T, reconcileFn func(context.Context, reconcile.Window) (*reconcile.Report, error), w reconcile.Window) *reconcile.Report {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		rep, err := reconcileFn(ctx, w)
		switch {
		case err != nil && time.Now().After(deadline):
			t.Fatal(err)
		case err != nil:
			t.Logf("%v; again", err)
		case rep.Balanced() || time.Now().After(deadline):
			return rep
		case rep.Settled():
			// Settled but off: read once more after a moment (bq-writer's position and rows).
			time.Sleep(2 * time.Second)
			if again, err := reconcileFn(ctx, w); err == nil && again.Settled() {
				return again
			}
		}
		time.Sleep(time.Second)
	}
}
