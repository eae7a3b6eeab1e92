package replay

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

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
func (l *leader) resolve(ctx context.Context) error {
	s := l.s
	defer l.gauges(ctx)
	rows, err := l.conn.Query(ctx, `SELECT r.dead_letter_id, r.attempt, d.stage, r.target_topic, r.target_partition, r.target_offset
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
	positions, err := l.positions(ctx)
	if err != nil {
		return err
	}
	if from, to := gaps(ends, positions, s.dlq.Topic); len(from) > 0 {
		// Behind, or only transaction markers / aborted records past the
		// last stored dead letter (a read_committed reader never sees those,
		// so a position stays below them).
		has, err := s.kafka.HasRecords(ctx, s.dlq.Topic, from, to)
		if err != nil {
			return err
		}
		if has {
			return nil // the store has not read every dead letter yet: next round
		}
	}
	ids := make([]string, len(ready))
	attempts := make([]int32, len(ready))
	for i, r := range ready {
		ids[i], attempts[i] = r.id, r.attempt
	}
	var n int
	err = pgx.BeginFunc(ctx, l.conn, func(tx pgx.Tx) error {
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
// store.Positions reads, on the leader's connection).
func (l *leader) positions(ctx context.Context) (map[store.Partition]int64, error) {
	rows, err := l.conn.Query(ctx, "SELECT topic, partition, next_offset FROM consumer_positions WHERE consumer_group = $1", l.s.dlq.Group)
	if err != nil {
		return nil, fmt.Errorf("stored positions of %s: %w", l.s.dlq.Group, err)
	}
	out := map[store.Partition]int64{}
	var p store.Partition
	var n int64
	if _, err := pgx.ForEachRow(rows, []any{&p.Topic, &p.Partition, &n}, func() error {
		out[p] = n
		return nil
	}); err != nil {
		return nil, fmt.Errorf("stored positions of %s: %w", l.s.dlq.Group, err)
	}
	return out, nil
}

// gauges refreshes the outbox gauges (replays by outcome, jobs by state).
func (l *leader) gauges(ctx context.Context) {
	count := func(sql string, zero ...string) map[string]int64 {
		out := map[string]int64{}
		for _, z := range zero {
			out[z] = 0
		}
		rows, err := l.conn.Query(ctx, sql)
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
		l.s.m.set(o, j)
	}
}
