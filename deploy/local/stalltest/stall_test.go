// Package stalltest checks that the shared Kafka processor survives a real
// broker that stops answering for longer than the transaction timeout.
//
// The test pauses the broker process with SIGSTOP, so it must not run beside
// other integration tests against the same broker (the Makefile runs
// integration packages with -p 1). It always sends SIGCONT when it ends.
package stalltest

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/metric/noop"

	"github.com/ecomstream/platform/deploy/local/stacktest"
	"github.com/ecomstream/platform/pkg/stream"
)

// TestIntegrationProcessorSurvivesBrokerPause: the broker is paused (SIGSTOP)
// for longer than the transaction timeout while the processor is mid-batch.
// After it resumes, the stage recovers by itself: every input is in the
// output exactly once (read_committed), and Run never returned an error.
func TestIntegrationProcessorSurvivesBrokerPause(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs the local stack's Kafka (deploy/local/stack.sh up); skipped under -short")
	}
	eps := stacktest.FromEnv()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	if err := stacktest.CheckKafka(ctx, eps.KafkaBrokers); err != nil {
		cancel()
		t.Fatalf("kafka %s not reachable: %v\n%s", strings.Join(eps.KafkaBrokers, ","), err, stacktest.StartHint)
	}
	cancel()
	broker := brokerProcess(t)

	const txnTimeout = 5 * time.Second
	in, out := stacktest.UniqueName(t, "stall-in"), stacktest.UniqueName(t, "stall-out")
	cl, err := kgo.NewClient(kgo.SeedBrokers(eps.KafkaBrokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	for _, topic := range []string{in, out} {
		if _, err := adm.CreateTopic(context.Background(), 3, 1, nil, topic); err != nil {
			t.Fatalf("create topic %s: %v", topic, err)
		}
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, _ = adm.DeleteTopics(ctx, in, out)
	})

	cfg := stream.Config{
		Brokers: eps.KafkaBrokers, MaxPollRecords: 500, FetchMaxBytes: 1 << 20, ProducerMaxRecord: 1 << 20,
		Compression: "none", TransactionTimeout: txnTimeout, CommitInterval: 20 * time.Millisecond,
		SessionTimeout: 45 * time.Second, StaticMembership: true,
		RetryBackoffMin: 50 * time.Millisecond, RetryBackoffMax: time.Second,
	}
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	defer func() {
		if t.Failed() {
			t.Logf("processor log:\n%s", logs.String())
		}
	}()
	m, err := stream.NewMetrics(noop.NewMeterProvider().Meter("t"))
	if err != nil {
		t.Fatal(err)
	}
	// A little work per record, so transactions are open when the broker stops.
	handle := func(_ context.Context, rec *kgo.Record) ([]*kgo.Record, error) {
		time.Sleep(2 * time.Millisecond)
		return []*kgo.Record{{Topic: out, Key: rec.Key, Value: []byte(strings.ToUpper(string(rec.Value)))}}, nil
	}
	id := stacktest.UniqueName(t, "stall")
	p, err := stream.NewProcessor(cfg, stream.ProcessorConfig{Stage: "stalltest", Group: id, Topics: []string{in}, TransactionalID: id},
		stream.Chain(handle, stream.Recover(log)), m, log)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(runCtx) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("Run: %v (the stage must recover by itself)", err)
		}
	}()

	produce := func(prefix string, n int) []string {
		vals := make([]string, n)
		recs := make([]*kgo.Record, n)
		for i := range recs {
			vals[i] = fmt.Sprintf("%s-%d", prefix, i)
			recs[i] = &kgo.Record{Topic: in, Key: []byte(vals[i]), Value: []byte(vals[i])}
		}
		if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
			t.Fatalf("produce: %v", err)
		}
		return vals
	}
	want := produce("warm", 100)
	consumeExactly(t, eps.KafkaBrokers, out, want, 60*time.Second)

	// About 4 s of work queued, then the broker stops mid-batch.
	want = append(want, produce("stalled", 2000)...)
	time.Sleep(500 * time.Millisecond)
	broker.pause(t, txnTimeout+3*time.Second)
	want = append(want, produce("after", 200)...)
	consumeExactly(t, eps.KafkaBrokers, out, want, 120*time.Second)
}

// process is the broker's process, paused and resumed with signals.
type process struct{ pid int }

// brokerProcess finds the broker's pid: KAFKA_PID, else the local stack's
// pid file <repo>/.run/pids/kafka.pid.
func brokerProcess(t *testing.T) process {
	t.Helper()
	raw := strings.TrimSpace(os.Getenv("KAFKA_PID"))
	if raw == "" {
		file := filepath.Join(repoRoot(t), ".run", "pids", "kafka.pid")
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatalf("broker pid: set KAFKA_PID or start the stack (%v)\n%s", err, stacktest.StartHint)
		}
		raw = strings.TrimSpace(string(b))
	}
	pid, err := strconv.Atoi(raw)
	if err != nil || pid <= 1 {
		t.Fatalf("broker pid %q is not a pid", raw)
	}
	if err := syscall.Kill(pid, 0); err != nil {
		t.Fatalf("broker pid %d: %v\n%s", pid, err, stacktest.StartHint)
	}
	return process{pid}
}

// pause stops the broker for d; it is resumed when d has passed or, whatever
// happens, when the test ends.
func (p process) pause(t *testing.T, d time.Duration) {
	t.Helper()
	var once sync.Once
	resume := func() {
		once.Do(func() {
			if err := syscall.Kill(p.pid, syscall.SIGCONT); err != nil {
				t.Errorf("SIGCONT broker %d: %v", p.pid, err)
			}
		})
	}
	t.Cleanup(resume)
	if err := syscall.Kill(p.pid, syscall.SIGSTOP); err != nil {
		t.Fatalf("SIGSTOP broker %d: %v", p.pid, err)
	}
	t.Logf("broker %d paused for %v", p.pid, d)
	time.Sleep(d)
	resume()
}

func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.work")); err == nil {
			return d
		}
		if filepath.Dir(d) == d {
			t.Fatalf("no go.work above %s", dir)
		}
	}
}

// consumeExactly reads topic (read_committed) until every value of want
// arrived upper-cased, failing on a duplicate or when within passes.
func consumeExactly(t *testing.T, brokers []string, topic string, want []string, within time.Duration) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	missing := make(map[string]bool, len(want))
	for _, v := range want {
		missing[strings.ToUpper(v)] = true
	}
	seen := map[string]bool{}
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	for len(missing) > 0 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("%d of %d outputs missing after %v", len(missing), len(want), within)
		}
		fs.EachRecord(func(r *kgo.Record) {
			v := string(r.Value)
			if seen[v] {
				t.Errorf("duplicate output %q", v)
			}
			seen[v] = true
			delete(missing, v)
		})
	}
	// Nothing more arrives: no duplicates after the last wanted record.
	short, cancel2 := context.WithTimeout(context.Background(), time.Second)
	defer cancel2()
	cl.PollFetches(short).EachRecord(func(r *kgo.Record) {
		if seen[string(r.Value)] {
			t.Errorf("duplicate output %q", r.Value)
		}
	})
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
