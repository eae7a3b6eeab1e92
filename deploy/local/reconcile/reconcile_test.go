package reconcile

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/ecomstream/platform/pkg/avroserde"
	"github.com/ecomstream/platform/pkg/deadletter"
	"github.com/ecomstream/platform/pkg/events"
	protoavro "github.com/ecomstream/platform/proto/avro"
)

// fakeWarehouse is a Warehouse from memory.
type fakeWarehouse struct {
	written, dups []Coord
	positions     map[int32]int64
}

func (f *fakeWarehouse) Sources(_ context.Context, table, _ string, _ Window) ([]Coord, error) {
	if table == TableDuplicates {
		return f.dups, nil
	}
	return f.written, nil
}

func (f *fakeWarehouse) Positions(context.Context, string, string) (map[int32]int64, error) {
	return f.positions, nil
}

// scenario is how the path treated a run of clicks; the zero value is a healthy run.
type scenario struct {
	dropAtValidator string // an event id the validator consumed but did not pass on
	loseRow         bool   // one fact_events row missing
	writeTwice      bool   // one record both in fact_events and fact_events_duplicates
	validatorBehind int    // the validator's commit this many records short of the end
	strayDeadLetter bool   // a dead letter of a record bq-writer never consumed
	replayBad       bool   // dlq-handler replays "bad"'s validator dead letter, which passes then
	junkDeadLetter  bool   // a record on the dead-letter topic that is not in the registry's format
}

