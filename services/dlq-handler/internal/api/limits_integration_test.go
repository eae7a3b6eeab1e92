package api

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ecomstream/platform/services/dlq-handler/internal/auth"
	"github.com/ecomstream/platform/services/dlq-handler/internal/fixture"
	"github.com/ecomstream/platform/services/dlq-handler/internal/query"
)

// TestIntegrationDiscardFilterCap: a discard by filter changes at most
// MaxFilterDiscard dead letters; one matching more is refused naming the
// filter and changes nothing; its dry run still counts them all.
func TestIntegrationDiscardFilterCap(t *testing.T) {
	defer func(n int) { MaxFilterDiscard = n }(MaxFilterDiscard)
	MaxFilterDiscard = 3
	it := newITest(t, Config{})
	var rows []fixture.Row
	for i := range 4 {
		rows = append(rows, fixture.Row{ID: fmt.Sprintf("big-%d", i), Stage: "big", FailedAt: base.Add(-time.Duration(i) * time.Minute)})
	}
	for i := range 3 {
		rows = append(rows, fixture.Row{ID: fmt.Sprintf("small-%d", i), Stage: "small", FailedAt: base})
	}
	rows = append(rows, fixture.Row{ID: "small-done", Stage: "small", State: "resolved", FailedAt: base})
	fixture.Insert(t, it.pool, rows...)
	ctx := context.Background()
	op := auth.Identity{Name: "op", Role: auth.Operator}

	dry, err := Discard(ctx, it.pool, op, DiscardRequest{Filter: &query.Filter{Stage: []string{"big"}}, Reason: "r", DryRun: true})
	if err != nil || dry.Matched != 4 {
		t.Errorf("dry run over the cap = %+v, %v; want 4 matched", dry, err)
	}
	_, err = Discard(ctx, it.pool, op, DiscardRequest{Filter: &query.Filter{Stage: []string{"big"}}, Reason: "r"})
	var qe *query.Error
	if !errors.As(err, &qe) || qe.Param != "filter" || !strings.Contains(qe.Msg, "more than 3") {
		t.Errorf("discard of 4 with a cap of 3: %v, want a query error on filter", err)
	}
	if n := countState(t, it.pool, "big", "discarded"); n != 0 {
		t.Errorf("a refused discard discarded %d", n)
	}

	res, err := Discard(ctx, it.pool, op, DiscardRequest{Filter: &query.Filter{Stage: []string{"small"}}, Reason: "r"})
	if err != nil || res.Discarded != 3 || res.Matched != 3 || res.Skipped != 1 || res.AuditID == nil {
		t.Fatalf("discard of 3 = %+v, %v; want 3 discarded, 1 skipped, an audit row", res, err)
	}
	var reason, by string
	if err := it.pool.QueryRow(ctx, "SELECT discard_reason, discarded_by FROM dead_letters WHERE dead_letter_id = 'small-1'").Scan(&reason, &by); err != nil ||
		reason != "r" || by != "op" {
		t.Errorf("small-1: reason %q by %q, %v; want r by op", reason, by, err)
	}
	if n := countState(t, it.pool, "small", "resolved"); n != 1 {
		t.Errorf("the resolved one was changed: %d resolved left", n)
	}
}

func countState(t *testing.T, pool *pgxpool.Pool, stage, state string) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), "SELECT count(*) FROM dead_letters WHERE stage = $1 AND state = $2", stage, state).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestIntegrationStatementTimeout: on a pool with a statement_timeout (as
// main builds the API's), a statement that waits past it (here for a row
// lock another transaction holds) fails as a timeout, which the API
// answers 503 timeout, instead of holding its connection.
func TestIntegrationStatementTimeout(t *testing.T) {
	it := newITest(t, Config{})
	fixture.Insert(t, it.pool, fixture.Row{ID: "held", Stage: "slow"})
	ctx := context.Background()
	pc := it.pool.Config().Copy()
	pc.ConnConfig.RuntimeParams["statement_timeout"] = "200"
	short, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		t.Fatal(err)
	}
	defer short.Close()
	other, err := it.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = other.Rollback(ctx) }()
	if _, err := other.Exec(ctx, "SELECT 1 FROM dead_letters WHERE dead_letter_id = 'held' FOR UPDATE"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = Discard(ctx, short, auth.Identity{Name: "op", Role: auth.Operator}, DiscardRequest{IDs: []string{"held"}, Reason: "r"})
	if !timedOut(err) || time.Since(start) > 5*time.Second {
		t.Errorf("discard of a held row on a 200ms pool: %v after %s; want a statement timeout", err, time.Since(start))
	}
}
