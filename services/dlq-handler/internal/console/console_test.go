package console

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ecomstream/platform/services/dlq-handler/internal/api"
	"github.com/ecomstream/platform/services/dlq-handler/internal/auth"
	"github.com/ecomstream/platform/services/dlq-handler/internal/query"
	"github.com/ecomstream/platform/services/dlq-handler/internal/replay"
)

const (
	operatorToken = "operator-token-0123456789"
	viewerToken   = "viewer-token-0123456789"
	piiToken      = "pii-viewer-token-0123456789"
)

// fakeTokens is a token table that tests can change.
type fakeTokens struct {
	mu sync.Mutex
	m  map[string]auth.Identity
}

func newTokens() *fakeTokens {
	return &fakeTokens{m: map[string]auth.Identity{
		operatorToken: {Name: "olga", Role: auth.Operator},
		viewerToken:   {Name: "victor", Role: auth.Viewer},
		piiToken:      {Name: "petra", Role: auth.Viewer, PII: true},
	}}
}

func (f *fakeTokens) Lookup(tok string) (auth.Identity, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	id, ok := f.m[tok]
	return id, ok
}

func (f *fakeTokens) revoke(tok string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.m, tok)
}

// fakeStore serves fixed records and records the discards asked for.
type fakeStore struct {
	mu       sync.Mutex
	recs     map[string]query.Record
	stats    query.Stats
	discards []api.DiscardRequest
	answer   api.DiscardResponse
}

func (f *fakeStore) List(_ context.Context, fl query.Filter, p query.Page) (query.ListResult, error) {
	res := query.ListResult{Items: []query.DeadLetter{}}
	for _, id := range []string{"dl-1", "dl-pii"} {
		if r, ok := f.recs[id]; ok && (len(fl.RuleID) == 0 || strings.Contains(strings.Join(r.RuleIDs, ","), fl.RuleID[0])) {
			d := r.DeadLetter
			d.Reasons = slices.Clone(d.Reasons) // a store answers fresh values; the caller may redact them
			res.Items = append(res.Items, d)
		}
	}
	if p.Cursor == "" && len(res.Items) > 0 {
		res.NextCursor = "c2"
	}
	return res, nil
}

func (f *fakeStore) Get(_ context.Context, id string) (query.Record, error) {
	r, ok := f.recs[id]
	if !ok {
		return r, query.ErrNotFound
	}
	return r, nil
}

func (f *fakeStore) Stats(context.Context, query.StatsRequest, time.Time) (query.Stats, error) {
	return f.stats, nil
}

func (f *fakeStore) Discard(_ context.Context, _ auth.Identity, req api.DiscardRequest) (api.DiscardResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if strings.TrimSpace(req.Reason) == "" {
		return api.DiscardResponse{}, &query.Error{Param: "reason", Msg: "a reason is required"}
	}
	f.discards = append(f.discards, req)
	res := f.answer
	res.DryRun = req.DryRun
	if !req.DryRun {
		res.Discarded = res.Matched
	}
	return res, nil
}

// fakeReplayer records the replays asked for.
type fakeReplayer struct {
	mu   sync.Mutex
	reqs []replay.Request
}

func (f *fakeReplayer) Replay(_ context.Context, _ auth.Identity, req replay.Request) (replay.Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reqs = append(f.reqs, req)
	res := replay.Result{DryRun: req.DryRun, Matched: 2, Skipped: 1}
	if !req.DryRun {
		res.Planned, res.JobID = 2, "job-7"
	}
	return res, nil
}

func (f *fakeReplayer) Job(_ context.Context, id string) (replay.Job, error) {
	return replay.Job{ID: id, RequestedBy: "olga", State: "running", Total: 2, Sent: 1, Outcomes: map[string]int{"sent": 1, "pending": 1}}, nil
}

func (f *fakeReplayer) Jobs(context.Context, int) ([]replay.Job, error) {
	return []replay.Job{{ID: "job-7", RequestedBy: "olga", State: "succeeded", Total: 2, Sent: 2}}, nil
}

