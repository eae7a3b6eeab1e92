package replay

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ecomstream/platform/services/dlq-handler/internal/auth"
	"github.com/ecomstream/platform/services/dlq-handler/internal/fixture"
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
	l := &leader{s: s, conn: conn, buckets: map[string]*bucket{}}
	if _, err := l.sendBatch(ctx); err != nil {
		t.Fatal(err)
	}
	var state string
	_ = pool.QueryRow(ctx, "SELECT state || '/' || (SELECT count(*) FROM replays) FROM dead_letters WHERE dead_letter_id = 't-old'").Scan(&state)
	if state != "new/0" {
		t.Errorf("t-old after the sender: state/replays %s, want new/0 (withdrawn)", state)
	}
}
