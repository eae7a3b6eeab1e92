package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ecomstream/platform/pkg/events"
	"github.com/ecomstream/platform/pkg/stream"
	"github.com/ecomstream/platform/services/dlq-handler/internal/fixture"
	"github.com/ecomstream/platform/services/dlq-handler/internal/replay"
)

const itOperatorToken = "it-operator-token-0123456789"

// replayEnv is svcEnv with a source topic the dead letters came from and a
// pool on the service's schema.
type replayEnv struct {
	*svcEnv
	src   string
	spool *pgxpool.Pool // search_path = the service's schema
}

func newReplayEnv(t *testing.T) *replayEnv {
	e := &replayEnv{svcEnv: newSvcEnv(t)}
	e.src = strings.TrimSuffix(e.topic, ".ecom.dlq.v1") + ".ecom.events.v1"
	if err := stream.EnsureTopics(e.ctx, e.adm, stream.Config{TopicPartitions: 3, TopicReplication: 1}, stream.TopicSpec{Name: e.src}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = e.adm.DeleteTopics(context.Background(), e.src) })
	return e
}

// seed inserts n validator dead letters of e.src into the (migrated) schema.
func (e *replayEnv) seed(n int) {
	e.t.Helper()
	if e.spool == nil {
		pc, err := pgxpool.ParseConfig(e.dbURL)
		if err != nil {
			e.t.Fatal(err)
		}
		pc.ConnConfig.RuntimeParams["search_path"] = e.svcEnv.schema
		if e.spool, err = pgxpool.NewWithConfig(e.ctx, pc); err != nil {
			e.t.Fatal(err)
		}
		e.t.Cleanup(e.spool.Close)
	}
	rows := make([]fixture.Row, n)
	for i := range rows {
		rows[i] = fixture.Row{ID: fmt.Sprintf("validator:%s:%d:%d", e.src, i%3, i), Topic: e.src, Partition: int32(i % 3), Offset: int64(i),
			Key: fmt.Appendf(nil, "k-%d", i), Value: fmt.Appendf(nil, `{"event_id":"e-%d"}`, i)}
	}
	fixture.Insert(e.t, e.spool, rows...)
}

// replay posts a replay of every validator dead letter at rate.
func (e *replayEnv) replay(p *proc, rate float64) replay.Result {
	e.t.Helper()
	body := fmt.Sprintf(`{"filter": {"stage": ["validator"]}, "rate": %g}`, rate)
	req, _ := http.NewRequestWithContext(e.ctx, http.MethodPost, "http://"+p.addr+"/v1/dead-letters/replay", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+itOperatorToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var res replay.Result
	if err := json.Unmarshal(b, &res); err != nil || (resp.StatusCode != http.StatusAccepted && resp.StatusCode != http.StatusOK) {
		e.t.Fatalf("replay: %d %s", resp.StatusCode, b)
	}
	return res
}

func (e *replayEnv) sent() int {
	return e.count("SELECT count(*) FROM " + e.svcEnv.schema + ".replays WHERE sent_at IS NOT NULL")
}

// replayed counts the records on e.src by their ecom-replay-of header,
// reading until want distinct ones were seen and the topic is drained.
func (e *replayEnv) replayed(want int) (distinct, total int, maxCopies int) {
	e.t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(e.brokers, ",")...), kgo.ConsumeTopics(e.src),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(200*time.Millisecond))
	if err != nil {
		e.t.Fatal(err)
	}
	defer cl.Close()
	copies := map[string]int{}
	for {
		ctx, cancel := context.WithTimeout(e.ctx, 3*time.Second)
		fs := cl.PollFetches(ctx)
		idle := ctx.Err() != nil && fs.NumRecords() == 0
		cancel()
		fs.EachRecord(func(r *kgo.Record) {
			for _, h := range r.Headers {
				if h.Key == stream.ReplayOfHeader {
					copies[string(h.Value)]++
				}
			}
			total++
		})
		if idle {
			if len(copies) < want {
				e.t.Fatalf("%d distinct replays on %s, want %d", len(copies), e.src, want)
			}
			break
		}
	}
	for _, n := range copies {
		maxCopies = max(maxCopies, n)
	}
	return len(copies), total, maxCopies
}

