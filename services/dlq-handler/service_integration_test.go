package main

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ecomstream/platform/pkg/avroserde"
	"github.com/ecomstream/platform/pkg/events"
	"github.com/ecomstream/platform/pkg/stream"
	protoavro "github.com/ecomstream/platform/proto/avro"
)

// svcEnv is the local stack with a topic, schema and group of the test's own,
// and the built binary.
type svcEnv struct {
	t                           testing.TB
	ctx                         context.Context
	dir, bin                    string
	dbURL, brokers, registryURL string
	topic, schema, group        string
	pool                        *pgxpool.Pool
	adm                         *kadm.Client
	codec                       *avroserde.Codec
}

func newSvcEnv(t testing.TB) *svcEnv {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: needs the local stack; skipped under -short")
	}
	e := &svcEnv{t: t, dir: t.TempDir(), dbURL: os.Getenv("DATABASE_URL"),
		brokers:     cmp.Or(os.Getenv("KAFKA_BROKERS"), "127.0.0.1:19092"),
		registryURL: cmp.Or(os.Getenv("SCHEMA_REGISTRY_URL"), "http://127.0.0.1:18081/apis/ccompat/v7")}
	if e.dbURL == "" {
		t.Fatal(`DATABASE_URL is not set: start the local stack and eval "$(deploy/local/stack.sh env)"`)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	t.Cleanup(cancel)
	e.ctx = ctx
	var b [4]byte
	_, _ = rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	e.topic, e.schema, e.group = "it-dlqsvc-"+id+".ecom.dlq.v1", "dlq_it_"+id, "it-dlqsvc-"+id

	var err error
	if e.pool, err = pgxpool.New(ctx, e.dbURL); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := e.pool.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+e.schema+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", e.schema, err)
		}
		e.pool.Close()
	})
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(e.brokers, ",")...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	e.adm = kadm.NewClient(cl)
	if err := stream.EnsureTopics(ctx, e.adm, stream.Config{TopicPartitions: 3, TopicReplication: 1}, stream.TopicSpec{Name: e.topic}); err != nil {
		t.Fatalf("kafka (KAFKA_BROKERS): %v", err)
	}
	t.Cleanup(func() {
		_, _ = e.adm.DeleteTopics(context.Background(), e.topic)
		_, _ = e.adm.DeleteGroup(context.Background(), e.group)
	})
	reg, err := avroserde.New(avroserde.Config{URL: e.registryURL, AutoRegister: true, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if e.codec, err = reg.Codec(ctx, avroserde.SubjectFor(e.topic), protoavro.DeadLetter); err != nil {
		t.Fatalf("schema registry (SCHEMA_REGISTRY_URL): %v", err)
	}
	e.bin = filepath.Join(e.dir, "dlq-handler")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", e.bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return e
}

// proc is one dlq-handler process.
type proc struct {
	cmd  *exec.Cmd
	addr string
	log  string
	done chan error
}

// start runs a process; extra (NAME=value) override the test's settings.
func (e *svcEnv) start(name string, extra ...string) *proc {
	e.t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		e.t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	p := &proc{addr: addr, log: filepath.Join(e.dir, name+".log"), done: make(chan error, 1)}
	out, err := os.Create(p.log)
	if err != nil {
		e.t.Fatal(err)
	}
	p.cmd = exec.Command(e.bin)
	p.cmd.Stdout, p.cmd.Stderr = out, out
	p.cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "HTTP_ADDR=" + addr,
		"DLQ_DATABASE_URL=" + e.dbURL, "DLQ_SCHEMA=" + e.schema, "DLQ_TOPIC=" + e.topic, "KAFKA_CONSUMER_GROUP=" + e.group,
		"KAFKA_BROKERS=" + e.brokers, "SCHEMA_REGISTRY_URL=" + e.registryURL, "KAFKA_TRANSACTIONAL_ID=" + e.group,
		"KAFKA_COMMIT_INTERVAL=20ms", "KAFKA_MAX_POLL_RECORDS=50", "DLQ_RETENTION_SCHEDULE=off", "LAG_REFRESH_INTERVAL=1s"}
	p.cmd.Env = append(p.cmd.Env, extra...)
	if err := p.cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait(); out.Close() }()
	e.t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if e.t.Failed() {
			b, _ := os.ReadFile(p.log)
			e.t.Logf("%s log:\n%s", name, b)
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		if status, body := e.get(p, "/readyz"); status == http.StatusOK && strings.Contains(body, `"ready"`) {
			return p
		}
		select {
		case err := <-p.done:
			b, _ := os.ReadFile(p.log)
			e.t.Fatalf("%s exited: %v\n%s", name, err, b)
		default:
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%s not ready after 60s", name)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// get returns the status and body, 0 when the process does not answer.
func (e *svcEnv) get(p *proc, path string) (int, string) {
	req, _ := http.NewRequestWithContext(e.ctx, http.MethodGet, "http://"+p.addr+path, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (e *svcEnv) count(query string, args ...any) int {
	e.t.Helper()
	var n int
	if err := e.pool.QueryRow(e.ctx, query, args...).Scan(&n); err != nil {
		if strings.Contains(err.Error(), "does not exist") {
			return 0 // the schema is not migrated yet
		}
		e.t.Fatal(err)
	}
	return n
}

// envelope is dead letter i, in the wire format.
func (e *svcEnv) envelope(i int) []byte {
	e.t.Helper()
	now := time.Now().UTC()
	rule := fmt.Sprintf("rule_%d", i%3)
	entity := []string{"click_event", "order", "customer_change"}[i%3]
	b, err := e.codec.Encode(&events.DeadLetter{DeadLetterID: fmt.Sprintf("validator:ecom.events.v1:%d:%d", i%3, i),
		Stage: "validator", Entity: &entity, SourceTopic: "ecom.events.v1", SourcePartition: i % 3, SourceOffset: int64(i),
		SourceTimestamp: now, OriginalValue: fmt.Appendf(nil, `{"event_id":"e-%d"}`, i), OriginalHeaders: []events.Header{},
		Reasons: []events.Reason{{Code: "RULE_FAILED", RuleID: &rule, Message: "rule failed"}}, Attempt: 1, FailedAt: now})
	if err != nil {
		e.t.Fatal(err)
	}
	return b
}

// TestIntegrationExactlyOnce: dead letters produced while dlq-handler runs,
// some twice (a producer retry), and one record that is not a dead letter;
// the process is killed with SIGKILL mid-stream, twice, and started again. At the
// end every dead letter is one row, the undecodable record one more, and
// the stored positions are the log end offsets.
func TestIntegrationExactlyOnce(t *testing.T) {
	e := newSvcEnv(t)
	const n = 1000 // distinct dead letters; every 10th is produced twice
	prod, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(e.brokers, ",")...), kgo.DefaultProduceTopic(e.topic),
		kgo.RequiredAcks(kgo.AllISRAcks()))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	// Records with a key spread over the partitions by it; the slow stream
	// (10 records per 15 ms) makes many batches, so the kill lands between
	// and in writes.
	var wg sync.WaitGroup
	produced := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		var batch []*kgo.Record
		flush := func() error {
			err := prod.ProduceSync(e.ctx, batch...).FirstErr()
			batch = batch[:0]
			time.Sleep(15 * time.Millisecond)
			return err
		}
		for i := range n {
			v := e.envelope(i)
			key := fmt.Appendf(nil, "k-%d", i)
			batch = append(batch, &kgo.Record{Key: key, Value: v})
			if i%10 == 0 {
				batch = append(batch, &kgo.Record{Key: key, Value: v}) // the same envelope again
			}
			if i == n/2 {
				batch = append(batch, &kgo.Record{Key: []byte("junk"), Value: []byte("not a dead letter")})
			}
			if len(batch) >= 10 {
				if err := flush(); err != nil {
					produced <- err
					return
				}
			}
		}
		produced <- flush()
	}()
	defer wg.Wait()

	// Kill -9 twice while the stream flows: once a fifth of it is stored,
	// and again (in the restarted process) at half.
	for i, at := range []int{n / 5, n / 2} {
		p := e.start(fmt.Sprintf("killed-%d", i))
		deadline := time.Now().Add(60 * time.Second)
		for e.count("SELECT count(*) FROM "+e.schema+".dead_letters") < at {
			if time.Now().After(deadline) {
				t.Fatalf("fewer than %d dead letters stored after 60s", at)
			}
			time.Sleep(5 * time.Millisecond)
		}
		if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-p.done
		atKill := e.count("SELECT count(*) FROM " + e.schema + ".dead_letters")
		t.Logf("kill %d with %d of %d dead letters stored", i+1, atKill, n+1)
		if atKill >= n+1 {
			t.Fatalf("kill %d came after everything was stored (%d rows): not mid-stream", i+1, atKill)
		}
	}
	if err := <-produced; err != nil {
		t.Fatal(err)
	}

	p2 := e.start("second")
	ends, err := e.adm.ListEndOffsets(e.ctx, e.topic)
	if err != nil {
		t.Fatal(err)
	}
	want := map[int32]int64{}
	total := int64(0)
	ends.Each(func(o kadm.ListedOffset) { want[o.Partition] = o.Offset; total += o.Offset })
	if total != n+n/10+1 {
		t.Fatalf("the topic holds %d records, want %d", total, n+n/10+1)
	}
	positions := func() map[int32]int64 {
		got := map[int32]int64{}
		rows, err := e.pool.Query(e.ctx, "SELECT partition, next_offset FROM "+e.schema+".consumer_positions WHERE consumer_group = $1 AND topic = $2", e.group, e.topic)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		for rows.Next() {
			var p int32
			var o int64
			if err := rows.Scan(&p, &o); err != nil {
				t.Fatal(err)
			}
			got[p] = o
		}
		return got
	}
	deadline := time.Now().Add(60 * time.Second)
	for fmt.Sprint(positions()) != fmt.Sprint(want) {
		if time.Now().After(deadline) {
			t.Fatalf("positions %v after 60s, want the end offsets %v", positions(), want)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := e.count("SELECT count(*) FROM " + e.schema + ".dead_letters"); got != n+1 {
		t.Errorf("%d rows, want %d dead letters + 1 undecodable", got, n+1)
	}
	if got := e.count("SELECT count(DISTINCT source_offset) FROM " + e.schema + ".dead_letters WHERE stage = 'validator'"); got != n {
		t.Errorf("%d distinct dead letters stored, want each of the %d", got, n)
	}
	if got := e.count("SELECT count(*) FROM "+e.schema+".dead_letters WHERE stage = 'unknown' AND codes = '{UNDECODABLE}' AND original_value = 'not a dead letter'::bytea AND source_topic = $1 AND dead_letter_id = 'dlq-undecodable:' || dlq_partition || ':' || dlq_offset", e.topic); got != 1 {
		t.Errorf("%d undecodable rows, want 1", got)
	}
	if got := e.count("SELECT count(*) FROM " + e.schema + ".dead_letters WHERE pii"); got != 2*n/3 {
		t.Errorf("%d pii rows, want %d (orders and customer changes)", got, 2*n/3)
	}

	// The Kafka offsets mirror the positions (lag monitoring), and the metrics say what was stored.
	deadline = time.Now().Add(30 * time.Second)
	for {
		offs, err := e.adm.FetchOffsets(e.ctx, e.group)
		if err != nil {
			t.Fatal(err)
		}
		mirror := map[int32]int64{}
		offs.Each(func(o kadm.OffsetResponse) { mirror[o.Partition] = o.At })
		if fmt.Sprint(mirror) == fmt.Sprint(want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("committed Kafka offsets %v, want the positions %v", mirror, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
	deadline = time.Now().Add(10 * time.Second)
	for {
		_, metrics := e.get(p2, "/metrics")
		if strings.Contains(metrics, `ecom_dlq_dead_letters{`) && strings.Contains(metrics, "ecom_dlq_oldest_unresolved_age_seconds") &&
			strings.Contains(metrics, "ecom_dlq_dead_letters_stored_total{") {
			var found bool
			for _, l := range strings.Split(metrics, "\n") {
				if strings.HasPrefix(l, "ecom_dlq_dead_letters{") && strings.Contains(l, `state="new"`) && strings.HasSuffix(l, fmt.Sprintf(" %d", n+1)) {
					found = true
				}
			}
			if found {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("/metrics lacks the store's gauges with %d new dead letters:\n%s", n+1, grep(metrics, "ecom_dlq"))
		}
		time.Sleep(200 * time.Millisecond)
	}
	var ready struct {
		Status string `json:"status"`
	}
	if status, body := e.get(p2, "/readyz"); status != http.StatusOK || json.Unmarshal([]byte(body), &ready) != nil || ready.Status != "ready" {
		t.Errorf("/readyz: %d %s", status, body)
	}
	http.DefaultClient.CloseIdleConnections()
}

// BenchmarkIntegrationCatchUp measures how fast dlq-handler stores a
// backlog: 20,000 dead letters on 3 partitions, produced before it starts,
// until its positions reach the log end. Run with -benchtime 1x (stack env set).
func BenchmarkIntegrationCatchUp(b *testing.B) {
	e := newSvcEnv(b)
	const n = 20_000
	prod, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(e.brokers, ",")...), kgo.DefaultProduceTopic(e.topic))
	if err != nil {
		b.Fatal(err)
	}
	defer prod.Close()
	var batch []*kgo.Record
	for i := range n {
		batch = append(batch, &kgo.Record{Key: fmt.Appendf(nil, "k-%d", i), Value: e.envelope(i)})
		if len(batch) == 1000 {
			if err := prod.ProduceSync(e.ctx, batch...).FirstErr(); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		// The defaults: batches of up to 5,000 dead letters, 100ms.
		p := e.start(fmt.Sprintf("bench-%d", time.Now().UnixNano()), "KAFKA_MAX_POLL_RECORDS=5000", "KAFKA_COMMIT_INTERVAL=100ms")
		for e.count("SELECT coalesce(sum(next_offset), 0) FROM "+e.schema+".consumer_positions") < n {
			time.Sleep(10 * time.Millisecond)
		}
		took := time.Since(start)
		b.ReportMetric(float64(n)/took.Seconds(), "dead_letters/s")
		b.ReportMetric(took.Seconds(), "s/catch-up")
		_ = p.cmd.Process.Kill()
		<-p.done
		b.StopTimer()
		if _, err := e.pool.Exec(e.ctx, "TRUNCATE "+e.schema+".dead_letters CASCADE; TRUNCATE "+e.schema+".consumer_positions"); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

func grep(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
