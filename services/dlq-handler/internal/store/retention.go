package store

import (
	"context"
	"fmt"
	"time"
)

// RetentionPolicy is how long dead letters are kept (0 = forever).
type RetentionPolicy struct {
	// Resolved: resolved and discarded rows are deleted this long after
	// their state_changed_at (DLQ_RETENTION_RESOLVED). Unresolved ones (new,
	// replayed, failed_again) are never deleted.
	Resolved time.Duration
	// PII: the originals (key, value, headers) of pii rows are purged this
	// long after their failed_at, whatever their state (DLQ_RETENTION_PII).
	PII time.Duration
}

// RetentionResult says what Purge did.
type RetentionResult struct {
	Deleted   int `json:"deleted"`
	PIIPurged int `json:"pii_purged"`
}

// purgeChunk bounds the rows one retention statement touches: a first run
// over a large backlog is many short transactions, not one that holds locks
// on millions of rows while the consumer waits.
const purgeChunk = 5000

const deleteResolved = `DELETE FROM dead_letters WHERE dead_letter_id IN (
	SELECT dead_letter_id FROM dead_letters
	WHERE state IN ('resolved', 'discarded') AND state_changed_at < $1
	LIMIT $2 FOR UPDATE SKIP LOCKED)`

const purgePII = `UPDATE dead_letters SET original_key = NULL, original_value = NULL, original_headers = '[]', pii_purged_at = $2
WHERE dead_letter_id IN (
	SELECT dead_letter_id FROM dead_letters
	WHERE pii AND pii_purged_at IS NULL AND failed_at < $1
	LIMIT $3 FOR UPDATE SKIP LOCKED)`

// Purge applies p as of now: deletes the resolved and discarded rows past
// p.Resolved (their replays go with them) and purges the originals of pii
// rows past p.PII. It is safe to run concurrently with itself and with
// Write (rows another run holds are skipped, and found by the next run).
func (s *Store) Purge(ctx context.Context, now time.Time, p RetentionPolicy) (RetentionResult, error) {
	var res RetentionResult
	if p.Resolved > 0 {
		n, err := s.chunked(ctx, deleteResolved, now.Add(-p.Resolved), purgeChunk)
		res.Deleted = n
		if err != nil {
			return res, fmt.Errorf("store: retention of resolved dead letters: %w", err)
		}
	}
	if p.PII > 0 {
		n, err := s.chunked(ctx, purgePII, now.Add(-p.PII), now, purgeChunk)
		res.PIIPurged = n
		if err != nil {
			return res, fmt.Errorf("store: retention of personal data: %w", err)
		}
	}
	return res, nil
}

// chunked runs stmt (whose last argument is the chunk size) until it
// touches fewer rows than a chunk, and returns the rows touched.
func (s *Store) chunked(ctx context.Context, stmt string, args ...any) (int, error) {
	total := 0
	for {
		tag, err := s.pool.Exec(ctx, stmt, args...)
		if err != nil {
			return total, err
		}
		total += int(tag.RowsAffected())
		if tag.RowsAffected() < purgeChunk {
			return total, nil
		}
	}
}
