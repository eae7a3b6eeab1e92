package store

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ecomstream/platform/pkg/events"
)

// TestIntegrationStatsWaiting: OldestWaiting is the oldest new or failed_again dead letter
// (replayed and resolved ones do not wait for an operator), ByStage counts per stage with every
// state present, and the oldest-waiting query is answered from the dead_letters_state index.
func TestIntegrationStatsWaiting(t *testing.T) {
	s, pool := testStore(t)
	ctx := context.Background()
	t0 := time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)
	at := func(id string, off int64, failed time.Time, stage string) Row {
		return row(id, off, func(dl *events.DeadLetter) { dl.FailedAt = failed; dl.Stage = stage })
	}
	if _, err := s.Write(ctx, "g", []Row{
		at("replayed", 0, t0.Add(-3*time.Hour), "validator"),
		at("resolved", 1, t0.Add(-2*time.Hour), "validator"),
		at("again", 2, t0.Add(-time.Hour), "bq-writer"),
		at("new", 3, t0, "validator"),
	}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `UPDATE dead_letters SET state = 'replayed' WHERE dead_letter_id = 'replayed';
		UPDATE dead_letters SET state = 'resolved' WHERE dead_letter_id = 'resolved';
		UPDATE dead_letters SET state = 'failed_again' WHERE dead_letter_id = 'again'`); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		update string // applied before Stats
		want   time.Time
	}{
		{"failed_again is the oldest waiting", "", t0.Add(-time.Hour)},
		{"resolving it leaves the new one", "UPDATE dead_letters SET state = 'resolved' WHERE dead_letter_id = 'again'", t0},
		{"none waiting", "UPDATE dead_letters SET state = 'discarded', discard_reason = 'test', discarded_by = 'alice' WHERE dead_letter_id = 'new'", time.Time{}},
	}
	for i, tt := range tests {
		if tt.update != "" {
			if _, err := pool.Exec(ctx, tt.update); err != nil {
				t.Fatal(err)
			}
		}
		st, err := s.Stats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !st.OldestWaiting.Equal(tt.want) {
			t.Errorf("%s: OldestWaiting %v, want %v", tt.name, st.OldestWaiting, tt.want)
		}
		if i == 0 {
			want := map[string]map[string]int64{
				"validator": {"new": 1, "replayed": 1, "failed_again": 0, "resolved": 1, "discarded": 0},
				"bq-writer": {"new": 0, "replayed": 0, "failed_again": 1, "resolved": 0, "discarded": 0},
			}
			if !reflect.DeepEqual(st.ByStage, want) {
				t.Errorf("ByStage %v, want %v", st.ByStage, want)
			}
		}
	}

	// A few rows make a sequential scan cheapest; with it off, the plan shows whether the
	// index can answer the query at all (it must, at a million dead letters).
	var plan []string
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SET LOCAL enable_seqscan = off"); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, "EXPLAIN "+statsOldestWaiting)
		if err != nil {
			return err
		}
		plan, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if p := strings.Join(plan, "\n"); strings.Count(p, "dead_letters_state") != 2 || strings.Contains(p, "Seq Scan") {
		t.Errorf("the oldest-waiting query does not probe dead_letters_state once per state:\n%s", p)
	}
}
