package store

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Store reads and writes dead letters in the schema its pool's search_path
// names (every statement is unqualified).
type Store struct {
	pool *pgxpool.Pool
}

// New returns the store on pool, whose connections have the schema as their
// search_path (pc.ConnConfig.RuntimeParams["search_path"]).
func New(pool *pgxpool.Pool) *Store { return &Store{pool: pool} }

// Ping checks the database answers; used by /readyz.
func (s *Store) Ping(ctx context.Context) error { return s.pool.Ping(ctx) }

// WriteResult says what Write did.
type WriteResult struct {
	// Inserted are the rows stored now, in the order given; a row whose
	// dead_letter_id was stored already (a re-delivery) is not among them.
	Inserted []*Row
	// Duplicates counts the rows found stored already.
	Duplicates int
	// FailedAgain counts stored dead letters that became failed_again: an
	// inserted row rejects their replay again.
	FailedAgain int
}

const insertRow = `INSERT INTO dead_letters (dead_letter_id, stage, entity, source_topic, source_partition, source_offset,
	source_timestamp, original_key, original_value, original_headers, schema_id, reasons, codes, rule_ids, message,
	attempt, trace_id, failed_at, dlq_partition, dlq_offset, replay_of, pii, message_redacted)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, NULLIF($21, ''), $22, $23)
ON CONFLICT (dead_letter_id) DO NOTHING`

// failAgain marks the replayed dead letter failed_again (a discarded one
// stays discarded: the operator gave it up, and the new dead letter is a row
// of its own) and its replay's outcome.
const failAgain = `WITH dl AS (
	UPDATE dead_letters SET state = 'failed_again', state_changed_at = now()
	WHERE dead_letter_id = $1 AND state IN ('new', 'replayed', 'resolved')
	RETURNING dead_letter_id
), rp AS (
	UPDATE replays SET outcome = 'failed_again', outcome_at = now()
	WHERE dead_letter_id = $1 AND attempt = $2 AND outcome <> 'failed_again'
	RETURNING dead_letter_id
)
SELECT (SELECT count(*) FROM dl), (SELECT count(*) FROM rp)`

const upsertPosition = `INSERT INTO consumer_positions (consumer_group, topic, partition, next_offset, updated_at)
VALUES ($1, $2, $3, $4, now())
ON CONFLICT (consumer_group, topic, partition) DO UPDATE SET next_offset = excluded.next_offset, updated_at = now()
WHERE consumer_positions.next_offset <= excluded.next_offset`

