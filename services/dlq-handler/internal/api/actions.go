package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ecomstream/platform/services/dlq-handler/internal/auth"
	"github.com/ecomstream/platform/services/dlq-handler/internal/query"
)

// Discardable are the states a discard changes; the others are left alone
// (replayed ones wait for their outcome, resolved and discarded are done).
var Discardable = []string{"new", "failed_again"}

// DiscardRequest is the body of POST /v1/dead-letters/discard: exactly one
// of IDs and Filter (a non-empty one), and a reason.
type DiscardRequest struct {
	IDs    []string      `json:"ids,omitempty"`
	Filter *query.Filter `json:"filter,omitempty"`
	Reason string        `json:"reason"`
	DryRun bool          `json:"dry_run"`
}

// Skipped is a listed dead letter a discard left alone.
type Skipped struct {
	ID    string `json:"dead_letter_id"`
	State string `json:"state"` // its state, not a discardable one
}

// DiscardResponse is the answer of a discard. Matched counts the dead
// letters in a discardable state (what a dry run would discard), Discarded
// those discarded (0 in a dry run). For a filter, Skipped counts the
// matching ones in another state; for ids, SkippedIDs and NotFound list them.
type DiscardResponse struct {
	DryRun     bool      `json:"dry_run"`
	Matched    int       `json:"matched"`
	Discarded  int       `json:"discarded"`
	Skipped    int       `json:"skipped"`
	SkippedIDs []Skipped `json:"skipped_ids,omitempty"`
	NotFound   []string  `json:"not_found,omitempty"`
	AuditID    *int64    `json:"audit_id,omitempty"`
}

func (req *DiscardRequest) validate() error {
	req.Reason = strings.TrimSpace(req.Reason)
	switch {
	case req.Reason == "":
		return &query.Error{Param: "reason", Msg: "a reason is required"}
	case len(req.Reason) > maxReasonLen:
		return &query.Error{Param: "reason", Msg: fmt.Sprintf("at most %d characters", maxReasonLen)}
	case (len(req.IDs) > 0) == (req.Filter != nil):
		return &query.Error{Param: "ids", Msg: "give either ids or filter"}
	case len(req.IDs) > maxDiscardIDs:
		return &query.Error{Param: "ids", Msg: fmt.Sprintf("at most %d ids per request; discard more by filter", maxDiscardIDs)}
	case req.Filter != nil && req.Filter.Empty():
		return &query.Error{Param: "filter", Msg: "an empty filter would select every dead letter; narrow it"}
	case req.Filter != nil:
		if err := req.Filter.Validate(); err != nil {
			var qe *query.Error
			if errors.As(err, &qe) {
				return &query.Error{Param: "filter." + qe.Param, Msg: qe.Msg}
			}
			return err
		}
	}
	for _, id := range req.IDs {
		if id == "" {
			return &query.Error{Param: "ids", Msg: "an id is empty"}
		}
	}
	return nil
}