// env is a fake Kafka and registry with the path's topics.
type env struct {
	t      *testing.T
	c      Clickstream
	reg    string // the fake registry's URL
	prod   *kgo.Client
	txn    *kgo.Client
	adm    *kadm.Client
	at     time.Time // every record's timestamp
	window Window
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{t: t, at: time.Now().UTC().Truncate(time.Millisecond)}
	e.window = Window{From: e.at.Add(-time.Minute), To: e.at.Add(time.Minute)}
	e.c.ClickstreamNames("t.")
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, e.c.Raw, e.c.Events, e.c.Valid, e.c.DeadLetters,
		"t.ecom.orders.v1", "t.ecom.orders.valid.v1", "t.ecom.products.v1", "t.ecom.products.valid.v1", "t.ecom.customers.v1", "t.ecom.customers.valid.v1"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	opts := []kgo.Opt{kgo.SeedBrokers(cluster.ListenAddrs()...)}
	if e.prod, err = kgo.NewClient(opts...); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.prod.Close)
	if e.txn, err = kgo.NewClient(append(opts, kgo.TransactionalID("t-stage"))...); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.txn.Close)
	e.adm = kadm.NewClient(e.prod)
	e.c.Log = &Log{Opts: opts, Adm: e.adm, Lateness: time.Minute, Idle: 300 * time.Millisecond}
	reg := srfake.New()
	t.Cleanup(reg.Close)
	e.reg = reg.URL()
	r, err := avroserde.New(avroserde.Config{URL: reg.URL(), AutoRegister: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if e.c.Click, err = r.Codec(context.Background(), avroserde.SubjectFor(e.c.Events), protoavro.ClickEvent); err != nil {
		t.Fatal(err)
	}
	if e.c.DeadLetter, err = r.Codec(context.Background(), avroserde.SubjectFor(e.c.DeadLetters), protoavro.DeadLetter); err != nil {
		t.Fatal(err)
	}
	return e
}

// transact produces recs in one committed transaction (commit markers take offsets, as a
// stage's do) and returns their coordinates; abort produces them in an aborted one.
func (e *env) transact(abort bool, recs ...*kgo.Record) []Coord {
	e.t.Helper()
	ctx := context.Background()
	if err := e.txn.BeginTransaction(); err != nil {
		e.t.Fatal(err)
	}
	var out []Coord
	for _, r := range recs {
		r.Timestamp = e.at
		res := e.txn.ProduceSync(ctx, r)
		if err := res.FirstErr(); err != nil {
			e.t.Fatal(err)
		}
		rr, _ := res.First()
		out = append(out, coord(rr))
	}
	end := kgo.TryCommit
	if abort {
		end = kgo.TryAbort
	}
	if err := e.txn.EndTransaction(ctx, end); err != nil {
		e.t.Fatal(err)
	}
	return out
}

func (e *env) click(id, source string) *kgo.Record {
	e.t.Helper()
	b, err := e.c.Click.Encode(&events.ClickEvent{EventID: id, EventType: "page_view", EventTimestamp: e.at, ReceivedAt: e.at,
		SessionID: "s", PageURL: "https://x/", Source: source})
	if err != nil {
		e.t.Fatal(err)
	}
	return &kgo.Record{Topic: e.c.Events, Value: b}
}

func (e *env) dead(stage string, of Coord) *kgo.Record {
	e.t.Helper()
	b, err := e.c.DeadLetter.Encode(&events.DeadLetter{DeadLetterID: fmt.Sprintf("%s-%s", stage, of), Stage: stage,
		SourceTopic: of.Topic, SourcePartition: int(of.Partition), SourceOffset: of.Offset, SourceTimestamp: e.at,
		OriginalValue: []byte("x"), Reasons: []events.Reason{{Code: "INVALID_VALUE", Message: "x"}}, Attempt: 1, FailedAt: e.at})
	if err != nil {
		e.t.Fatal(err)
	}
	return &kgo.Record{Topic: e.c.DeadLetters, Value: b}
}

func (e *env) commit(group, topic string, next int64) {
	e.t.Helper()
	offs := kadm.Offsets{}
	offs.Add(kadm.Offset{Topic: topic, Partition: 0, At: next, LeaderEpoch: -1})
	if err := e.adm.CommitAllOffsets(context.Background(), group, offs); err != nil {
		e.t.Fatal(err)
	}
}

// run plays a run of 10 good clicks (e0..e9, e9 a source duplicate of e8's id), one raw record
// that is not JSON (dead-lettered by ingest), one click the validator rejects, one event and
// one rejection from the HTTP collector, through the path as s says, and returns the warehouse.
func (e *env) run(s scenario) *fakeWarehouse {
	ids := []string{"e0", "e1", "e2", "e3", "e4", "e5", "e6", "e7", "e8", "e8", "bad"}
	var raws []*kgo.Record
	for _, id := range ids {
		raws = append(raws, &kgo.Record{Topic: e.c.Raw, Value: fmt.Appendf(nil, `{"event_id":%q}`, id)})
	}
	raws = append(raws, &kgo.Record{Topic: e.c.Raw, Value: []byte("{not json")})
	rawAt := e.transact(false, raws...)
	e.transact(true, &kgo.Record{Topic: e.c.Raw, Value: []byte(`{"event_id":"aborted"}`)}) // never counted

	// ingest-clickstream: one transaction of outputs and the dead letter; then its commit.
	var outs []*kgo.Record
	for _, id := range ids {
		outs = append(outs, e.click(id, "kafka"))
	}
	evAt := e.transact(false, append(outs, e.dead(StageIngest, rawAt[len(rawAt)-1]))...)
	e.commit(e.c.IngestGroup, e.c.Raw, rawAt[len(rawAt)-1].Offset+2)
	// The collector: an event, and a rejection without a position.
	e.transact(false, e.click("h0", "http"), e.dead(StageIngest, Coord{Topic: e.c.Raw, Partition: -1, Offset: -1}))

	if s.replayBad {
		r := e.click("bad", "kafka")
		r.Headers = []kgo.RecordHeader{{Key: deadletter.ReplayOfHeader, Value: []byte("validator-dl")}}
		e.transact(false, r)
	}
	// validator: passes the good ones (not s.dropAtValidator), rejects "bad".
	var valid []*kgo.Record
	for _, id := range ids[:len(ids)-1] {
		if id != s.dropAtValidator {
			valid = append(valid, e.click(id, "kafka"))
		}
	}
	valid = append(valid, e.click("h0", "http"))
	if s.replayBad {
		valid = append(valid, e.click("bad", "kafka"))
	}
	for i := range valid {
		valid[i].Topic = e.c.Valid
	}
	validAt := e.transact(false, append(valid, e.dead(StageValidator, evAt[len(ids)-1]))...)
	validAt = validAt[:len(validAt)-1]
	evEnd, err := e.adm.ListEndOffsets(context.Background(), e.c.Events)
	if err != nil {
		e.t.Fatal(err)
	}
	end, _ := evEnd.Lookup(e.c.Events, 0)
	e.commit(e.c.ValidatorGroup, e.c.Events, end.Offset-int64(s.validatorBehind))
	e.transact(true, &kgo.Record{Topic: e.c.Valid, Value: []byte("aborted")})

	// bq-writer: the second e8 is a source duplicate.
	wh := &fakeWarehouse{positions: map[int32]int64{0: validAt[len(validAt)-1].Offset + 1}}
	for i, c := range validAt {
		if i == 9 && s.dropAtValidator == "" {
			wh.dups = append(wh.dups, c)
			continue
		}
		wh.written = append(wh.written, c)
	}
	if s.loseRow {
		wh.written = slices.Delete(wh.written, 3, 4)
	}
	if s.writeTwice {
		wh.dups = append(wh.dups, wh.written[0])
	}
	if s.junkDeadLetter {
		e.transact(false, &kgo.Record{Topic: e.c.DeadLetters, Value: []byte("not a dead letter")})
	}
	if s.strayDeadLetter {
		e.transact(false, e.dead(StageWriter, Coord{Topic: e.c.Valid, Partition: 0, Offset: 999}))
	}
	return wh
}

func TestClickstream(t *testing.T) {
	tests := []struct {
		name     string
		s        scenario
		settled  bool
		diff     int64
		hopDiffs map[string]int64
		listed   []string // substrings of the listed differences, by hop
		replayed int64    // dead letters dlq-handler replayed
	}{
		{name: "healthy run balances", settled: true},
		{name: "a warehouse row lost", s: scenario{loseRow: true}, settled: true, diff: 1,
			hopDiffs: map[string]int64{StageWriter: 1}, listed: []string{"consumed, but in no table and no dead letter"}},
		{name: "a record stored twice", s: scenario{writeTwice: true}, settled: true, diff: -1,
			hopDiffs: map[string]int64{StageWriter: -1}, listed: []string{"stored 2 times"}},
		{name: "the validator dropped a record", s: scenario{dropAtValidator: "e3"}, settled: true, diff: 1,
			hopDiffs: map[string]int64{StageValidator: 1}, listed: []string{`"e3": 1 consumed`}},
		{name: "a dead letter of nothing consumed", s: scenario{strayDeadLetter: true}, settled: true, diff: -1,
			hopDiffs: map[string]int64{StageWriter: -1}, listed: []string{"not a consumed record of the window"}},
		{name: "records in flight", s: scenario{validatorBehind: 4}, settled: false},
		{name: "a foreign record on the dead-letter topic is passed over", s: scenario{junkDeadLetter: true}, settled: true},
		{name: "a replayed dead letter enters the path again", s: scenario{replayBad: true}, settled: true, replayed: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			e.c.Warehouse = e.run(tt.s)
			r, err := e.c.Reconcile(context.Background(), e.window)
			if err != nil {
				t.Fatal(err)
			}
			var out strings.Builder
			r.Print(&out)
			t.Log("\n" + out.String())
			if r.Settled() != tt.settled {
				t.Fatalf("settled %v, want %v", r.Settled(), tt.settled)
			}
			if !tt.settled {
				return
			}
			if r.Difference() != tt.diff || r.Balanced() != (tt.diff == 0 && len(tt.listed) == 0) {
				t.Errorf("difference %d (balanced %v), want %d", r.Difference(), r.Balanced(), tt.diff)
			}
			// consumed: 12 raw records + the collector's event and rejection + the replays.
			if got := r.Terms[TermConsumed]; got != 14+tt.replayed {
				t.Errorf("consumed %d, want %d", got, 14+tt.replayed)
			}
			var sum int64
			for _, h := range r.Hops {
				sum += h.Difference()
				if h.Difference() != tt.hopDiffs[h.Stage] {
					t.Errorf("%s: difference %d, want %d", h.Stage, h.Difference(), tt.hopDiffs[h.Stage])
				}
			}
			if sum != r.Difference() {
				t.Errorf("hop differences sum to %d, the source's is %d", sum, r.Difference())
			}
			for _, want := range tt.listed {
				if !strings.Contains(out.String(), want) {
					t.Errorf("no difference listed with %q", want)
				}
			}
			if tt.diff == 0 && (r.Terms[TermWritten] != 10+tt.replayed || r.Terms[TermDeduplicated] != 1 || r.Terms[TermDeadLettered] != 3) {
				t.Errorf("terms %v, want written %d, deduplicated 1, dead_lettered 3", r.Terms, 10+tt.replayed)
			}
			for _, h := range r.Hops {
				if h.Stage == StageReplay && h.Consumed != tt.replayed {
					t.Errorf("%s: %d consumed, want %d", h.Stage, h.Consumed, tt.replayed)
				}
			}
		})
	}
}

