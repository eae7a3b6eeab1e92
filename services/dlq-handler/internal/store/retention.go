package store

import (
	"context"
	"fmt"
	"time"

	"github.com/ecomstream/platform/services/dlq-handler/internal/redact"
)

// RetentionPolicy is how long dead letters are kept (0 = forever).
type RetentionPolicy struct {
	// Resolved: resolved and discarded rows are deleted this long after
	// their state_changed_at (DLQ_RETENTION_RESOLVED). Unresolved ones (new,
	// replayed, failed_again) are never deleted.
	Resolved time.Duration
	// PII: the originals (key, value, headers) of pii rows are purged this
	// long after their failed_at, whatever their state, and the quoted
	// values and email-like strings of their reasons' messages masked
	// (message_tsv follows, it is generated); the audit log's entries and
	// the replay jobs' filters older than that lose their q and
	// email-like strings (DLQ_RETENTION_PII).
	PII time.Duration
}

// RetentionResult says what Purge did.
type RetentionResult struct {
	Deleted   int `json:"deleted"`
	PIIPurged int `json:"pii_purged"`
	// AuditRedacted and JobsRedacted count the audit log entries and
	// replay jobs whose q and email-like strings were masked.
	AuditRedacted int `json:"audit_redacted"`
	JobsRedacted  int `json:"jobs_redacted"`
}

// purgeChunk bounds the rows one retention statement touches: a first run
// over a large backlog is many short transactions, not one that holds locks
// on millions of rows while the consumer waits.
const purgeChunk = 5000

const deleteResolved = `DELETE FROM dead_letters WHERE dead_letter_id IN (
	SELECT dead_letter_id FROM dead_letters
	WHERE state IN ('resolved', 'discarded') AND state_changed_at < $1
	LIMIT $2 FOR UPDATE SKIP LOCKED)`

// purgePII purges the originals of pii rows past the PII retention and
// masks their messages as redact.Message does for a pii row (quoted values,
// email-like strings; the patterns are parameters $4..$7): reasons one by
// one, message (the reasons' messages joined) as a whole. Rows purged
// before messages were masked too (pii_purged_at set, a message the masks
// still change) are taken again; masking is idempotent, so a purged row is
// taken once.
const purgePII = `WITH picked AS (
	SELECT dead_letter_id FROM dead_letters
	WHERE pii AND failed_at < $1 AND (pii_purged_at IS NULL OR
		message <> regexp_replace(regexp_replace(message, $4, $5, 'g'), $6, $7, 'g'))
	LIMIT $3 FOR UPDATE SKIP LOCKED)
UPDATE dead_letters d SET original_key = NULL, original_value = NULL, original_headers = '[]',
	pii_purged_at = coalesce(d.pii_purged_at, $2),
	message = regexp_replace(regexp_replace(d.message, $4, $5, 'g'), $6, $7, 'g'),
	reasons = coalesce((SELECT jsonb_agg(CASE WHEN jsonb_typeof(x.r->'message') = 'string'
			THEN jsonb_set(x.r, '{message}', to_jsonb(regexp_replace(regexp_replace(x.r->>'message', $4, $5, 'g'), $6, $7, 'g')))
			ELSE x.r END ORDER BY x.n)
		FROM jsonb_array_elements(d.reasons) WITH ORDINALITY AS x(r, n)), '[]')
FROM picked WHERE d.dead_letter_id = picked.dead_letter_id`

// redactAudit masks, in audit entries older than the PII retention, a
// filter's q (target.filter.q) whole and the email-like strings of target
// and detail ($3 the email pattern, $4 the mask). Inside JSON text an
// email-like match never crosses a string's quotes, so the text stays
// JSON.
const redactAudit = `WITH picked AS (
	SELECT id, new_target, new_detail FROM (
		SELECT id, target, detail,
			regexp_replace((CASE WHEN jsonb_typeof(target->'filter'->'q') = 'string' AND target->'filter'->>'q' <> ''
				THEN jsonb_set(target, '{filter,q}', to_jsonb($4::text)) ELSE target END)::text, $3, $4, 'g')::jsonb AS new_target,
			regexp_replace(detail::text, $3, $4, 'g')::jsonb AS new_detail
		FROM audit_log WHERE at < $1) c
	WHERE new_target <> target OR new_detail <> detail
	LIMIT $2)
UPDATE audit_log a SET target = picked.new_target, detail = picked.new_detail
FROM picked WHERE a.id = picked.id`

// redactJobs does the same to replay jobs' filter (q at the top) and error.
const redactJobs = `WITH picked AS (
	SELECT job_id, new_filter, new_error FROM (
		SELECT job_id, filter, error,
			regexp_replace((CASE WHEN jsonb_typeof(filter->'q') = 'string' AND filter->>'q' <> ''
				THEN jsonb_set(filter, '{q}', to_jsonb($4::text)) ELSE filter END)::text, $3, $4, 'g')::jsonb AS new_filter,
			regexp_replace(error, $3, $4, 'g') AS new_error
		FROM replay_jobs WHERE requested_at < $1) c
	WHERE new_filter <> filter OR new_error IS DISTINCT FROM error
	LIMIT $2)
UPDATE replay_jobs j SET filter = picked.new_filter, error = picked.new_error
FROM picked WHERE j.job_id = picked.job_id`

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
		cut := now.Add(-p.PII)
		n, err := s.chunked(ctx, purgePII, cut, now, purgeChunk,
			redact.QuotedPattern, redact.QuotedMask, redact.EmailPattern, redact.Mask)
		res.PIIPurged = n
		if err != nil {
			return res, fmt.Errorf("store: retention of personal data: %w", err)
		}
		if res.AuditRedacted, err = s.chunked(ctx, redactAudit, cut, purgeChunk, redact.EmailPattern, redact.Mask); err != nil {
			return res, fmt.Errorf("store: retention of personal data in the audit log: %w", err)
		}
		if res.JobsRedacted, err = s.chunked(ctx, redactJobs, cut, purgeChunk, redact.EmailPattern, redact.Mask); err != nil {
			return res, fmt.Errorf("store: retention of personal data in replay jobs: %w", err)
		}
	}
	return res, nil
}

// chunked runs stmt (one of whose arguments is the chunk size) until it
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
