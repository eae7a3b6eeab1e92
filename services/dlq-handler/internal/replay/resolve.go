package replay

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ecomstream/platform/services/dlq-handler/internal/store"
)

// sentReplay is a replay sent and waiting for its outcome.
type sentReplay struct {
	id        string
	attempt   int32
	stage     string
	topic     string
	partition int32
	offset    int64
	sentAt    time.Time
}

// resolveBatch is how many sent replays one query of a round reads (oldest
// first); a round pages through all of them.
var resolveBatch = 10000

// passed returns the replays whose stage's group (groups) has committed
// past them, and the stages without a configured group.
func passed(rs []sentReplay, groups map[string]string, committed map[string]map[store.Partition]int64) (ready []sentReplay, unknown map[string]int) {
	for _, r := range rs {
		g, ok := groups[r.stage]
		if !ok {
			if unknown == nil {
				unknown = map[string]int{}
			}
			unknown[r.stage]++
			continue
		}
		if next, ok := committed[g][store.Partition{Topic: r.topic, Partition: r.partition}]; ok && next > r.offset {
			ready = append(ready, r)
		}
	}
	return ready, unknown
}

// gaps returns, per partition of the dead-letter topic, the range of
// offsets the store has not read yet: [position, end).
func gaps(ends map[int32]int64, positions map[store.Partition]int64, topic string) (from, to map[int32]int64) {
	from, to = map[int32]int64{}, map[int32]int64{}
	for p, end := range ends {
		pos := positions[store.Partition{Topic: topic, Partition: p}]
		if pos < end {
			from[p], to[p] = pos, end
		}
	}
	return from, to
}

// resolve settles sent replays: one is resolved when its stage's group has
// committed past the replayed record and no dead letter of it is stored,
// and the store has read the dead-letter topic up to its end offsets read
// after the group's offsets (a stage writes its dead letter in the
// transaction that commits its offset, so a dead letter of the replay is
// at an offset below that end, and stored once the store got there).
// failed_again is set by store.Write when such a dead letter arrives.
// Only replays of stages with a group (DLQ_STAGE_GROUPS) are read, and a
// round pages through all of them (resolveBatch at a time, oldest first):
// neither those of a stage without a group nor a lagging group's hold the
// others back.
func (rv *resolver) resolve(ctx context.Context) error {
	s := rv.s
	defer rv.gauges(ctx)
	rv.warnUngrouped(ctx)
	stages := make([]string, 0, len(s.groups))
	for st := range s.groups {
		stages = append(stages, st)
	}
	if len(stages) == 0 {
		return nil
	}
	var committed map[string]map[store.Partition]int64
	checked := false // the store covers the dead-letter topic's ends
	var after sentReplay
	for first := true; ; first = false {
		rs, err := rv.sentPage(ctx, stages, after, first)
		if err != nil {
			return err
		}
		if len(rs) == 0 {
			return nil
		}
		if committed == nil {
			// Every group's offsets once, before the dead-letter topic's
			// ends are read (below): they hold for every page.
			committed = map[string]map[store.Partition]int64{}
			for _, g := range s.groups {
				if _, done := committed[g]; done {
					continue
				}
				c, err := s.kafka.Committed(ctx, g)
				if err != nil {
					return err
				}
				committed[g] = c
			}
		}
		ready, _ := passed(rs, s.groups, committed)
		if len(ready) > 0 && !checked {
			ok, err := rv.waitCovered(ctx)
			if err != nil || !ok {
				return err
			}
			checked = true
		}
		if len(ready) > 0 {
			if err := rv.settle(ctx, ready); err != nil {
				return err
			}
		}
		if len(rs) < resolveBatch {
			return nil
		}
		after = rs[len(rs)-1]
	}
}

