package stream

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.opentelemetry.io/otel/metric/noop"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/ecomstream/platform/pkg/deadletter"
	"github.com/ecomstream/platform/pkg/events"
	protoavro "github.com/ecomstream/platform/proto/avro"
)

// avroEncoder encodes dead letters as the services do (without the registry
// framing), so envelope sizes are the real ones.
type avroEncoder struct{ s avro.Schema }

func (e avroEncoder) Encode(v any) ([]byte, error) { return avro.Marshal(e.s, v) }

func newAvroEncoder(t *testing.T) avroEncoder {
	t.Helper()
	v, err := protoavro.Latest(protoavro.DeadLetter)
	if err != nil {
		t.Fatal(err)
	}
	return avroEncoder{avro.MustParse(v.Schema)}
}

// stage runs upper (wrapped in Standard) on a processor over cluster c until
// the returned stop is called; stop returns Run's error.
func runStage(t *testing.T, cfg Config, u *upper, enc Encoder, opts ...ProcessorOption) (stop func() error) {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	m, err := NewMetrics(noop.NewMeterProvider().Meter("t"))
	if err != nil {
		t.Fatal(err)
	}
	h := Chain(u.handle, Standard("s", "g", tracenoop.NewTracerProvider().Tracer("t"), enc, DeadLetterLimit(cfg), m, log)...)
	p, err := NewProcessor(cfg, ProcessorConfig{Stage: "s", Group: "g", Topics: []string{"in"}, TransactionalID: "s-1"}, h, m, log, opts...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	var once sync.Once
	var runErr error
	stop = func() error {
		once.Do(func() {
			cancel()
			runErr = <-done
		})
		return runErr
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

func produceInputs(t *testing.T, brokers []string, recs ...*kgo.Record) {
	t.Helper()
	prod, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ProducerBatchMaxBytes(4<<20))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	for _, r := range recs {
		r.Topic = "in"
		if err := prod.ProduceSync(context.Background(), r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
}

func values(n int, prefix string) []*kgo.Record {
	out := make([]*kgo.Record, n)
	for i := range out {
		v := fmt.Sprintf("%s-%d", prefix, i)
		out[i] = &kgo.Record{Key: []byte(v), Value: []byte(v)}
	}
	return out
}

// exactlyOnce checks outs hold the upper-cased values of ins, each once.
func exactlyOnce(t *testing.T, ins []*kgo.Record, outs []*kgo.Record) {
	t.Helper()
	want := map[string]int{}
	for _, r := range ins {
		want[strings.ToUpper(string(r.Value))]++
	}
	for _, o := range outs {
		want[string(o.Value)]--
	}
	for v, n := range want {
		if n != 0 {
			t.Errorf("output %q: %d missing (negative: duplicated)", v, n)
		}
	}
}

// TestDeadLetterNeverStallsTheStage: a rejected record whose dead letter
// would exceed the record limit (a large key stored twice, many headers, or a
// dead-letter topic whose brokers accept less) is dead-lettered within the
// limit, with every cut recorded, and the records around it flow on.
func TestDeadLetterNeverStallsTheStage(t *testing.T) {
	manyHeaders := make([]kgo.RecordHeader, 2200)
	for i := range manyHeaders {
		manyHeaders[i] = kgo.RecordHeader{Key: fmt.Sprintf("h%d", i), Value: bytes.Repeat([]byte("x"), 100)}
	}
	tests := []struct {
		name     string
		poison   *kgo.Record
		dlqLimit string // max.message.bytes of the dead-letter topic
		wantCut  string // the OVERSIZED note's field
	}{
		// Stored once in the envelope, hashed as the Kafka key: it fits whole.
		{name: "large key, small value", poison: &kgo.Record{Key: bytes.Repeat([]byte("k"), 200<<10), Value: []byte("bad-key")}},
		{name: "larger key", poison: &kgo.Record{Key: bytes.Repeat([]byte("k"), 240<<10), Value: []byte("bad-key")},
			wantCut: deadletter.FieldOriginalKey},
		{name: "many headers", poison: &kgo.Record{Key: []byte("k"), Value: append([]byte("bad-headers"), make([]byte, 40<<10)...), Headers: manyHeaders},
			wantCut: deadletter.FieldOriginalHeaders},
		{name: "broker refuses the dead letter", poison: &kgo.Record{Key: []byte("k"), Value: append([]byte("bad-value"), make([]byte, 100<<10)...)},
			dlqLimit: "16384", wantCut: deadletter.FieldOriginal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "in", "out"))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			brokers := c.ListenAddrs()
			adm, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
			if err != nil {
				t.Fatal(err)
			}
			configs := map[string]*string{}
			if tt.dlqLimit != "" {
				configs["max.message.bytes"] = kadm.StringPtr(tt.dlqLimit)
			}
			if _, err := kadm.NewClient(adm).CreateTopic(context.Background(), 2, 1, configs, deadletter.Topic); err != nil {
				t.Fatal(err)
			}
			adm.Close()

			cfg := testConfig(brokers)
			cfg.ProducerMaxRecord = 256 << 10
			before, after := values(20, "before"), values(20, "after")
			produceInputs(t, brokers, before...)
			produceInputs(t, brokers, tt.poison)
			produceInputs(t, brokers, after...)
			stop := runStage(t, cfg, &upper{failures: map[string]int{}}, newAvroEncoder(t))

			outs := consumeAll(t, brokers, "out", 40)
			dlqs := consumeAll(t, brokers, deadletter.Topic, 1)
			if err := stop(); err != nil {
				t.Fatalf("Run: %v", err)
			}
			exactlyOnce(t, append(before, after...), outs)
			if len(dlqs) != 1 {
				t.Fatalf("got %d dead letters, want 1", len(dlqs))
			}
			if n := RecordBytes(dlqs[0]); n > cfg.ProducerMaxRecord {
				t.Errorf("dead letter is %d bytes, limit %d", n, cfg.ProducerMaxRecord)
			}
			var dl events.DeadLetter
			if err := avro.Unmarshal(newAvroEncoder(t).s, dlqs[0].Value, &dl); err != nil {
				t.Fatal(err)
			}
			var cuts []string
			for _, r := range dl.Reasons {
				if r.Code == string(deadletter.Oversized) && r.Field != nil {
					cuts = append(cuts, *r.Field)
				}
			}
			if dl.Reasons[0].Code != string(deadletter.InvalidValue) || deadletter.Truncated(&dl) != (tt.wantCut != "") ||
				!strings.Contains(strings.Join(cuts, ","), tt.wantCut) {
				t.Errorf("dead letter reasons %+v, want the rejection and a cut of %q", dl.Reasons, tt.wantCut)
			}
			if tt.wantCut == "" && (!bytes.Equal(*dl.OriginalKey, tt.poison.Key) || !bytes.Equal(dl.OriginalValue, tt.poison.Value)) {
				t.Errorf("original not kept whole")
			}
			if len(dlqs[0].Key) > 256 {
				t.Errorf("dead letter Kafka key is %d bytes", len(dlqs[0].Key))
			}
		})
	}
}

// TestProduceDeadLettersFallsBackToMinimal: bq-writer's dead-letter produce
// writes the minimal envelope when the client refuses the full one.
func TestProduceDeadLettersFallsBackToMinimal(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, deadletter.Topic))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ProducerBatchMaxBytes(64<<10))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	enc := newAvroEncoder(t)
	rej := deadletter.Rejectf(deadletter.InvalidValue, "", "warehouse cannot store the row")
	small, err := DeadLetterRecord(&kgo.Record{Topic: "in", Value: []byte("v")}, "bq-writer", rej, "", enc, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	big, err := DeadLetterRecord(&kgo.Record{Topic: "in", Offset: 1, Value: make([]byte, 200<<10)}, "bq-writer", rej, "", enc, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	dls := []*kgo.Record{small, big}
	if err := ProduceDeadLetters(context.Background(), cl, dls); err != nil {
		t.Fatalf("ProduceDeadLetters: %v", err)
	}
	if dls[0] != small || dls[1] == big || len(dls[1].Value) > 2<<10 {
		t.Errorf("want the small dead letter as is and the big one replaced by its minimal envelope (%d bytes)", len(dls[1].Value))
	}
	got := consumeAll(t, c.ListenAddrs(), deadletter.Topic, 2)
	if len(got) != 2 {
		t.Errorf("got %d dead letters, want 2", len(got))
	}
}

// TestProcessorSurvivesABrokerStall: the broker stops answering for longer
// than the transaction timeout (kfake's request loop blocked in a control
// hook, like a SIGSTOPped broker) while a transaction ends or produces. The
// stage recovers by itself, with no loss and no duplicate.
func TestProcessorSurvivesABrokerStall(t *testing.T) {
	tests := []struct {
		name string
		key  kmsg.Key
	}{
		{name: "stall in EndTxn", key: kmsg.EndTxn},
		{name: "stall in Produce", key: kmsg.Produce},
		{name: "stall in TxnOffsetCommit", key: kmsg.TxnOffsetCommit},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "in", "out", deadletter.Topic))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			brokers := c.ListenAddrs()
			cfg := testConfig(brokers)
			cfg.TransactionTimeout = 2 * time.Second
			cfg.CommitInterval = 20 * time.Millisecond

			first := values(100, "first")
			produceInputs(t, brokers, first...)
			var stalled atomic.Bool
			armed := make(chan struct{})
			c.ControlKey(int16(tt.key), func(kmsg.Request) (kmsg.Response, error, bool) {
				c.KeepControl()
				select {
				case <-armed:
				default:
					return nil, nil, false
				}
				if stalled.CompareAndSwap(false, true) {
					time.Sleep(cfg.TransactionTimeout + time.Second) // blocks the whole cluster
				}
				return nil, nil, false
			})
			var commits atomic.Int64
			stop := runStage(t, cfg, &upper{failures: map[string]int{}}, newAvroEncoder(t), WithOnCommit(func(n int) { commits.Add(int64(n)) }))
			consumeAll(t, brokers, "out", len(first))
			close(armed)
			second := values(100, "second")
			produceInputs(t, brokers, second...)
			outs := consumeAll(t, brokers, "out", len(first)+len(second))
			if err := stop(); err != nil {
				t.Fatalf("Run: %v (the stage must recover by itself)", err)
			}
			if !stalled.Load() {
				t.Fatal("the broker never stalled")
			}
			exactlyOnce(t, append(first, second...), outs)
		})
	}
}

