package replay

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ecomstream/platform/pkg/stream"
	"github.com/ecomstream/platform/services/dlq-handler/internal/auth"
	"github.com/ecomstream/platform/services/dlq-handler/internal/fixture"
	"github.com/ecomstream/platform/services/dlq-handler/internal/query"
	"github.com/ecomstream/platform/services/dlq-handler/internal/store"
)

// itEnv is a fresh store schema and topics of the test's own on the local
// stack.
type itEnv struct {
	t                      *testing.T
	ctx                    context.Context
	pool                   *pgxpool.Pool
	brokers                []string
	cl                     *kgo.Client
	adm                    *kadm.Client
	src, click, dlq, group string
}

func newITEnv(t *testing.T) *itEnv {
	t.Helper()
	pool := fixture.Pool(t) // skips under -short
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	var b [4]byte
	_, _ = rand.Read(b[:])
	id := "it-rp-" + hex.EncodeToString(b[:])
	e := &itEnv{t: t, ctx: ctx, pool: pool, brokers: strings.Split(cmp.Or(os.Getenv("KAFKA_BROKERS"), "127.0.0.1:19092"), ","),
		src: id + ".ecom.events.v1", click: id + ".clickstream", dlq: id + ".ecom.dlq.v1", group: id + "-validator"}
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.brokers...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	e.cl, e.adm = cl, kadm.NewClient(cl)
	if err := stream.EnsureTopics(ctx, e.adm, stream.Config{TopicPartitions: 3, TopicReplication: 1},
		stream.TopicSpec{Name: e.src}, stream.TopicSpec{Name: e.click}, stream.TopicSpec{Name: e.dlq}); err != nil {
		t.Fatalf("kafka (KAFKA_BROKERS): %v", err)
	}
	t.Cleanup(func() {
		_, _ = e.adm.DeleteTopics(context.Background(), e.src, e.click, e.dlq)
		_, _ = e.adm.DeleteGroup(context.Background(), e.group)
	})
	return e
}

