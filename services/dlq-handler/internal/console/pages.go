package console

import (
	"bytes"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/ecomstream/platform/services/dlq-handler/internal/api"
	"github.com/ecomstream/platform/services/dlq-handler/internal/auth"
	"github.com/ecomstream/platform/services/dlq-handler/internal/query"
	"github.com/ecomstream/platform/services/dlq-handler/internal/replay"
)

// pageNames are the templates under templates/, each rendered inside
// layout.html.
var pageNames = []string{"login", "overview", "list", "detail", "confirm", "result", "jobs", "job", "error", "health"}

var funcs = template.FuncMap{
	"time": func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05Z") },
	"ptime": func(t *time.Time) string {
		if t == nil {
			return ""
		}
		return t.UTC().Format("2006-01-02 15:04:05Z")
	},
	"deref": func(s *string) string {
		if s == nil {
			return ""
		}
		return *s
	},
	"join": strings.Join,
	"age": func(sec float64) string {
		return (time.Duration(sec) * time.Second).Round(time.Second).String()
	},
	// list is the list page's URL filtered by key=value.
	"list": func(key, value string) string {
		return Prefix + "/dead-letters?" + url.Values{key: {value}}.Encode()
	},
	"detailURL": func(id string) string { return Prefix + "/dead-letters/" + url.PathEscape(id) },
	"jobURL":    func(id string) string { return Prefix + "/replay-jobs/" + url.PathEscape(id) },
	"dict": func(kv ...any) (map[string]any, error) {
		if len(kv)%2 != 0 {
			return nil, errors.New("dict: odd number of arguments")
		}
		m := map[string]any{}
		for i := 0; i < len(kv); i += 2 {
			k, ok := kv[i].(string)
			if !ok {
				return nil, errors.New("dict: keys must be strings")
			}
			m[k] = kv[i+1]
		}
		return m, nil
	},
}

func parsePages() (map[string]*template.Template, error) {
	layout, err := fs.ReadFile(templateFS, "templates/layout.html")
	if err != nil {
		return nil, err
	}
	pages := map[string]*template.Template{}
	for _, n := range pageNames {
		t, err := template.New("layout").Funcs(funcs).Funcs(healthFuncs).Parse(string(layout))
		if err != nil {
			return nil, fmt.Errorf("layout: %w", err)
		}
		if t, err = t.ParseFS(templateFS, "templates/"+n+".html"); err != nil {
			return nil, fmt.Errorf("%s: %w", n, err)
		}
		pages[n] = t
	}
	return pages, nil
}

// page is what layout.html renders; Data is the page's own.
type page struct {
	Title           string
	Nav             string // the active menu entry
	User            *user  // nil: not signed in
	ReplayAvailable bool
	Refresh         int // seconds; 0 = the page does not reload itself
	Data            any
}

type user struct {
	Name     string
	Role     string
	PII      bool
	Operator bool
	CSRF     string
}

