package replay

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ecomstream/platform/pkg/config"
	"github.com/ecomstream/platform/pkg/stream"
	"github.com/ecomstream/platform/services/dlq-handler/internal/query"
	"github.com/ecomstream/platform/services/dlq-handler/internal/store"
)

func TestConfig(t *testing.T) {
	tests := []struct {
		env     map[string]string
		wantVar string // "" = valid
	}{
		{env: map[string]string{}},
		{env: map[string]string{"DLQ_REPLAY_TOPICS": "", "DLQ_STAGE_GROUPS": "validator=it-validator"}},
		{env: map[string]string{"DLQ_REPLAY_RATE": "0.5"}},
		{env: map[string]string{"DLQ_REPLAY_RATE": "0"}, wantVar: "DLQ_REPLAY_RATE"},
		{env: map[string]string{"DLQ_REPLAY_RATE": "-3"}, wantVar: "DLQ_REPLAY_RATE"},
		{env: map[string]string{"DLQ_REPLAY_RATE": "NaN"}, wantVar: "DLQ_REPLAY_RATE"},
		{env: map[string]string{"DLQ_REPLAY_RATE": "2e6"}, wantVar: "DLQ_REPLAY_RATE"},
		{env: map[string]string{"DLQ_REPLAY_TOPICS": "http:/v1/events"}, wantVar: "DLQ_REPLAY_TOPICS"},
		{env: map[string]string{"DLQ_REPLAY_TOPICS": "http:/v1/events=a,http:/v1/events=b"}, wantVar: "DLQ_REPLAY_TOPICS"},
		{env: map[string]string{"DLQ_STAGE_GROUPS": "validator="}, wantVar: "DLQ_STAGE_GROUPS"},
		{env: map[string]string{"DLQ_REPLAY_IN_FLIGHT": "0"}, wantVar: "DLQ_REPLAY_IN_FLIGHT"},
		{env: map[string]string{"DLQ_REPLAY_RESOLVE_INTERVAL": "0s"}, wantVar: "DLQ_REPLAY_RESOLVE_INTERVAL"},
	}
	for _, tt := range tests {
		var cfg Config
		err := config.LoadFrom(config.MapLookup(tt.env), &cfg)
		switch {
		case tt.wantVar == "" && err != nil:
			t.Errorf("%v: %v", tt.env, err)
		case tt.wantVar != "" && (err == nil || !strings.Contains(err.Error(), tt.wantVar) || strings.Contains(err.Error(), "\n")):
			t.Errorf("%v: Load() = %v, want one line naming %s", tt.env, err, tt.wantVar)
		}
	}
	var cfg Config
	if err := config.LoadFrom(config.MapLookup(nil), &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Rate != 200 {
		t.Errorf("default rate = %v, want 200", cfg.Rate)
	}
	groups, _ := ParsePairs("DLQ_STAGE_GROUPS", cfg.StageGroups)
	if len(groups) != 3 || groups["bq-writer"] != "bq-writer" || groups["ingest-clickstream"] != "ingest-clickstream" {
		t.Errorf("default stage groups = %v", groups)
	}
}

func TestTarget(t *testing.T) {
	topics := map[string]string{"http:/v1/events": "it-x.clickstream"}
	tests := []struct {
		stage, source string
		purged        bool
		want, wantErr string
	}{
		{stage: "validator", source: "ecom.events.v1", want: "ecom.events.v1"},
		{stage: "ingest-clickstream", source: "clickstream", want: "clickstream"},
		{stage: "ingest-clickstream", source: "http:/v1/events", want: "it-x.clickstream"},
		{stage: "ingest-clickstream", source: "http:/v2/events", wantErr: "add http:/v2/events=<topic> to DLQ_REPLAY_TOPICS"},
		{stage: "validator", source: "ecom.events.v1", purged: true, wantErr: "purged by the pii retention"},
		{stage: "unknown", source: "ecom.dlq.v1", wantErr: "undecodable"},
		{stage: "validator", source: " ", wantErr: "no source topic"},
	}
	for _, tt := range tests {
		got, err := Target(topics, tt.stage, tt.source, tt.purged)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Target(%s, %s, %v) = %q, %v; want an error with %q", tt.stage, tt.source, tt.purged, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("Target(%s, %s) = %q, %v; want %q", tt.stage, tt.source, got, err, tt.want)
		}
	}
}

