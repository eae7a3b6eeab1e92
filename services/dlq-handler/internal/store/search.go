package store

import (
	"context"
	"encoding/json"
	"fmt"
)

// searchChunk is how many rows one backfill statement fills (a variable
// for the tests).
var searchChunk = 1000

const unredacted = `SELECT dead_letter_id, message, reasons, pii FROM dead_letters
WHERE message_redacted IS NULL AND dead_letter_id > $1 ORDER BY dead_letter_id LIMIT $2`

const fillRedacted = `UPDATE dead_letters d SET message_redacted = v.m
FROM unnest($1::text[], $2::text[]) AS v(id, m)
WHERE d.dead_letter_id = v.id AND d.message_redacted IS NULL`

// BackfillSearch fills message_redacted (SearchMessage) of the rows stored
// before it existed (sql/postgres/dlq/0003_search.sql), searchChunk rows
// per transaction in dead_letter_id order, and returns how many it filled.
// It is computed in Go, as Write does, rather than in the migration:
// PostgreSQL's regular expressions and lower() do not read every message
// as Go's regexp and strings.ToLower do, and the column must hold exactly
// what a caller without the PII right is shown. Once every row is filled
// it reads one empty index and returns 0.
func (s *Store) BackfillSearch(ctx context.Context) (int, error) {
	total, after := 0, ""
	for {
		rows, err := s.pool.Query(ctx, unredacted, after, searchChunk)
		if err != nil {
			return total, fmt.Errorf("store: backfill message_redacted: %w", err)
		}
		var ids, msgs []string
		var id, message string
		var reasons []byte
		var pii bool
		for rows.Next() {
			if err := rows.Scan(&id, &message, &reasons, &pii); err != nil {
				rows.Close()
				return total, fmt.Errorf("store: backfill message_redacted: %w", err)
			}
			var rs []Reason
			if err := json.Unmarshal(reasons, &rs); err != nil {
				// Reasons of another shape (not the store's): mask the
				// message whole, as for a pii row.
				rs, pii = nil, true
			}
			ids, msgs = append(ids, id), append(msgs, SearchMessage(message, rs, pii))
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return total, fmt.Errorf("store: backfill message_redacted: %w", err)
		}
		if len(ids) == 0 {
			return total, nil
		}
		tag, err := s.pool.Exec(ctx, fillRedacted, ids, msgs)
		if err != nil {
			return total, fmt.Errorf("store: backfill message_redacted: %w", err)
		}
		total += int(tag.RowsAffected())
		if len(ids) < searchChunk {
			return total, nil
		}
		after = ids[len(ids)-1]
	}
}