func record(id string, pii bool, value string, state string) query.Record {
	entity, rule, trace := "order", "order.total_positive", "4bf92f3577b34da6a3ce929d0e0e4736"
	if pii {
		entity = "customer_change"
	}
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	return query.Record{DeadLetter: query.DeadLetter{ID: id, Stage: "validator", Entity: &entity, SourceTopic: "ecom.orders.v2",
		SourceTimestamp: now, Reasons: []query.Reason{{Code: "RULE_FAILED", RuleID: &rule, Message: "total must be positive for ann@example.com"}},
		Codes: []string{"RULE_FAILED"}, RuleIDs: []string{rule}, Message: "total must be positive for ann@example.com", Attempt: 1,
		TraceID: &trace, FailedAt: now, StoredAt: now, PII: pii, State: state, StateChangedAt: now},
		Key: []byte("k-1"), Value: []byte(value), Headers: []query.Header{{Key: "source", Value: []byte("storefront")}}}
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type env struct {
	t      *testing.T
	srv    *httptest.Server
	store  *fakeStore
	tokens *fakeTokens
	clock  *clock
	rep    *fakeReplayer
}

func newEnv(t *testing.T, withReplay bool, mod ...func(*Config)) *env {
	t.Helper()
	e := &env{t: t, tokens: newTokens(), clock: &clock{t: time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)},
		store: &fakeStore{recs: map[string]query.Record{
			"dl-1":   record("dl-1", false, `{"order_id":"o-1","total":-5}`, "new"),
			"dl-pii": record("dl-pii", true, `{"customer_id":"c-1","email":"ann@example.com","name":"Ann Lee","city":"Lyon"}`, "new"),
			"dl-old": record("dl-old", false, `{}`, "discarded"),
		}, answer: api.DiscardResponse{Matched: 3, Skipped: 1}}}
	cfg := Config{Store: e.store, Tokens: e.tokens, Now: e.clock.now, Detail: api.Config{TraceURLTemplate: "http://jaeger.local/trace/{trace_id}"}}
	if withReplay {
		e.rep = &fakeReplayer{}
		cfg.Replay = e.rep
	}
	for _, m := range mod {
		m(&cfg)
	}
	e.srv = httptest.NewServer(New(cfg))
	t.Cleanup(e.srv.Close)
	return e
}

// browser is a cookie-keeping client that does not follow redirects.
type browser struct {
	e    *env
	c    *http.Client
	csrf string
}

