package query

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Querier is what the reads need: a pool, a connection or a transaction
// (whose search_path is the store's schema).
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

var (
	_ Querier = (*pgxpool.Pool)(nil)
	_ Querier = pgx.Tx(nil)
)

// ErrNotFound is Get's answer for an id the store does not hold.
var ErrNotFound = errors.New("no such dead letter")

// Reason is one reason a stage gave (dead_letters.reasons).
type Reason struct {
	Code    string  `json:"code"`
	RuleID  *string `json:"rule_id"`
	Field   *string `json:"field"`
	Message string  `json:"message"`
}

// DeadLetter is a stored dead letter's metadata, without the original.
type DeadLetter struct {
	ID              string     `json:"dead_letter_id"`
	Stage           string     `json:"stage"`
	Entity          *string    `json:"entity"`
	SourceTopic     string     `json:"source_topic"`
	SourcePartition int32      `json:"source_partition"`
	SourceOffset    int64      `json:"source_offset"`
	SourceTimestamp time.Time  `json:"source_timestamp"`
	SchemaID        *int32     `json:"schema_id"`
	Reasons         []Reason   `json:"reasons"`
	Codes           []string   `json:"codes"`
	RuleIDs         []string   `json:"rule_ids"`
	Message         string     `json:"message"`
	Attempt         int32      `json:"attempt"`
	TraceID         *string    `json:"trace_id"`
	FailedAt        time.Time  `json:"failed_at"`
	DLQPartition    int32      `json:"dlq_partition"`
	DLQOffset       int64      `json:"dlq_offset"`
	StoredAt        time.Time  `json:"stored_at"`
	ReplayOf        *string    `json:"replay_of"`
	PII             bool       `json:"pii"`
	PIIPurgedAt     *time.Time `json:"pii_purged_at"`
	State           string     `json:"state"`
	StateChangedAt  time.Time  `json:"state_changed_at"`
	DiscardReason   *string    `json:"discard_reason"`
	DiscardedBy     *string    `json:"discarded_by"`
}

// Header is one header of the original record.
type Header struct {
	Key   string
	Value []byte
}

// Record is one dead letter with its original record.
type Record struct {
	DeadLetter
	Key     []byte   // nil: no key (or purged)
	Value   []byte   // nil: purged (pii_purged_at)
	Headers []Header // in order
}

const columns = `dead_letter_id, stage, entity, source_topic, source_partition, source_offset,
	source_timestamp, schema_id, reasons, codes, rule_ids, message, attempt, trace_id, failed_at,
	dlq_partition, dlq_offset, stored_at, replay_of, pii, pii_purged_at, state, state_changed_at,
	discard_reason, discarded_by`

func scanDeadLetter(row pgx.Row, extra ...any) (DeadLetter, error) {
	var d DeadLetter
	var reasons []byte
	dest := append([]any{&d.ID, &d.Stage, &d.Entity, &d.SourceTopic, &d.SourcePartition, &d.SourceOffset,
		&d.SourceTimestamp, &d.SchemaID, &reasons, &d.Codes, &d.RuleIDs, &d.Message, &d.Attempt, &d.TraceID, &d.FailedAt,
		&d.DLQPartition, &d.DLQOffset, &d.StoredAt, &d.ReplayOf, &d.PII, &d.PIIPurgedAt, &d.State, &d.StateChangedAt,
		&d.DiscardReason, &d.DiscardedBy}, extra...)
	if err := row.Scan(dest...); err != nil {
		return d, err
	}
	if err := json.Unmarshal(reasons, &d.Reasons); err != nil {
		return d, fmt.Errorf("dead letter %s: reasons: %w", d.ID, err)
	}
	for _, t := range []*time.Time{&d.SourceTimestamp, &d.FailedAt, &d.StoredAt, &d.StateChangedAt} {
		*t = t.UTC()
	}
	return d, nil
}

// ListResult is one page of a list, newest first.
type ListResult struct {
	Items      []DeadLetter `json:"items"`
	NextCursor string       `json:"next_cursor,omitempty"` // "" = the last page
}

// List returns the page of dead letters matching f, newest first by
// (failed_at, dead_letter_id).
func List(ctx context.Context, q Querier, f Filter, p Page) (ListResult, error) {
	res := ListResult{Items: []DeadLetter{}}
	if err := f.Validate(); err != nil {
		return res, err
	}
	w := where{}
	f.apply(&w)
	if p.Cursor != "" {
		c, err := decodeCursor("d", p.Cursor, f)
		if err != nil {
			return res, err
		}
		w.add("(failed_at, dead_letter_id) < (%s, %s)", c.at, c.key)
	}
	limit := min(max(p.Limit, 1), MaxLimit)
	sql := "SELECT " + columns + " FROM dead_letters WHERE " + w.sql() +
		" ORDER BY failed_at DESC, dead_letter_id DESC LIMIT " + w.arg(limit+1)
	rows, err := q.Query(ctx, sql, w.args...)
	if err != nil {
		return res, fmt.Errorf("list dead letters: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		d, err := scanDeadLetter(rows)
		if err != nil {
			return res, fmt.Errorf("list dead letters: %w", err)
		}
		res.Items = append(res.Items, d)
	}
	if err := rows.Err(); err != nil {
		return res, fmt.Errorf("list dead letters: %w", err)
	}
	if len(res.Items) > limit {
		res.Items = res.Items[:limit]
		last := res.Items[limit-1]
		res.NextCursor = encodeCursor("d", cursor{at: last.FailedAt, key: last.ID}, f)
	}
	return res, nil
}

// Get returns one dead letter with its original, or ErrNotFound.
func Get(ctx context.Context, q Querier, id string) (Record, error) {
	var r Record
	var headers []byte
	row := q.QueryRow(ctx, "SELECT "+columns+", original_key, original_value, original_headers FROM dead_letters WHERE dead_letter_id = $1", id)
	d, err := scanDeadLetter(row, &r.Key, &r.Value, &headers)
	if errors.Is(err, pgx.ErrNoRows) {
		return r, ErrNotFound
	}
	if err != nil {
		return r, fmt.Errorf("get dead letter %s: %w", id, err)
	}
	r.DeadLetter = d
	var hs []struct {
		Key   string `json:"key"`
		Value string `json:"value"`
	}
	if err := json.Unmarshal(headers, &hs); err != nil {
		return r, fmt.Errorf("dead letter %s: original_headers: %w", id, err)
	}
	for _, h := range hs {
		v, err := base64.StdEncoding.DecodeString(h.Value)
		if err != nil {
			return r, fmt.Errorf("dead letter %s: header %s: %w", id, h.Key, err)
		}
		r.Headers = append(r.Headers, Header{Key: h.Key, Value: v})
	}
	return r, nil
}
