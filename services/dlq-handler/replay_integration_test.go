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