// Write stores rows and moves group's positions to next in one transaction:
// after a crash either both are stored or neither, so the rows a restarted
// consumer reads again are exactly those not stored. A row whose
// dead_letter_id is stored already is skipped (ON CONFLICT DO NOTHING): a
// dead letter delivered twice, by a stage's retry or a replay of the topic,
// is one row. An inserted row that rejects a replay (ReplayOf) links back to
// the replayed dead letter and makes it failed_again. A position never moves
// back: a member that lost its partition in a rebalance while writing (a
// paused process whose session expired) cannot make the new owner re-read.
// Each row's message_redacted (SearchMessage) is written with it.
func (s *Store) Write(ctx context.Context, group string, rows []Row, next map[Partition]int64) (WriteResult, error) {
	var res WriteResult
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		res = WriteResult{}
		b := &pgx.Batch{}
		for i := range rows {
			r := &rows[i]
			hdrs, err := r.headersJSON()
			if err != nil {
				return fmt.Errorf("dead letter %s: headers: %w", r.DeadLetterID, err)
			}
			reasons, err := r.reasonsJSON()
			if err != nil {
				return fmt.Errorf("dead letter %s: reasons: %w", r.DeadLetterID, err)
			}
			b.Queue(insertRow, r.DeadLetterID, r.Stage, r.Entity, r.SourceTopic, r.SourcePartition, r.SourceOffset,
				r.SourceTimestamp, r.OriginalKey, r.OriginalValue, string(hdrs), r.SchemaID, string(reasons), r.Codes, r.RuleIDs,
				r.Message, r.Attempt, r.TraceID, r.FailedAt, r.DLQPartition, r.DLQOffset, r.ReplayOf, r.PII,
				SearchMessage(r.Message, r.Reasons, r.PII))
		}
		br := tx.SendBatch(ctx, b)
		for i := range rows {
			tag, err := br.Exec()
			if err != nil {
				_ = br.Close()
				return fmt.Errorf("insert dead letter %s: %w", rows[i].DeadLetterID, err)
			}
			if tag.RowsAffected() == 1 {
				res.Inserted = append(res.Inserted, &rows[i])
			} else {
				res.Duplicates++
			}
		}
		if err := br.Close(); err != nil {
			return fmt.Errorf("insert dead letters: %w", err)
		}
		// The replayed dead letters are locked first, in dead_letter_id
		// order, then each is made failed_again with its replays row: the
		// order the planner, the resolver and discard lock them in (the DLQ
		// offset order of the rows would deadlock with them). Positions go
		// in (topic, partition) order, for a writer of the same group
		// racing this one in a rebalance.
		var links []*Row
		for _, r := range res.Inserted {
			if r.ReplayOf != "" {
				links = append(links, r)
			}
		}
		slices.SortStableFunc(links, func(a, b *Row) int { return strings.Compare(a.ReplayOf, b.ReplayOf) })
		if len(links) > 0 {
			ids := make([]string, len(links))
			for i, r := range links {
				ids[i] = r.ReplayOf
			}
			if _, err := tx.Exec(ctx, "SELECT 1 FROM dead_letters WHERE dead_letter_id = ANY($1) ORDER BY dead_letter_id FOR UPDATE", ids); err != nil {
				return fmt.Errorf("lock the replayed dead letters: %w", err)
			}
		}
		b = &pgx.Batch{}
		for _, r := range links {
			b.Queue(failAgain, r.ReplayOf, r.ReplayedAttempt)
		}
		parts := slices.SortedFunc(maps.Keys(next), func(a, b Partition) int {
			return cmp.Or(strings.Compare(a.Topic, b.Topic), cmp.Compare(a.Partition, b.Partition))
		})
		for _, p := range parts {
			b.Queue(upsertPosition, group, p.Topic, p.Partition, next[p])
		}
		br = tx.SendBatch(ctx, b)
		for _, r := range links {
			var dl, rp int
			if err := br.QueryRow().Scan(&dl, &rp); err != nil {
				_ = br.Close()
				return fmt.Errorf("link dead letter %s to the replayed %s: %w", r.DeadLetterID, r.ReplayOf, err)
			}
			res.FailedAgain += dl
		}
		for range next {
			if _, err := br.Exec(); err != nil {
				_ = br.Close()
				return fmt.Errorf("store positions: %w", err)
			}
		}
		return br.Close()
	})
	if err != nil {
		return WriteResult{}, fmt.Errorf("store: write %d dead letters: %w", len(rows), err)
	}
	return res, nil
}

// Positions returns group's stored next offsets.
func (s *Store) Positions(ctx context.Context, group string) (map[Partition]int64, error) {
	rows, err := s.pool.Query(ctx, "SELECT topic, partition, next_offset FROM consumer_positions WHERE consumer_group = $1", group)
	if err != nil {
		return nil, fmt.Errorf("store: positions of %s: %w", group, err)
	}
	out := map[Partition]int64{}
	var p Partition
	var n int64
	_, err = pgx.ForEachRow(rows, []any{&p.Topic, &p.Partition, &n}, func() error {
		out[p] = n
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: positions of %s: %w", group, err)
	}
	return out, nil
}

// IsTransient reports whether err may go away by retrying. A server error
// is transient by its class: the connection failed, the database is
// restarting or out of resources, or a transaction lost a serialisation
// race; any other (a missing table, a refused value) repeats on retry. An
// error that is not the server's (the connection died, the pool could not
// connect) is transient; a cancelled context is not.
func IsTransient(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code[:min(2, len(pe.Code))] {
		case "08", // connection exception
			"40", // transaction rollback: serialization failure, deadlock
			"53", // insufficient resources
			"57", // operator intervention: admin shutdown, cannot connect now
			"58": // system error (I/O)
			return true
		}
		return false
	}
	return true
}
