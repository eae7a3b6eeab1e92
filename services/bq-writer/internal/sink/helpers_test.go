package sink

// Helpers for the sink tests on kfake with a real DuckDB file. They use only the parts of the
// sink and warehouse API that predate the position checks (New, Run, OpenDuckDB, Write), so the
// regression tests built on them also run against older code.

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	_ "github.com/duckdb/duckdb-go/v2" // database/sql driver "duckdb", to read a closed warehouse file
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
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

const testTopic = "valid"

// env is a kfake cluster with the input and dead-letter topics, a registry and codecs.
type env struct {
	t       *testing.T
	brokers []string
	adm     *kadm.Client
	prod    *kgo.Client
	codec   *avroserde.Codec
	dlq     *avroserde.Codec
	reg     *srfake.Registry
	topic   string // the input topic
}

func newEnv(t *testing.T, opts ...kfake.Opt) *env {
	t.Helper()
	cluster, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1), kfake.SeedTopics(2, testTopic, deadletter.Topic)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	return newEnvOn(t, cluster.ListenAddrs(), testTopic)
}

// newEnvOn is an env on existing brokers whose input topic is topic.
func newEnvOn(t *testing.T, brokers []string, topic string) *env {
	t.Helper()
	e := &env{t: t, brokers: brokers, topic: topic}
	e.reg = srfake.New()
	t.Cleanup(e.reg.Close)
	e.codec, e.dlq = codecs(t, e.reg)
	var err error
	if e.prod, err = kgo.NewClient(kgo.SeedBrokers(e.brokers...)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.prod.Close)
	e.adm = kadm.NewClient(e.prod)
	return e
}