func (e *env) browser() *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{e: e, c: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func (b *browser) do(method, path string, form url.Values, hdr ...string) (*http.Response, string) {
	b.e.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, b.e.srv.URL+path, body)
	if err != nil {
		b.e.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := b.c.Do(req)
	if err != nil {
		b.e.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if m := csrfRE.FindStringSubmatch(string(raw)); m != nil {
		b.csrf = m[1]
	}
	return resp, string(raw)
}

func (b *browser) get(path string) (int, string) {
	b.e.t.Helper()
	resp, body := b.do(http.MethodGet, path, nil)
	return resp.StatusCode, body
}

func (b *browser) post(path string, form url.Values) (int, string) {
	b.e.t.Helper()
	if form.Get("csrf") == "" {
		form.Set("csrf", b.csrf)
	}
	resp, body := b.do(http.MethodPost, path, form)
	return resp.StatusCode, body
}

// login signs in with token and fails the test unless it worked.
func (b *browser) login(token string) {
	b.e.t.Helper()
	b.get("/console/login")
	resp, body := b.do(http.MethodPost, "/console/login", url.Values{"csrf": {b.csrf}, "token": {token}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/console/" {
		b.e.t.Fatalf("login: %d %s\n%s", resp.StatusCode, resp.Header.Get("Location"), body)
	}
	if st, body := b.get("/console/"); st != http.StatusOK {
		b.e.t.Fatalf("overview after login: %d\n%s", st, body)
	}
}

func TestLoginLogoutExpiry(t *testing.T) {
	e := newEnv(t, false)
	b := e.browser()
	if resp, _ := b.do(http.MethodGet, "/console/", nil); resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/console/login" {
		t.Fatalf("unauthenticated overview: %d %s, want a redirect to the login", resp.StatusCode, resp.Header.Get("Location"))
	}
	tests := []struct {
		name       string
		form       url.Values
		wantStatus int
	}{
		{"unknown token", url.Values{"token": {"not-a-token-at-all"}}, http.StatusUnauthorized},
		{"empty token", url.Values{"token": {""}}, http.StatusUnauthorized},
		{"no login csrf", url.Values{"token": {operatorToken}, "csrf": {"forged"}}, http.StatusForbidden},
	}
	for _, tt := range tests {
		b.get("/console/login")
		if st, _ := b.post("/console/login", tt.form); st != tt.wantStatus {
			t.Errorf("%s: login = %d, want %d", tt.name, st, tt.wantStatus)
		}
	}
	b.get("/console/login")
	resp, _ := b.do(http.MethodPost, "/console/login", url.Values{"csrf": {b.csrf}, "token": {operatorToken}})
	var sc *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == sessionCookie && c.Value != "" {
			sc = c
		}
	}
	if sc == nil || !sc.HttpOnly || sc.SameSite != http.SameSiteStrictMode || sc.Secure || len(sc.Value) < 40 {
		t.Fatalf("session cookie %+v: want a long random, HttpOnly, SameSite=Strict one (not Secure over http)", sc)
	}
	if st, body := b.get("/console/"); st != http.StatusOK || !strings.Contains(body, "olga (operator)") {
		t.Fatalf("overview: %d, want it signed in as olga\n%s", st, body)
	}
	if st, _ := b.post("/console/logout", url.Values{}); st != http.StatusSeeOther {
		t.Fatalf("logout = %d", st)
	}
	// The old cookie no longer opens a session, even when replayed.
	old := e.browser()
	u, _ := url.Parse(e.srv.URL + "/console/")
	old.c.Jar.SetCookies(u, []*http.Cookie{{Name: sessionCookie, Value: sc.Value, Path: "/console/"}})
	if st, _ := old.get("/console/"); st != http.StatusSeeOther {
		t.Fatalf("after logout the session still opens pages: %d", st)
	}

	b.login(viewerToken)
	e.clock.add(DefaultSessionTTL - time.Minute)
	if st, _ := b.get("/console/"); st != http.StatusOK {
		t.Fatalf("before expiry: %d", st)
	}
	e.clock.add(time.Minute)
	if st, _ := b.get("/console/"); st != http.StatusSeeOther {
		t.Fatalf("after expiry: %d, want a redirect to the login", st)
	}

	// A token removed from the tokens file ends its sessions.
	b.login(piiToken)
	e.tokens.revoke(piiToken)
	if st, _ := b.get("/console/"); st != http.StatusSeeOther {
		t.Fatalf("revoked token: %d, want a redirect to the login", st)
	}
}

func TestSecureCookieOverTLS(t *testing.T) {
	s := New(Config{Store: &fakeStore{}, Tokens: newTokens()})
	w := httptest.NewRecorder()
	r := httptest.NewRequest(http.MethodGet, "https://dlq.example/console/login", nil)
	r.TLS = &tls.ConnectionState{}
	s.ServeHTTP(w, r)
	cs := w.Result().Cookies()
	if len(cs) != 1 || !cs[0].Secure || !cs[0].HttpOnly || cs[0].SameSite != http.SameSiteStrictMode {
		t.Fatalf("cookies over TLS: %+v, want one Secure, HttpOnly, SameSite=Strict", cs)
	}
}

func TestSessionCap(t *testing.T) {
	e := newEnv(t, false, func(c *Config) { c.MaxSessions = 2 })
	bs := []*browser{e.browser(), e.browser(), e.browser()}
	for i, b := range bs {
		b.login(operatorToken)
		e.clock.add(time.Second * time.Duration(i+1))
	}
	want := []int{http.StatusSeeOther, http.StatusOK, http.StatusOK} // the oldest made room
	for i, b := range bs {
		if st, _ := b.get("/console/"); st != want[i] {
			t.Errorf("session %d: %d, want %d", i, st, want[i])
		}
	}
}

func TestSessionsExpireAndEvict(t *testing.T) {
	c := &clock{t: time.Unix(0, 0)}
	ss := newSessions(time.Hour, 2, c.now)
	a := ss.create("t", auth.Identity{Name: "a"})
	c.add(time.Minute)
	b := ss.create("t", auth.Identity{Name: "b"})
	c.add(59 * time.Minute) // a expired, b not
	d := ss.create("t", auth.Identity{Name: "d"})
	if _, ok := ss.get(a.sid); ok {
		t.Error("an expired session is still there")
	}
	if _, ok := ss.get(b.sid); !ok {
		t.Error("a live session was evicted while an expired one could go")
	}
	if _, ok := ss.get(d.sid); !ok || ss.len() != 2 {
		t.Errorf("new session missing or %d sessions, want 2", ss.len())
	}
	if a.sid == b.sid || a.csrf == b.csrf || a.sid == a.csrf {
		t.Error("session ids and CSRF tokens must be distinct random values")
	}
}

func TestCSRFRefused(t *testing.T) {
	e := newEnv(t, true)
	b := e.browser()
	b.login(operatorToken)
	b.get("/console/dead-letters/dl-1")
	good := b.csrf
	tests := []struct {
		name   string
		csrf   string
		header []string
		want   int
	}{
		{"no token", "", nil, http.StatusForbidden},
		{"wrong token", good + "x", nil, http.StatusForbidden},
		{"other site's origin", good, []string{"Origin", "https://evil.example"}, http.StatusForbidden},
		{"opaque origin", good, []string{"Origin", "null"}, http.StatusForbidden},
		{"other site's referer", good, []string{"Referer", "https://evil.example/page"}, http.StatusForbidden},
		{"good token", good, nil, http.StatusOK},
		{"good token, same origin", good, []string{"Origin", e.srv.URL}, http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			form := url.Values{"action": {"discard"}, "id": {"dl-1"}}
			if tt.csrf != "" {
				form.Set("csrf", tt.csrf)
			} else {
				form.Set("csrf", "")
			}
			resp, body := b.do(http.MethodPost, "/console/confirm", form, tt.header...)
			if resp.StatusCode != tt.want {
				t.Fatalf("confirm = %d, want %d\n%s", resp.StatusCode, tt.want, body)
			}
		})
	}
	// Logging out needs the token too.
	resp, _ := b.do(http.MethodPost, "/console/logout", url.Values{"csrf": {"forged"}})
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("logout without the token = %d, want 403", resp.StatusCode)
	}
	e.store.mu.Lock()
	defer e.store.mu.Unlock()
	if len(e.store.discards) != 2 {
		t.Fatalf("%d discards reached the store, want the 2 accepted (dry runs)", len(e.store.discards))
	}
}