func (s *server) discard(w http.ResponseWriter, r *http.Request) {
	var req DiscardRequest
	if !decodeBody(w, r, &req, false) {
		return
	}
	res, err := Discard(r.Context(), s.cfg.Pool, identity(r), req)
	if err != nil {
		s.fail(w, r, "discard", err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// Discard validates req (a *query.Error for a bad request) and discards
// the dead letters it names as who, with the audit row, in one
// transaction; a dry run only counts them. The API's POST
// /v1/dead-letters/discard and the console both call it. pool's search_path
// is the store's schema.
func Discard(ctx context.Context, pool *pgxpool.Pool, who auth.Identity, req DiscardRequest) (DiscardResponse, error) {
	if err := req.validate(); err != nil {
		return DiscardResponse{}, err
	}
	if req.Filter != nil {
		// A dry run's count would confirm a searched email address or a
		// hidden name as well as a list does.
		f, err := Scope(*req.Filter, who)
		var qe *query.Error
		if errors.As(err, &qe) {
			return DiscardResponse{}, &query.Error{Param: "filter." + qe.Param, Msg: qe.Msg}
		}
		if err != nil {
			return DiscardResponse{}, err
		}
		req.Filter = &f
	}
	var res DiscardResponse
	err := retryConflicts(ctx, func() error {
		return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			var err error
			res = DiscardResponse{}
			if req.Filter != nil {
				res, err = discardFilter(ctx, tx, *req.Filter, req, who)
			} else {
				res, err = discardIDs(ctx, tx, req, who)
			}
			if err != nil || req.DryRun {
				return err
			}
			target := map[string]any{"ids": req.IDs}
			if req.Filter != nil {
				target = map[string]any{"filter": req.Filter}
			}
			aid, err := insertAudit(ctx, tx, who, "discard", target, map[string]any{
				"reason": req.Reason, "discarded": res.Discarded, "skipped": res.Skipped, "not_found": len(res.NotFound)})
			res.AuditID = &aid
			return err
		})
	})
	if err != nil {
		return DiscardResponse{}, err
	}
	res.DryRun = req.DryRun
	return res, nil
}

// MaxFilterDiscard is the most dead letters one discard by filter changes
// (in one transaction, like replay.MaxFilterReplay); a filter matching more
// is refused, to be narrowed (from/to, stage, rule_id) and discarded in
// parts. A dry run counts them all.
var MaxFilterDiscard = 10000

// discardByFilter discards the filter's rows in one statement: the
// subquery locks them in dead_letter_id order, as every other writer of
// dead_letters does (the replay planner and resolver, store.Write; an
// unordered UPDATE could take them in another order and deadlock with a
// replay or a resolution), and no id leaves the database. Its LIMIT holds
// the cap also against rows stored after the count.
const discardByFilter = `UPDATE dead_letters SET state = 'discarded', state_changed_at = now(), discard_reason = $2, discarded_by = $3
WHERE dead_letter_id IN (SELECT dead_letter_id FROM dead_letters WHERE state = ANY($1) AND %s
	ORDER BY dead_letter_id LIMIT %d FOR UPDATE)`

func discardFilter(ctx context.Context, tx pgx.Tx, f query.Filter, req DiscardRequest, id auth.Identity) (DiscardResponse, error) {
	var res DiscardResponse
	cond, args := f.Where([]any{Discardable})
	err := tx.QueryRow(ctx, "SELECT count(*) FILTER (WHERE state = ANY($1)), count(*) FILTER (WHERE NOT state = ANY($1)) FROM dead_letters WHERE "+
		cond, args...).Scan(&res.Matched, &res.Skipped)
	if err != nil {
		return res, fmt.Errorf("count the filter's dead letters: %w", err)
	}
	if req.DryRun {
		return res, nil
	}
	if res.Matched > MaxFilterDiscard {
		return res, &query.Error{Param: "filter", Msg: fmt.Sprintf("matches %d dead letters to discard, more than %d per request: narrow it (from/to, stage, rule_id) and discard in parts",
			res.Matched, MaxFilterDiscard)}
	}
	cond, args = f.Where([]any{Discardable, req.Reason, id.Name})
	tag, err := tx.Exec(ctx, fmt.Sprintf(discardByFilter, cond, MaxFilterDiscard), args...)
	if err != nil {
		return res, fmt.Errorf("discard by filter: %w", err)
	}
	res.Discarded = int(tag.RowsAffected())
	res.Matched = res.Discarded // what was discardable when the rows were locked
	return res, nil
}

// maxConflictAttempts bounds how often a transaction that PostgreSQL
// aborted for a serialisation failure or a deadlock is run again.
const maxConflictAttempts = 5

// retryConflicts runs fn again (at most maxConflictAttempts times, with a
// short growing pause) while it fails with SQLSTATE 40001
// (serialization_failure) or 40P01 (deadlock_detected): the transaction
// was rolled back whole, so running it again is safe.
func retryConflicts(ctx context.Context, fn func() error) error {
	var err error
	for attempt := 1; ; attempt++ {
		if err = fn(); err == nil || !conflict(err) || attempt == maxConflictAttempts {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(time.Duration(attempt*attempt) * 10 * time.Millisecond):
		}
	}
}

// conflict reports a serialisation failure or a deadlock.
func conflict(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "40001" || pe.Code == "40P01")
}