func TestRecord(t *testing.T) {
	tests := []struct {
		name    string
		headers string
		want    []string // key=value in order
		wantErr string
	}{
		{name: "no headers", headers: `[]`, want: []string{"ecom-replay-of=dl-1", "ecom-replay-attempt=2"}},
		{name: "null column", headers: ``, want: []string{"ecom-replay-of=dl-1", "ecom-replay-attempt=2"}},
		{name: "originals kept in order", headers: `[{"key":"traceparent","value":"dHA="},{"key":"a","value":""}]`,
			want: []string{"ecom-replay-of=dl-1", "ecom-replay-attempt=2", "traceparent=tp", "a="}},
		{name: "an earlier replay's headers replaced",
			headers: `[{"key":"ecom-replay-attempt","value":"MQ=="},{"key":"x","value":"eQ=="},{"key":"ecom-replay-of","value":"b2xk"}]`,
			want:    []string{"ecom-replay-of=dl-1", "ecom-replay-attempt=2", "x=y"}},
		{name: "not base64", headers: `[{"key":"x","value":"!!"}]`, wantErr: "not base64"},
		{name: "not json", headers: `{`, wantErr: "cannot be read"},
	}
	for _, tt := range tests {
		rec, err := Record("t", []byte("k"), []byte("v"), []byte(tt.headers), "dl-1", 2)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%s: err = %v, want %q", tt.name, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		var got []string
		for _, h := range rec.Headers {
			got = append(got, h.Key+"="+string(h.Value))
		}
		if strings.Join(got, ",") != strings.Join(tt.want, ",") {
			t.Errorf("%s: headers %v, want %v", tt.name, got, tt.want)
		}
		if rec.Topic != "t" || string(rec.Key) != "k" || string(rec.Value) != "v" {
			t.Errorf("%s: record %s/%s/%s", tt.name, rec.Topic, rec.Key, rec.Value)
		}
	}
	if stream.ReplayOfHeader != "ecom-replay-of" || stream.ReplayAttemptHeader != "ecom-replay-attempt" {
		t.Errorf("header names changed: %s, %s", stream.ReplayOfHeader, stream.ReplayAttemptHeader)
	}
}

// TestBucket: a bucket grants rate tokens a second on average and at most
// its burst at once.
func TestBucket(t *testing.T) {
	for _, rate := range []float64{0.5, 5, 200, 5000} {
		t0 := time.Unix(1000, 0)
		b := newBucket(rate, t0)
		// Take tokens as they come for 10 simulated seconds.
		now, n := t0, 0
		for now.Before(t0.Add(10 * time.Second)) {
			now = now.Add(b.reserve(now))
			n++
		}
		want := rate*10 + math.Max(1, math.Floor(rate/10))
		if math.Abs(float64(n)-want) > 1.5 {
			t.Errorf("rate %v: %d tokens in 10s, want about %v", rate, n, want)
		}
		// Idle for an hour: the burst does not grow past its size.
		now = now.Add(time.Hour)
		burst := 0
		for b.reserve(now) == 0 {
			burst++
		}
		if wantB := int(math.Max(1, math.Floor(rate/10))); burst != wantB {
			t.Errorf("rate %v: burst %d after idling, want %d", rate, burst, wantB)
		}
		if !b.wouldWait(now) {
			t.Errorf("rate %v: wouldWait = false with the bucket empty", rate)
		}
	}
}