// TestIntegrationReplayKill: dlq-handler is killed with SIGKILL twice in
// the middle of a slow replay job and started again. The outbox
// guarantees: every planned dead letter is produced (distinct
// ecom-replay-of values = planned), and a record is produced again only
// when the kill fell between its produce and its mark (with
// DLQ_REPLAY_IN_FLIGHT=1 at most one record per kill: at most one extra
// copy each, at most two in all).
func TestIntegrationReplayKill(t *testing.T) {
	e := newReplayEnv(t)
	const n = 300
	env := []string{"DLQ_OPERATOR_TOKEN=" + itOperatorToken, "DLQ_REPLAY_IN_FLIGHT=1", "DLQ_REPLAY_RESOLVE_INTERVAL=1s"}
	p := e.start("replay-0", env...)
	e.seed(n)
	res := e.replay(p, 60) // 300 records at 60/s: 5 s
	if res.Planned != n {
		t.Fatalf("planned %d, want %d", res.Planned, n)
	}
	for i, at := range []int{n / 4, n / 2} {
		deadline := time.Now().Add(60 * time.Second)
		for e.sent() < at {
			if time.Now().After(deadline) {
				t.Fatalf("fewer than %d replays sent after 60s", at)
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-p.done
		atKill := e.sent()
		t.Logf("kill %d with %d of %d replays marked sent", i+1, atKill, n)
		if atKill >= n {
			t.Fatalf("kill %d came after the job ended", i+1)
		}
		p = e.start(fmt.Sprintf("replay-%d", i+1), env...)
	}
	deadline := time.Now().Add(90 * time.Second)
	for e.sent() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d replays sent after 90s", e.sent(), n)
		}
		time.Sleep(100 * time.Millisecond)
	}
	distinct, total, maxCopies := e.replayed(n)
	t.Logf("%d records on %s for %d dead letters (%d re-sent by the kills)", total, e.src, distinct, total-distinct)
	if distinct != n || total-distinct > 2 || maxCopies > 2 {
		t.Errorf("distinct %d (want %d), total %d (at most %d), most copies of one %d (at most 2)", distinct, n, total, n+2, maxCopies)
	}
	if again := e.replay(p, 0); again.Planned != 0 || again.Skipped != n {
		t.Errorf("replaying again = %+v, want nothing planned", again)
	}
	var state string
	var sent int
	if err := e.pool.QueryRow(e.ctx, "SELECT state, sent FROM "+e.svcEnv.schema+".replay_jobs WHERE job_id = $1", res.JobID).Scan(&state, &sent); err != nil ||
		state != "succeeded" || sent != n {
		t.Errorf("job %s: %s, sent %d, %v", res.JobID, state, sent, err)
	}
}

// TestIntegrationReplayThroughput measures a job at the default rate cap
// (200/s) and uncapped (DLQ_REPLAY_RATE=1000000), with the default
// in-flight window; the capped one must keep to its cap.
func TestIntegrationReplayThroughput(t *testing.T) {
	for _, tt := range []struct {
		name string
		rate string
		n    int
	}{{"default cap", "200", 1000}, {"uncapped", "1000000", 5000}} {
		t.Run(tt.name, func(t *testing.T) {
			e := newReplayEnv(t)
			p := e.start("replay", "DLQ_OPERATOR_TOKEN="+itOperatorToken, "DLQ_REPLAY_RATE="+tt.rate)
			e.seed(tt.n)
			start := time.Now()
			if res := e.replay(p, 0); res.Planned != tt.n {
				t.Fatalf("planned %d", res.Planned)
			}
			for e.sent() < tt.n {
				if time.Since(start) > 2*time.Minute {
					t.Fatalf("%d of %d sent after 2 min", e.sent(), tt.n)
				}
				time.Sleep(20 * time.Millisecond)
			}
			took := time.Since(start)
			perSec := float64(tt.n) / took.Seconds()
			t.Logf("%s: %d replays in %v = %.0f records/s", tt.name, tt.n, took.Round(time.Millisecond), perSec)
			if tt.rate == "200" && perSec > 200*1.1 {
				t.Errorf("%.0f records/s above the cap of 200", perSec)
			}
		})
	}
}