// TestProcessorCommitsOnACadence: records arriving one by one are committed
// in batches closed by KAFKA_COMMIT_INTERVAL, not one transaction per poll.
func TestProcessorCommitsOnACadence(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "in", "out", deadletter.Topic))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	brokers := c.ListenAddrs()
	cfg := testConfig(brokers)
	cfg.MaxPollRecords = 1000
	cfg.CommitInterval = 250 * time.Millisecond
	var batches, records atomic.Int64
	stop := runStage(t, cfg, &upper{failures: map[string]int{}}, newAvroEncoder(t),
		WithOnCommit(func(n int) { batches.Add(1); records.Add(int64(n)) }))
	ins := values(100, "v")
	for _, r := range ins { // ~10ms apart: a poll each on the old code
		produceInputs(t, brokers, r)
		time.Sleep(10 * time.Millisecond)
	}
	outs := consumeAll(t, brokers, "out", len(ins))
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	exactlyOnce(t, ins, outs)
	// ~1s of input in 250ms batches: a handful of transactions.
	if b := batches.Load(); b > 20 {
		t.Errorf("%d transactions for %d records, want batches closed by the commit interval", b, records.Load())
	}
}

func TestCommitIntervalValidation(t *testing.T) {
	tests := []struct {
		name     string
		interval time.Duration
		wantErr  string
	}{
		{"default", 50 * time.Millisecond, ""},
		{"per poll", 0, ""},
		{"negative", -time.Millisecond, "KAFKA_COMMIT_INTERVAL"},
		{"beyond a quarter of the transaction timeout", 6 * time.Second, "KAFKA_COMMIT_INTERVAL"},
	}
	for _, tt := range tests {
		cfg := testConfig([]string{"127.0.0.1:9092"})
		cfg.TransactionTimeout = 20 * time.Second
		cfg.CommitInterval = tt.interval
		cfg.DLQRetention, cfg.Linger = time.Hour, time.Millisecond
		err := cfg.Validate()
		if (tt.wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("%s: Validate() = %v", tt.name, err)
		}
	}
}

