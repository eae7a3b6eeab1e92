package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ecomstream/platform/deploy/local/catalogdb"
	"github.com/ecomstream/platform/deploy/local/clickgen"
	"github.com/ecomstream/platform/deploy/local/reconcile"
	"github.com/ecomstream/platform/deploy/local/seed"
	"github.com/ecomstream/platform/deploy/local/slice"
	"github.com/ecomstream/platform/deploy/local/stacktest"
	"github.com/ecomstream/platform/deploy/local/svcrun"
	"github.com/ecomstream/platform/pkg/avroserde"
	"github.com/ecomstream/platform/pkg/deadletter"
	"github.com/ecomstream/platform/pkg/events"
	protoavro "github.com/ecomstream/platform/proto/avro"
)

// The catalog scenario's size: a seed small enough for a quick snapshot,
// the 27 scripted transactions, then random mutator changes (a fifth bad) and a burst.
const (
	catalogProducts  = 400
	catalogCustomers = 600
	catalogRandom    = 60
	// minOvertaken is the fewest held changes a newer change of their key
	// must overtake: the script changes more than a dozen keys twice or more.
	minOvertaken = 5
)

// TestE2ECatalog runs the catalog path on the real stack (a schema of its
// own, catalog-sync, validator and bq-writer as processes): an initial
// snapshot of the seed (POST /v1/sync), the scripted history and random
// mutator changes (bad ones among them) through CDC, a delayed path (a relay
// between catalog-sync and the validator holds back the first change of some
// keys until bq-writer has applied the rest: late and out of order), a
// duplicate path (the products topic's records re-sent: replays must be
// no-ops), and a second, incremental snapshot that must send nothing. Then it proves
// against the seed and the mutator's own log:
//   - dim_products and dim_users hold exactly the expected versions, key by
//     key, version by version: valid_from (commit time, or updated_at for the
//     snapshot's), valid_to, is_current and the tracked attributes;
//   - every bad change is dead-lettered by the validator with its rules, and
//     no good one is;
//   - fact_events_pit resolves a product view's product_key and user_key to
//     the version valid at the event's time, before and after the changes;
//   - the catalog and the clickstream balance in the reconciliation
//     (assertReconciled), the delayed and re-sent changes included.
func TestE2ECatalog(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test: runs without -short, against the local stack")
	}
	eps := stacktest.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	began := time.Now()
	progress := func(format string, args ...any) {
		t.Logf("%5.1fs "+format, append([]any{time.Since(began).Seconds()}, args...)...)
	}

	root, binDir, _, err := svcrun.BuildTree(ctx)
	if err != nil {
		t.Fatal(err)
	}
	dlqFrom := endOffsets(ctx, t, eps.KafkaBrokers, deadletter.Topic)
	runDir := filepath.Join(root, ".run", "e2e", t.Name()+"-"+time.Now().Format("20060102-150405"))
	prefix := "e2e-" + stacktest.UniqueName(t, "") + "."
	sl, err := slice.New(slice.Options{
		BinDir: binDir, RunDir: runDir, Brokers: eps.KafkaBrokers, Registry: eps.SchemaRegistryURL,
		Prefix: prefix, QueryToken: token,
		Catalog: &slice.CatalogOptions{DatabaseURL: eps.DatabaseURL, CDCDatabaseURL: eps.CatalogDatabaseURL,
			Init:  []catalogdb.InitOption{catalogdb.WithProducts(catalogProducts), catalogdb.WithCustomers(catalogCustomers)},
			Relay: true},
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
	progress("service logs: %s; schema %s", runDir, sl.CatalogSchema())
	if err := sl.Start(ctx); err != nil {
		t.Fatal(err)
	}
	schema := sl.CatalogSchema()
	progress("slice up; loaded %d products, %d customers", sl.Catalog.Init.Products, sl.Catalog.Init.Customers)
	if sl.Catalog.Init.Products != catalogProducts || sl.Catalog.Init.Customers != catalogCustomers {
		t.Fatalf("Init loaded %d products and %d customers, want %d and %d (a schema left by an earlier run?)",
			sl.Catalog.Init.Products, sl.Catalog.Init.Customers, catalogProducts, catalogCustomers)
	}

	// The delayed path: the first change of every key the script changes more
	// than once (so a newer one overtakes it), and of a seventh of the others.
	ids := seed.Generate(seed.DefaultSeed, catalogCustomers, catalogProducts)
	script, err := catalogdb.Script(ids)
	if err != nil {
		t.Fatal(err)
	}
	routes := map[string]string{sl.Topics.SyncProducts: sl.Topics.Products, sl.Topics.SyncCustomers: sl.Topics.Customers}
	rl, err := startRelay(ctx, eps.KafkaBrokers, prefix+"relay", routes, holdPicker(script, sl.Topics.SyncProducts, sl.Topics.SyncCustomers))
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := rl.stop(); err != nil {
			t.Error(err)
		}
	}()
	relayCaughtUp := []groupTopic{{prefix + "relay", sl.Topics.SyncProducts}, {prefix + "relay", sl.Topics.SyncCustomers}}

	// 1. The initial snapshot of the seed.
	run, joined, err := sl.CatalogSync(ctx, "", false)
	if err != nil || joined {
		t.Fatalf("POST /v1/sync: %v (joined %v)", err, joined)
	}
	if run, err = sl.CatalogWait(ctx, run.ID); err != nil {
		t.Fatal(err)
	}
	progress("snapshot %s: %d rows read, %d changes sent", run.ID, run.RowsRead, run.ChangesSent)
	if want := int64(catalogProducts + catalogCustomers); run.RowsRead != want || run.ChangesSent != want {
		t.Fatalf("initial snapshot read %d rows and sent %d changes, want %d and %d", run.RowsRead, run.ChangesSent, want, want)
	}

	waitCaughtUp(ctx, t, eps.KafkaBrokers, rl, "the relay, after the snapshot", relayCaughtUp...)
	rl.arm() // from here on, changes of picked keys are held back

	// A product view and a customer before any change: resolves to the seed's versions.
	pitProduct, pitUser := ids.Products[0].ProductID, ids.Customers[2].CustomerID // the script changes both
	beforeAt := time.Now().UTC().Add(-time.Second)

	// 2. The scripted history, then random changes, logged.
	conn, err := pgx.Connect(ctx, eps.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	logFile, err := os.Create(filepath.Join(runDir, "catalog-log.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	log, err := catalogdb.ApplyScript(ctx, conn, schema, script, logFile)
	if err != nil {
		t.Fatal(err)
	}
	progress("script: %d transactions, %d row changes", len(script), len(log))
	m, err := catalogdb.NewMutator(ctx, conn, catalogdb.MutatorConfig{Schema: schema, Seed: uint64(began.UnixNano()), BadFraction: 0.2, Log: logFile})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < catalogRandom; i++ {
		step := m.Step
		if i == catalogRandom/2 {
			step = m.Burst
		}
		entries, err := step(ctx)
		var unlogged *catalogdb.UnloggedCommitError
		if errors.As(err, &unlogged) {
			t.Fatal(err)
		}
		log = append(log, entries...) // a failed change (a key taken meanwhile) changed nothing
	}
	st := m.Stats()
	progress("mutator: %d transactions, %d rows, %d failed, bad %v", st.Transactions, st.Rows, st.Failed, st.Bad)
	afterAt := time.Now().UTC()

	// Click events at the two times (product_view of pitProduct by pitUser).
	prod, err := kgo.NewClient(kgo.SeedBrokers(eps.KafkaBrokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	views := map[string]time.Time{}
	for _, at := range []time.Time{beforeAt, afterAt} {
		id, rec := productView(t, pitProduct, pitUser, at)
		views[id] = at
		if err := prod.ProduceSync(ctx, &kgo.Record{Topic: sl.Topics.Raw, Key: rec.Key, Value: rec.Value}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}

	// 3. The delayed path delivers: once the pipeline has applied everything
	// else, the held changes arrive, most of them after a newer change of
	// their key.
	waitCaughtUp(ctx, t, eps.KafkaBrokers, rl, "the relay and bq-writer, before the release", append(relayCaughtUp,
		groupTopic{prefix + "validator", sl.Topics.Products}, groupTopic{prefix + "validator", sl.Topics.Customers},
		groupTopic{prefix + "bq-writer", sl.Topics.ProductsValid}, groupTopic{prefix + "bq-writer", sl.Topics.CustomersValid})...)
	held, overtaken, err := rl.release(ctx)
	if err != nil {
		t.Fatal(err)
	}
	progress("delayed path: released %d held changes, %d of them overtaken by a newer change of their key", held, overtaken)
	if overtaken < minOvertaken {
		t.Fatalf("delayed path: %d held changes were overtaken, want at least %d (the script changes keys more than once)", overtaken, minOvertaken)
	}

	// 4. The duplicate path: every record of the products topic so far, re-sent.
	replayed := replayTopic(ctx, t, eps.KafkaBrokers, sl.Topics.Products)
	progress("re-sent %d product records (replays: no-ops downstream)", replayed)

	// The expected state.
	emailKey := []byte(sl.Catalog.EmailHashKey)
	wantProducts, wantUsers, wantDead := expectedDims(ids, emailKey, log)
	progress("expected: %d product versions, %d user versions, %d dead letters", countVersions(wantProducts), countVersions(wantUsers), len(wantDead))

	// 5. Wait for the warehouse: caught up, and the dimensions as expected.
	var diffs []string
	deadline := time.Now().Add(90 * time.Second)
	for {
		ok, line, err := groupsCaughtUp(ctx, eps.KafkaBrokers, append(relayCaughtUp,
			groupTopic{prefix + "validator", sl.Topics.Products}, groupTopic{prefix + "validator", sl.Topics.Customers},
			groupTopic{prefix + "ingest-clickstream", sl.Topics.Raw}, groupTopic{prefix + "validator", sl.Topics.Events},
			groupTopic{prefix + "bq-writer", sl.Topics.ProductsValid}, groupTopic{prefix + "bq-writer", sl.Topics.CustomersValid},
			groupTopic{prefix + "bq-writer", sl.Topics.Valid})...)
		if err == nil && ok {
			gotP, errP := warehouseDims(ctx, sl, "dim_products", "product_id", "product_key")
			gotU, errU := warehouseDims(ctx, sl, "dim_users", "user_id", "user_key")
			if errP == nil && errU == nil {
				diffs = append(compareDims("dim_products", wantProducts, gotP), compareDims("dim_users", wantUsers, gotU)...)
				if len(diffs) == 0 {
					progress("caught up: dimensions as expected")
					checkPIT(ctx, t, sl, wantProducts, wantUsers, gotP, gotU, pitProduct, pitUser, views)
					break
				}
			} else {
				diffs = []string{fmt.Sprint(errP, errU)}
			}
		}
		if time.Now().After(deadline) {
			t.Errorf("warehouse: %d differences after 90s (caught up %v: %s); first ones:", len(diffs), ok, line)
			for _, d := range first(diffs) {
				t.Error("  " + d)
			}
			break
		}
		time.Sleep(time.Second)
	}

	// 6. A second, incremental snapshot finds nothing CDC did not send.
	run2, _, err := sl.CatalogSync(ctx, "", false)
	if err == nil {
		run2, err = sl.CatalogWait(ctx, run2.ID)
	}
	if err != nil {
		t.Fatal(err)
	}
	if run2.ChangesSent != 0 {
		t.Errorf("incremental snapshot after CDC sent %d changes (%d deletes), want 0", run2.ChangesSent, run2.Deletes)
	}
	runs, err := sl.CatalogRuns(ctx)
	if err != nil || len(runs) != 2 || runs[0].ID != run2.ID {
		t.Errorf("GET /v1/runs: %v, %d runs, want 2 newest first", err, len(runs))
	}

	checkCatalogDeadLetters(ctx, t, eps.KafkaBrokers, eps.SchemaRegistryURL, dlqFrom, sl, wantDead)

	// Every change balances in the reconciliation, the delayed and re-sent ones included
	// (catalog-sync writes to the relay's topics: its hop is what reached the validator's),
	// and so do the two product views.
	w := reconcile.Window{From: began, To: time.Now()}
	assertReconciled(ctx, t, sl, reconcile.SourceCatalog, w)
	assertReconciled(ctx, t, sl, reconcile.SourceClickstream, w)
	progress("done")
}

// productView is a valid product_view of product by user at the given time,
// from a clickgen event with those fields set.
func productView(t *testing.T, product, user string, at time.Time) (string, clickgen.Record) {
	t.Helper()
	g := clickgen.New(clickgen.WithSeed(uint64(at.UnixNano())), clickgen.WithBrokenFraction(0))
	for {
		r := g.Next()
		var ev map[string]any
		if err := json.Unmarshal(r.Value, &ev); err != nil || ev["event_type"] != "product_view" {
			continue
		}
		id := r.EventID
		ev["product_id"], ev["user_id"] = product, user
		ev["event_timestamp"] = at.Format(time.RFC3339Nano)
		b, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		r.Value, r.EventID = b, id
		return id, r
	}
}

// checkPIT: each view's product_key and user_key in fact_events_pit are
// those of the version the oracle says was valid at the event's time.
func checkPIT(ctx context.Context, t *testing.T, sl *slice.Slice, wantP, wantU *dimOracle, gotP, gotU map[string][]*dimVersion,
	product, user string, views map[string]time.Time) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for id, at := range views {
		var rows [][]any
		for {
			var err error
			_, rows, err = sl.Query(ctx, fmt.Sprintf("SELECT CAST(product_key AS VARCHAR), CAST(user_key AS VARCHAR) FROM fact_events_pit WHERE event_id = '%s'", id))
			if err == nil && len(rows) == 1 || time.Now().After(deadline) {
				break
			}
			time.Sleep(500 * time.Millisecond)
		}
		if len(rows) != 1 {
			t.Errorf("fact_events_pit: %d rows for event %s, want 1", len(rows), id)
			continue
		}
		for i, c := range []struct {
			what, key string
			want      *dimOracle
			got       []*dimVersion
		}{{"product_key", product, wantP, gotP[product]}, {"user_key", user, wantU, gotU[user]}} {
			w := c.want.at(c.key, at)
			var wantSK any
			for j, v := range c.want.versions[c.key] {
				if v == w && j < len(c.got) {
					wantSK = c.got[j].SK
				}
			}
			if fmt.Sprint(rows[0][i]) != fmt.Sprint(wantSK) {
				t.Errorf("fact_events_pit event %s at %s: %s %s = %v, want %v (the version valid then: %s)",
					id, at.Format(time.RFC3339Nano), c.what, c.key, rows[0][i], wantSK, showVersions([]*dimVersion{w}))
			}
		}
	}
}

// replayTopic re-sends every committed record of topic (key, value and
// headers) and returns how many.
func replayTopic(ctx context.Context, t *testing.T, brokers []string, topic string) int {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	// Read until a poll of two seconds brings nothing (the topic is quiet:
	// the changes were made before).
	var recs []*kgo.Record
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
		f := cl.PollFetches(pctx)
		pcancel()
		if len(f.Records()) == 0 && len(recs) > 0 {
			break
		}
		for _, r := range f.Records() {
			recs = append(recs, &kgo.Record{Topic: topic, Key: r.Key, Value: r.Value, Headers: r.Headers, Partition: r.Partition})
		}
	}
	if len(recs) == 0 {
		t.Fatalf("replay: no records on %s", topic)
	}
	// Re-sent in their order, each to the partition it came from.
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	return len(recs)
}

// checkCatalogDeadLetters: every bad change is dead-lettered by the
// validator with the rules of its defects, and no good change is.
func checkCatalogDeadLetters(ctx context.Context, t *testing.T, brokers []string, registry string, from map[int32]kgo.Offset,
	sl *slice.Slice, want map[string][]catalogdb.Bad) {
	t.Helper()
	reg, err := avroserde.New(avroserde.Config{URL: registry, AutoRegister: true, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	dlq, err := reg.Codec(ctx, avroserde.SubjectFor(deadletter.Topic), protoavro.DeadLetter)
	if err != nil {
		t.Fatal(err)
	}
	pc, err := reg.Codec(ctx, avroserde.SubjectFor(sl.Topics.Products), protoavro.ProductChange)
	if err != nil {
		t.Fatal(err)
	}
	cc, err := reg.Codec(ctx, avroserde.SubjectFor(sl.Topics.Customers), protoavro.CustomerChange)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]events.DeadLetter{}
	keep := func(dl events.DeadLetter) bool {
		var k string
		switch dl.SourceTopic {
		case sl.Topics.Products:
			var c events.ProductChange
			if _, err := pc.Decode(ctx, dl.OriginalValue, &c); err != nil || c.ChangedAt == nil {
				t.Errorf("product dead letter: %v (changed_at %v)", err, c.ChangedAt)
				return false
			}
			k = deadKey(c.ProductID, *c.ChangedAt, c.SourceOrdinal)
		case sl.Topics.Customers:
			var c events.CustomerChange
			if _, err := cc.Decode(ctx, dl.OriginalValue, &c); err != nil || c.ChangedAt == nil {
				t.Errorf("customer dead letter: %v", err)
				return false
			}
			k = deadKey(c.CustomerID, *c.ChangedAt, c.SourceOrdinal)
		default:
			return strings.HasPrefix(dl.SourceTopic, sl.Opts.Prefix) && func() bool {
				t.Errorf("dead letter from %s: %v", dl.SourceTopic, reasons(dl))
				return true
			}()
		}
		got[k] = append(got[k], dl)
		return true
	}
	consumeDLQ(ctx, t, brokers, from, dlq, time.Minute, 2*time.Second, keep, func() bool {
		for k := range want {
			if len(got[k]) == 0 {
				return false
			}
		}
		return true
	})
	var diffs []string
	for _, k := range slices.Sorted(maps.Keys(want)) {
		var wantRules []string
		for _, b := range want[k] {
			wantRules = append(wantRules, badRule[b])
		}
		slices.Sort(wantRules)
		if len(got[k]) == 0 {
			diffs = append(diffs, fmt.Sprintf("%s (%v): not dead-lettered, want rules %v", k, want[k], wantRules))
		}
		for _, dl := range got[k] {
			// A replayed record is dead-lettered again: each copy must name the rules.
			if dl.Stage != "validator" || !slices.Equal(ruleIDs(dl), wantRules) {
				diffs = append(diffs, fmt.Sprintf("%s (%v): dead-lettered by %s with %v, want the validator with %v", k, want[k], dl.Stage, reasons(dl), wantRules))
			}
		}
	}
	for _, k := range slices.Sorted(maps.Keys(got)) {
		if _, ok := want[k]; !ok {
			diffs = append(diffs, fmt.Sprintf("%s: a good change dead-lettered: %v", k, reasons(got[k][0])))
		}
	}
	for _, d := range first(diffs) {
		t.Error("dead letters: " + d)
	}
	if len(diffs) == 0 {
		t.Logf("dead letters: %d bad changes, each with its rules", len(want))
	}
}

// holdPicker picks the keys whose first change the relay holds back: every
// key the script changes more than once, and a seventh of the others (by a
// hash of the key: late, but maybe not overtaken).
func holdPicker(script []catalogdb.Tx, productsTopic, customersTopic string) func(topic string, key []byte) bool {
	changes := map[string]int{}
	for _, tx := range script {
		for _, c := range tx.Changes {
			if c.Kind == catalogdb.CategoryReprice { // its key is a category
				continue
			}
			topic := productsTopic
			if c.Kind.Table() == "customers" {
				topic = customersTopic
			}
			changes[topic+"\x00"+c.Key]++
		}
	}
	return func(topic string, key []byte) bool {
		k := topic + "\x00" + string(key)
		h := fnv.New32a()
		_, _ = h.Write([]byte(k))
		return changes[k] > 1 || h.Sum32()%7 == 0
	}
}

// waitCaughtUp waits until every group has consumed its topic to the end
// (or fails after 90s).
// A relay that stopped on an error fails the wait at once.
func waitCaughtUp(ctx context.Context, t *testing.T, brokers []string, rl *relay, what string, gts ...groupTopic) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		ok, line, err := groupsCaughtUp(ctx, brokers, gts...)
		if err == nil && ok {
			return
		}
		if err := rl.err(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not caught up after 90s: %s (%v)", what, line, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}
