// Package query reads dlq-handler's store for the API and the console:
// filters over dead letters and their validation, keyset pagination newest
// first, counts over time windows, one dead letter, and the audit log. Every
// statement is parameterised; the filter's values never enter SQL text.
package query

import (
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// States of a dead letter (sql/postgres/dlq/0001_init.sql).
var States = []string{"new", "replayed", "discarded", "resolved", "failed_again"}

// Unresolved are the states that still need an operator.
var Unresolved = []string{"new", "replayed", "failed_again"}

// Limits of a request.
const (
	DefaultLimit = 50
	MaxLimit     = 500
	maxValues    = 100 // values of one filter parameter
	maxValueLen  = 200
	maxQLen      = 500
)

// Error is a request the query cannot serve: which parameter and why. The
// API answers it with 400.
type Error struct {
	Param string
	Msg   string
}

func (e *Error) Error() string { return e.Param + ": " + e.Msg }

func badf(param, format string, args ...any) error {
	return &Error{Param: param, Msg: fmt.Sprintf(format, args...)}
}

// Filter selects dead letters. Values of one field are alternatives (any of
// them matches), fields combine with AND; an empty field does not filter.
// From is inclusive and To exclusive, on failed_at. Q is free text searched
// in the reasons' messages (PostgreSQL websearch syntax: words, "phrases",
// or, -not).
type Filter struct {
	Stage  []string   `json:"stage,omitempty"`
	Entity []string   `json:"entity,omitempty"`
	Code   []string   `json:"code,omitempty"`
	RuleID []string   `json:"rule_id,omitempty"`
	State  []string   `json:"state,omitempty"`
	From   *time.Time `json:"from,omitempty"`
	To     *time.Time `json:"to,omitempty"`
	Q      string     `json:"q,omitempty"`
	// Redacted makes Q search the messages as a caller without the PII
	// right sees them (message_redacted, store.SearchMessage: email-like
	// strings, and quoted values of pii rows and of reasons on a personal
	// field, masked; its own GIN index), so a search cannot confirm a
	// hidden value. Set by the API and the console, never stored.
	Redacted bool `json:"-"`
}

// Empty reports whether f selects everything.
func (f Filter) Empty() bool {
	return len(f.Stage)+len(f.Entity)+len(f.Code)+len(f.RuleID)+len(f.State) == 0 &&
		f.From == nil && f.To == nil && strings.TrimSpace(f.Q) == ""
}

// Validate checks f's values; the error names the parameter.
func (f Filter) Validate() error {
	for _, l := range []struct {
		param string
		vs    []string
	}{{"stage", f.Stage}, {"entity", f.Entity}, {"code", f.Code}, {"rule_id", f.RuleID}, {"state", f.State}} {
		if len(l.vs) > maxValues {
			return badf(l.param, "at most %d values", maxValues)
		}
		for _, v := range l.vs {
			if v == "" || len(v) > maxValueLen {
				return badf(l.param, "values must be 1 to %d characters", maxValueLen)
			}
		}
	}
	for _, s := range f.State {
		if !slices.Contains(States, s) {
			return badf("state", "%q is not a state (want one of %s)", s, strings.Join(States, ", "))
		}
	}
	if f.From != nil && f.To != nil && !f.From.Before(*f.To) {
		return badf("to", "must be after from")
	}
	if len(f.Q) > maxQLen {
		return badf("q", "at most %d characters", maxQLen)
	}
	return nil
}

// filterParams are the query parameters of a Filter.
var filterParams = []string{"stage", "entity", "code", "rule_id", "state", "from", "to", "q"}

// ParseFilter reads a Filter from query parameters; a parameter may repeat
// or hold comma-separated values. Parameters outside filterParams and extra
// are an error (a typo must not silently widen a filter).
func ParseFilter(v url.Values, extra ...string) (Filter, error) {
	var f Filter
	for k := range v {
		if !slices.Contains(filterParams, k) && !slices.Contains(extra, k) {
			return f, badf(k, "unknown parameter (want %s)", strings.Join(append(slices.Clone(filterParams), extra...), ", "))
		}
	}
	f.Stage = list(v, "stage")
	f.Entity = list(v, "entity")
	f.Code = list(v, "code")
	f.RuleID = list(v, "rule_id")
	f.State = list(v, "state")
	var err error
	if f.From, err = timeParam(v, "from"); err != nil {
		return f, err
	}
	if f.To, err = timeParam(v, "to"); err != nil {
		return f, err
	}
	if qs := v["q"]; len(qs) > 1 {
		return f, badf("q", "give it once")
	}
	f.Q = strings.TrimSpace(v.Get("q"))
	return f, f.Validate()
}

func list(v url.Values, k string) []string {
	var out []string
	for _, s := range v[k] {
		for _, p := range strings.Split(s, ",") {
			if p = strings.TrimSpace(p); p != "" && !slices.Contains(out, p) {
				out = append(out, p)
			}
		}
	}
	return out
}

func timeParam(v url.Values, k string) (*time.Time, error) {
	s := v.Get(k)
	if s == "" {
		return nil, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return nil, badf(k, "want an RFC 3339 time such as 2026-01-02T15:04:05Z, got %q", s)
	}
	return &t, nil
}

// Page is where a page starts and how long it is.
type Page struct {
	Limit  int
	Cursor string // from the previous page's NextCursor; "" = the first page
}

// ParsePage reads limit (default DefaultLimit, 1..MaxLimit) and cursor.
func ParsePage(v url.Values) (Page, error) {
	p := Page{Limit: DefaultLimit, Cursor: v.Get("cursor")}
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > MaxLimit {
			return p, badf("limit", "want a number from 1 to %d, got %q", MaxLimit, s)
		}
		p.Limit = n
	}
	return p, nil
}

