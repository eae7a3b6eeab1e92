package api

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/ecomstream/platform/services/dlq-handler/internal/auth"
	"github.com/ecomstream/platform/services/dlq-handler/internal/fixture"
	"github.com/ecomstream/platform/services/dlq-handler/internal/query"
)

// TestIntegrationDiscardLockOrder: a discard by filter locks its rows in
// dead_letter_id order, as the replay planner and resolver do. Another
// transaction holds "a" and then locks "z" (stored first and newer, so an unordered
// UPDATE takes it first): the discard must wait for "a" holding nothing,
// so "z" is free at once (a lock_timeout there fails the test), and the
// discard then takes both.
func TestIntegrationDiscardLockOrder(t *testing.T) {
	it := newITest(t, Config{})
	// z first both in the heap and by failed_at DESC (the indexes' order).
	fixture.Insert(t, it.pool, fixture.Row{ID: "z", Stage: "lockorder", FailedAt: base}, fixture.Row{ID: "a", Stage: "lockorder", FailedAt: base.Add(-time.Minute)})
	ctx := context.Background()
	other, err := it.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = other.Rollback(ctx) }()
	if _, err := other.Exec(ctx, "SELECT 1 FROM dead_letters WHERE dead_letter_id = 'a' FOR UPDATE"); err != nil {
		t.Fatal(err)
	}
	var otherPID int
	if err := other.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&otherPID); err != nil {
		t.Fatal(err)
	}
	type answer struct {
		res DiscardResponse
		err error
	}
	done := make(chan answer, 1)
	go func() {
		res, err := Discard(ctx, it.pool, auth.Identity{Name: "op", Role: auth.Operator},
			DiscardRequest{Filter: &query.Filter{Stage: []string{"lockorder"}}, Reason: "lock order"})
		done <- answer{res, err}
	}()
	// Wait until the discard waits for the other transaction.
	for deadline := time.Now().Add(5 * time.Second); ; {
		var n int
		if err := it.pool.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE $1::int = ANY(pg_blocking_pids(pid))", otherPID).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the discard never waited for the held row")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := other.Exec(ctx, "SET LOCAL lock_timeout = '500ms'"); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Exec(ctx, "SELECT 1 FROM dead_letters WHERE dead_letter_id = 'z' FOR UPDATE"); err != nil {
		t.Fatalf("the discard holds z while it waits for a (unordered locks): %v", err)
	}
	if err := other.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	a := <-done
	if a.err != nil || a.res.Discarded != 2 {
		t.Fatalf("discard: %+v, %v; want 2 discarded", a.res, a.err)
	}
}

func TestRetryConflicts(t *testing.T) {
	deadlock := fmt.Errorf("discard: %w", &pgconn.PgError{Code: "40P01"})
	serial := &pgconn.PgError{Code: "40001"}
	other := &pgconn.PgError{Code: "23505"}
	tests := []struct {
		name      string
		errs      []error // fn's answers in turn (then nil)
		wantCalls int
		wantErr   error
	}{
		{"ok at once", nil, 1, nil},
		{"deadlock then ok", []error{deadlock}, 2, nil},
		{"serialisation twice then ok", []error{serial, serial}, 3, nil},
		{"another error is not retried", []error{other}, 1, other},
		{"gives up", []error{deadlock, deadlock, deadlock, deadlock, deadlock, deadlock}, maxConflictAttempts, deadlock},
	}
	for _, tt := range tests {
		calls := 0
		err := retryConflicts(context.Background(), func() error {
			calls++
			if calls <= len(tt.errs) {
				return tt.errs[calls-1]
			}
			return nil
		})
		if calls != tt.wantCalls || !errors.Is(err, tt.wantErr) {
			t.Errorf("%s: %d calls, %v; want %d, %v", tt.name, calls, err, tt.wantCalls, tt.wantErr)
		}
	}
}
