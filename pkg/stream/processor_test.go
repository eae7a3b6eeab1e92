package stream

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/metric/noop"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
	"go.uber.org/goleak"

	"github.com/ecomstream/platform/pkg/deadletter"
	"github.com/ecomstream/platform/pkg/events"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("go.opencensus.io/stats/view.(*worker).start"))
}

type jsonEncoder struct{}

func (jsonEncoder) Encode(v any) ([]byte, error) { return json.Marshal(v) }

func testConfig(brokers []string) Config {
	return Config{
		Brokers: brokers, TopicPartitions: 2, TopicReplication: 1, MaxPollRecords: 50,
		FetchMaxBytes: 1 << 20, ProducerMaxRecord: 1 << 20, Compression: "none",
		TransactionTimeout: 10 * time.Second, SessionTimeout: 10 * time.Second, StaticMembership: true, RetryBackoffMin: 5 * time.Millisecond, RetryBackoffMax: 20 * time.Millisecond,
	}
}

// upper is a stage: "bad*" values are rejected, "flaky*" values fail
// transiently failures[value] times first, others are upper-cased onto "out".
type upper struct {
	mu       sync.Mutex
	failures map[string]int
	calls    atomic.Int64
}

func (u *upper) handle(_ context.Context, rec *kgo.Record) ([]*kgo.Record, error) {
	u.calls.Add(1)
	v := string(rec.Value)
	if strings.HasPrefix(v, "bad") {
		return nil, deadletter.Reject(deadletter.Reason{Code: deadletter.InvalidValue, Field: "value", Message: "bad value"})
	}
	if strings.HasPrefix(v, "panic") {
		panic("boom")
	}
	u.mu.Lock()
	n := u.failures[v]
	if n > 0 {
		u.failures[v] = n - 1
	}
	u.mu.Unlock()
	if n > 0 {
		return nil, errors.New("transient: warehouse unavailable")
	}
	return []*kgo.Record{{Topic: "out", Key: rec.Key, Value: []byte(strings.ToUpper(v))}}, nil
}

func consumeAll(t *testing.T, brokers []string, topic string, want int) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	var out []*kgo.Record
	for len(out) < want {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consumed %d of %d records from %s", len(out), want, topic)
		}
		out = append(out, fs.Records()...)
	}
	// Nothing more arrives: no duplicates.
	short, cancel2 := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel2()
	out = append(out, cl.PollFetches(short).Records()...)
	return out
}

func TestProcessorExactlyOnceWithDeadLettersAndRetries(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "in", "out", deadletter.Topic))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	brokers := c.ListenAddrs()
	cfg := testConfig(brokers)

	var inputs []string
	wantOut := map[string]bool{}
	u := &upper{failures: map[string]int{}}
	for i := range 200 {
		v := "v" + string(rune('a'+i%26)) + strings.Repeat("x", i%7) + "-" + itoa(i)
		switch {
		case i%50 == 7:
			v = "bad-" + itoa(i)
		case i%50 == 9:
			v = "panic-" + itoa(i)
		case i%60 == 11:
			v = "flaky-" + itoa(i)
			u.failures[v] = 5 // more than the in-place retries: the batch aborts and is redone
		}
		inputs = append(inputs, v)
		if !strings.HasPrefix(v, "bad") && !strings.HasPrefix(v, "panic") {
			wantOut[strings.ToUpper(v)] = true
		}
	}
	prod, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range inputs {
		if err := prod.ProduceSync(context.Background(), &kgo.Record{Topic: "in", Key: []byte(v), Value: []byte(v)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	prod.Close()

	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	m, err := NewMetrics(noop.NewMeterProvider().Meter("t"))
	if err != nil {
		t.Fatal(err)
	}
	h := Chain(u.handle, Standard("test-stage", "g", tracenoop.NewTracerProvider().Tracer("t"), jsonEncoder{}, 1<<20, m, log)...)
	var committed atomic.Int64
	p, err := NewProcessor(cfg, ProcessorConfig{Stage: "test-stage", Group: "g", Topics: []string{"in"}, TransactionalID: "test-stage-1"},
		h, m, log, WithOnCommit(func(n int) { committed.Add(int64(n)) }))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()

	outs := consumeAll(t, brokers, "out", len(wantOut))
	dlqs := consumeAll(t, brokers, deadletter.Topic, len(inputs)-len(wantOut))
	deadline := time.Now().Add(10 * time.Second)
	for committed.Load() < int64(len(inputs)) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}

	if len(outs) != len(wantOut) {
		t.Errorf("got %d outputs, want exactly %d (no duplicates)", len(outs), len(wantOut))
	}
	for _, o := range outs {
		if !wantOut[string(o.Value)] {
			t.Errorf("unexpected output %q", o.Value)
		}
		delete(wantOut, string(o.Value))
	}
	if len(wantOut) != 0 {
		t.Errorf("missing outputs: %v", wantOut)
	}
	if len(dlqs) != 8 {
		t.Errorf("got %d dead letters, want 8", len(dlqs))
	}
	for _, d := range dlqs {
		var dl events.DeadLetter
		if err := json.Unmarshal(d.Value, &dl); err != nil {
			t.Fatal(err)
		}
		orig := string(dl.OriginalValue)
		wantCode := "INVALID_VALUE"
		if strings.HasPrefix(orig, "panic") {
			wantCode = "INTERNAL"
		}
		if dl.Stage != "test-stage" || dl.SourceTopic != "in" || len(dl.Reasons) != 1 || dl.Reasons[0].Code != wantCode || string(d.Key) != orig {
			t.Errorf("bad dead letter for %q: %+v", orig, dl)
		}
	}
	if committed.Load() < int64(len(inputs)) {
		t.Errorf("committed %d input records, want %d", committed.Load(), len(inputs))
	}
}

func TestProcessorResumesAfterRestartWithoutReprocessing(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "in", "out", deadletter.Topic))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	brokers := c.ListenAddrs()
	cfg := testConfig(brokers)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	m, _ := NewMetrics(noop.NewMeterProvider().Meter("t"))

	produce := func(vals ...string) {
		prod, _ := kgo.NewClient(kgo.SeedBrokers(brokers...))
		defer prod.Close()
		for _, v := range vals {
			if err := prod.ProduceSync(context.Background(), &kgo.Record{Topic: "in", Value: []byte(v)}).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
	}
	run := func(u *upper, until int64) {
		var committed atomic.Int64
		p, err := NewProcessor(cfg, ProcessorConfig{Stage: "s", Group: "g", Topics: []string{"in"}, TransactionalID: "s-1"},
			u.handle, m, log, WithOnCommit(func(n int) { committed.Add(int64(n)) }))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- p.Run(ctx) }()
		deadline := time.Now().Add(10 * time.Second)
		for committed.Load() < until && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	produce("a", "b", "c")
	first := &upper{failures: map[string]int{}}
	run(first, 3)
	produce("d", "e")
	second := &upper{failures: map[string]int{}}
	run(second, 2)
	if got := second.calls.Load(); got != 2 {
		t.Errorf("second run handled %d records, want only the 2 new ones", got)
	}
	if outs := consumeAll(t, brokers, "out", 5); len(outs) != 5 {
		t.Errorf("got %d outputs, want 5", len(outs))
	}
}

func itoa(i int) string {
	b := []byte{}
	if i == 0 {
		return "0"
	}
	for i > 0 {
		b = append([]byte{byte('0' + i%10)}, b...)
		i /= 10
	}
	return string(b)
}
