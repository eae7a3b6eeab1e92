package ingest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr/srfake"
	"go.opentelemetry.io/otel/metric/noop"
	"go.uber.org/goleak"

	"github.com/ecomstream/platform/pkg/avroserde"
	"github.com/ecomstream/platform/pkg/config"
	"github.com/ecomstream/platform/pkg/events"
	"github.com/ecomstream/platform/pkg/stream"
	protoavro "github.com/ecomstream/platform/proto/avro"
	"github.com/ecomstream/platform/services/dlq-handler/internal/store"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestStartOf: where a partition starts, and which stored positions stop
// the consumer.
func TestStartOf(t *testing.T) {
	tests := []struct {
		name        string
		pos         int64
		stored      bool
		start, end  int64
		want        int64
		wantProblem string
	}{
		{name: "nothing stored: the log start", stored: false, start: 5, end: 9, want: 5},
		{name: "nothing stored, empty log", stored: false, start: 0, end: 0, want: 0},
		{name: "stored within the log", pos: 7, stored: true, start: 5, end: 9, want: 7},
		{name: "stored at the log end", pos: 9, stored: true, start: 5, end: 9, want: 9},
		{name: "stored at the log start", pos: 5, stored: true, start: 5, end: 9, want: 5},
		{name: "beyond the log end", pos: 12, stored: true, start: 0, end: 9, wantProblem: "beyond the log end 9"},
		{name: "below the log start", pos: 2, stored: true, start: 5, end: 9, wantProblem: "dead letters 2..4 were deleted"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, problem := StartOf(tt.pos, tt.stored, tt.start, tt.end)
			if tt.wantProblem != "" {
				if !strings.Contains(problem, tt.wantProblem) {
					t.Errorf("problem %q, want it to say %q", problem, tt.wantProblem)
				}
				return
			}
			if problem != "" || got != tt.want {
				t.Errorf("StartOf = %d, %q; want %d", got, problem, tt.want)
			}
		})
	}
}

// fakeStore is the store in memory: rows by id (ON CONFLICT DO NOTHING),
// positions moved in the same step, and injected failures.
type fakeStore struct {
	mu        sync.Mutex
	rows      map[string]store.Row
	pos       map[store.Partition]int64
	writes    int
	failures  []error // returned by the next writes, in order
	positions error   // returned by Positions while set
}

func newFakeStore() *fakeStore {
	return &fakeStore{rows: map[string]store.Row{}, pos: map[store.Partition]int64{}}
}

func (f *fakeStore) Write(_ context.Context, _ string, rows []store.Row, next map[store.Partition]int64) (store.WriteResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.writes++
	if len(f.failures) > 0 {
		err := f.failures[0]
		f.failures = f.failures[1:]
		return store.WriteResult{}, err
	}
	var res store.WriteResult
	for i := range rows {
		if _, ok := f.rows[rows[i].DeadLetterID]; ok {
			res.Duplicates++
			continue
		}
		f.rows[rows[i].DeadLetterID] = rows[i]
		res.Inserted = append(res.Inserted, &rows[i])
	}
	maps.Copy(f.pos, next)
	return res, nil
}

func (f *fakeStore) Positions(context.Context, string) (map[store.Partition]int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.positions != nil {
		return nil, f.positions
	}
	return maps.Clone(f.pos), nil
}

func (f *fakeStore) snapshot() (map[string]store.Row, map[store.Partition]int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.rows), maps.Clone(f.pos)
}

const topic = "it.dlq"

type env struct {
	t       *testing.T
	brokers []string
	prod    *kgo.Client
	codec   *avroserde.Codec
}

func newEnv(t *testing.T) *env {
	t.Helper()
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, topic))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	reg := srfake.New()
	t.Cleanup(reg.Close)
	r, err := avroserde.New(avroserde.Config{URL: reg.URL(), AutoRegister: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, brokers: cluster.ListenAddrs()}
	if e.codec, err = r.Codec(context.Background(), avroserde.SubjectFor(topic), protoavro.DeadLetter); err != nil {
		t.Fatal(err)
	}
	if e.prod, err = kgo.NewClient(kgo.SeedBrokers(e.brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner())); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.prod.Close)
	return e
}

// envelope is the encoded dead letter id.
func (e *env) envelope(id string) []byte {
	e.t.Helper()
	b, err := e.codec.Encode(&events.DeadLetter{DeadLetterID: id, Stage: "validator", SourceTopic: "ecom.events.v1",
		SourceTimestamp: time.Now().UTC(), OriginalValue: []byte("x"), OriginalHeaders: []events.Header{},
		Reasons: []events.Reason{{Code: "RULE_FAILED", RuleID: new(string), Message: "m"}}, Attempt: 1, FailedAt: time.Now().UTC()})
	if err != nil {
		e.t.Fatal(err)
	}
	return b
}

func (e *env) produce(partition int32, values ...[]byte) {
	e.t.Helper()
	for _, v := range values {
		if err := e.prod.ProduceSync(context.Background(), &kgo.Record{Topic: topic, Partition: partition, Value: v}).FirstErr(); err != nil {
			e.t.Fatal(err)
		}
	}
}

// flakyDecoder fails its first failures decodes with a transient error
// (the registry unreachable), then decodes with d.
type flakyDecoder struct {
	d        Decoder
	mu       sync.Mutex
	failures int
}

func (f *flakyDecoder) Decode(ctx context.Context, b []byte, v any) (int, error) {
	f.mu.Lock()
	fail := f.failures > 0
	f.failures--
	f.mu.Unlock()
	if fail {
		return 0, errors.New("schema registry: dial tcp 127.0.0.1:18081: connection refused")
	}
	return f.d.Decode(ctx, b, v)
}