// TestIntegrationReplayOutcomes: the whole loop through the binary. Ten
// dead letters are replayed to their source topic; the stage rejects the
// replay of one again (its new dead letter, attempt 2, carries the replay
// headers in its original's headers and arrives on the dead-letter topic),
// and the stage's group commits past all of them: that one becomes
// failed_again (linked by replay_of), the nine others resolved.
func TestIntegrationReplayOutcomes(t *testing.T) {
	e := newReplayEnv(t)
	const n = 10
	group := e.group + "-validator"
	t.Cleanup(func() { _, _ = e.adm.DeleteGroup(context.Background(), group) })
	p := e.start("outcomes", "DLQ_OPERATOR_TOKEN="+itOperatorToken, "DLQ_STAGE_GROUPS=validator="+group, "DLQ_REPLAY_RESOLVE_INTERVAL=200ms")
	e.seed(n)
	if res := e.replay(p, 0); res.Planned != n {
		t.Fatalf("planned %d", res.Planned)
	}
	// The stage: reads the replays, rejects the one of record 3 with a
	// dead letter (as stream.DeadLetterRecord builds it), commits past all.
	g, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(e.brokers, ",")...), kgo.ConsumerGroup(group), kgo.ConsumeTopics(e.src),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.DisableAutoCommit())
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	var rejected *kgo.Record
	for seen := 0; seen < n; {
		fs := g.PollFetches(e.ctx)
		if e.ctx.Err() != nil {
			t.Fatalf("the stage read %d of %d replays", seen, n)
		}
		fs.EachRecord(func(r *kgo.Record) {
			seen++
			if string(r.Value) == `{"event_id":"e-3"}` {
				rejected = r
			}
		})
	}
	if rejected == nil {
		t.Fatal("no replay of record 3")
	}
	replayOf := ""
	var hs []events.Header
	for _, h := range rejected.Headers {
		hs = append(hs, events.Header{Key: h.Key, Value: h.Value})
		if h.Key == stream.ReplayOfHeader {
			replayOf = string(h.Value)
		}
	}
	now := time.Now().UTC()
	dl, err := e.codec.Encode(&events.DeadLetter{DeadLetterID: "validator:again:3", Stage: "validator", SourceTopic: e.src,
		SourcePartition: int(rejected.Partition), SourceOffset: rejected.Offset, SourceTimestamp: now, OriginalValue: rejected.Value,
		OriginalHeaders: hs, Reasons: []events.Reason{{Code: "RULE_FAILED", Message: "still wrong"}}, Attempt: 2, FailedAt: now})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.ProduceSync(e.ctx, &kgo.Record{Topic: e.topic, Key: rejected.Key, Value: dl}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if err := g.CommitUncommittedOffsets(e.ctx); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	q := "SELECT count(*) FROM " + e.svcEnv.schema + ".dead_letters WHERE state = $1"
	for e.count(q, "resolved") < n-1 || e.count(q, "failed_again") < 1 {
		if time.Now().After(deadline) {
			t.Fatalf("after 60s: %d resolved, %d failed_again", e.count(q, "resolved"), e.count(q, "failed_again"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if c := e.count("SELECT count(*) FROM "+e.svcEnv.schema+".dead_letters WHERE dead_letter_id = 'validator:again:3' AND replay_of = $1 AND attempt = 2", replayOf); c != 1 {
		t.Errorf("the new dead letter is not linked to %s", replayOf)
	}
	if c := e.count("SELECT count(*) FROM "+e.svcEnv.schema+".replays WHERE dead_letter_id = $1 AND outcome = 'failed_again'", replayOf); c != 1 {
		t.Errorf("the replay of %s is not failed_again", replayOf)
	}
	// The gauges of the next resolver round: 9 resolved, 1 failed_again.
	want := map[string]bool{`outcome="resolved"` + " 9": false, `outcome="failed_again"` + " 1": false}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		_, body := e.get(p, "/metrics")
		all := true
		for w := range want {
			k, v, _ := strings.Cut(w, " ")
			want[w] = false
			for _, l := range strings.Split(body, "\n") {
				if strings.HasPrefix(l, "ecom_dlq_replays{") && strings.Contains(l, k) && strings.HasSuffix(l, " "+v) {
					want[w] = true
				}
			}
			all = all && want[w]
		}
		if all {
			break
		}
	}
	for w, ok := range want {
		if !ok {
			t.Errorf("metrics: no ecom_dlq_replays{%s}", w)
		}
	}
}