func (e *itEnv) service(rate float64) *Service {
	e.t.Helper()
	k, err := NewKafka([]kgo.Opt{kgo.SeedBrokers(e.brokers...)})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(k.Close)
	s, err := New(Config{Rate: rate, Topics: []string{"http:/v1/events=" + e.click}, StageGroups: []string{"validator=" + e.group},
		InFlight: 16, ResolveInterval: 200 * time.Millisecond}, Deps{Pool: e.pool, Kafka: k, DLQ: DLQ{Topic: e.dlq, Group: "dlq-handler"}})
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

func (e *itEnv) count(sql string, args ...any) int {
	e.t.Helper()
	var n int
	if err := e.pool.QueryRow(e.ctx, sql, args...).Scan(&n); err != nil {
		e.t.Fatal(err)
	}
	return n
}

func (e *itEnv) waitFor(what string, cond func() bool) {
	e.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			e.t.Fatalf("after 60s: %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// read returns every record of topic (read_committed, from the start), n at least.
func (e *itEnv) read(topic string, n int) []*kgo.Record {
	e.t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.brokers...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(200*time.Millisecond))
	if err != nil {
		e.t.Fatal(err)
	}
	defer cl.Close()
	var out []*kgo.Record
	for len(out) < n {
		ctx, cancel := context.WithTimeout(e.ctx, 20*time.Second)
		fs := cl.PollFetches(ctx)
		expired := ctx.Err() != nil
		cancel()
		if expired {
			e.t.Fatalf("read %s: %d of %d records", topic, len(out), n)
		}
		fs.EachRecord(func(r *kgo.Record) { out = append(out, r) })
	}
	return out
}

func header(r *kgo.Record, k string) string {
	for _, h := range r.Headers {
		if h.Key == k {
			return string(h.Value)
		}
	}
	return ""
}

// TestIntegrationReplay: the outbox end to end on PostgreSQL and Kafka.
// A dry run records nothing; a replay by filter and one of ids plan jobs
// (not the discarded, the purged pii original, nor the already replayed:
// a repeat plans nothing); two senders (replicas) produce each record once,
// with the original key, value and headers plus the replay headers, to the
// source topic or, for the HTTP ingress, the mapped topic; a dead letter
// purged after planning, or whose topic does not exist, is withdrawn with
// the job's error (the service goes on); a new dead
// letter of a replay makes it failed_again; the stage's group committing
// past the records resolves the others, but only once the store has read
// the dead-letter topic to its end. A job that could not replay all it
// selected ends failed, with the reasons in its error.
func TestIntegrationReplay(t *testing.T) {
	e := newITEnv(t)
	r1 := fixture.Rule("order.total_matches")
	reasons := []fixture.Reason{{Code: "RULE_FAILED", RuleID: r1, Message: "total does not match"}}
	var rows []fixture.Row
	for i := range 20 {
		rows = append(rows, fixture.Row{ID: fmt.Sprintf("v-%02d", i), Topic: e.src, Partition: int32(i % 3), Offset: int64(i), Reasons: reasons,
			Key: fmt.Appendf(nil, "k-%d", i), Value: fmt.Appendf(nil, `{"event_id":"e-%d"}`, i),
			Headers:  []fixture.Header{{Key: "traceparent", Value: []byte("tp")}, {Key: stream.ReplayAttemptHeader, Value: []byte("0")}},
			FailedAt: time.Now().Add(time.Duration(i-100) * time.Second)})
	}
	rows = append(rows,
		fixture.Row{ID: "v-purged", Topic: e.src, Reasons: reasons, PII: true, Purged: true},
		fixture.Row{ID: "v-discarded", Topic: e.src, Reasons: reasons, State: "discarded"},
		fixture.Row{ID: "h-1", Stage: "ingest-clickstream", Topic: "http:/v1/events", Value: []byte(`{"event_id":"h1"}`)},
		fixture.Row{ID: "h-2", Stage: "ingest-clickstream", Topic: "http:/v1/events", Value: []byte(`{"event_id":"h2"}`)},
		fixture.Row{ID: "h-3", Stage: "ingest-clickstream", Topic: "http:/v2/other"},
		fixture.Row{ID: "v-missing", Topic: e.src + ".missing"}, // a topic that does not exist
	)
	fixture.Insert(t, e.pool, rows...)
	s := e.service(1000)
	op := auth.Identity{Name: "alice", Role: auth.Operator}
	filter := &query.Filter{RuleID: []string{*r1}}

	dry, err := s.Replay(e.ctx, op, Request{Filter: filter, DryRun: true})
	if err != nil || dry.Matched != 20 || dry.Planned != 0 || dry.Skipped != 1 || dry.Unreplayable != 1 || dry.JobID != "" ||
		len(dry.Refused) != 1 || dry.Refused[0].ID != "v-purged" {
		t.Fatalf("dry run = %+v, %v", dry, err)
	}
	if n := e.count("SELECT count(*) FROM replays") + e.count("SELECT count(*) FROM replay_jobs") + e.count("SELECT count(*) FROM audit_log"); n != 0 {
		t.Fatalf("a dry run recorded %d rows", n)
	}
	res, err := s.Replay(e.ctx, op, Request{Filter: filter, Rate: 500})
	if err != nil || res.Planned != 20 || res.JobID == "" || res.AuditID == nil {
		t.Fatalf("replay by filter = %+v, %v", res, err)
	}
	ids, err := s.Replay(e.ctx, op, Request{IDs: []string{"h-1", "h-2", "h-3", "v-03", "v-missing", "nope"}})
	if err != nil || ids.Planned != 3 || ids.Unreplayable != 1 || !strings.Contains(ids.Refused[0].Reason, "DLQ_REPLAY_TOPICS") ||
		len(ids.SkippedIDs) != 1 || ids.SkippedIDs[0] != (Skipped{ID: "v-03", State: "replayed"}) || !slices.Equal(ids.NotFound, []string{"nope"}) {
		t.Fatalf("replay of ids = %+v, %v", ids, err)
	}
	again, err := s.Replay(e.ctx, op, Request{Filter: filter})
	if err != nil || again.Planned != 0 || again.Matched != 0 || again.JobID != "" || again.Skipped != 21 {
		t.Fatalf("repeated replay = %+v, %v", again, err)
	}
	if n := e.count("SELECT count(*) FROM replays"); n != 23 {
		t.Fatalf("%d replays rows, want 23", n)
	}
	if n := e.count("SELECT count(*) FROM dead_letters WHERE state = 'replayed'"); n != 23 {
		t.Fatalf("%d dead letters replayed, want 23", n)
	}
	if n := e.count("SELECT count(*) FROM audit_log WHERE action = 'replay' AND actor = 'alice'"); n != 3 {
		t.Fatalf("%d audit rows, want 3", n)
	}
	// Purged after it was planned, before it was sent.
	if _, err := e.pool.Exec(e.ctx, "UPDATE dead_letters SET original_value = NULL, pii_purged_at = now() WHERE dead_letter_id = 'h-2'"); err != nil {
		t.Fatal(err)
	}

	// Two replicas: one leads (the advisory lock), the other stands by.
	ctx, cancel := context.WithCancel(e.ctx)
	var wg sync.WaitGroup
	for range 2 {
		r := e.service(1000)
		wg.Add(1)
		go func() { defer wg.Done(); _ = r.Run(ctx) }()
	}
	defer func() { cancel(); wg.Wait() }()
	e.waitFor("21 replays sent, 2 withdrawn", func() bool {
		return e.count("SELECT count(*) FROM replays WHERE sent_at IS NOT NULL") == 21 && e.count("SELECT count(*) FROM replays") == 21
	})

	got := e.read(e.src, 20)
	seen := map[string]bool{}
	for _, r := range got {
		of := header(r, stream.ReplayOfHeader)
		i := slices.IndexFunc(rows, func(x fixture.Row) bool { return x.ID == of })
		if i < 0 || seen[of] {
			t.Fatalf("record %s replays %q: unknown or twice", r.Value, of)
		}
		seen[of] = true
		want := rows[i]
		hs := []string{}
		for _, h := range r.Headers {
			hs = append(hs, h.Key+"="+string(h.Value))
		}
		if string(r.Key) != string(want.Key) || string(r.Value) != string(want.Value) ||
			strings.Join(hs, ",") != "ecom-replay-of="+of+",ecom-replay-attempt=1,traceparent=tp" {
			t.Errorf("replay of %s: key %s value %s headers %v", of, r.Key, r.Value, hs)
		}
	}
	if click := e.read(e.click, 1); len(click) != 1 || header(click[0], stream.ReplayOfHeader) != "h-1" || string(click[0].Value) != `{"event_id":"h1"}` {
		t.Errorf("clickstream replays: %d, first %v", len(click), click[0])
	}
	job, err := s.Job(e.ctx, res.JobID)
	if err != nil || job.State != "failed" || job.Total != 20 || job.Sent != 20 || job.Rate != 500 || job.FinishedAt == nil ||
		!strings.Contains(job.Error, "1 dead letters not replayable") || job.RequestedBy != "alice" || job.Filter["rule_id"] == nil {
		t.Errorf("filter job = %+v, %v", job, err)
	}
	job2, err := s.Job(e.ctx, ids.JobID)
	if err != nil || job2.State != "failed" || job2.Total != 1 || job2.Sent != 1 || !strings.Contains(job2.Error, "h-2 (attempt 1) not replayed: its original was purged") ||
		!strings.Contains(job2.Error, "v-missing (attempt 1) not replayed: topic "+e.src+".missing refused it: UNKNOWN_TOPIC_OR_PARTITION") {
		t.Errorf("ids job = %+v, %v", job2, err)
	}
	if n := e.count("SELECT count(*) FROM dead_letters WHERE dead_letter_id IN ('h-2', 'v-missing') AND state = 'new'"); n != 2 {
		t.Errorf("the withdrawn dead letters are not new again")
	}
	if _, err := s.Job(e.ctx, "rj-none"); err != ErrNotFound {
		t.Errorf("Job(unknown) = %v, want ErrNotFound", err)
	}
	if jobs, err := s.Jobs(e.ctx, 10); err != nil || len(jobs) != 2 || jobs[0].ID != ids.JobID {
		t.Errorf("Jobs = %+v, %v; want the ids job first", jobs, err)
	}

	// The validator rejects the replay of v-07 again: its new dead letter
	// (attempt 2) makes v-07 failed_again.
	st := store.New(e.pool)
	w, err := st.Write(e.ctx, "dlq-handler", []store.Row{{DeadLetterID: "v-07-again", Stage: "validator", SourceTopic: e.src, SourceTimestamp: time.Now(),
		OriginalValue: []byte("{}"), Reasons: []store.Reason{{Code: "RULE_FAILED", Message: "again"}}, Codes: []string{"RULE_FAILED"}, RuleIDs: []string{},
		Attempt: 2, FailedAt: time.Now(), ReplayOf: "v-07", ReplayedAttempt: 1}}, nil)
	if err != nil || w.FailedAgain != 1 {
		t.Fatalf("store.Write = %+v, %v", w, err)
	}
	// A dead letter on the DLQ topic the store has not read: nothing
	// resolves while it may be a rejection of a replay.
	if err := e.cl.ProduceSync(e.ctx, &kgo.Record{Topic: e.dlq, Partition: 0, Value: []byte("unread")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	// The stage's group reads the replays and commits past them.
	g, err := kgo.NewClient(kgo.SeedBrokers(e.brokers...), kgo.ConsumerGroup(e.group), kgo.ConsumeTopics(e.src),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.DisableAutoCommit())
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	for n := 0; n < 20; {
		fs := g.PollFetches(e.ctx)
		if e.ctx.Err() != nil {
			t.Fatal("the group read fewer than 20 replays")
		}
		n += fs.NumRecords()
	}
	if err := g.CommitUncommittedOffsets(e.ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second) // 5 resolver rounds
	if n := e.count("SELECT count(*) FROM replays WHERE outcome = 'resolved'"); n != 0 {
		t.Fatalf("%d resolved while the store is behind the dead-letter topic", n)
	}
	ends, err := e.adm.ListEndOffsets(e.ctx, e.dlq)
	if err != nil {
		t.Fatal(err)
	}
	ends.Each(func(o kadm.ListedOffset) {
		if _, err := e.pool.Exec(e.ctx, "INSERT INTO consumer_positions (consumer_group, topic, partition, next_offset) VALUES ('dlq-handler', $1, $2, $3)",
			e.dlq, o.Partition, o.Offset); err != nil {
			t.Fatal(err)
		}
	})
	e.waitFor("19 replays resolved", func() bool { return e.count("SELECT count(*) FROM replays WHERE outcome = 'resolved'") == 19 })
	states := map[string]int{}
	r, _ := e.pool.Query(e.ctx, "SELECT state, count(*) FROM dead_letters WHERE dead_letter_id LIKE 'v-__' OR dead_letter_id LIKE 'h-_' GROUP BY state")
	for r.Next() {
		var k string
		var n int
		_ = r.Scan(&k, &n)
		states[k] = n
	}
	r.Close()
	// h-1 stays replayed: ingest-clickstream has no group in this test's DLQ_STAGE_GROUPS.
	if want := map[string]int{"resolved": 19, "failed_again": 1, "replayed": 1, "new": 2}; fmt.Sprint(states) != fmt.Sprint(want) {
		t.Errorf("states %v, want %v", states, want)
	}
	if n := e.count("SELECT count(*) FROM replays WHERE dead_letter_id = 'v-07' AND outcome = 'failed_again'"); n != 1 {
		t.Errorf("v-07's replay is not failed_again")
	}
	job, _ = s.Job(e.ctx, res.JobID)
	if job.Outcomes["resolved"] != 19 || job.Outcomes["failed_again"] != 1 || job.Outcomes["pending"] != 0 {
		t.Errorf("job outcomes %v", job.Outcomes)
	}
}