// TestLeaderBuckets: the sender's rate limit is per target topic, shared
// by the jobs: many single-id jobs to one topic get DLQ_REPLAY_RATE
// together, not each; another topic has its own; a slower job is held to
// its own rate as well.
func TestLeaderBuckets(t *testing.T) {
	const rate = 10 // burst 1
	job := func(i int) *string { s := fmt.Sprintf("rj-%d", i); return &s }
	tests := []struct {
		name     string
		rows     []outRow
		wantWait time.Duration // total over the rows, all asked at one instant
	}{
		{name: "50 single-id jobs to one topic", rows: func() []outRow {
			var rs []outRow
			for i := range 50 {
				rs = append(rs, outRow{topic: "t", job: job(i), rate: rate})
			}
			return rs
		}(), wantWait: 49 * 50 / 2 * time.Second / rate},
		{name: "two topics", rows: []outRow{{topic: "t", job: job(1), rate: rate}, {topic: "u", job: job(2), rate: rate}}},
		{name: "a job at 1/s", rows: []outRow{{topic: "t", job: job(1), rate: 1}, {topic: "t", job: job(1), rate: 1}}, wantWait: time.Second},
		{name: "unlisted rows (no job)", rows: []outRow{{topic: "t", rate: rate}, {topic: "t", rate: rate}}, wantWait: time.Second / rate},
	}
	for _, tt := range tests {
		l := newLeader(&Service{cfg: Config{Rate: rate}}, nil)
		now := time.Unix(1000, 0)
		var total time.Duration
		for i, r := range tt.rows {
			if w := l.wouldWait(r, now); w != (i > 0 && tt.wantWait > 0) {
				t.Errorf("%s: row %d wouldWait = %v", tt.name, i, w)
			}
			total += l.reserve(r, now)
		}
		if d := total - tt.wantWait; d < -time.Millisecond || d > time.Millisecond {
			t.Errorf("%s: waits %v, want %v", tt.name, total, tt.wantWait)
		}
	}
}

func TestRequestValidate(t *testing.T) {
	f := &query.Filter{RuleID: []string{"r1"}}
	many := make([]string, MaxIDs+1)
	for i := range many {
		many[i] = "x"
	}
	tests := []struct {
		name      string
		req       Request
		wantParam string
		wantRate  float64
	}{
		{name: "ids", req: Request{IDs: []string{"a"}}, wantRate: 200},
		{name: "filter with a lower rate", req: Request{Filter: f, Rate: 20}, wantRate: 20},
		{name: "a higher rate is capped", req: Request{Filter: f, Rate: 5000}, wantRate: 200},
		{name: "neither", req: Request{}, wantParam: "ids"},
		{name: "both", req: Request{IDs: []string{"a"}, Filter: f}, wantParam: "ids"},
		{name: "too many ids", req: Request{IDs: many}, wantParam: "ids"},
		{name: "empty id", req: Request{IDs: []string{"a", ""}}, wantParam: "ids"},
		{name: "empty filter", req: Request{Filter: &query.Filter{}}, wantParam: "filter"},
		{name: "bad state", req: Request{Filter: &query.Filter{State: []string{"gone"}}}, wantParam: "filter.state"},
		{name: "negative rate", req: Request{IDs: []string{"a"}, Rate: -1}, wantParam: "rate"},
		{name: "infinite rate", req: Request{IDs: []string{"a"}, Rate: math.Inf(1)}, wantParam: "rate"},
	}
	for _, tt := range tests {
		rate, err := tt.req.validate(200)
		var qe *query.Error
		switch {
		case tt.wantParam == "" && (err != nil || rate != tt.wantRate):
			t.Errorf("%s: validate = %v, %v; want %v", tt.name, rate, err, tt.wantRate)
		case tt.wantParam != "" && (!errors.As(err, &qe) || qe.Param != tt.wantParam):
			t.Errorf("%s: validate = %v, want a query error on %s", tt.name, err, tt.wantParam)
		}
	}
}

