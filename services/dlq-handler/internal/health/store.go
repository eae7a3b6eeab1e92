package health

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// WaitingStates are the states of a dead letter waiting for a person (the
// contract's unresolved: not replayed yet, or failed again after a replay).
var WaitingStates = []string{"new", "failed_again"}

const waitingSQL = `SELECT stage, count(*), min(failed_at) FROM dead_letters
WHERE state = ANY($1) GROUP BY stage ORDER BY stage`

// PGWaiting reads the dead letters waiting per stage from the store's pool
// (search_path = its schema): one grouped statement over the state index.
func PGWaiting(pool *pgxpool.Pool) WaitingFunc {
	return func(ctx context.Context) (DeadLetters, error) {
		rows, err := pool.Query(ctx, waitingSQL, WaitingStates)
		if err != nil {
			return DeadLetters{}, fmt.Errorf("dead letters waiting: %w", err)
		}
		var d DeadLetters
		var sc StageCount
		var oldest time.Time
		_, err = pgx.ForEachRow(rows, []any{&sc.Stage, &sc.Count, &oldest}, func() error {
			d.Waiting += sc.Count
			d.ByStage = append(d.ByStage, sc)
			if d.Oldest == nil || oldest.Before(*d.Oldest) {
				o := oldest.UTC()
				d.Oldest = &o
			}
			return nil
		})
		if err != nil {
			return DeadLetters{}, fmt.Errorf("dead letters waiting: %w", err)
		}
		return d, nil
	}
}