func (s *server) render(w http.ResponseWriter, r *http.Request, status int, name string, p page) {
	if sess := current(r); sess != nil {
		p.User = &user{Name: sess.id.Name, Role: string(sess.id.Role), PII: sess.id.PII, Operator: sess.id.Can(auth.Operator), CSRF: sess.csrf}
	}
	p.ReplayAvailable = s.cfg.Replay != nil
	var buf bytes.Buffer
	if err := s.pages[name].ExecuteTemplate(&buf, "layout", p); err != nil {
		s.log.ErrorContext(r.Context(), "console template failed", "page", name, "err", err)
		http.Error(w, "the page could not be rendered; see the service log", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

func (s *server) errorPage(w http.ResponseWriter, r *http.Request, status int, msg string) {
	s.render(w, r, status, "error", page{Title: http.StatusText(status), Data: struct {
		Status  int
		Message string
	}{status, msg}})
}

// Overview windows: the last hours shown, in one-hour buckets.
var overviewHours = []int{6, 24, 72, 168}

type overviewData struct {
	Hours   int
	Choices []int
	Stats   query.Stats
}

func (s *server) overview(w http.ResponseWriter, r *http.Request) {
	hours := 24
	if h, err := strconv.Atoi(r.URL.Query().Get("hours")); err == nil && slices.Contains(overviewHours, h) {
		hours = h
	}
	st, err := s.cfg.Store.Stats(r.Context(), query.StatsRequest{Window: time.Hour, Buckets: hours}, s.cfg.Now())
	if err != nil {
		s.fail(w, r, "overview", err)
		return
	}
	s.render(w, r, http.StatusOK, "overview", page{Title: "Overview", Nav: "overview", Data: overviewData{Hours: hours, Choices: overviewHours, Stats: st}})
}

// filterKeys are the filter's form fields (the API's query parameters).
var filterKeys = []string{"stage", "entity", "code", "rule_id", "state", "from", "to", "q"}

// filterForm is a filter as the list's form shows it.
type filterForm struct {
	Stage, Entity, Code, RuleID, From, To, Q string
	State                                    map[string]bool
	States                                   []string
	Hidden                                   []field // the filter as hidden fields of the action forms
	Empty                                    bool
}

type field struct{ Name, Value string }

// datetime-local inputs send minutes without a zone; they are read as UTC.
const localLayout = "2006-01-02T15:04"

// readFilter reads the filter fields of v (a form or a query), ignoring
// empty ones; times may be RFC 3339 or datetime-local (UTC).
func readFilter(v url.Values) (query.Filter, filterForm, error) {
	clean := url.Values{}
	for _, k := range filterKeys {
		for _, x := range v[k] {
			x = strings.TrimSpace(x)
			if x == "" {
				continue
			}
			if k == "from" || k == "to" {
				if t, err := time.Parse(localLayout, x); err == nil {
					x = t.UTC().Format(time.RFC3339)
				}
			}
			clean.Add(k, x)
		}
	}
	f, err := query.ParseFilter(clean)
	ff := filterForm{Stage: strings.Join(f.Stage, ", "), Entity: strings.Join(f.Entity, ", "), Code: strings.Join(f.Code, ", "),
		RuleID: strings.Join(f.RuleID, ", "), Q: f.Q, State: map[string]bool{}, States: query.States, Empty: f.Empty()}
	if f.From != nil {
		ff.From = f.From.UTC().Format(localLayout)
	}
	if f.To != nil {
		ff.To = f.To.UTC().Format(localLayout)
	}
	for _, st := range f.State {
		ff.State[st] = true
	}
	for _, k := range filterKeys {
		for _, x := range clean[k] {
			ff.Hidden = append(ff.Hidden, field{k, x})
		}
	}
	return f, ff, err
}

type listData struct {
	Filter filterForm
	Error  string
	Items  []query.DeadLetter
	Next   string // the next page's URL; "" = the last page
}

func (s *server) list(w http.ResponseWriter, r *http.Request) {
	v := r.URL.Query()
	f, ff, err := readFilter(v)
	d := listData{Filter: ff}
	id := current(r).id
	if err == nil {
		f, err = api.Scope(f, id)
	}
	var qe *query.Error
	if errors.As(err, &qe) {
		d.Error = qe.Error()
		s.render(w, r, http.StatusBadRequest, "list", page{Title: "Dead letters", Nav: "list", Data: d})
		return
	}
	p := query.Page{Limit: query.DefaultLimit, Cursor: v.Get("cursor")}
	res, err := s.cfg.Store.List(r.Context(), f, p)
	if errors.As(err, &qe) {
		d.Error = qe.Error()
		s.render(w, r, http.StatusBadRequest, "list", page{Title: "Dead letters", Nav: "list", Data: d})
		return
	}
	if err != nil {
		s.fail(w, r, "list", err)
		return
	}
	for i := range res.Items {
		api.RedactMeta(&res.Items[i], id)
	}
	d.Items = res.Items
	if res.NextCursor != "" {
		next := url.Values{}
		for _, h := range ff.Hidden {
			next.Add(h.Name, h.Value)
		}
		next.Set("cursor", res.NextCursor)
		d.Next = Prefix + "/dead-letters?" + next.Encode()
	}
	s.render(w, r, http.StatusOK, "list", page{Title: "Dead letters", Nav: "list", Data: d})
}

type detailData struct {
	api.Detail
	Replayable  bool
	Discardable bool
}

func (s *server) detail(w http.ResponseWriter, r *http.Request) {
	rec, err := s.cfg.Store.Get(r.Context(), chi.URLParam(r, "id"))
	if errors.Is(err, query.ErrNotFound) {
		s.errorPage(w, r, http.StatusNotFound, "No dead letter with this id.")
		return
	}
	if err != nil {
		s.fail(w, r, "detail", err)
		return
	}
	d := api.Describe(r.Context(), s.cfg.Detail, rec, current(r).id)
	s.render(w, r, http.StatusOK, "detail", page{Title: "Dead letter", Nav: "list", Data: detailData{Detail: d,
		Replayable: slices.Contains(replay.Replayable, d.DeadLetter.State), Discardable: slices.Contains(api.Discardable, d.DeadLetter.State)}})
}

func (s *server) jobs(w http.ResponseWriter, r *http.Request) {
	var jobs []replay.Job
	if s.cfg.Replay != nil {
		var err error
		if jobs, err = s.cfg.Replay.Jobs(r.Context(), 50); err != nil {
			s.fail(w, r, "replay jobs", err)
			return
		}
	}
	for i := range jobs {
		api.RedactJob(&jobs[i], current(r).id)
	}
	s.render(w, r, http.StatusOK, "jobs", page{Title: "Replay jobs", Nav: "jobs", Data: jobs})
}

func (s *server) job(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Replay == nil {
		s.errorPage(w, r, http.StatusServiceUnavailable, "Replay is unavailable in this process.")
		return
	}
	j, err := s.cfg.Replay.Job(r.Context(), chi.URLParam(r, "id"))
	if err != nil {
		s.fail(w, r, "replay job", err)
		return
	}
	api.RedactJob(&j, current(r).id)
	s.render(w, r, http.StatusOK, "job", page{Title: "Replay job", Nav: "jobs", Data: j})
}

// action is a replay or discard as the confirmation and result pages show
// it: the dead letters it names (ids, or the filter's hidden fields) and
// the counts.
type action struct {
	Kind    string // replay or discard
	IDs     []string
	Filter  filterForm
	ByIDs   bool
	Reason  string
	Matched int // what the dry run counts (confirm) or what was done (result)
	Skipped int
	Skips   []api.Skipped
	Missing []string
	JobID   string
	AuditID *int64
	Done    int
}

// readAction reads the action form: kind, ids (repeated "id") or the filter.
func (s *server) readAction(r *http.Request) (action, *query.Filter, error) {
	a := action{Kind: r.PostFormValue("action"), Reason: strings.TrimSpace(r.PostFormValue("reason"))}
	if a.Kind != "replay" && a.Kind != "discard" {
		return a, nil, &query.Error{Param: "action", Msg: "want replay or discard"}
	}
	for _, id := range r.PostForm["id"] {
		if id = strings.TrimSpace(id); id != "" && !slices.Contains(a.IDs, id) {
			a.IDs = append(a.IDs, id)
		}
	}
	a.ByIDs = len(a.IDs) > 0
	f, ff, err := readFilter(r.PostForm)
	a.Filter = ff
	if err != nil {
		return a, nil, err
	}
	if a.ByIDs {
		if !ff.Empty {
			return a, nil, &query.Error{Param: "id", Msg: "give either dead letters or a filter"}
		}
		return a, nil, nil
	}
	return a, &f, nil
}

// run performs a (a dry run when dryRun) and fills in its counts.
func (s *server) run(r *http.Request, a *action, f *query.Filter, dryRun bool) error {
	who := current(r).id
	if f != nil {
		// As the list: no email search without the pii right, and a q
		// matches only what the caller may see (the dry run's counts
		// would confirm a hidden value otherwise).
		sf, err := api.Scope(*f, who)
		if err != nil {
			return err
		}
		f = &sf
	}
	if a.Kind == "replay" {
		if s.cfg.Replay == nil {
			return errReplayUnavailable
		}
		res, err := s.cfg.Replay.Replay(r.Context(), who, replay.Request{IDs: a.IDs, Filter: f, DryRun: dryRun})
		if err != nil {
			return err
		}
		a.Matched, a.Skipped, a.Missing, a.JobID, a.AuditID, a.Done = res.Matched, res.Skipped, res.NotFound, res.JobID, res.AuditID, res.Planned
		for _, sk := range res.SkippedIDs {
			a.Skips = append(a.Skips, api.Skipped{ID: sk.ID, State: sk.State})
		}
		return nil
	}
	reason := a.Reason
	if dryRun && reason == "" {
		reason = "(dry run)" // the reason is asked for on the confirmation page
	}
	res, err := s.cfg.Store.Discard(r.Context(), who, api.DiscardRequest{IDs: a.IDs, Filter: f, Reason: reason, DryRun: dryRun})
	if err != nil {
		return err
	}
	a.Matched, a.Skipped, a.Skips, a.Missing, a.AuditID, a.Done = res.Matched, res.Skipped, res.SkippedIDs, res.NotFound, res.AuditID, res.Discarded
	return nil
}

var errReplayUnavailable = errors.New("replay unavailable")

func (s *server) actionFailed(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, errReplayUnavailable) {
		s.errorPage(w, r, http.StatusServiceUnavailable, "Replay is unavailable in this process.")
		return
	}
	s.fail(w, r, "the action", err)
}

// confirm shows what the action would affect (a dry run) and asks to go on
// (and, for a discard, for the reason).
func (s *server) confirm(w http.ResponseWriter, r *http.Request) {
	a, f, err := s.readAction(r)
	if err == nil {
		err = s.run(r, &a, f, true)
	}
	if err != nil {
		s.actionFailed(w, r, err)
		return
	}
	s.render(w, r, http.StatusOK, "confirm", page{Title: "Confirm " + a.Kind, Nav: "list", Data: a})
}

// execute performs the confirmed action.
func (s *server) execute(w http.ResponseWriter, r *http.Request) {
	a, f, err := s.readAction(r)
	if err == nil && a.Kind == "discard" && a.Reason == "" {
		err = &query.Error{Param: "reason", Msg: "a reason is required"}
	}
	if err == nil {
		err = s.run(r, &a, f, false)
	}
	if err != nil {
		s.actionFailed(w, r, err)
		return
	}
	s.log.InfoContext(r.Context(), "console action", "action", a.Kind, "name", current(r).id.Name, "done", a.Done)
	s.render(w, r, http.StatusOK, "result", page{Title: strings.ToUpper(a.Kind[:1]) + a.Kind[1:] + " done", Nav: "list", Data: a})
}