// TestPlan: a planner splits replayable candidates into sent and refused,
// lists at most MaxRefused and counts all.
func TestPlan(t *testing.T) {
	s := &Service{topics: map[string]string{"http:/v1/events": "clickstream"}}
	cs := []candidate{
		{id: "a", stage: "validator", source: "ecom.events.v1"},
		{id: "b", stage: "ingest-clickstream", source: "http:/v1/events"},
		{id: "c", stage: "validator", source: "ecom.customers.v1", purged: true},
		{id: "d", stage: "validator", source: "ecom.events.v1", cut: "original_key,original_value"},
	}
	for i := range MaxRefused + 5 {
		cs = append(cs, candidate{id: "u" + string(rune('a'+i%26)), stage: "unknown", source: "ecom.dlq.v1"})
	}
	send, refused, n := s.plan(cs)
	if len(send) != 2 || send[0].target != "ecom.events.v1" || send[1].target != "clickstream" {
		t.Errorf("send = %+v", send)
	}
	if n != MaxRefused+7 || len(refused) != MaxRefused || refused[0].ID != "c" || !strings.Contains(refused[0].Reason, "purged") {
		t.Errorf("refused %d listed %d, first %+v", n, len(refused), refused[0])
	}
	if refused[1].ID != "d" || !strings.Contains(refused[1].Reason, "cut to fit the dead-letter topic (OVERSIZED: original_key,original_value)") {
		t.Errorf("truncated original refused with %+v", refused[1])
	}
	if sum := refusedSummary(refused, n); !strings.HasPrefix(sum, "107 dead letters not replayable\nc: its original was purged") || !strings.HasSuffix(sum, "and 97 more") {
		t.Errorf("summary %q", sum)
	}
}

// TestPassed: the resolver's decision per sent replay: its stage's group
// committed past the replayed offset (committed = next to read).
func TestPassed(t *testing.T) {
	groups := map[string]string{"validator": "it-validator", "bq-writer": "it-bq-writer"}
	p := func(t string, n int32) store.Partition { return store.Partition{Topic: t, Partition: n} }
	committed := map[string]map[store.Partition]int64{
		"it-validator": {p("ecom.events.v1", 0): 11, p("ecom.events.v1", 1): 5},
		"it-bq-writer": {},
	}
	rs := []sentReplay{
		{id: "past", stage: "validator", topic: "ecom.events.v1", partition: 0, offset: 10},
		{id: "at", stage: "validator", topic: "ecom.events.v1", partition: 1, offset: 5},
		{id: "other partition", stage: "validator", topic: "ecom.events.v1", partition: 2, offset: 0},
		{id: "other topic", stage: "validator", topic: "ecom.orders.v1", partition: 0, offset: 0},
		{id: "group without offsets", stage: "bq-writer", topic: "ecom.events.v1", partition: 0, offset: 0},
		{id: "unknown stage", stage: "catalog-sync", topic: "ecom.events.v1", partition: 0, offset: 0},
	}
	ready, unknown := passed(rs, groups, committed)
	if len(ready) != 1 || ready[0].id != "past" {
		t.Errorf("ready = %+v, want only past", ready)
	}
	if len(unknown) != 1 || unknown["catalog-sync"] != 1 {
		t.Errorf("unknown = %v", unknown)
	}
}

func TestGaps(t *testing.T) {
	topic := "ecom.dlq.v1"
	ends := map[int32]int64{0: 10, 1: 7, 2: 0, 3: 4}
	pos := map[store.Partition]int64{{Topic: topic, Partition: 0}: 10, {Topic: topic, Partition: 1}: 6, {Topic: "other", Partition: 3}: 4}
	from, to := gaps(ends, pos, topic)
	if len(from) != 2 || from[1] != 6 || to[1] != 7 || from[3] != 0 || to[3] != 4 {
		t.Errorf("gaps = %v %v", from, to)
	}
}

// TestUnprobed: a gap found empty is not read again while it stays the
// same; one that moved is.
func TestUnprobed(t *testing.T) {
	rv := &resolver{clean: map[int32][2]int64{0: {5, 6}, 1: {3, 4}}}
	from, to := rv.unprobed(map[int32]int64{0: 5, 1: 3, 2: 0}, map[int32]int64{0: 6, 1: 7, 2: 2})
	if len(from) != 2 || from[1] != 3 || to[1] != 7 || from[2] != 0 || to[2] != 2 {
		t.Errorf("unprobed = %v %v, want partitions 1 and 2", from, to)
	}
}