func TestCloseTime(t *testing.T) {
	now := time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)
	const interval = 50 * time.Millisecond
	tests := []struct {
		name  string
		first time.Time
		want  time.Time
	}{
		{"fresh record: a full interval", now, now.Add(interval)},
		{"waited 30ms in the broker: 20ms left", now.Add(-30 * time.Millisecond), now.Add(20 * time.Millisecond)},
		{"backlog: closes after this poll", now.Add(-time.Hour), now.Add(-time.Hour + interval)},
		{"clock skew: a future timestamp counts as now", now.Add(time.Minute), now.Add(interval)},
		{"no timestamp", time.Time{}, now.Add(interval)},
	}
	for _, tt := range tests {
		if got := BatchDeadline(tt.first, now, interval); !got.Equal(tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
}

// TestOutputsCarryTheirInputsTimestamp: a stage's outputs carry the Kafka
// timestamp of the record they came from, so the next stage's BatchDeadline
// counts from when the event reached the platform and only the first stage
// of a pipeline waits the whole commit interval. A dead letter keeps the time
// it was made (its retention runs from the failure).
func TestOutputsCarryTheirInputsTimestamp(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "in", "out", deadletter.Topic))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	brokers := c.ListenAddrs()
	cfg := testConfig(brokers)
	stop := runStage(t, cfg, &upper{failures: map[string]int{}}, newAvroEncoder(t))
	arrived := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	ins := values(5, "v")
	for _, r := range ins {
		r.Timestamp = arrived
	}
	bad := &kgo.Record{Value: []byte("bad"), Timestamp: arrived}
	produceInputs(t, brokers, append(ins, bad)...)
	outs := consumeAll(t, brokers, "out", len(ins))
	dls := consumeAll(t, brokers, deadletter.Topic, 1)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	for _, o := range outs {
		if !o.Timestamp.Equal(arrived) {
			t.Errorf("output %q has timestamp %v, want its input's %v", o.Value, o.Timestamp, arrived)
		}
	}
	if dls[0].Timestamp.Before(time.Now().Add(-time.Minute)) {
		t.Errorf("dead letter has timestamp %v, want the time it was made", dls[0].Timestamp)
	}
}

