package e2e

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ecomstream/platform/deploy/local/catalogdb"
	"github.com/ecomstream/platform/deploy/local/reconcile"
	"github.com/ecomstream/platform/deploy/local/slice"
	"github.com/ecomstream/platform/deploy/local/stacktest"
	"github.com/ecomstream/platform/deploy/local/svcrun"
	"github.com/ecomstream/platform/pkg/avroserde"
	"github.com/ecomstream/platform/pkg/deadletter"
	"github.com/ecomstream/platform/pkg/events"
	protoavro "github.com/ecomstream/platform/proto/avro"
)

// TestE2EReconcileCatalog: the catalog path (a snapshot, CDC changes real and no-op, a second,
// full snapshot re-reading every row) across a kill -9 of bq-writer balances in the
// reconciliation; and a product change the validator consumed without passing on is a
// difference of 1 at the validator.
func TestE2EReconcileCatalog(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test: runs without -short, against the local stack")
	}
	const products, customers = 200, 300
	eps := stacktest.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
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
		Catalog: &slice.CatalogOptions{DatabaseURL: eps.DatabaseURL, CDCDatabaseURL: eps.CatalogDatabaseURL,
			Init: []catalogdb.InitOption{catalogdb.WithProducts(products), catalogdb.WithCustomers(customers)}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := sl.Stop(); err != nil {
			t.Errorf("stop: %v", err)
		}
		cctx, ccancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer ccancel()
		if err := sl.DropCatalog(cctx); err != nil {
			t.Errorf("drop catalog: %v", err)
		}
	})
	t.Logf("service logs: %s", runDir)
	if err := sl.Start(ctx); err != nil {
		t.Fatal(err)
	}
	snapshot := func(full bool) {
		t.Helper()
		run, _, err := sl.CatalogSync(ctx, "", full)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := sl.CatalogWait(ctx, run.ID); err != nil {
			t.Fatal(err)
		}
	}
	snapshot(false)
	t.Log("kill -9 bq-writer")
	if err := sl.Procs["bq-writer"].Kill(); err != nil {
		t.Fatal(err)
	}
	// CDC while it is down: real changes, and no-op ones (updated_at only, no tracked attribute).
	conn, err := pgx.Connect(ctx, eps.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	schema := pgx.Identifier{sl.CatalogSchema()}.Sanitize()
	for _, q := range []string{
		"UPDATE " + schema + ".products SET price_minor = price_minor + 1 WHERE product_id IN (SELECT product_id FROM " + schema + ".products ORDER BY product_id LIMIT 20)",
		"UPDATE " + schema + ".products SET updated_at = now() WHERE product_id IN (SELECT product_id FROM " + schema + ".products ORDER BY product_id DESC LIMIT 10)",
		"UPDATE " + schema + ".customers SET country = 'DE' WHERE customer_id IN (SELECT customer_id FROM " + schema + ".customers ORDER BY customer_id LIMIT 15)",
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	if err := sl.StartOne(ctx, "bq-writer"); err != nil {
		t.Fatal(err)
	}
	snapshot(true) // every row again, at the snapshot's LSN: no-ops
	time.Sleep(3 * time.Second)

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
	c := &reconcile.Catalog{Log: &reconcile.Log{Opts: opts, Adm: adm, Lateness: time.Minute},
		Warehouse: &reconcile.QueryAPI{URL: "http://" + sl.Procs["bq-writer"].HTTPAddr, Token: token}}
	c.CatalogNames(prefix)
	if c.DeadLetter, err = reg.Codec(ctx, avroserde.SubjectFor(deadletter.Topic), protoavro.DeadLetter); err != nil {
		t.Fatal(err)
	}
	for i, ent := range []string{protoavro.ProductChange, protoavro.CustomerChange} {
		if c.Entities[i].Codec, err = reg.Codec(ctx, avroserde.SubjectFor(c.Entities[i].Topic), ent); err != nil {
			t.Fatal(err)
		}
	}
	w := reconcile.Window{From: start, To: time.Now()}
	rep := settleReport(ctx, t, c.Reconcile, w)
	if !rep.Balanced() {
		t.Fatalf("the catalog run does not balance:\n%s", reportText(rep))
	}
	// Two snapshots and 45 CDC changes: 20 prices, 10 updated_at only (no-ops), 15 countries
	// (no-ops where the customer was in DE already); the second snapshot's rows are no-ops.
	if rep.Terms[reconcile.TermConsumed] != 2*(products+customers)+45 || rep.Terms[reconcile.TermSuperseded] < products+customers+10 ||
		rep.Terms[reconcile.TermWritten] < products+customers+20 {
		t.Errorf("terms %v: want %d consumed, the first snapshot and the real changes written, the rest superseded", rep.Terms, 2*(products+customers)+45)
	}
	t.Logf("balanced after kill -9:\n%s", reportText(rep))

	// The loss: the validator, stopped, has its committed offset moved past a change it never
	// handled.
	if err := sl.Procs["validator"].Stop(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := adm.LeaveGroup(ctx, kadm.LeaveGroup(c.ValidatorGroup).InstanceIDs(prefix+"validator-0")); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	lostID := "reconcile-lost-" + stacktest.UniqueName(t, "")
	b, err := c.Entities[0].Codec.Encode(&events.ProductChange{ProductID: lostID, Op: "upsert", Name: "lost", PriceMinor: 100, Currency: "EUR",
		IsActive: true, UpdatedAt: now, SyncedAt: now, Source: "cdc", SourceLsn: 1, SourceOrdinal: 1})
	if err != nil {
		t.Fatal(err)
	}
	lost, err := prod.ProduceSync(ctx, &kgo.Record{Topic: c.Entities[0].Topic, Key: []byte(lostID), Value: b}).First()
	if err != nil {
		t.Fatal(err)
	}
	offs := kadm.Offsets{}
	offs.Add(kadm.Offset{Topic: lost.Topic, Partition: lost.Partition, At: lost.Offset + 1, LeaderEpoch: -1})
	if err := adm.CommitAllOffsets(ctx, c.ValidatorGroup, offs); err != nil {
		t.Fatalf("moving the validator's offset past the change: %v", err)
	}
	if err := sl.StartOne(ctx, "validator"); err != nil {
		t.Fatal(err)
	}
	w.To = time.Now().Add(time.Second)
	rep = settleReport(ctx, t, c.Reconcile, w)
	out := reportText(rep)
	if rep.Difference() != 1 || !strings.Contains(out, lostID) {
		t.Fatalf("a lost change: difference %d, want 1, listing %s:\n%s", rep.Difference(), lostID, out)
	}
	for _, h := range rep.Hops {
		if want := map[bool]int64{true: 1}[h.Stage == reconcile.StageValidator+" (products)"]; h.Difference() != want {
			t.Errorf("%s: difference %d, want %d", h.Stage, h.Difference(), want)
		}
	}
	t.Logf("the injected loss:\n%s", out)
}
