package query

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// AuditFilter selects audit entries: any of the actors, any of the actions,
// at in [From, To).
type AuditFilter struct {
	Actor  []string   `json:"actor,omitempty"`
	Action []string   `json:"action,omitempty"`
	From   *time.Time `json:"from,omitempty"`
	To     *time.Time `json:"to,omitempty"`
}

// AuditEntry is one row of the audit log.
type AuditEntry struct {
	ID     int64           `json:"id"`
	At     time.Time       `json:"at"`
	Actor  string          `json:"actor"`
	Role   string          `json:"role"`
	Action string          `json:"action"`
	Target json.RawMessage `json:"target"`
	Detail json.RawMessage `json:"detail"`
}

// AuditResult is one page of the audit log, newest first.
type AuditResult struct {
	Items      []AuditEntry `json:"items"`
	NextCursor string       `json:"next_cursor,omitempty"`
}

// ParseAudit reads actor, action, from, to, limit and cursor.
func ParseAudit(v url.Values) (AuditFilter, Page, error) {
	var f AuditFilter
	allowed := []string{"actor", "action", "from", "to", "limit", "cursor"}
	for k := range v {
		if !slices.Contains(allowed, k) {
			return f, Page{}, badf(k, "unknown parameter (want %s)", strings.Join(allowed, ", "))
		}
	}
	f.Actor, f.Action = list(v, "actor"), list(v, "action")
	for _, l := range []struct {
		param string
		vs    []string
	}{{"actor", f.Actor}, {"action", f.Action}} {
		if len(l.vs) > maxValues {
			return f, Page{}, badf(l.param, "at most %d values", maxValues)
		}
		for _, s := range l.vs {
			if len(s) > maxValueLen {
				return f, Page{}, badf(l.param, "values must be 1 to %d characters", maxValueLen)
			}
		}
	}
	var err error
	if f.From, err = timeParam(v, "from"); err != nil {
		return f, Page{}, err
	}
	if f.To, err = timeParam(v, "to"); err != nil {
		return f, Page{}, err
	}
	if f.From != nil && f.To != nil && !f.From.Before(*f.To) {
		return f, Page{}, badf("to", "must be after from")
	}
	p, err := ParsePage(v)
	return f, p, err
}

// ListAudit returns a page of the audit log matching f, newest first by
// (at, id).
func ListAudit(ctx context.Context, q Querier, f AuditFilter, p Page) (AuditResult, error) {
	res := AuditResult{Items: []AuditEntry{}}
	w := where{}
	if len(f.Actor) > 0 {
		w.add("actor = ANY(%s)", f.Actor)
	}
	if len(f.Action) > 0 {
		w.add("action = ANY(%s)", f.Action)
	}
	if f.From != nil {
		w.add("at >= %s", *f.From)
	}
	if f.To != nil {
		w.add("at < %s", *f.To)
	}
	if p.Cursor != "" {
		c, err := decodeCursor("a", p.Cursor, f)
		if err != nil {
			return res, err
		}
		id, err := strconv.ParseInt(c.key, 10, 64)
		if err != nil {
			return res, badf("cursor", "not a cursor of this list")
		}
		w.add("(at, id) < (%s, %s)", c.at, id)
	}
	limit := min(max(p.Limit, 1), MaxLimit)
	rows, err := q.Query(ctx, "SELECT id, at, actor, role, action, target, detail FROM audit_log WHERE "+w.sql()+
		" ORDER BY at DESC, id DESC LIMIT "+w.arg(limit+1), w.args...)
	if err != nil {
		return res, fmt.Errorf("list audit log: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var e AuditEntry
		var target, detail []byte
		if err := rows.Scan(&e.ID, &e.At, &e.Actor, &e.Role, &e.Action, &target, &detail); err != nil {
			return res, fmt.Errorf("list audit log: %w", err)
		}
		e.At, e.Target, e.Detail = e.At.UTC(), target, detail
		res.Items = append(res.Items, e)
	}
	if err := rows.Err(); err != nil {
		return res, fmt.Errorf("list audit log: %w", err)
	}
	if len(res.Items) > limit {
		res.Items = res.Items[:limit]
		last := res.Items[limit-1]
		res.NextCursor = encodeCursor("a", cursor{at: last.At, key: strconv.FormatInt(last.ID, 10)}, f)
	}
	return res, nil
}