// sentPage reads the next resolveBatch sent replays of stages after the
// cursor (sent_at, dead_letter_id, attempt); first = from the start.
func (rv *resolver) sentPage(ctx context.Context, stages []string, after sentReplay, first bool) ([]sentReplay, error) {
	rows, err := rv.q.Query(ctx, `SELECT r.dead_letter_id, r.attempt, d.stage, r.target_topic, r.target_partition, r.target_offset, r.sent_at
		FROM replays r JOIN dead_letters d USING (dead_letter_id)
		WHERE r.outcome = 'sent' AND d.stage = ANY($1) AND ($2 OR (r.sent_at, r.dead_letter_id, r.attempt) > ($3, $4, $5))
		ORDER BY r.sent_at, r.dead_letter_id, r.attempt LIMIT $6`, stages, first, after.sentAt, after.id, after.attempt, resolveBatch)
	if err != nil {
		return nil, fmt.Errorf("read the sent replays: %w", err)
	}
	var rs []sentReplay
	var r sentReplay
	if _, err := pgx.ForEachRow(rows, []any{&r.id, &r.attempt, &r.stage, &r.topic, &r.partition, &r.offset, &r.sentAt}, func() error {
		rs = append(rs, r)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("read the sent replays: %w", err)
	}
	return rs, nil
}

// warnUngrouped logs the sent replays of stages without a group: they stay
// sent until DLQ_STAGE_GROUPS names one.
func (rv *resolver) warnUngrouped(ctx context.Context) {
	stages := make([]string, 0, len(rv.s.groups))
	for st := range rv.s.groups {
		stages = append(stages, st)
	}
	rows, err := rv.q.Query(ctx, `SELECT d.stage, count(*) FROM replays r JOIN dead_letters d USING (dead_letter_id)
		WHERE r.outcome = 'sent' AND NOT d.stage = ANY($1) GROUP BY d.stage ORDER BY d.stage`, stages)
	if err != nil {
		return
	}
	var stage string
	var n int
	_, _ = pgx.ForEachRow(rows, []any{&stage, &n}, func() error {
		rv.s.log.WarnContext(ctx, "sent replays of a stage without a group in DLQ_STAGE_GROUPS stay sent", "stage", stage, "replays", n)
		return nil
	})
}

// waitCovered reads the dead-letter topic's ends (after the groups'
// offsets: the ends cover every dead letter written in a transaction that
// committed those offsets) and waits a little for the store to cover them
// (it catches up within a batch or two); false = not yet, the next round
// tries again.
func (rv *resolver) waitCovered(ctx context.Context) (bool, error) {
	ends, err := rv.s.kafka.Ends(ctx, rv.s.dlq.Topic)
	if err != nil {
		return false, err
	}
	deadline := time.Now().Add(coverWait)
	for {
		ok, err := rv.covered(ctx, ends)
		if err != nil || ok {
			return ok, err
		}
		if time.Now().After(deadline) || sleep(ctx, coverPoll) != nil {
			return false, nil
		}
	}
}

// settle resolves the ready replays in one transaction, those a dead
// letter rejects again failed_again (a mark that overwrote failed_again
// before the sender kept pending rows only left such rows sent).
func (rv *resolver) settle(ctx context.Context, ready []sentReplay) error {
	ids := make([]string, len(ready))
	attempts := make([]int32, len(ready))
	for i, r := range ready {
		ids[i], attempts[i] = r.id, r.attempt
	}
	var n int
	err := pgx.BeginFunc(ctx, rv.q, func(tx pgx.Tx) error {
		// Lock the dead letters first, in dead_letter_id order: the order
		// every writer (planner, sender, store.Write, discard) locks
		// dead_letters in, before replays.
		if _, err := tx.Exec(ctx, "SELECT 1 FROM dead_letters WHERE dead_letter_id = ANY($1) ORDER BY dead_letter_id FOR UPDATE", ids); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE replays r SET outcome = 'failed_again', outcome_at = now()
			FROM unnest($1::text[], $2::int[]) AS u(id, attempt)
			WHERE r.dead_letter_id = u.id AND r.attempt = u.attempt AND r.outcome = 'sent'
			AND EXISTS (SELECT 1 FROM dead_letters n WHERE n.replay_of = r.dead_letter_id)`, ids, attempts); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `UPDATE replays r SET outcome = 'resolved', outcome_at = now()
			FROM unnest($1::text[], $2::int[]) AS u(id, attempt)
			WHERE r.dead_letter_id = u.id AND r.attempt = u.attempt AND r.outcome = 'sent'
			AND NOT EXISTS (SELECT 1 FROM dead_letters n WHERE n.replay_of = r.dead_letter_id)
			RETURNING r.dead_letter_id`, ids, attempts)
		if err != nil {
			return err
		}
		done, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return err
		}
		n = len(done)
		_, err = tx.Exec(ctx, "UPDATE dead_letters SET state = 'resolved', state_changed_at = now() WHERE dead_letter_id = ANY($1) AND state = 'replayed'", done)
		return err
	})
	if err != nil {
		return fmt.Errorf("resolve %d replays: %w", len(ready), err)
	}
	rv.s.m.resolved(ctx, n)
	return nil
}

// positions are the store's next offsets of dlq-handler's group (what
// store.Positions reads).
func (rv *resolver) positions(ctx context.Context) (map[store.Partition]int64, error) {
	rows, err := rv.q.Query(ctx, "SELECT topic, partition, next_offset FROM consumer_positions WHERE consumer_group = $1", rv.s.dlq.Group)
	if err != nil {
		return nil, fmt.Errorf("stored positions of %s: %w", rv.s.dlq.Group, err)
	}
	out := map[store.Partition]int64{}
	var p store.Partition
	var n int64
	if _, err := pgx.ForEachRow(rows, []any{&p.Topic, &p.Partition, &n}, func() error {
		out[p] = n
		return nil
	}); err != nil {
		return nil, fmt.Errorf("stored positions of %s: %w", rv.s.dlq.Group, err)
	}
	return out, nil
}

// gauges refreshes the outbox gauges (replays by outcome, jobs by state).
func (rv *resolver) gauges(ctx context.Context) {
	count := func(sql string, zero ...string) map[string]int64 {
		out := map[string]int64{}
		for _, z := range zero {
			out[z] = 0
		}
		rows, err := rv.q.Query(ctx, sql)
		if err != nil {
			return nil
		}
		var k string
		var n int64
		if _, err := pgx.ForEachRow(rows, []any{&k, &n}, func() error { out[k] = n; return nil }); err != nil {
			return nil
		}
		return out
	}
	o := count("SELECT outcome, count(*) FROM replays GROUP BY outcome", "pending", "sent", "resolved", "failed_again")
	j := count("SELECT state, count(*) FROM replay_jobs GROUP BY state", "running", "succeeded", "failed", "cancelled")
	if o != nil && j != nil {
		rv.s.m.set(o, j)
	}
}

// unprobed drops the gaps found empty before (the same range: no dead
// letter stored or written since), so a tail of transaction markers is
// read once, not every round.
func (rv *resolver) unprobed(from, to map[int32]int64) (map[int32]int64, map[int32]int64) {
	for p := range from {
		if rv.clean[p] == [2]int64{from[p], to[p]} {
			delete(from, p)
			delete(to, p)
		}
	}
	return from, to
}

// covered reports whether the store holds every dead letter below ends:
// its position reaches the end, or the offsets between are transaction
// markers and aborted records only. That is only known for offsets below
// the last stable offset (an open transaction's records are not visible
// yet), so a gap with an open transaction is not covered yet.
func (rv *resolver) covered(ctx context.Context, ends map[int32]int64) (bool, error) {
	s := rv.s
	positions, err := rv.pos(ctx)
	if err != nil {
		return false, err
	}
	from, to := gaps(ends, positions, s.dlq.Topic)
	if len(from) == 0 {
		return true, nil
	}
	stable, err := s.kafka.Stable(ctx, s.dlq.Topic)
	if err != nil {
		return false, err
	}
	for p := range from {
		if stable[p] < to[p] {
			return false, nil
		}
	}
	if from, to = rv.unprobed(from, to); len(from) == 0 {
		return true, nil
	}
	has, err := s.kafka.HasRecords(ctx, s.dlq.Topic, from, to)
	if errors.Is(err, errUnread) {
		return false, nil // not known yet: not covered
	}
	if err != nil || has {
		return false, err
	}
	for p := range from {
		rv.clean[p] = [2]int64{from[p], to[p]}
	}
	return true, nil
}

// Timings of the resolver's wait for the store.
var (
	coverWait = 2 * time.Second
	coverPoll = 100 * time.Millisecond
)

// resolver settles outcomes; it runs beside the sender while this replica
// holds the lock (on the pool: its updates are conditional, so a former
// leader's last round racing the new one's changes nothing twice).
type resolver struct {
	s     *Service
	q     *pgxpool.Pool
	clean map[int32][2]int64                                       // dead-letter topic ranges [from, to) found without records
	pos   func(context.Context) (map[store.Partition]int64, error) // the store's positions (rv.positions)
}

// resolveLoop runs a round every ResolveInterval until ctx ends.
func (s *Service) resolveLoop(ctx context.Context) {
	rv := &resolver{s: s, q: s.pool, clean: map[int32][2]int64{}}
	rv.pos = rv.positions
	t := time.NewTicker(s.cfg.ResolveInterval)
	defer t.Stop()
	for {
		if err := rv.resolve(ctx); err != nil && ctx.Err() == nil {
			s.log.WarnContext(ctx, "replay resolver round failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