// start runs a consumer on st until the test ends; its Run's result is sent on the channel.
func (e *env) start(st Store, dec Decoder) <-chan error {
	e.t.Helper()
	var kc stream.Config
	if err := config.LoadFrom(config.MapLookup(map[string]string{"KAFKA_BROKERS": strings.Join(e.brokers, ","),
		"KAFKA_COMMIT_INTERVAL": "20ms", "KAFKA_RETRY_BACKOFF_MIN": "5ms", "KAFKA_RETRY_BACKOFF_MAX": "20ms",
		"KAFKA_STATIC_MEMBERSHIP": "false"}), &kc); err != nil {
		e.t.Fatal(err)
	}
	m, err := stream.NewMetrics(noop.NewMeterProvider().Meter(""))
	if err != nil {
		e.t.Fatal(err)
	}
	c, err := New(Config{Kafka: kc, Service: "dlq-handler", Group: "g", Topic: topic, PIIEntities: store.DefaultPIIEntities,
		Codec: dec, Meter: noop.NewMeterProvider().Meter(""), Metrics: m, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}, st)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	out := make(chan error, 1)
	stopped := make(chan struct{})
	go func() { err := <-done; out <- err; close(stopped) }()
	e.t.Cleanup(func() { cancel(); <-stopped })
	return out
}

// waitPositions waits until st's positions are want.
func waitPositions(t *testing.T, st *fakeStore, want map[store.Partition]int64, done <-chan error) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, pos := st.snapshot()
		if maps.Equal(pos, want) {
			return
		}
		select {
		case err := <-done:
			t.Fatalf("consumer stopped: %v (positions %v, want %v)", err, pos, want)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("positions %v after 20s, want %v", pos, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestConsumer: every record is stored (a re-delivered envelope once, a
// record that is not a DeadLetter as undecodable), transient store and
// registry failures are retried without skipping, and a consumer resumes at the stored
// positions, not Kafka's.
func TestConsumer(t *testing.T) {
	transient := errors.New("write tcp: connection reset by peer")
	tests := []struct {
		name      string
		failures  []error
		decodes   int                       // transient decode failures
		stored    map[store.Partition]int64 // positions stored before the start
		wantIDs   []string
		wantWrite int // at least this many writes
	}{
		{name: "everything from the log start", wantIDs: []string{"a", "b", "c", "dlq-undecodable:1:1"}, wantWrite: 1},
		{name: "transient store errors are retried", failures: []error{transient, &pgconn.PgError{Code: "57P01"}},
			wantIDs: []string{"a", "b", "c", "dlq-undecodable:1:1"}, wantWrite: 3},
		{name: "transient decode errors are retried", decodes: 3, wantIDs: []string{"a", "b", "c", "dlq-undecodable:1:1"}, wantWrite: 1},
		{name: "resume at the stored positions", stored: map[store.Partition]int64{{Topic: topic, Partition: 0}: 3},
			wantIDs: []string{"b", "c", "dlq-undecodable:1:1"}, wantWrite: 1}, // p0 from 3: c; p1 from 0
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			// p0: a, b, a again (a producer retry), c; p1: b again, garbage.
			e.produce(0, e.envelope("a"), e.envelope("b"), e.envelope("a"), e.envelope("c"))
			e.produce(1, e.envelope("b"), []byte("not a dead letter"))
			st := newFakeStore()
			st.failures = tt.failures
			maps.Copy(st.pos, tt.stored)
			done := e.start(st, &flakyDecoder{d: e.codec, failures: tt.decodes})
			waitPositions(t, st, map[store.Partition]int64{{Topic: topic, Partition: 0}: 4, {Topic: topic, Partition: 1}: 2}, done)
			rows, _ := st.snapshot()
			var ids []string
			for id := range rows {
				ids = append(ids, id)
			}
			if got := fmt.Sprint(slices.Sorted(slices.Values(ids))); got != fmt.Sprint(tt.wantIDs) {
				t.Errorf("stored %v, want %v", got, tt.wantIDs)
			}
			if u, ok := rows["dlq-undecodable:1:1"]; ok && (u.Stage != store.UndecodableStage || string(u.OriginalValue) != "not a dead letter" ||
				u.SourceTopic != topic || u.Codes[0] != "UNDECODABLE") {
				t.Errorf("undecodable row %+v", u)
			}
			if st.writes < tt.wantWrite {
				t.Errorf("%d writes, want at least %d", st.writes, tt.wantWrite)
			}
		})
	}
}

// TestConsumerStops: a stored position outside the log and a store error
// retrying cannot fix stop the consumer, and its positions do not move.
func TestConsumerStops(t *testing.T) {
	tests := []struct {
		name     string
		stored   map[store.Partition]int64
		failures []error
		want     string
	}{
		{name: "position beyond the log end", stored: map[store.Partition]int64{{Topic: topic, Partition: 0}: 50}, want: "beyond the log end"},
		{name: "a permanent store error", failures: []error{&pgconn.PgError{Code: "42P01", Message: `relation "dead_letters" does not exist`}},
			want: "dead_letters"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			e.produce(0, e.envelope("a"))
			st := newFakeStore()
			st.failures = tt.failures
			maps.Copy(st.pos, tt.stored)
			select {
			case err := <-e.start(st, e.codec):
				if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), runbook) {
					t.Errorf("Run = %v, want an error saying %q with the runbook", err, tt.want)
				}
			case <-time.After(20 * time.Second):
				t.Fatal("the consumer did not stop")
			}
			rows, pos := st.snapshot()
			if len(rows) != 0 || !maps.Equal(pos, tt.stored) && !(len(pos) == 0 && len(tt.stored) == 0) {
				t.Errorf("after the stop: rows %v, positions %v; want none stored, positions %v", rows, pos, tt.stored)
			}
		})
	}
}