// fakeCluster answers the resolver's offset questions from fields.
type fakeCluster struct {
	Cluster
	stable map[int32]int64
	has    bool
	err    error
	probes int
}

func (f *fakeCluster) Stable(context.Context, string) (map[int32]int64, error) { return f.stable, nil }

func (f *fakeCluster) HasRecords(context.Context, string, map[int32]int64, map[int32]int64) (bool, error) {
	f.probes++
	return f.has, f.err
}

// TestCovered: the store covers the dead-letter topic's ends when its
// positions reach them, or the offsets between hold no record a
// read_committed reader sees, which is only known below the last stable
// offset (an open transaction's dead letters are not visible yet).
func TestCovered(t *testing.T) {
	const topic = "dlq"
	ends := map[int32]int64{0: 10, 1: 4}
	at := func(p0, p1 int64) map[store.Partition]int64 {
		return map[store.Partition]int64{{Topic: topic, Partition: 0}: p0, {Topic: topic, Partition: 1}: p1}
	}
	tests := []struct {
		name       string
		positions  map[store.Partition]int64
		stable     map[int32]int64
		has        bool
		err        error
		want       bool
		wantProbes int
	}{
		{name: "caught up", positions: at(10, 4), want: true},
		{name: "behind, records there", positions: at(8, 4), stable: map[int32]int64{0: 10, 1: 4}, has: true, wantProbes: 1},
		{name: "only a marker left", positions: at(9, 4), stable: map[int32]int64{0: 10, 1: 4}, want: true, wantProbes: 1},
		{name: "an open transaction in the gap", positions: at(9, 4), stable: map[int32]int64{0: 9, 1: 4}},
		{name: "the gap could not be read", positions: at(9, 4), stable: map[int32]int64{0: 10, 1: 4}, err: fmt.Errorf("x: %w", errUnread), wantProbes: 1},
		{name: "no positions yet", positions: map[store.Partition]int64{}, stable: map[int32]int64{0: 10, 1: 4}, has: true, wantProbes: 1},
	}
	for _, tt := range tests {
		f := &fakeCluster{stable: tt.stable, has: tt.has, err: tt.err}
		rv := &resolver{s: &Service{kafka: f, dlq: DLQ{Topic: topic}}, clean: map[int32][2]int64{},
			pos: func(context.Context) (map[store.Partition]int64, error) { return tt.positions, nil }}
		got, err := rv.covered(context.Background(), ends)
		if err != nil || got != tt.want || f.probes != tt.wantProbes {
			t.Errorf("%s: covered = %v, %v with %d probes; want %v with %d", tt.name, got, err, f.probes, tt.want, tt.wantProbes)
		}
		if tt.want && tt.wantProbes > 0 {
			// The same gap again: known clean, not read again.
			if got, _ := rv.covered(context.Background(), ends); !got || f.probes != tt.wantProbes {
				t.Errorf("%s: again = %v with %d probes", tt.name, got, f.probes)
			}
		}
	}
}

