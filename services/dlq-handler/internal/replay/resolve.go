package replay

import (
	"context"
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
}

// resolveBatch bounds the sent replays one round looks at (oldest first).
const resolveBatch = 10000

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
func (rv *resolver) resolve(ctx context.Context) error {
	s := rv.s
	defer rv.gauges(ctx)
	rows, err := rv.q.Query(ctx, `SELECT r.dead_letter_id, r.attempt, d.stage, r.target_topic, r.target_partition, r.target_offset
		FROM replays r JOIN dead_letters d USING (dead_letter_id) WHERE r.outcome = 'sent' ORDER BY r.sent_at LIMIT $1`, resolveBatch)
	if err != nil {
		return fmt.Errorf("read the sent replays: %w", err)
	}
	var rs []sentReplay
	var r sentReplay
	if _, err := pgx.ForEachRow(rows, []any{&r.id, &r.attempt, &r.stage, &r.topic, &r.partition, &r.offset}, func() error {
		rs = append(rs, r)
		return nil
	}); err != nil {
		return fmt.Errorf("read the sent replays: %w", err)
	}
	if len(rs) == 0 {
		return nil
	}
	committed := map[string]map[store.Partition]int64{}
	for _, r := range rs {
		g, ok := s.groups[r.stage]
		if !ok {
			continue
		}
		if _, done := committed[g]; done {
			continue
		}
		c, err := s.kafka.Committed(ctx, g)
		if err != nil {
			return err
		}
		committed[g] = c
	}
	ready, unknown := passed(rs, s.groups, committed)
	for stage, n := range unknown {
		s.log.WarnContext(ctx, "sent replays of a stage without a group in DLQ_STAGE_GROUPS stay sent", "stage", stage, "replays", n)
	}
	if len(ready) == 0 {
		return nil
	}
	// Read after the groups' offsets: the ends cover every dead letter
	// written in a transaction that committed those offsets.
	ends, err := s.kafka.Ends(ctx, s.dlq.Topic)
	if err != nil {
		return err
	}
	// The store catches up to those ends within a batch or two; wait for
	// it a little, else the next round tries again.
	deadline := time.Now().Add(coverWait)
	for {
		ok, err := rv.covered(ctx, ends)
		if err != nil {
			return err
		}
		if ok {
			break
		}
		if time.Now().After(deadline) || sleep(ctx, coverPoll) != nil {
			return nil
		}
	}
	ids := make([]string, len(ready))
	attempts := make([]int32, len(ready))
	for i, r := range ready {
		ids[i], attempts[i] = r.id, r.attempt
	}
	var n int
	err = pgx.BeginFunc(ctx, rv.q, func(tx pgx.Tx) error {
		// Lock the dead letters first, in id order: the order the planner
		// and store.Write (failed_again) lock dead_letters before replays.
		if _, err := tx.Exec(ctx, "SELECT 1 FROM dead_letters WHERE dead_letter_id = ANY($1) ORDER BY dead_letter_id FOR UPDATE", ids); err != nil {
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
	s.m.resolved(ctx, n)
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