func codecs(t *testing.T, reg *srfake.Registry) (codec, dlq *avroserde.Codec) {
	t.Helper()
	ctx := context.Background()
	r, err := avroserde.New(avroserde.Config{URL: reg.URL(), AutoRegister: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if codec, err = r.Codec(ctx, testTopic+"-value", protoavro.ClickEvent); err != nil {
		t.Fatal(err)
	}
	if dlq, err = r.Codec(ctx, avroserde.SubjectFor(deadletter.Topic), protoavro.DeadLetter); err != nil {
		t.Fatal(err)
	}
	return codec, dlq
}

// produce writes n valid events with ids prefix-0.. to the input topic, spread over its
// partitions by key.
func (e *env) produce(prefix string, n int) {
	e.t.Helper()
	ctx := context.Background()
	for i := range n {
		v, err := e.codec.Encode(&events.ClickEvent{EventID: fmt.Sprintf("%s-%d", prefix, i), EventType: "page_view",
			EventTimestamp: time.Now().UTC(), ReceivedAt: time.Now().UTC(), SessionID: "s", PageURL: "https://x/", Source: "kafka"})
		if err != nil {
			e.t.Fatal(err)
		}
		if err := e.prod.ProduceSync(ctx, &kgo.Record{Topic: e.topic, Key: []byte(fmt.Sprint(i)), Value: v}).FirstErr(); err != nil {
			e.t.Fatal(err)
		}
	}
}

// recreate deletes the input topic and creates it again (a new topic id, offsets from 0).
// A real broker deletes asynchronously: creating is retried while the old topic still exists.
func (e *env) recreate() {
	e.t.Helper()
	ctx := context.Background()
	if _, err := e.adm.DeleteTopic(ctx, e.topic); err != nil {
		e.t.Fatal(err)
	}
	e.prod.PurgeTopicsFromClient(e.topic)
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := e.adm.CreateTopic(ctx, 2, 1, nil, e.topic)
		if err == nil {
			return
		}
		if !errors.Is(err, kerr.TopicAlreadyExists) || time.Now().After(deadline) {
			e.t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (e *env) kafka() stream.Config {
	return stream.Config{Brokers: e.brokers, MaxPollRecords: 30, FetchMaxBytes: 1 << 20, ProducerMaxRecord: 1 << 20,
		Compression: "none", SessionTimeout: 10 * time.Second, RetryBackoffMin: time.Millisecond, RetryBackoffMax: 5 * time.Millisecond}
}

// config is a sink config on e for group.
func (e *env) config(group string) Config {
	m, _ := stream.NewMetrics(noop.NewMeterProvider().Meter("t"))
	return Config{Kafka: e.kafka(), Group: group, Topic: e.topic, Stage: "bq-writer", DLQ: e.dlq, Codec: e.codec,
		Tracer: tracenoop.NewTracerProvider().Tracer("t"), Meter: noop.NewMeterProvider().Meter("t"), Metrics: m,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

// running is a sink started by start.
type running struct {
	cancel context.CancelFunc
	done   chan error
}

// start runs a sink with cfg on wh.
func start(t *testing.T, cfg Config, wh warehouse.Warehouse) *running {
	t.Helper()
	s, err := New(cfg, wh)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- s.Run(ctx) }()
	t.Cleanup(func() { r.stop() })
	return r
}

// stop cancels the sink and returns what Run returned.
func (r *running) stop() error {
	r.cancel()
	err, ok := <-r.done
	if ok {
		close(r.done)
	}
	return err
}

// stopped waits up to d for Run to return by itself; ok is false if it is still running.
func (r *running) stopped(d time.Duration) (err error, ok bool) {
	select {
	case err, ok := <-r.done:
		if ok {
			close(r.done)
		}
		return err, true
	case <-time.After(d):
		return nil, false
	}
}

// counting is a warehouse that counts what Write did. Only Write is wrapped: its signature is
// the same before and after the position checks.
type counting struct {
	warehouse.Warehouse
	mu       sync.Mutex
	writes   int
	inserted int
	stale    int
}

func (c *counting) Write(ctx context.Context, group string, b warehouse.Batch) (warehouse.WriteResult, error) {
	res, err := c.Warehouse.Write(ctx, group, b)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err == nil {
		c.writes++
		c.inserted += res.Inserted
		c.stale += res.Stale
	}
	return res, err
}

func (c *counting) counts() (writes, inserted, stale int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.writes, c.inserted, c.stale
}

// waitInserted waits until n rows were inserted (or fails after 10s).
func (c *counting) waitInserted(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if _, ins, _ := c.counts(); ins >= n {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	_, ins, stale := c.counts()
	t.Fatalf("inserted %d rows (stale %d), want %d", ins, stale, n)
}

// openFile opens (creating) a migrated DuckDB warehouse at path.
func openFile(t *testing.T, path string) *counting {
	t.Helper()
	d, err := warehouse.OpenDuckDB(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Migrate(context.Background()); err != nil {
		d.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return &counting{Warehouse: d}
}

// rows counts fact_events in the (closed) file at path.
func rows(t *testing.T, path string) int {
	t.Helper()
	db, err := sql.Open("duckdb", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM fact_events`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func tempFile(t *testing.T, name string) string { return filepath.Join(t.TempDir(), name) }

// waitMirrored waits until the group's committed offsets in Kafka equal the warehouse's positions
// (the sink mirrors them asynchronously after each write), or fails after 10s.
func (e *env) waitMirrored(t *testing.T, group string, wh warehouse.Warehouse) {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(10 * time.Second)
	for {
		positions, err := wh.Positions(ctx, group)
		if err != nil {
			t.Fatal(err)
		}
		committed, err := e.adm.FetchOffsets(ctx, group)
		if err != nil {
			t.Fatal(err)
		}
		behind := 0
		for p, pos := range positions {
			if o, ok := committed.Lookup(p.Topic, p.Partition); !ok || o.At != pos.Next {
				behind++
			}
		}
		if len(positions) > 0 && behind == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("kafka's committed offsets of group %s do not mirror the warehouse's %d positions (%d behind)", group, len(positions), behind)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