func discardIDs(ctx context.Context, tx pgx.Tx, req DiscardRequest, id auth.Identity) (DiscardResponse, error) {
	var res DiscardResponse
	ids := slices.Clone(req.IDs)
	slices.Sort(ids)
	ids = slices.Compact(ids)
	rows, err := tx.Query(ctx, "SELECT dead_letter_id, state FROM dead_letters WHERE dead_letter_id = ANY($1) ORDER BY dead_letter_id FOR UPDATE", ids)
	if err != nil {
		return res, fmt.Errorf("lock the listed dead letters: %w", err)
	}
	found := map[string]bool{}
	var discard []string
	for rows.Next() {
		var dl, state string
		if err := rows.Scan(&dl, &state); err != nil {
			rows.Close()
			return res, fmt.Errorf("lock the listed dead letters: %w", err)
		}
		found[dl] = true
		if slices.Contains(Discardable, state) {
			discard = append(discard, dl)
		} else {
			res.SkippedIDs = append(res.SkippedIDs, Skipped{ID: dl, State: state})
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return res, fmt.Errorf("lock the listed dead letters: %w", err)
	}
	for _, dl := range ids {
		if !found[dl] {
			res.NotFound = append(res.NotFound, dl)
		}
	}
	res.Matched, res.Skipped = len(discard), len(res.SkippedIDs)
	if req.DryRun || len(discard) == 0 {
		return res, nil
	}
	tag, err := tx.Exec(ctx, "UPDATE dead_letters SET state = 'discarded', state_changed_at = now(), discard_reason = $2, discarded_by = $3 "+
		"WHERE dead_letter_id = ANY($1)", discard, req.Reason, id.Name)
	if err != nil {
		return res, fmt.Errorf("discard: %w", err)
	}
	res.Discarded = int(tag.RowsAffected())
	return res, nil
}

// insertAudit records an action in the audit log (in the action's
// transaction, so either both happen or neither).
func insertAudit(ctx context.Context, q query.Querier, id auth.Identity, action string, target, detail any) (int64, error) {
	t, err := json.Marshal(target)
	if err != nil {
		return 0, fmt.Errorf("audit target: %w", err)
	}
	d, err := json.Marshal(detail)
	if err != nil {
		return 0, fmt.Errorf("audit detail: %w", err)
	}
	var aid int64
	if err := q.QueryRow(ctx, "INSERT INTO audit_log (actor, role, action, target, detail) VALUES ($1, $2, $3, $4, $5) RETURNING id",
		id.Name, string(id.Role), action, string(t), string(d)).Scan(&aid); err != nil {
		return 0, fmt.Errorf("audit log: %w", err)
	}
	return aid, nil
}

// RetentionResponse is the answer of POST /v1/retention.
type RetentionResponse struct {
	Result  any   `json:"result"`
	AuditID int64 `json:"audit_id"`
}

func (s *server) retention(w http.ResponseWriter, r *http.Request) {
	var body struct{}
	if !decodeBody(w, r, &body, true) {
		return
	}
	if s.cfg.Retention == nil {
		writeError(w, http.StatusServiceUnavailable, "unavailable", "the retention is not available in this process")
		return
	}
	ctx := r.Context()
	id := identity(r)
	result, runErr := s.cfg.Retention(ctx)
	detail := map[string]any{"result": result}
	if runErr != nil {
		detail = map[string]any{"error": runErr.Error()}
	}
	// The retention commits on its own; the audit row records who ran it
	// and how it ended, also when it failed.
	aid, err := insertAudit(context.WithoutCancel(ctx), s.cfg.Pool, id, "retention", map[string]any{}, detail)
	if err != nil {
		s.fail(w, r, "retention audit", err)
		return
	}
	if runErr != nil {
		s.fail(w, r, "retention", runErr)
		return
	}
	writeJSON(w, http.StatusOK, RetentionResponse{Result: result, AuditID: aid})
}