// TestKafka: the cluster side on kfake: produce, a group's committed
// offsets, end offsets, and whether a range holds a record a
// read_committed reader sees (a transaction marker is none).
func TestKafka(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "dlq", "in"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	opts := []kgo.Opt{kgo.SeedBrokers(c.ListenAddrs()...)}
	k, err := NewKafka(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	k.Idle = 300 * time.Millisecond

	done := make(chan error, 1)
	var at store.Partition
	k.Produce(ctx, &kgo.Record{Topic: "in", Value: []byte("x")}, func(r *kgo.Record, err error) {
		at = store.Partition{Topic: r.Topic, Partition: r.Partition}
		done <- err
	})
	if err := k.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	// A transaction on dlq partition 0: one record, committed (end 2 = the
	// record and its marker).
	tx, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.TransactionalID("tx"), kgo.DefaultProduceTopic("dlq"),
		kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	if err := tx.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := tx.ProduceSync(ctx, &kgo.Record{Partition: 0, Value: []byte("dl")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if err := tx.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatal(err)
	}
	ends, err := k.Ends(ctx, "dlq")
	if err != nil || ends[0] != 2 || ends[1] != 0 {
		t.Fatalf("Ends = %v, %v; want 0:2 1:0", ends, err)
	}
	if stable, err := k.Stable(ctx, "dlq"); err != nil || stable[0] != 2 {
		t.Fatalf("Stable = %v, %v; want 0:2", stable, err)
	}
	tests := []struct {
		name     string
		from, to map[int32]int64
		want     bool
	}{
		{name: "the record", from: map[int32]int64{0: 0}, to: map[int32]int64{0: 2}, want: true},
		{name: "only the marker", from: map[int32]int64{0: 1}, to: map[int32]int64{0: 2}},
		{name: "empty range", from: map[int32]int64{1: 0}, to: map[int32]int64{1: 0}},
	}
	for _, tt := range tests {
		got, err := k.HasRecords(ctx, "dlq", tt.from, tt.to)
		if err != nil || got != tt.want {
			t.Errorf("%s: HasRecords = %v, %v; want %v", tt.name, got, err, tt.want)
		}
	}
	// An open transaction: its record is below the end, not below the
	// stable offset.
	if err := tx.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := tx.ProduceSync(ctx, &kgo.Record{Partition: 0, Value: []byte("open")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	ends, _ = k.Ends(ctx, "dlq")
	stable, err := k.Stable(ctx, "dlq")
	if err != nil || ends[0] != 3 || stable[0] != 2 {
		t.Errorf("with an open transaction: ends %v, stable %v, %v; want 3 and 2", ends, stable, err)
	}
	if err := tx.EndTransaction(ctx, kgo.TryAbort); err != nil {
		t.Fatal(err)
	}
	// Offsets now: 0 the record, 1 its commit marker, 2 the aborted record,
	// 3 its abort marker.
	for _, tt := range []struct {
		name     string
		from, to map[int32]int64
	}{
		{name: "an aborted record and its marker", from: map[int32]int64{0: 1}, to: map[int32]int64{0: 4}},
		{name: "an aborted record, its marker past the range", from: map[int32]int64{0: 2}, to: map[int32]int64{0: 3}},
	} {
		if got, err := k.HasRecords(ctx, "dlq", tt.from, tt.to); err != nil || got {
			t.Errorf("%s: HasRecords = %v, %v; want false", tt.name, got, err)
		}
	}
	// Fetches not answered: a range not read is not known clean.
	var block atomic.Bool
	block.Store(true)
	c.ControlKey(int16(kmsg.Fetch), func(kmsg.Request) (kmsg.Response, error, bool) {
		if !block.Load() {
			c.DropControl()
			return nil, nil, false
		}
		c.KeepControl()
		return nil, nil, true // no answer
	})
	if got, err := k.HasRecords(ctx, "dlq", map[int32]int64{0: 1}, map[int32]int64{0: 2}); !errors.Is(err, errUnread) || got {
		t.Errorf("unanswered: HasRecords = %v, %v; want errUnread", got, err)
	}
	block.Store(false)

	// A group that committed offset 1 past the produced record.
	g, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ConsumerGroup("g"), kgo.ConsumeTopics("in"), kgo.DisableAutoCommit())
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	for n := 0; n < 1; {
		fs := g.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatal(err)
		}
		n += fs.NumRecords()
	}
	if err := g.CommitUncommittedOffsets(ctx); err != nil {
		t.Fatal(err)
	}
	got, err := k.Committed(ctx, "g")
	if err != nil || got[at] != 1 {
		t.Errorf("Committed(g) = %v, %v; want %v at 1", got, err, at)
	}
	if none, err := k.Committed(ctx, "nobody"); err != nil || len(none) != 0 {
		t.Errorf("Committed(nobody) = %v, %v; want none", none, err)
	}
}