// where builds a WHERE clause with numbered parameters.
type where struct {
	conds []string
	args  []any
}

func (w *where) arg(v any) string {
	w.args = append(w.args, v)
	return "$" + strconv.Itoa(len(w.args))
}

func (w *where) add(format string, vs ...any) {
	ps := make([]any, len(vs))
	for i, v := range vs {
		ps[i] = w.arg(v)
	}
	w.conds = append(w.conds, fmt.Sprintf(format, ps...))
}

func (w *where) sql() string {
	if len(w.conds) == 0 {
		return "TRUE"
	}
	return strings.Join(w.conds, " AND ")
}

// apply adds f's conditions on dead_letters.
func (f Filter) apply(w *where) {
	if len(f.Stage) > 0 {
		w.add("stage = ANY(%s)", f.Stage)
	}
	if len(f.Entity) > 0 {
		w.add("entity = ANY(%s)", f.Entity)
	}
	if len(f.Code) > 0 {
		w.add("codes && %s::text[]", f.Code)
	}
	if len(f.RuleID) > 0 {
		w.add("rule_ids && %s::text[]", f.RuleID)
	}
	if len(f.State) > 0 {
		w.add("state = ANY(%s)", f.State)
	}
	if f.From != nil {
		w.add("failed_at >= %s", *f.From)
	}
	if f.To != nil {
		w.add("failed_at < %s", *f.To)
	}
	if q := strings.TrimSpace(f.Q); q != "" && f.Redacted {
		w.add("message_redacted_tsv @@ websearch_to_tsquery('simple', %s)", q)
	} else if q != "" {
		w.add("message_tsv @@ websearch_to_tsquery('simple', %s)", q)
	}
}

// Where returns f as a condition on dead_letters whose parameters start at
// $(len(args)+1), and the arguments extended with f's: for statements
// that act on a filter's rows (discard, replay).
func (f Filter) Where(args []any) (string, []any) {
	w := where{args: args}
	f.apply(&w)
	return w.sql(), w.args
}
