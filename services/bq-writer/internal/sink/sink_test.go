package sink

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr/srfake"
	"go.opentelemetry.io/otel/metric/noop"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/ecomstream/platform/pkg/avroserde"
	"github.com/ecomstream/platform/pkg/deadletter"
	"github.com/ecomstream/platform/pkg/events"
	"github.com/ecomstream/platform/pkg/stream"
	protoavro "github.com/ecomstream/platform/proto/avro"
	"github.com/ecomstream/platform/services/bq-writer/internal/warehouse"
)

// memWarehouse is an in-memory Warehouse with the same atomic contract, and
// failures to inject.
type memWarehouse struct {
	mu        sync.Mutex
	rows      map[string]warehouse.EventRow
	positions map[warehouse.Partition]warehouse.Position
	failNext  int // transient failures before the next write succeeds
	writes    int
	batches   []int // records (rows) of each successful write
}

var _ warehouse.Warehouse = (*memWarehouse)(nil)

func newMem() *memWarehouse {
	return &memWarehouse{rows: map[string]warehouse.EventRow{}, positions: map[warehouse.Partition]warehouse.Position{}}
}

func (m *memWarehouse) Migrate(context.Context) error { return nil }
func (m *memWarehouse) Ping(context.Context) error    { return nil }
func (m *memWarehouse) Close() error                  { return nil }

func (m *memWarehouse) Positions(context.Context, string) (map[warehouse.Partition]warehouse.Position, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return maps.Clone(m.positions), nil
}

func (m *memWarehouse) ResetPositions(_ context.Context, _ string, positions map[warehouse.Partition]warehouse.Position) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	maps.Copy(m.positions, positions)
	return nil
}

func (m *memWarehouse) Write(_ context.Context, _ string, b warehouse.Batch) (warehouse.WriteResult, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.failNext > 0 {
		m.failNext--
		return warehouse.WriteResult{}, fmt.Errorf("disk busy: %w", warehouse.ErrTransient)
	}
	m.writes++
	m.batches = append(m.batches, len(b.Events))
	var res warehouse.WriteResult
	for i, r := range b.Events {
		if r.EventID == "" {
			return warehouse.WriteResult{}, &warehouse.RowError{Index: i, Reason: "empty event_id"}
		}
	}
	for _, r := range b.Events {
		p := warehouse.Partition{Topic: r.SourceTopic, Partition: r.SourcePartition}
		if r.SourceOffset < m.positions[p].Next {
			res.Stale++
			continue
		}
		if _, dup := m.rows[r.EventID]; dup {
			res.Duplicates++
			continue
		}
		m.rows[r.EventID] = r
		res.Inserted++
	}
	for p, next := range b.Positions {
		m.positions[p] = warehouse.Position{Next: next, TopicID: b.TopicIDs[p.Topic], ClusterID: b.ClusterID}
	}
	return res, nil
}

func (m *memWarehouse) count() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.rows)
}