// TestMetrics: the report's figures as the gauges the alert reads.
func TestMetrics(t *testing.T) {
	to := time.Unix(1_764_620_000, 0)
	r := &Report{Source: SourceClickstream, Window: Window{From: to.Add(-time.Hour), To: to},
		Terms: map[string]int64{TermConsumed: 10, TermWritten: 7, TermDeadLettered: 2},
		Hops:  []*Hop{{Stage: StageWriter, Consumed: 8, Out: map[string]int64{TermWritten: 7}}}}
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	stale := &Report{Source: SourceClickstream, Window: r.Window, Terms: map[string]int64{TermConsumed: 3},
		Hops: []*Hop{{Stage: "gone", Consumed: 3, Out: map[string]int64{}}}}
	m.Set(stale)
	m.Set(r) // replaces the earlier round's figures, the hop that is gone included
	want := `
# HELP ecom_reconciliation_difference Records consumed minus every outcome (written, deduplicated, dead-lettered, superseded, stale, in flight) of the source's latest reconciled window; non-zero on a settled window is a loss (positive) or a duplication (negative).
# TYPE ecom_reconciliation_difference gauge
ecom_reconciliation_difference{source="clickstream"} 1
# HELP ecom_reconciliation_hop_difference One stage's difference (its consumed records minus their outcomes) in the source's latest window.
# TYPE ecom_reconciliation_hop_difference gauge
ecom_reconciliation_hop_difference{source="clickstream",stage="bq-writer"} 1
# HELP ecom_reconciliation_settled 1 when no stage had records of the window still to consume (the difference is final), else 0.
# TYPE ecom_reconciliation_settled gauge
ecom_reconciliation_settled{source="clickstream"} 1
# HELP ecom_reconciliation_window_end_timestamp_seconds End of the source's latest reconciled window, unix seconds.
# TYPE ecom_reconciliation_window_end_timestamp_seconds gauge
ecom_reconciliation_window_end_timestamp_seconds{source="clickstream"} 1.76462e+09
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "ecom_reconciliation_difference", "ecom_reconciliation_hop_difference",
		"ecom_reconciliation_settled", "ecom_reconciliation_window_end_timestamp_seconds"); err != nil {
		t.Error(err)
	}
	if got := testutil.ToFloat64(mustVec(t, reg, "ecom_reconciliation_records", "consumed")); got != 10 {
		t.Errorf("ecom_reconciliation_records{term=consumed} = %v, want 10", got)
	}
	// A loss beside a duplicate: difference 0, two records unmatched.
	m.Set(&Report{Source: SourceClickstream, Window: r.Window, Terms: map[string]int64{TermConsumed: 2, TermWritten: 2},
		Hops: []*Hop{{Stage: StageWriter, Consumed: 2, Out: map[string]int64{TermWritten: 2},
			Differences: []string{"t/0@4: consumed, but in no table and no dead letter", "t/0@5: stored 2 times"}}}})
	want = `
# HELP ecom_reconciliation_difference Records consumed minus every outcome (written, deduplicated, dead-lettered, superseded, stale, in flight) of the source's latest reconciled window; non-zero on a settled window is a loss (positive) or a duplication (negative).
# TYPE ecom_reconciliation_difference gauge
ecom_reconciliation_difference{source="clickstream"} 0
# HELP ecom_reconciliation_unmatched Records of the source's latest window listed as not balancing at some stage (consumed with no outcome, stored twice, an outcome of nothing consumed): a loss and a duplicate cancel in the difference, not here.
# TYPE ecom_reconciliation_unmatched gauge
ecom_reconciliation_unmatched{source="clickstream"} 2
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "ecom_reconciliation_difference", "ecom_reconciliation_unmatched"); err != nil {
		t.Error(err)
	}
}

// mustVec finds the gauge of name with the term label term in reg.
func mustVec(t *testing.T, reg *prometheus.Registry, name, term string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "term" && l.GetValue() == term {
					g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "x"})
					g.Set(m.GetGauge().GetValue())
					return g
				}
			}
		}
	}
	t.Fatalf("%s{term=%q} not gathered", name, term)
	return nil
}