func TestRoles(t *testing.T) {
	e := newEnv(t, true)
	tests := []struct {
		token       string
		wantButtons bool
		wantPost    int
	}{
		{viewerToken, false, http.StatusForbidden},
		{piiToken, false, http.StatusForbidden},
		{operatorToken, true, http.StatusOK},
	}
	for _, tt := range tests {
		b := e.browser()
		b.login(tt.token)
		_, detail := b.get("/console/dead-letters/dl-1")
		_, list := b.get("/console/dead-letters?rule_id=order.total_positive")
		for name, body := range map[string]string{"detail": detail, "list": list} {
			has := strings.Contains(body, `action="/console/confirm"`)
			if has != tt.wantButtons {
				t.Errorf("%s: %s shows action buttons %v, want %v", tt.token, name, has, tt.wantButtons)
			}
		}
		for _, kind := range []string{"discard", "replay"} {
			for _, path := range []string{"/console/confirm", "/console/execute"} {
				if st, _ := b.post(path, url.Values{"action": {kind}, "id": {"dl-1"}, "reason": {"because"}}); st != tt.wantPost {
					t.Errorf("%s: %s %s = %d, want %d", tt.token, kind, path, st, tt.wantPost)
				}
			}
		}
	}
}

func TestRedaction(t *testing.T) {
	e := newEnv(t, false)
	tests := []struct {
		token    string
		wantPII  bool
		wantMask bool
	}{
		{viewerToken, false, true},
		{operatorToken, false, true},
		{piiToken, true, false},
	}
	for _, tt := range tests {
		b := e.browser()
		b.login(tt.token)
		st, detail := b.get("/console/dead-letters/dl-pii")
		if st != http.StatusOK {
			t.Fatalf("detail: %d", st)
		}
		_, list := b.get("/console/dead-letters")
		for name, body := range map[string]string{"detail": detail, "list": list} {
			if got := strings.Contains(body, "ann@example.com"); got != tt.wantPII {
				t.Errorf("%s: %s shows the email %v, want %v", tt.token, name, got, tt.wantPII)
			}
			if got := strings.Contains(body, "[redacted]"); got != tt.wantMask {
				t.Errorf("%s: %s shows [redacted] %v, want %v\n%s", tt.token, name, got, tt.wantMask, body)
			}
		}
		if got := strings.Contains(detail, "Ann Lee") || strings.Contains(detail, "Lyon"); got != tt.wantPII {
			t.Errorf("%s: detail shows the name/city %v, want %v", tt.token, got, tt.wantPII)
		}
		if !strings.Contains(detail, "c-1") {
			t.Errorf("%s: detail lost the non-personal fields", tt.token)
		}
		if st, body := b.get("/console/dead-letters?q=ann@example.com"); (st == http.StatusBadRequest) == tt.wantPII {
			t.Errorf("%s: search for an email = %d\n%s", tt.token, st, body)
		}
	}
}

