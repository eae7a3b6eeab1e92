// Package e2e tests the clickstream slice end to end: the real service
// binaries as separate processes against the real local stack (Apache Kafka,
// schema registry), fed by an ordinary Kafka client.
package e2e

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ecomstream/platform/deploy/local/clickgen"
	"github.com/ecomstream/platform/deploy/local/jaegerq"
	"github.com/ecomstream/platform/deploy/local/reconcile"
	"github.com/ecomstream/platform/deploy/local/slice"
	"github.com/ecomstream/platform/deploy/local/stacktest"
	"github.com/ecomstream/platform/deploy/local/svcrun"
	"github.com/ecomstream/platform/pkg/avroserde"
	"github.com/ecomstream/platform/pkg/deadletter"
	"github.com/ecomstream/platform/pkg/events"
	protoavro "github.com/ecomstream/platform/proto/avro"
)

const (
	total      = 6000 // records sent, broken and duplicates included
	rate       = 1500 // records per second
	killAt     = 2000 // kill -9 bq-writer and validator after this many records
	probeCount = 20   // valid events sent after the restart, for the trace check
	deadProbes = 6    // and validator-rejected ones, for the dead-lettered trace check
	token      = "e2e-query-token-0123456789"
)

// TestE2EClickstreamSlice proves, for a mix of good and bad raw events sent
// with an ordinary Kafka client, across a kill -9 of validator and bq-writer
// in the middle of the stream:
//   - every good event is in fact_events exactly once (source duplicates too);
//   - every bad event is in the dead-letter topic once, from the right stage,
//     with the right reason code and rule id, and its original bytes;
//   - one trace id links the three services for an event, and the same id is
//     stored in fact_events and in the dead letter: read back from the
//     stack's Jaeger (its query API), the trace of an event sent after the
//     restart has spans from ingest-clickstream, validator and bq-writer, and
//     that of a dead-lettered one from every stage up to the one that
//     rejected it;
//   - dlq-handler stored each of those dead letters exactly once, and its
//     API's filters find them (checkDeadLetterStore);
//   - the stack's Prometheus scrapes the slice's services (found through its
//     targets file, gone after Stop);
//   - the run balances in the reconciliation (assertReconciled), across the kill.
func TestE2EClickstreamSlice(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test: runs without -short, against the local stack")
	}
	eps := stacktest.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	began := time.Now() // the reconciliation's window starts here

	// Traces go to the stack's Jaeger and are read back through its query API.
	jaeger := jaegerq.New(jaegerq.URLFromEnv())
	if err := jaeger.Check(ctx); err != nil {
		t.Fatal(err)
	}
	root, binDir, _, err := svcrun.BuildTree(ctx)
	if err != nil {
		t.Fatal(err)
	}
	otlp := os.Getenv(slice.EnvJaegerOTLP)
	if otlp == "" {
		otlp = "http://127.0.0.1:14318" // stack.sh's default JAEGER_OTLP_HTTP_PORT
	}
	// The stack's Prometheus scrapes the slice through its targets file.
	promURL, targets := stackPrometheus(root)
	requirePrometheus(ctx, t, promURL)

	runDir := filepath.Join(root, ".run", "e2e", t.Name()+"-"+time.Now().Format("20060102-150405"))
	prefix := "e2e-" + stacktest.UniqueName(t, "") + "."
	sl, err := slice.New(slice.Options{
		BinDir: binDir, RunDir: runDir, Brokers: eps.KafkaBrokers, Registry: eps.SchemaRegistryURL,
		OTLP: otlp, PrometheusTargetsDir: targets, Prefix: prefix, QueryToken: token, DLQ: &slice.DLQOptions{},
		// Small polls so a kill lands between, and inside, many transactions.
		Env: map[string][]string{
			"validator": {"KAFKA_MAX_POLL_RECORDS=200"},
			"bq-writer": {"KAFKA_MAX_POLL_RECORDS=300"},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("service logs: %s", runDir)
	if err := sl.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer sl.Stop()
	defer func() {
		if err := sl.DropDLQ(context.WithoutCancel(ctx)); err != nil {
			t.Errorf("drop the dead-letter store: %v", err)
		}
	}()

	prod, err := kgo.NewClient(kgo.SeedBrokers(eps.KafkaBrokers...), kgo.ProducerLinger(5*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()

	gen := clickgen.New(clickgen.WithSeed(uint64(time.Now().UnixNano())), clickgen.WithBrokenFraction(0.06), clickgen.WithDuplicateFraction(0.02))
	var sent []clickgen.Record
	var produceErrs atomic.Int64
	send := func(recs ...clickgen.Record) {
		for _, r := range recs {
			prod.Produce(ctx, &kgo.Record{Topic: sl.Topics.Raw, Key: r.Key, Value: r.Value}, func(_ *kgo.Record, err error) {
				if err != nil {
					produceErrs.Add(1)
				}
			})
		}
	}

	tick := time.NewTicker(time.Second / 100)
	defer tick.Stop()
	perTick := rate / 100
	killed := false
	for len(sent) < total {
		<-tick.C
		for i := 0; i < perTick && len(sent) < total; i++ {
			r := gen.Next()
			sent = append(sent, r)
			send(r)
		}
		if len(sent) >= killAt && !killed {
			killed = true
			t.Logf("kill -9 validator and bq-writer after %d records", killAt)
			for _, n := range []string{"validator", "bq-writer"} {
				if err := sl.Procs[n].Kill(); err != nil {
					t.Fatal(err)
				}
			}
			// The stream goes on while they are down.
			go func() {
				time.Sleep(300 * time.Millisecond)
				for _, n := range []string{"bq-writer", "validator"} {
					if err := sl.StartOne(ctx, n); err != nil {
						t.Errorf("restart %s: %v", n, err)
					}
				}
			}()
		}
	}
	if err := prod.Flush(ctx); err != nil || produceErrs.Load() > 0 {
		t.Fatalf("producing: %v (%d failed)", err, produceErrs.Load())
	}
	for !sl.Procs["validator"].Running() || !sl.Procs["bq-writer"].Running() {
		time.Sleep(100 * time.Millisecond)
	}
	// Probes: sent once everything runs again, so all their spans are kept.
	probeGen := clickgen.New(clickgen.WithSeed(7), clickgen.WithBrokenFraction(0))
	var probes []clickgen.Record
	for len(probes) < probeCount {
		probes = append(probes, probeGen.Next())
	}
	var validatorKinds []string
	for _, k := range clickgen.BrokenKinds() {
		if exp, _ := clickgen.ExpectationFor(k); exp.Stage == clickgen.StageValidator {
			validatorKinds = append(validatorKinds, k)
		}
	}
	deadGen := clickgen.New(clickgen.WithSeed(uint64(time.Now().UnixNano())), clickgen.WithBrokenFraction(1), clickgen.WithBrokenKinds(validatorKinds...))
	var deadProbe []clickgen.Record
	for len(deadProbe) < deadProbes {
		deadProbe = append(deadProbe, deadGen.Next())
	}
	send(probes...)
	send(deadProbe...)
	if err := prod.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	sent = append(append(sent, probes...), deadProbe...)

	// What must come out.
	wantRows := map[string]bool{}
	wantDead := map[string]clickgen.Expectation{} // "raw:"+value for ingest rejections, else the event id
	for _, r := range sent {
		switch {
		case r.Expect.Valid:
			wantRows[r.EventID] = true
		case r.Expect.Stage == "ingest-clickstream":
			wantDead["raw:"+string(r.Value)] = r.Expect // what that stage keeps: the raw bytes
		default:
			wantDead[r.EventID] = r.Expect
		}
	}
	t.Logf("sent %d records: %d distinct valid events, %d broken", len(sent), len(wantRows), len(wantDead))

	// Wait until the warehouse holds every valid event.
	deadline := time.Now().Add(3 * time.Minute)
	var n int64
	for time.Now().Before(deadline) {
		n, err = sl.QueryInt(ctx, "SELECT count(*) FROM fact_events")
		if err == nil && n >= int64(len(wantRows)) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	// A little longer: anything extra (a duplicate) would show up now.
	time.Sleep(2 * time.Second)

	_, rows, err := sl.Query(ctx, "SELECT event_id, trace_id FROM fact_events")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	traceOf := map[string]string{}
	traceIDs := map[string]bool{}
	for _, r := range rows {
		id, _ := r[0].(string)
		tid, _ := r[1].(string)
		seen[id]++
		traceOf[id] = tid
		if tid == "" {
			t.Errorf("event %s has no trace id in fact_events", id)
		}
		traceIDs[tid] = true
	}
	var missing, extra, dups []string
	for id := range wantRows {
		if seen[id] == 0 {
			missing = append(missing, id)
		}
	}
	for id, c := range seen {
		if !wantRows[id] {
			extra = append(extra, id)
		}
		if c > 1 {
			dups = append(dups, id)
		}
	}
	if len(missing)+len(extra)+len(dups) > 0 {
		t.Errorf("fact_events: %d rows; %d valid events missing (e.g. %v), %d unexpected (e.g. %v), %d duplicated (e.g. %v)",
			len(rows), len(missing), first(missing), len(extra), first(extra), len(dups), first(dups))
	}
	if len(traceIDs) != len(rows) {
		t.Errorf("%d rows share %d trace ids: want one trace per event", len(rows), len(traceIDs))
	}

	// Dead letters: consume the dead-letter topic and keep this run's.
	reg, err := avroserde.New(avroserde.Config{URL: eps.SchemaRegistryURL, AutoRegister: true, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	dlqCodec, err := reg.Codec(ctx, avroserde.SubjectFor(deadletter.Topic), protoavro.DeadLetter)
	if err != nil {
		t.Fatal(err)
	}
	clickCodec, err := reg.Codec(ctx, avroserde.SubjectFor(sl.Topics.Events), protoavro.ClickEvent)
	if err != nil {
		t.Fatal(err)
	}
	got := consumeDeadLetters(ctx, t, eps.KafkaBrokers, nil, dlqCodec, clickCodec, prefix, len(wantDead))
	deadTrace := map[string]string{}
	for key, dls := range got {
		exp, ok := wantDead[key]
		if !ok {
			t.Errorf("unexpected dead letter for %.80q: %+v", key, dls[0].Reasons)
			continue
		}
		if len(dls) != 1 {
			t.Errorf("%d dead letters for %.80q, want exactly one", len(dls), key)
		}
		dl := dls[0]
		if dl.Stage != exp.Stage || !hasReason(dl, exp.Code, exp.RuleID) {
			t.Errorf("dead letter for %.80q (%s): stage %s reasons %+v; want stage %s code %s rule %q",
				key, exp.Kind, dl.Stage, reasons(dl), exp.Stage, exp.Code, exp.RuleID)
		}
		if dl.TraceID == nil || len(*dl.TraceID) != 32 {
			t.Errorf("dead letter for %.80q has no trace id", key)
		} else {
			deadTrace[key] = *dl.TraceID
		}
		if len(dl.OriginalValue) == 0 {
			t.Errorf("dead letter for %.80q lost the original bytes", key)
		}
	}
	for key, exp := range wantDead {
		if _, ok := got[key]; !ok {
			t.Errorf("broken record (%s, want %s %s %s) was not dead-lettered: %.80q", exp.Kind, exp.Stage, exp.Code, exp.RuleID, key)
		}
	}
	onTopic := map[string]events.DeadLetter{}
	for _, dls := range got {
		for _, dl := range dls {
			onTopic[dl.DeadLetterID] = dl
		}
	}
	checkDeadLetterStore(ctx, t, sl, onTopic)

	// Prometheus scrapes every service of the slice, the two restarted ones too.
	if err := waitScraped(ctx, promURL, sl.ID, []string{"ingest-clickstream", "validator", "bq-writer", "dlq-handler"}, time.Second, 30*time.Second); err != nil {
		t.Error(err)
	} else {
		t.Logf("Prometheus %s scrapes slice %s's four services (targets file %s)", promURL, sl.ID, sl.TargetsFile())
	}

	// Every record balances in the reconciliation, across the kill -9.
	assertReconciled(ctx, t, sl, reconcile.SourceClickstream, reconcile.Window{From: began, To: time.Now()})

	// Stop gracefully so every service flushes its spans, then check traces.
	if err := sl.Stop(); err != nil {
		t.Errorf("graceful stop: %v", err)
	}
	if _, err := os.Stat(sl.TargetsFile()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("after Stop: stat %s: %v, want the slice's targets file gone", sl.TargetsFile(), err)
	}
	checkTraces(ctx, t, jaeger, probes, deadProbe, traceOf, wantRows, wantDead, deadTrace)
	t.Logf("fact_events %d rows; %d dead letters", len(rows), len(got))
}

// pipeline are the clickstream slice's services in order: an event's trace
// has a span from each stage it reached.
var pipeline = []string{"ingest-clickstream", "validator", "bq-writer"}

// upTo is the pipeline up to and including stage.
func upTo(stage string) []string {
	return pipeline[:slices.Index(pipeline, stage)+1]
}

// checkTraces reads traces back from Jaeger once every service has stopped
// (and flushed its spans). The probes, sent after the restart, must be
// traced completely: each valid one through the three services, each
// dead-lettered one through ingest-clickstream and the validator that
// rejected it (bounded waits: Jaeger stores spans a moment after they
// arrive). Of the rest, spans a killed process had not exported yet are gone
// (about its last half second of traffic; the data is not): most stored
// events must still be traced through all three services, and most dead
// letters through every stage up to the one that rejected them.
func checkTraces(ctx context.Context, t *testing.T, jaeger *jaegerq.Client, probes, deadProbes []clickgen.Record,
	traceOf map[string]string, wantRows map[string]bool, wantDead map[string]clickgen.Expectation, deadTrace map[string]string) {
	t.Helper()
	for _, p := range probes {
		if _, err := jaeger.WaitServices(ctx, traceOf[p.EventID], pipeline, 30*time.Second); err != nil {
			t.Errorf("probe event %s: %v", p.EventID, err)
		}
	}
	for _, p := range deadProbes {
		tid, ok := deadTrace[p.EventID]
		if !ok {
			t.Errorf("dead-lettered probe %s (%s): no dead letter with a trace id", p.EventID, p.Expect.Kind)
			continue
		}
		if _, err := jaeger.WaitServices(ctx, tid, upTo(p.Expect.Stage), 30*time.Second); err != nil {
			t.Errorf("dead-lettered probe %s (%s): %v", p.EventID, p.Expect.Kind, err)
		}
	}

	// Every other trace once, four requests at a time (in-memory lookups).
	ids := map[string]bool{}
	for id := range wantRows {
		ids[traceOf[id]] = true
	}
	for _, tid := range deadTrace {
		ids[tid] = true
	}
	services := map[string]map[string]bool{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	var failed atomic.Int64
	work := make(chan string)
	for range 4 {
		wg.Go(func() {
			for tid := range work {
				tr, err := jaeger.Trace(ctx, tid)
				if err != nil {
					failed.Add(1)
					continue
				}
				mu.Lock()
				services[tid] = tr.Services()
				mu.Unlock()
			}
		})
	}
	started := time.Now()
	for tid := range ids {
		if tid != "" {
			work <- tid
		}
	}
	close(work)
	wg.Wait()
	complete := 0
	for id := range wantRows {
		if svcs := services[traceOf[id]]; svcs["ingest-clickstream"] && svcs["validator"] && svcs["bq-writer"] {
			complete++
		}
	}
	if frac := float64(complete) / float64(max(len(wantRows), 1)); frac < 0.6 {
		t.Errorf("only %.0f%% of stored events have a trace spanning all three services in Jaeger", 100*frac)
	}
	// A dead letter's trace id is the trace of the stage that rejected it.
	deadTraced := 0
	for key, tid := range deadTrace {
		svcs := services[tid]
		if !slices.ContainsFunc(upTo(wantDead[key].Stage), func(s string) bool { return !svcs[s] }) {
			deadTraced++
		}
	}
	if frac := float64(deadTraced) / float64(max(len(deadTrace), 1)); frac < 0.8 {
		t.Errorf("only %d of %d dead letters carry the trace id of a trace through every stage up to the one that rejected them", deadTraced, len(deadTrace))
	}
	t.Logf("Jaeger: %d of %d events traced through all three services, %d of %d dead letters through their stages; %d traces read in %s (%d not found)",
		complete, len(wantRows), deadTraced, len(deadTrace), len(ids), time.Since(started).Round(time.Millisecond), failed.Load())
}

// consumeDeadLetters reads the dead-letter topic, from the given offsets (nil:
// from the start), until want dead letters of this run (source topics starting
// with prefix) arrived and a quiet second passed, keyed like wantDead.
func consumeDeadLetters(ctx context.Context, t *testing.T, brokers []string, from map[int32]kgo.Offset, codec, click *avroserde.Codec, prefix string, want int) map[string][]events.DeadLetter {
	t.Helper()
	out := map[string][]events.DeadLetter{}
	count := 0
	keep := func(dl events.DeadLetter) bool {
		if !strings.HasPrefix(dl.SourceTopic, prefix) {
			return false
		}
		key := "raw:" + string(dl.OriginalValue)
		if dl.Stage != clickgen.StageIngest {
			var ev events.ClickEvent
			if _, err := click.Decode(ctx, dl.OriginalValue, &ev); err != nil {
				t.Fatalf("original of a %s dead letter does not decode: %v", dl.Stage, err)
			}
			key = ev.EventID
		}
		out[key] = append(out[key], dl)
		count++
		return true
	}
	consumeDLQ(ctx, t, brokers, from, codec, 2*time.Minute, time.Second, keep, func() bool { return count >= want })
	return out
}

// consumeDLQ reads the dead-letter topic with read_committed, from the given
// offsets (nil: from the start), and hands each dead letter to keep, which
// files it and reports whether it is one of the run's. It returns once done
// holds and quiet passed without another kept dead letter, or after limit.
func consumeDLQ(ctx context.Context, t *testing.T, brokers []string, from map[int32]kgo.Offset, codec *avroserde.Codec,
	limit, quiet time.Duration, keep func(events.DeadLetter) bool, done func() bool) {
	t.Helper()
	consume := kgo.ConsumeTopics(deadletter.Topic)
	if from != nil {
		consume = kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{deadletter.Topic: from})
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), consume,
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	deadline := time.Now().Add(limit)
	var quietUntil time.Time
	for time.Now().Before(deadline) {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		fs := cl.PollFetches(pctx)
		cancel()
		kept := 0
		for _, r := range fs.Records() {
			var dl events.DeadLetter
			if _, err := codec.Decode(ctx, r.Value, &dl); err != nil {
				t.Fatalf("dead letter does not decode: %v", err)
			}
			if keep(dl) {
				kept++
			}
		}
		switch {
		case !done() || kept > 0:
			quietUntil = time.Time{}
		case quietUntil.IsZero():
			quietUntil = time.Now().Add(quiet)
		case time.Now().After(quietUntil):
			return
		}
	}
}

func hasReason(dl events.DeadLetter, code, rule string) bool {
	for _, r := range dl.Reasons {
		if r.Code == code && (rule == "" || (r.RuleID != nil && *r.RuleID == rule)) {
			return true
		}
	}
	return false
}

func reasons(dl events.DeadLetter) []string {
	var out []string
	for _, r := range dl.Reasons {
		s := r.Code
		if r.RuleID != nil {
			s += "[" + *r.RuleID + "]"
		}
		out = append(out, s+": "+r.Message)
	}
	return out
}

func first(s []string) []string {
	if len(s) > 3 {
		return s[:3]
	}
	return s
}
