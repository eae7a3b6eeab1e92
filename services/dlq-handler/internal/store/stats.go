package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// States of a dead letter (the dead_letters.state check).
const (
	StateNew         = "new"
	StateReplayed    = "replayed"
	StateDiscarded   = "discarded"
	StateResolved    = "resolved"
	StateFailedAgain = "failed_again"
)

// States are every state, in the order of their life.
var States = []string{StateNew, StateReplayed, StateFailedAgain, StateResolved, StateDiscarded}

// ReasonCount is how many stored dead letters of a stage and state have a
// reason with Code (and RuleID, "" = none). A dead letter with several
// reasons counts once under each of its distinct (code, rule id) pairs.
type ReasonCount struct {
	Stage, Code, RuleID, State string
	Count                      int64
}

// Stats is what the metrics report of the store.
type Stats struct {
	// ByState counts the dead letters per state; every state is present.
	ByState map[string]int64
	// ByReason counts them per stage, code, rule id and state.
	ByReason []ReasonCount
	// ByStage counts them per stage and state: every state is present for
	// each stage that has a dead letter.
	ByStage map[string]map[string]int64
	// OldestUnresolved is the failed_at of the oldest dead letter that is
	// new, replayed or failed_again; zero when there is none.
	OldestUnresolved time.Time
	// OldestWaiting is the failed_at of the oldest dead letter waiting for
	// an operator, in state new or failed_again (a replayed one waits for
	// its replay's outcome, not for a person); zero when there is none.
	OldestWaiting time.Time
}

// statsByStage counts the dead letters per stage and state.
const statsByStage = "SELECT stage, state, count(*) FROM dead_letters GROUP BY 1, 2"

// statsOldestWaiting is one index probe per state on dead_letters_state
// (state, failed_at DESC): a min over "state IN (...)" could not use the
// index's order and would read every waiting row.
const statsOldestWaiting = `SELECT least(
  (SELECT min(failed_at) FROM dead_letters WHERE state = 'new'),
  (SELECT min(failed_at) FROM dead_letters WHERE state = 'failed_again'))`

const statsByReason = `SELECT d.stage, r.code, coalesce(r.rule_id, ''), d.state, count(DISTINCT d.dead_letter_id)
FROM dead_letters d, jsonb_to_recordset(d.reasons) AS r(code text, rule_id text)
GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4`

// Stats counts the stored dead letters (in one snapshot of the table).
func (s *Store) Stats(ctx context.Context) (Stats, error) {
	st := Stats{ByState: map[string]int64{}, ByStage: map[string]map[string]int64{}}
	for _, state := range States {
		st.ByState[state] = 0
	}
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, "SELECT state, count(*) FROM dead_letters GROUP BY state")
		if err != nil {
			return err
		}
		var state string
		var n int64
		if _, err := pgx.ForEachRow(rows, []any{&state, &n}, func() error { st.ByState[state] = n; return nil }); err != nil {
			return err
		}
		rows, err = tx.Query(ctx, statsByReason)
		if err != nil {
			return err
		}
		var rc ReasonCount
		if _, err := pgx.ForEachRow(rows, []any{&rc.Stage, &rc.Code, &rc.RuleID, &rc.State, &rc.Count}, func() error {
			st.ByReason = append(st.ByReason, rc)
			return nil
		}); err != nil {
			return err
		}
		rows, err = tx.Query(ctx, statsByStage)
		if err != nil {
			return err
		}
		var stage string
		if _, err := pgx.ForEachRow(rows, []any{&stage, &state, &n}, func() error {
			if st.ByStage[stage] == nil {
				st.ByStage[stage] = map[string]int64{}
				for _, s := range States {
					st.ByStage[stage][s] = 0
				}
			}
			st.ByStage[stage][state] = n
			return nil
		}); err != nil {
			return err
		}
		var oldest, waiting *time.Time
		if err := tx.QueryRow(ctx, "SELECT min(failed_at) FROM dead_letters WHERE state IN ('new', 'replayed', 'failed_again')").Scan(&oldest); err != nil {
			return err
		}
		if oldest != nil {
			st.OldestUnresolved = oldest.UTC()
		}
		if err := tx.QueryRow(ctx, statsOldestWaiting).Scan(&waiting); err != nil {
			return err
		}
		if waiting != nil {
			st.OldestWaiting = waiting.UTC()
		}
		return nil
	})
	if err != nil {
		return Stats{}, fmt.Errorf("store: stats: %w", err)
	}
	return st, nil
}