func TestSinkWritesExactlyOnceAndDeadLettersUndecodable(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "valid", deadletter.Topic))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	reg := srfake.New()
	defer reg.Close()
	brokers := cluster.ListenAddrs()
	ctx := context.Background()

	r, err := avroserde.New(avroserde.Config{URL: reg.URL(), AutoRegister: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	codec, err := r.Codec(ctx, "valid-value", protoavro.ClickEvent)
	if err != nil {
		t.Fatal(err)
	}
	dlq, err := r.Codec(ctx, avroserde.SubjectFor(deadletter.Topic), protoavro.DeadLetter)
	if err != nil {
		t.Fatal(err)
	}

	prod, _ := kgo.NewClient(kgo.SeedBrokers(brokers...))
	defer prod.Close()
	produce := func(from, to int) {
		for i := from; i < to; i++ {
			var v []byte
			if i%25 == 3 {
				v = []byte("not avro at all")
			} else {
				id := fmt.Sprintf("e-%d", i)
				if i == 40 {
					id = "" // decodes, but the warehouse refuses the row
				}
				v, err = codec.Encode(&events.ClickEvent{EventID: id, EventType: "page_view",
					EventTimestamp: time.Now().UTC(), ReceivedAt: time.Now().UTC(), SessionID: "s", PageURL: "https://x/", Source: "kafka"})
				if err != nil {
					t.Fatal(err)
				}
			}
			rec := &kgo.Record{Topic: "valid", Key: []byte(fmt.Sprint(i)), Value: v}
			if i%10 == 7 { // flagged by the validator's warn rules
				rec.Headers = []kgo.RecordHeader{{Key: stream.DQWarningsHeader, Value: []byte("click.commerce_fields")}}
			}
			if err := prod.ProduceSync(ctx, rec).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
	}

	wh := newMem()
	wh.failNext = 2 // the first writes fail transiently and are retried
	m, _ := stream.NewMetrics(noop.NewMeterProvider().Meter("t"))
	kcfg := stream.Config{Brokers: brokers, MaxPollRecords: 30, FetchMaxBytes: 1 << 20, ProducerMaxRecord: 1 << 20,
		Compression: "none", SessionTimeout: 10 * time.Second, RetryBackoffMin: time.Millisecond, RetryBackoffMax: 5 * time.Millisecond}
	runSink := func(until int) {
		t.Helper()
		s, err := New(Config{Kafka: kcfg, Group: "bq", Topic: "valid", Stage: "bq-writer", DLQ: dlq, Codec: codec,
			Tracer: tracenoop.NewTracerProvider().Tracer("t"), Meter: noop.NewMeterProvider().Meter("t"), Metrics: m,
			Log: slog.New(slog.NewTextHandler(io.Discard, nil))}, wh)
		if err != nil {
			t.Fatal(err)
		}
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- s.Run(rctx) }()
		deadline := time.Now().Add(10 * time.Second)
		for wh.count() < until && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}

	produce(0, 100)
	runSink(95)
	// Restart: the sink must resume from the warehouse's positions, whatever
	// Kafka's (mirror) commits say.
	produce(100, 150)
	writesBefore := wh.writes
	runSink(143)

	if got := wh.count(); got != 143 {
		t.Errorf("warehouse holds %d rows, want 143", got)
	}
	for id, row := range wh.rows {
		var i int
		fmt.Sscanf(id, "e-%d", &i)
		if want := map[bool]string{true: "click.commerce_fields"}[i%10 == 7]; row.DQWarnings != want {
			t.Errorf("row %s dq_warnings %q, want %q", id, row.DQWarnings, want)
		}
	}
	if wh.writes == writesBefore {
		t.Error("second run wrote nothing")
	}
	for p, next := range wh.positions {
		if next.Next <= 0 || next.TopicID == "" || next.ClusterID == "" {
			t.Errorf("position of %v not stored with its log ids: %+v", p, next)
		}
	}
	// Dead letters: exactly the 6 undecodable records and the refused row.
	cl, _ := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(deadletter.Topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	defer cl.Close()
	var got []events.DeadLetter
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	for len(got) < 7 && pctx.Err() == nil {
		for _, rec := range cl.PollFetches(pctx).Records() {
			var dl events.DeadLetter
			if _, err := dlq.Decode(ctx, rec.Value, &dl); err != nil {
				t.Fatal(err)
			}
			got = append(got, dl)
		}
	}
	if len(got) != 7 {
		t.Fatalf("got %d dead letters, want 7", len(got))
	}
	codes := map[string]int{}
	for _, dl := range got {
		codes[dl.Reasons[0].Code]++
		if dl.Stage != "bq-writer" || len(dl.OriginalValue) == 0 {
			t.Errorf("bad dead letter %+v", dl)
		}
	}
	if codes[string(deadletter.Undecodable)] != 6 || codes[string(deadletter.InvalidValue)] != 1 {
		t.Errorf("dead letters by code: %v, want 6 UNDECODABLE and 1 INVALID_VALUE", codes)
	}
}

func TestRetryStopsOnPermanentAndContext(t *testing.T) {
	cfg := stream.Config{RetryBackoffMin: time.Millisecond, RetryBackoffMax: 2 * time.Millisecond}
	calls := 0
	err := retry(context.Background(), cfg, func() error {
		calls++
		if calls < 3 {
			return errors.New("transient")
		}
		return permanent{errors.New("broken")}
	})
	if err == nil || err.Error() != "broken" || calls != 3 {
		t.Errorf("err %v after %d calls", err, calls)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := retry(ctx, cfg, func() error { return errors.New("transient") }); !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
}