func TestConfirmCounts(t *testing.T) {
	e := newEnv(t, true)
	b := e.browser()
	b.login(operatorToken)

	// Discard by filter: the dry run's counts, then the reason is required.
	st, body := b.post("/console/confirm", url.Values{"action": {"discard"}, "rule_id": {"order.total_positive"}, "stage": {"validator"}})
	if st != http.StatusOK || !strings.Contains(body, `data-matched="3"`) || !strings.Contains(body, "<strong>3</strong>") ||
		!strings.Contains(body, `data-skipped="1"`) || !strings.Contains(body, `name="reason"`) || !strings.Contains(body, "Discard 3") {
		t.Fatalf("discard confirmation: %d\n%s", st, body)
	}
	if st, body := b.post("/console/execute", url.Values{"action": {"discard"}, "rule_id": {"order.total_positive"}, "stage": {"validator"}}); st != http.StatusBadRequest || !strings.Contains(body, "reason") {
		t.Fatalf("discard without a reason: %d\n%s", st, body)
	}
	if st, body := b.post("/console/execute", url.Values{"action": {"discard"}, "rule_id": {"order.total_positive"}, "stage": {"validator"}, "reason": {"  rule fixed upstream "}}); st != http.StatusOK || !strings.Contains(body, `data-done="3"`) {
		t.Fatalf("discard: %d\n%s", st, body)
	}
	e.store.mu.Lock()
	got := e.store.discards
	e.store.mu.Unlock()
	if len(got) != 2 || !got[0].DryRun || got[1].DryRun || got[1].Reason != "rule fixed upstream" ||
		got[1].Filter == nil || got[1].Filter.RuleID[0] != "order.total_positive" || got[1].Filter.Stage[0] != "validator" || len(got[1].IDs) != 0 {
		t.Fatalf("discards asked of the store: %+v", got)
	}

	// Replay of one dead letter.
	st, body = b.post("/console/confirm", url.Values{"action": {"replay"}, "id": {"dl-1"}})
	if st != http.StatusOK || !strings.Contains(body, `data-matched="2"`) || !strings.Contains(body, "Replay 2") || strings.Contains(body, `name="reason"`) {
		t.Fatalf("replay confirmation: %d\n%s", st, body)
	}
	if st, body := b.post("/console/execute", url.Values{"action": {"replay"}, "id": {"dl-1"}}); st != http.StatusOK || !strings.Contains(body, "job-7") {
		t.Fatalf("replay: %d\n%s", st, body)
	}
	e.rep.mu.Lock()
	reqs := e.rep.reqs
	e.rep.mu.Unlock()
	if len(reqs) != 2 || !reqs[0].DryRun || reqs[1].DryRun || len(reqs[1].IDs) != 1 || reqs[1].IDs[0] != "dl-1" || reqs[1].Filter != nil {
		t.Fatalf("replays asked: %+v", reqs)
	}

	// Bad requests are the caller's: both ids and a filter, an unknown action.
	for _, form := range []url.Values{
		{"action": {"discard"}, "id": {"dl-1"}, "stage": {"validator"}},
		{"action": {"delete"}, "id": {"dl-1"}},
		{"action": {"discard"}, "state": {"gone"}},
	} {
		if st, _ := b.post("/console/confirm", form); st != http.StatusBadRequest {
			t.Errorf("%v: %d, want 400", form, st)
		}
	}
}

func TestReplayUnavailable(t *testing.T) {
	e := newEnv(t, false)
	b := e.browser()
	b.login(operatorToken)
	_, detail := b.get("/console/dead-letters/dl-1")
	if !strings.Contains(detail, `id="replay-unavailable"`) || strings.Contains(detail, `id="replay"`) || !strings.Contains(detail, `id="discard"`) {
		t.Fatalf("detail without a replay engine:\n%s", detail)
	}
	if st, _ := b.post("/console/confirm", url.Values{"action": {"replay"}, "id": {"dl-1"}}); st != http.StatusServiceUnavailable {
		t.Fatalf("replay without an engine = %d, want 503", st)
	}
	if st, body := b.get("/console/replay-jobs"); st != http.StatusOK || !strings.Contains(body, "unavailable") {
		t.Fatalf("jobs page: %d\n%s", st, body)
	}
}

