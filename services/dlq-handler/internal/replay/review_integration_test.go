package replay

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ecomstream/platform/services/dlq-handler/internal/auth"
	"github.com/ecomstream/platform/services/dlq-handler/internal/fixture"
	"github.com/ecomstream/platform/services/dlq-handler/internal/query"
	"github.com/ecomstream/platform/services/dlq-handler/internal/store"
)

// noProduce is a cluster the test expects no record of.
type noProduce struct {
	Cluster
	t *testing.T
}

func (c noProduce) Produce(_ context.Context, r *kgo.Record, promise func(*kgo.Record, error)) {
	c.t.Errorf("produced a replay of %s", header(r, "ecom-replay-of"))
	promise(r, errors.New("not produced"))
}

func (noProduce) Flush(context.Context) error { return nil }

func pgService(t *testing.T, pool *pgxpool.Pool, k Cluster) *Service {
	t.Helper()
	s, err := New(Config{Rate: 1000, StageGroups: []string{"validator=validator"}, InFlight: 16, ResolveInterval: time.Second},
		Deps{Pool: pool, Kafka: k, DLQ: DLQ{Topic: "dlq", Group: "dlq-handler"}})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestIntegrationTruncatedNotReplayed: a dead letter whose envelope cut its
// original (an OVERSIZED reason on original_value, original_key,
// original_headers, or the minimal envelope's "original") is refused by the
// planner with the reason, and one planned before (an outbox row) is
// withdrawn by the sender, not produced; a cut of the reasons alone leaves
// the original whole and replayable.
func TestIntegrationTruncatedNotReplayed(t *testing.T) {
	pool := fixture.Pool(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rule := []fixture.Reason{{Code: "RULE_FAILED", RuleID: fixture.Rule("r"), Message: "bad"}}
	over := func(field string) []fixture.Reason {
		return append(rule[:1:1], fixture.Reason{Code: "OVERSIZED", Field: fixture.Rule(field), Message: "truncated"})
	}
	fixture.Insert(t, pool,
		fixture.Row{ID: "t-value", Reasons: over("original_value")},
		fixture.Row{ID: "t-key", Reasons: over("original_key")},
		fixture.Row{ID: "t-headers", Reasons: over("original_headers")},
		fixture.Row{ID: "t-minimal", Reasons: over("original")},
		fixture.Row{ID: "t-reasons", Reasons: over("reasons")},
		fixture.Row{ID: "t-whole", Reasons: rule},
		fixture.Row{ID: "t-old", Reasons: over("original_value"), State: "replayed"},
	)
	s := pgService(t, pool, noProduce{t: t})
	op := auth.Identity{Name: "alice", Role: auth.Operator}
	ids := []string{"t-value", "t-key", "t-headers", "t-minimal", "t-reasons", "t-whole"}
	for _, dry := range []bool{true, false} {
		res, err := s.Replay(ctx, op, Request{IDs: ids, DryRun: dry})
		if err != nil {
			t.Fatal(err)
		}
		why := map[string]string{}
		for _, r := range res.Refused {
			why[r.ID] = r.Reason
		}
		if res.Matched != 2 || res.Unreplayable != 4 || len(why) != 4 ||
			!strings.Contains(why["t-value"], "OVERSIZED: original_value") || !strings.Contains(why["t-minimal"], "OVERSIZED: original)") {
			t.Errorf("dry run %v: %+v", dry, res)
		}
		if !dry && res.Planned != 2 {
			t.Errorf("planned %d, want t-reasons and t-whole", res.Planned)
		}
	}
	var n int
	_ = pool.QueryRow(ctx, "SELECT count(*) FROM dead_letters WHERE dead_letter_id LIKE 't-%' AND state = 'new'").Scan(&n)
	if n != 4 {
		t.Errorf("%d truncated dead letters left new, want 4", n)
	}

	// Planned before the planner knew: the sender withdraws it.
	if _, err := pool.Exec(ctx, `DELETE FROM replays; INSERT INTO replays (dead_letter_id, attempt, requested_by, target_topic) VALUES ('t-old', 1, 'alice', 'ecom.events.v1')`); err != nil {
		t.Fatal(err)
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	l := newLeader(s, conn)
	if _, err := l.sendBatch(ctx); err != nil {
		t.Fatal(err)
	}
	var state string
	_ = pool.QueryRow(ctx, "SELECT state || '/' || (SELECT count(*) FROM replays) FROM dead_letters WHERE dead_letter_id = 't-old'").Scan(&state)
	if state != "new/0" {
		t.Errorf("t-old after the sender: state/replays %s, want new/0 (withdrawn)", state)
	}
}

// offsets is a cluster whose groups committed the given offsets and whose
// dead-letter topic is empty (the store covers it).
type offsets struct {
	Cluster
	committed map[string]map[store.Partition]int64
}

func (o offsets) Committed(_ context.Context, g string) (map[store.Partition]int64, error) {
	return o.committed[g], nil
}

func (offsets) Ends(context.Context, string) (map[int32]int64, error) { return map[int32]int64{}, nil }

// TestIntegrationFailedAgainStays: store.Write finds the stage's new dead
// letter of a replay before the sender marks it sent; the mark keeps
// failed_again (it does not flip it back to sent). After a crash between
// produce and mark, the sender does not send such a row again: it marks
// it sent, keeps its outcome, and the job finishes.
func TestIntegrationFailedAgainStays(t *testing.T) {
	pool := fixture.Pool(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	fixture.Insert(t, pool, fixture.Row{ID: "a"}, fixture.Row{ID: "b"})
	s := pgService(t, pool, noProduce{t: t})
	res, err := s.Replay(ctx, auth.Identity{Name: "alice", Role: auth.Operator}, Request{IDs: []string{"a", "b"}})
	if err != nil || res.Planned != 2 {
		t.Fatalf("replay = %+v, %v", res, err)
	}
	// Both rejected again before the sender marked them.
	again := func(id string) store.Row {
		return store.Row{DeadLetterID: id + "-again", Stage: "validator", SourceTopic: "ecom.events.v1", SourceTimestamp: time.Now(),
			OriginalValue: []byte("{}"), Reasons: []store.Reason{{Code: "RULE_FAILED", Message: "again"}}, Codes: []string{"RULE_FAILED"},
			RuleIDs: []string{}, Attempt: 2, FailedAt: time.Now(), ReplayOf: id, ReplayedAttempt: 1}
	}
	if w, err := store.New(pool).Write(ctx, "dlq-handler", []store.Row{again("a"), again("b")}, nil); err != nil || w.FailedAgain != 2 {
		t.Fatalf("store.Write = %+v, %v", w, err)
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	l := newLeader(s, conn)
	// a: produced, acked, marked now.
	job := res.JobID
	if err := l.mark(ctx, []*flight{{row: outRow{id: "a", attempt: 1, job: &job}, rec: &kgo.Record{Partition: 1, Offset: 7}}}); err != nil {
		t.Fatal(err)
	}
	// b: produced before a crash, never marked: the restarted sender.
	if _, err := l.sendBatch(ctx); err != nil {
		t.Fatal(err)
	}
	var got string
	if err := pool.QueryRow(ctx, `SELECT string_agg(dead_letter_id || ':' || outcome || ':' || (sent_at IS NOT NULL), ',' ORDER BY dead_letter_id)
		FROM replays`).Scan(&got); err != nil {
		t.Fatal(err)
	}
	if got != "a:failed_again:true,b:failed_again:true" {
		t.Errorf("replays %s, want both failed_again and sent", got)
	}
	if j, err := s.Job(ctx, job); err != nil || j.Sent != 2 || j.State != "succeeded" || j.Outcomes["failed_again"] != 2 {
		t.Errorf("job = %+v, %v", j, err)
	}
}

// TestIntegrationResolverPages: sent replays of a stage without a group and
// of a group that has not committed past them, more than one page of them
// and older, do not hold back a newer one whose group committed past it; a
// sent replay that a stored dead letter rejects again (left sent by an old
// mark) becomes failed_again.
func TestIntegrationResolverPages(t *testing.T) {
	pool := fixture.Pool(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	defer func(n int) { resolveBatch = n }(resolveBatch)
	resolveBatch = 2
	const topic = "ecom.events.v1"
	type sent struct {
		id, stage string
		partition int32
	}
	rows := []sent{{"u1", "catalog-sync", 0}, {"u2", "catalog-sync", 0}, {"u3", "catalog-sync", 0},
		{"w1", "validator", 1}, {"w2", "validator", 1}, {"w3", "validator", 1}, {"stuck", "validator", 0}, {"done", "validator", 0}}
	for i, r := range rows {
		fixture.Insert(t, pool, fixture.Row{ID: r.id, Stage: r.stage, Topic: topic, State: "replayed"})
		if _, err := pool.Exec(ctx, `INSERT INTO replays (dead_letter_id, attempt, requested_by, target_topic, sent_at, target_partition, target_offset, outcome)
			VALUES ($1, 1, 'alice', $2, now() - $3 * interval '1 minute', $4, $5, 'sent')`, r.id, topic, len(rows)-i, r.partition, i); err != nil {
			t.Fatal(err)
		}
	}
	fixture.Insert(t, pool, fixture.Row{ID: "stuck-again", Attempt: 2})
	if _, err := pool.Exec(ctx, "UPDATE dead_letters SET replay_of = 'stuck' WHERE dead_letter_id = 'stuck-again'"); err != nil {
		t.Fatal(err)
	}
	s := pgService(t, pool, offsets{committed: map[string]map[store.Partition]int64{
		"validator": {{Topic: topic, Partition: 0}: 100}}}) // partition 1: nothing committed
	rv := &resolver{s: s, q: pool, clean: map[int32][2]int64{}}
	rv.pos = rv.positions
	if err := rv.resolve(ctx); err != nil {
		t.Fatal(err)
	}
	var got string
	if err := pool.QueryRow(ctx, `SELECT string_agg(dead_letter_id || ':' || outcome, ',' ORDER BY dead_letter_id) FROM replays`).Scan(&got); err != nil {
		t.Fatal(err)
	}
	if want := "done:resolved,stuck:failed_again,u1:sent,u2:sent,u3:sent,w1:sent,w2:sent,w3:sent"; got != want {
		t.Errorf("replays %s, want %s", got, want)
	}
}

// interleave runs op on a pool of its own while tx1 holds a lock on the
// dead letter first: once op waits for a lock, tx1 locks second too. With
// every transaction locking dead letters in dead_letter_id order (first <
// second), op waits on first holding nothing, and tx1 gets second at once;
// with another order op would hold second and tx1 wait for it (lock_timeout
// 500ms: an error). reverse = tx1 locks them the other way round (a real
// deadlock, which PostgreSQL breaks by failing op, the first to wait).
func interleave(t *testing.T, pool *pgxpool.Pool, first, second string, reverse bool, op func(*pgxpool.Pool) error) (tx1Err, opErr error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	app := "dlq-lock-" + first + "-" + time.Now().Format("150405.000000")
	cfg := pool.Config().Copy()
	cfg.ConnConfig.RuntimeParams["application_name"] = app
	opPool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer opPool.Close()
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	lock := func(id string) error {
		_, err := tx.Exec(ctx, "SELECT 1 FROM dead_letters WHERE dead_letter_id = $1 FOR UPDATE", id)
		return err
	}
	if err := lock(first); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- op(opPool) }()
	for waiting := 0; waiting == 0; {
		select {
		case err := <-done:
			t.Fatalf("op ended (%v) without waiting for %s", err, first)
		case <-time.After(20 * time.Millisecond):
		}
		if err := pool.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'", app).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
	}
	if !reverse {
		if _, err := tx.Exec(ctx, "SET LOCAL lock_timeout = '500ms'"); err != nil {
			t.Fatal(err)
		}
	}
	tx1Err = lock(second)
	if tx1Err == nil {
		tx1Err = tx.Commit(ctx)
	} else {
		_ = tx.Rollback(ctx)
	}
	return tx1Err, <-done
}

// TestIntegrationLockOrder: the planner and store.Write lock the dead
// letters in dead_letter_id order, whatever their failed_at or DLQ offset
// order, so a transaction locking in that order (the resolver, discard)
// never deadlocks with them; a replay request that does lose a deadlock (a
// transaction locking in another order) is tried again and succeeds.
func TestIntegrationLockOrder(t *testing.T) {
	pool := fixture.Pool(t)
	ctx := context.Background()
	now := time.Now()
	// b failed before a: the old planner locked b, then a.
	fixture.Insert(t, pool, fixture.Row{ID: "a", FailedAt: now}, fixture.Row{ID: "b", FailedAt: now.Add(-time.Minute)},
		fixture.Row{ID: "c", FailedAt: now}, fixture.Row{ID: "d", FailedAt: now.Add(-time.Minute)},
		fixture.Row{ID: "e", FailedAt: now.Add(-time.Minute)}, fixture.Row{ID: "f", FailedAt: now}) // e, f: in either order
	op := auth.Identity{Name: "alice", Role: auth.Operator}
	var res Result
	replay := func(ids ...string) func(p *pgxpool.Pool) error {
		return func(p *pgxpool.Pool) error {
			var err error
			res, err = pgService(t, p, nil).Replay(ctx, op, Request{IDs: ids})
			return err
		}
	}
	t.Run("planner", func(t *testing.T) {
		tx1, err := interleave(t, pool, "a", "b", false, replay("b", "a"))
		if tx1 != nil || err != nil || res.Planned != 2 {
			t.Errorf("locking a then b beside a replay: %v; replay %+v, %v", tx1, res, err)
		}
	})
	t.Run("store.Write", func(t *testing.T) {
		// DLQ offset order: the rejection of d's replay before c's.
		again := func(id, of string) store.Row {
			return store.Row{DeadLetterID: id, Stage: "validator", SourceTopic: "ecom.events.v1", SourceTimestamp: now,
				OriginalValue: []byte("{}"), Reasons: []store.Reason{{Code: "RULE_FAILED", Message: "again"}}, Codes: []string{"RULE_FAILED"},
				RuleIDs: []string{}, Attempt: 2, FailedAt: now, ReplayOf: of, ReplayedAttempt: 1}
		}
		var w store.WriteResult
		tx1, err := interleave(t, pool, "c", "d", false, func(p *pgxpool.Pool) error {
			var err error
			w, err = store.New(p).Write(ctx, "dlq-handler", []store.Row{again("d-again", "d"), again("c-again", "c")}, nil)
			return err
		})
		if tx1 != nil || err != nil || w.FailedAgain != 2 {
			t.Errorf("locking c then d beside store.Write: %v; write %+v, %v", tx1, w, err)
		}
	})
	t.Run("retried after a deadlock", func(t *testing.T) {
		tx1, err := interleave(t, pool, "f", "e", true, replay("e", "f"))
		if tx1 != nil || err != nil || res.Planned != 2 {
			t.Errorf("a deadlock: tx1 %v; replay %+v, %v (want it tried again)", tx1, res, err)
		}
	})
}

// TestIntegrationFilterCap: a replay by filter plans at most
// MaxFilterReplay dead letters in its request; one matching more is
// refused (a *query.Error naming the filter and the count) and plans
// nothing; narrowed, it plans.
func TestIntegrationFilterCap(t *testing.T) {
	pool := fixture.Pool(t)
	ctx := context.Background()
	defer func(n int) { MaxFilterReplay = n }(MaxFilterReplay)
	MaxFilterReplay = 3
	for i := range 5 {
		fixture.Insert(t, pool, fixture.Row{ID: fmt.Sprintf("f-%d", i), Stage: []string{"validator", "bq-writer"}[i%2]})
	}
	s := pgService(t, pool, nil)
	op := auth.Identity{Name: "alice", Role: auth.Operator}
	for _, dry := range []bool{true, false} {
		_, err := s.Replay(ctx, op, Request{Filter: &query.Filter{State: []string{"new"}}, DryRun: dry})
		var qe *query.Error
		if !errors.As(err, &qe) || qe.Param != "filter" || !strings.Contains(qe.Msg, "matches 5 dead letters to replay, more than 3 per request") {
			t.Errorf("dry run %v: err = %v, want the cap refused", dry, err)
		}
	}
	res, err := s.Replay(ctx, op, Request{Filter: &query.Filter{Stage: []string{"validator"}}})
	if err != nil || res.Planned != 3 {
		t.Errorf("narrowed: %+v, %v", res, err)
	}
}
