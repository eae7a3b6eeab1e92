package store

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

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
// one, message (the reasons' messages joined) as a whole. It takes only
// rows not purged yet, through the dead_letters_pii partial index, so a
// run reads what is new since the last one; migration 0002 masked the
// messages of rows purged before the retention masked them.
const purgePII = `WITH picked AS (
	SELECT dead_letter_id FROM dead_letters
	WHERE pii AND pii_purged_at IS NULL AND failed_at < $1
	LIMIT $3 FOR UPDATE SKIP LOCKED)
UPDATE dead_letters d SET original_key = NULL, original_value = NULL, original_headers = '[]',
	pii_purged_at = $2,
	message = regexp_replace(regexp_replace(d.message, $4, $5, 'g'), $6, $7, 'g'),
	reasons = coalesce((SELECT jsonb_agg(CASE WHEN jsonb_typeof(x.r->'message') = 'string'
			THEN jsonb_set(x.r, '{message}', to_jsonb(regexp_replace(regexp_replace(x.r->>'message', $4, $5, 'g'), $6, $7, 'g')))
			ELSE x.r END ORDER BY x.n)
		FROM jsonb_array_elements(d.reasons) WITH ORDINALITY AS x(r, n)), '[]')
FROM picked WHERE d.dead_letter_id = picked.dead_letter_id`

// pickAudit takes the audit entries older than the PII retention that no
// run masked yet (redacted_at, the audit_log_unredacted partial index).
const pickAudit = `SELECT id, target, detail FROM audit_log
	WHERE redacted_at IS NULL AND at < $1
	ORDER BY at, id LIMIT $2 FOR UPDATE SKIP LOCKED`

// markAudit stores the masked entries, each marked masked at $4.
const markAudit = `UPDATE audit_log a SET target = m.target, detail = m.detail, redacted_at = $4
	FROM unnest($1::bigint[], $2::jsonb[], $3::jsonb[]) AS m(id, target, detail)
	WHERE a.id = m.id`

// pickJobs takes the replay jobs older than the PII retention that no run
// masked yet, after the cursor ($3, $4): a running job is masked but not
// marked (its error may still come), and the cursor keeps one run from
// taking it again.
const pickJobs = `SELECT job_id, requested_at, filter, error, state = 'running' FROM replay_jobs
	WHERE redacted_at IS NULL AND requested_at < $1 AND (requested_at, job_id) > ($3, $4)
	ORDER BY requested_at, job_id LIMIT $2 FOR UPDATE SKIP LOCKED`

// markJobs stores the masked jobs, the finished ones marked masked at $5
// (a running job unchanged is not written at all).
const markJobs = `UPDATE replay_jobs j SET filter = m.filter, error = m.error,
		redacted_at = CASE WHEN m.running THEN NULL ELSE $5::timestamptz END
	FROM unnest($1::text[], $2::jsonb[], $3::text[], $4::bool[]) AS m(job_id, filter, error, running)
	WHERE j.job_id = m.job_id`

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
		if res.AuditRedacted, err = s.redactAudit(ctx, cut, now); err != nil {
			return res, fmt.Errorf("store: retention of personal data in the audit log: %w", err)
		}
		if res.JobsRedacted, err = s.redactJobs(ctx, cut, now); err != nil {
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

// redactAudit masks, in the audit entries older than cut, every non-empty
// "q" (a filter's search text) whole and every email-like string (values
// and keys) of target and detail, one JSON string at a time (redactDoc),
// and marks them masked. It returns the entries it changed.
func (s *Store) redactAudit(ctx context.Context, cut, now time.Time) (int, error) {
	changed := 0
	for {
		var picked int
		err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			rows, err := tx.Query(ctx, pickAudit, cut, purgeChunk)
			if err != nil {
				return err
			}
			var ids []int64
			var targets, details [][]byte
			for rows.Next() {
				var id int64
				var target, detail []byte
				if err := rows.Scan(&id, &target, &detail); err != nil {
					rows.Close()
					return err
				}
				t, ct := redactDoc(target)
				d, cd := redactDoc(detail)
				if ct || cd {
					changed++
				}
				ids, targets, details = append(ids, id), append(targets, t), append(details, d)
			}
			if err := rows.Err(); err != nil {
				return err
			}
			picked = len(ids)
			if picked == 0 {
				return nil
			}
			_, err = tx.Exec(ctx, markAudit, ids, targets, details, now)
			return err
		})
		if err != nil {
			return changed, err
		}
		if picked < purgeChunk {
			return changed, nil
		}
	}
}

// redactJobs does the same to the replay jobs' filter and error. It
// returns the jobs it changed.
func (s *Store) redactJobs(ctx context.Context, cut, now time.Time) (int, error) {
	changed := 0
	afterAt, afterID := time.Time{}, ""
	for {
		var picked int
		err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			rows, err := tx.Query(ctx, pickJobs, cut, purgeChunk, afterAt, afterID)
			if err != nil {
				return err
			}
			var ids []string
			var filters [][]byte
			var errs []*string
			var running []bool
			for rows.Next() {
				var id string
				var at time.Time
				var filter []byte
				var jobErr *string
				var run bool
				if err := rows.Scan(&id, &at, &filter, &jobErr, &run); err != nil {
					rows.Close()
					return err
				}
				f, c := redactDoc(filter)
				if jobErr != nil {
					if m := redact.Text(*jobErr); m != *jobErr {
						jobErr, c = &m, true
					}
				}
				afterAt, afterID = at, id
				picked++
				if c {
					changed++
				} else if run {
					// Nothing to store and not to be marked yet.
					continue
				}
				ids, filters, errs, running = append(ids, id), append(filters, f), append(errs, jobErr), append(running, run)
			}
			if err := rows.Err(); err != nil {
				return err
			}
			if len(ids) == 0 {
				return nil
			}
			_, err = tx.Exec(ctx, markJobs, ids, filters, errs, running, now)
			return err
		})
		if err != nil {
			return changed, err
		}
		if picked < purgeChunk {
			return changed, nil
		}
	}
}

// redactDoc masks a stored JSON document (an audit entry's target or
// detail, a replay job's filter) for the PII retention: every non-empty
// string "q" whole, and the email-like substrings of every other string
// and of every key, each JSON string on its own, so that what is left is
// always JSON whatever the strings hold (escapes, line breaks before an
// email). It reports whether anything changed; a document that does not
// parse (jsonb always does) is replaced whole.
func redactDoc(raw []byte) ([]byte, bool) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return []byte(`"` + redact.Mask + `"`), true
	}
	v, changed := redact.Walk(v, redact.SearchText)
	if !changed {
		return raw, false
	}
	out, err := json.Marshal(v)
	if err != nil {
		return []byte(`"` + redact.Mask + `"`), true
	}
	return out, true
}