func TestBatchDeadlineCountsFromTheRecord(t *testing.T) {
	now := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	tests := []struct {
		name  string
		first time.Time
		want  time.Time
	}{
		{name: "fresh record", first: now, want: now.Add(100 * time.Millisecond)},
		{name: "already waited upstream", first: now.Add(-80 * time.Millisecond), want: now.Add(20 * time.Millisecond)},
		{name: "older than the interval: due now", first: now.Add(-time.Second), want: now.Add(-900 * time.Millisecond)},
		{name: "clock skew: future counts as now", first: now.Add(time.Minute), want: now.Add(100 * time.Millisecond)},
		{name: "no timestamp", first: time.Time{}, want: now.Add(100 * time.Millisecond)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := BatchDeadline(tt.first, now, 100*time.Millisecond); !got.Equal(tt.want) {
				t.Errorf("BatchDeadline = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestFetchWait(t *testing.T) {
	for _, tt := range []struct{ interval, want time.Duration }{
		{100 * time.Millisecond, 20 * time.Millisecond},
		{50 * time.Millisecond, 10 * time.Millisecond},
		{20 * time.Millisecond, 10 * time.Millisecond},
		{time.Second, 200 * time.Millisecond},
	} {
		if got := FetchWait(tt.interval); got != tt.want {
			t.Errorf("FetchWait(%v) = %v, want %v", tt.interval, got, tt.want)
		}
	}
}