func TestSecureHeaders(t *testing.T) {
	e := newEnv(t, false)
	b := e.browser()
	for _, path := range []string{"/console/login", "/console/", "/console/static/console.css", "/console/nope"} {
		resp, _ := b.do(http.MethodGet, path, nil)
		h := resp.Header
		if !strings.Contains(h.Get("Content-Security-Policy"), "default-src 'self'") || !strings.Contains(h.Get("Content-Security-Policy"), "frame-ancestors 'none'") ||
			h.Get("X-Content-Type-Options") != "nosniff" || h.Get("Referrer-Policy") == "" || h.Get("Cache-Control") != "no-store" {
			t.Errorf("%s: headers %v", path, h)
		}
	}
	resp, body := b.do(http.MethodGet, "/console/static/console.css", nil)
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/css") || !strings.Contains(body, "@media") {
		t.Fatalf("stylesheet: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
}

func TestListPaging(t *testing.T) {
	e := newEnv(t, false)
	b := e.browser()
	b.login(viewerToken)
	st, body := b.get("/console/dead-letters?rule_id=order.total_positive&state=new&from=2026-11-30T10:00")
	if st != http.StatusOK || !strings.Contains(body, `data-id="dl-1"`) {
		t.Fatalf("list: %d\n%s", st, body)
	}
	want := `href="/console/dead-letters?cursor=c2&amp;from=2026-11-30T10%3A00%3A00Z&amp;rule_id=order.total_positive&amp;state=new"`
	if !strings.Contains(body, want) {
		t.Fatalf("next page link missing (%s)\n%s", want, body)
	}
	if !strings.Contains(body, `value="2026-11-30T10:00"`) || !strings.Contains(body, `value="new" checked`) {
		t.Fatalf("the form does not keep the filter\n%s", body)
	}
	if st, body := b.get("/console/dead-letters?state=gone"); st != http.StatusBadRequest || !strings.Contains(body, `id="filter-error"`) {
		t.Fatalf("bad filter: %d\n%s", st, body)
	}
}

// TestTemplatesRender: every page renders, for empty and for full data.
func TestTemplatesRender(t *testing.T) {
	pages, err := parsePages()
	if err != nil {
		t.Fatal(err)
	}
	srv := &server{cfg: Config{Replay: &fakeReplayer{}}, log: slog.New(slog.DiscardHandler), pages: pages}
	full := record("dl-pii", true, `{"email":"ann@example.com"}`, "discarded")
	reason, by, purged := "dup", "olga", time.Now()
	full.DiscardReason, full.DiscardedBy, full.PIIPurgedAt = &reason, &by, &purged
	replayOf := "dl-0"
	full.ReplayOf = &replayOf
	_, ffull, _ := readFilter(url.Values{"stage": {"validator"}, "state": {"new", "failed_again"}, "from": {"2026-11-30T10:00"}, "q": {"total"}})
	_, fempty, _ := readFilter(url.Values{})
	fin := time.Now()
	stats := query.Stats{Total: 3, ByStage: []query.Series{{Key: "validator", Total: 3}}, ByCode: []query.Series{{Key: "RULE_FAILED", Total: 3}},
		ByRule: []query.Series{{Key: "order.total_positive", Total: 2}}, ByState: map[string]int{"new": 2, "discarded": 1},
		Oldest: &query.Oldest{ID: "dl-1", FailedAt: time.Now(), AgeSeconds: 3600}}
	sess := &session{id: auth.Identity{Name: "olga", Role: auth.Operator}, csrf: "tok"}
	tests := []struct {
		page string
		data []any
	}{
		{"login", []any{loginData{}, loginData{CSRF: "x", Error: "no"}}},
		{"overview", []any{overviewData{Choices: overviewHours}, overviewData{Hours: 24, Choices: overviewHours, Stats: stats}}},
		{"list", []any{listData{Filter: fempty}, listData{Filter: ffull, Items: []query.DeadLetter{full.DeadLetter}, Next: "/console/dead-letters?cursor=x"}, listData{Filter: ffull, Error: "state: bad"}}},
		{"detail", []any{detailData{}, detailData{Detail: api.Describe(context.Background(), api.Config{TraceURLTemplate: "http://j/{trace_id}"}, full, sess.id), Replayable: true, Discardable: true}}},
		{"confirm", []any{action{Kind: "discard"}, action{Kind: "replay", IDs: []string{"a", "b"}, ByIDs: true, Matched: 1, Skipped: 1, Skips: []api.Skipped{{ID: "b", State: "resolved"}}, Missing: []string{"c"}},
			action{Kind: "discard", Filter: ffull, Matched: 5}}},
		{"result", []any{action{Kind: "discard"}, action{Kind: "replay", IDs: []string{"a"}, Done: 1, JobID: "job-1", AuditID: new(int64)}}},
		{"jobs", []any{[]replay.Job(nil), []replay.Job{{ID: "j", State: "running", FinishedAt: &fin}}}},
		{"job", []any{replay.Job{}, replay.Job{ID: "j", FinishedAt: &fin, Error: "broker down", Outcomes: map[string]int{"sent": 1}, Filter: map[string]any{"ids": []string{"a"}}}}},
		{"error", []any{struct {
			Status  int
			Message string
		}{500, "x"}}},
		{"health", []any{healthData{}, healthData{R: fullHealthReport(), Refresh: HealthRefreshSeconds}}},
	}
	for _, tt := range tests {
		for i, d := range tt.data {
			for _, signedIn := range []bool{true, false} {
				if !signedIn && tt.page != "login" && tt.page != "error" {
					continue
				}
				w := httptest.NewRecorder()
				r := httptest.NewRequest(http.MethodGet, "/console/", nil)
				if signedIn {
					r = r.WithContext(context.WithValue(r.Context(), sessionKey{}, sess))
				}
				srv.render(w, r, http.StatusOK, tt.page, page{Title: tt.page, Data: d})
				body := w.Body.String()
				if w.Code != http.StatusOK || !strings.Contains(body, "</html>") || strings.Contains(body, "<no value>") {
					t.Errorf("%s #%d (signed in %v): %d\n%s", tt.page, i, signedIn, w.Code, body)
				}
			}
		}
	}
	if len(tests) != len(pageNames) {
		t.Fatalf("%d pages tested, %d exist", len(tests), len(pageNames))
	}
}

func TestDetailNotFound(t *testing.T) {
	e := newEnv(t, false)
	b := e.browser()
	b.login(viewerToken)
	if st, _ := b.get("/console/dead-letters/nope"); st != http.StatusNotFound {
		t.Fatalf("unknown id = %d, want 404", st)
	}
	st, body := b.get("/console/dead-letters/dl-1")
	if st != http.StatusOK || !strings.Contains(body, `href="http://jaeger.local/trace/4bf92f3577b34da6a3ce929d0e0e4736"`) || !strings.Contains(body, "order.total_positive") {
		t.Fatalf("detail: %d\n%s", st, body)
	}
	var decoded map[string]any
	m := regexp.MustCompile(`(?s)<pre id="original">(.*?)</pre>`).FindStringSubmatch(body)
	if m == nil || json.Unmarshal([]byte(strings.ReplaceAll(m[1], "&#34;", `"`)), &decoded) != nil || decoded["order_id"] != "o-1" {
		t.Fatalf("the decoded original is not shown: %v", m)
	}
}

// jobReplayer answers jobs whose filter and error hold personal data.
type jobReplayer struct{ fakeReplayer }

func (*jobReplayer) job(id string) replay.Job {
	return replay.Job{ID: id, RequestedBy: "petra", State: "failed", Total: 1, Error: "cannot send dl-ann@example.com",
		Filter: map[string]any{"q": "John Smith", "stage": []any{"validator"}, "entity": []any{"x@example.org"}}}
}

func (r *jobReplayer) Job(_ context.Context, id string) (replay.Job, error) { return r.job(id), nil }

func (r *jobReplayer) Jobs(context.Context, int) ([]replay.Job, error) {
	return []replay.Job{r.job("job-1")}, nil
}

// TestJobPagesRedacted: the replay-job pages hide a job's q and the emails
// of its filter and error from an identity without the PII right, as the
// API does (api.RedactJob).
func TestJobPagesRedacted(t *testing.T) {
	e := newEnv(t, false, func(c *Config) { c.Replay = &jobReplayer{} })
	for _, tt := range []struct {
		token string
		pii   bool
	}{{viewerToken, false}, {operatorToken, false}, {piiToken, true}} {
		b := e.browser()
		b.login(tt.token)
		for _, path := range []string{"/console/replay-jobs", "/console/replay-jobs/job-1"} {
			st, body := b.get(path)
			if st != http.StatusOK {
				t.Fatalf("%s: %d", path, st)
			}
			for _, secret := range []string{"John Smith", "ann@example.com", "x@example.org"} {
				// The list does not show filters or errors; the job page does.
				want := tt.pii && path != "/console/replay-jobs"
				if got := strings.Contains(body, secret); got != want && (got || path != "/console/replay-jobs") {
					t.Errorf("%s %s: shows %q = %v, want %v", tt.token, path, secret, got, want)
				}
			}
		}
	}
}

// TestConsoleSearchScope: the console's list and the confirmation of a
// discard or replay by filter search as the caller may: an email q is
// refused without the PII right, and the filter handed on is marked
// Redacted (q matches only what the caller sees).
func TestConsoleSearchScope(t *testing.T) {
	e := newEnv(t, true)
	b := e.browser()
	b.login(operatorToken)
	for _, kind := range []string{"discard", "replay"} {
		if st, body := b.post("/console/confirm", url.Values{"action": {kind}, "q": {"ann@example.com"}}); st != http.StatusBadRequest {
			t.Errorf("%s confirmation searching an email: %d, want 400\n%s", kind, st, body)
		}
		if st, body := b.post("/console/confirm", url.Values{"action": {kind}, "q": {"Smith"}}); st != http.StatusOK {
			t.Fatalf("%s confirmation: %d\n%s", kind, st, body)
		}
	}
	e.store.mu.Lock()
	d := e.store.discards
	e.store.mu.Unlock()
	e.rep.mu.Lock()
	rp := e.rep.reqs
	e.rep.mu.Unlock()
	if len(d) != 1 || d[0].Filter == nil || !d[0].Filter.Redacted || len(rp) != 1 || rp[0].Filter == nil || !rp[0].Filter.Redacted {
		t.Errorf("discards %+v, replays %+v: want one each with a Redacted filter", d, rp)
	}
}

// TestSecureCookieRule: Secure unless plain HTTP to a loopback listener
// naming a loopback host; behind a TLS-terminating proxy (a non-loopback
// listener, or the public Host forwarded to a loopback one) Secure.
func TestSecureCookieRule(t *testing.T) {
	s := New(Config{Store: &fakeStore{}, Tokens: newTokens()})
	tests := []struct {
		name, host, local string // local "" = no local address known
		want              bool
	}{
		{"local browser", "127.0.0.1:8080", "127.0.0.1:8080", false},
		{"localhost", "localhost:8080", "[::1]:8080", false},
		{"proxy to a pod address", "dlq.example.com", "10.1.2.3:8080", true},
		{"proxy on loopback forwarding the public host", "dlq.example.com", "127.0.0.1:8080", true},
		{"loopback host on a public listener", "127.0.0.1:8080", "10.1.2.3:8080", true},
		{"unknown listener", "127.0.0.1:8080", "", true},
	}
	for _, tt := range tests {
		r := httptest.NewRequest(http.MethodGet, "http://"+tt.host+"/console/login", nil)
		if tt.local != "" {
			la, err := net.ResolveTCPAddr("tcp", tt.local)
			if err != nil {
				t.Fatal(err)
			}
			r = r.WithContext(context.WithValue(r.Context(), http.LocalAddrContextKey, la))
		}
		w := httptest.NewRecorder()
		s.ServeHTTP(w, r)
		cs := w.Result().Cookies()
		if len(cs) != 1 || cs[0].Secure != tt.want {
			t.Errorf("%s: cookies %+v, want one with Secure %v", tt.name, cs, tt.want)
		}
	}
}

// TestSessionIdentityRace: requests of one session while its token's pii
// right changes (run with -race: the identity is updated under the lock
// and each request reads its own copy).
func TestSessionIdentityRace(t *testing.T) {
	e := newEnv(t, false)
	b := e.browser()
	b.login(viewerToken)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 10 {
				resp, err := b.c.Get(e.srv.URL + "/console/dead-letters/dl-pii") // the browser's jar: the same session
				if err != nil {
					t.Error(err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					t.Errorf("detail: %d", resp.StatusCode)
				}
				if i == 0 {
					e.tokens.mu.Lock()
					e.tokens.m[viewerToken] = auth.Identity{Name: "victor", Role: auth.Viewer, PII: j%2 == 0}
					e.tokens.mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
}
