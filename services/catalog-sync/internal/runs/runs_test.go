package runs

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"go.opentelemetry.io/otel/metric/noop"
	"go.uber.org/goleak"

	"github.com/ecomstream/platform/pkg/config"
	"github.com/ecomstream/platform/services/catalog-sync/internal/snapshot"
	"github.com/ecomstream/platform/services/catalog-sync/internal/state"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestParseSchedule(t *testing.T) {
	tests := []struct {
		give    string
		off     bool
		next    string // after 2026-12-01T10:17:00Z
		wantErr bool
	}{
		{give: "0 * * * *", next: "2026-12-01T11:00:00Z"},
		{give: "@hourly", next: "2026-12-01T11:00:00Z"},
		{give: "*/15 * * * *", next: "2026-12-01T10:30:00Z"},
		{give: "30 2 * * *", next: "2026-12-02T02:30:00Z"},
		{give: "@every 30m", next: "2026-12-01T10:47:00Z"},
		{give: "", off: true},
		{give: "off", off: true},
		{give: "OFF", off: true},
		{give: "61 * * * *", wantErr: true},
		{give: "hourly", wantErr: true},
		{give: "* * *", wantErr: true},
		{give: "0 0 * * * *", wantErr: true}, // six fields (seconds) are not standard cron
		{give: "CRON_TZ=Europe/Berlin 0 * * * *", wantErr: true},
	}
	from := time.Date(2026, 12, 1, 10, 17, 0, 0, time.UTC)
	for _, tt := range tests {
		sched, err := ParseSchedule(tt.give)
		if tt.wantErr {
			var ce *config.Error
			if !errors.As(err, &ce) || ce.Var != "CATALOG_SNAPSHOT_SCHEDULE" || strings.Contains(err.Error(), "\n") {
				t.Errorf("%q: err = %v, want one line naming CATALOG_SNAPSHOT_SCHEDULE", tt.give, err)
			}
			// And the service's config stops on it.
			var cfg Config
			if err := config.LoadFrom(config.MapLookup(map[string]string{"CATALOG_SNAPSHOT_SCHEDULE": tt.give}), &cfg); err == nil ||
				!strings.Contains(err.Error(), "CATALOG_SNAPSHOT_SCHEDULE") {
				t.Errorf("%q: Load = %v", tt.give, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tt.give, err)
			continue
		}
		if tt.off != (sched == nil) {
			t.Errorf("%q: schedule off = %v, want %v", tt.give, sched == nil, tt.off)
			continue
		}
		if sched != nil {
			if got := sched.Next(from).Format(time.RFC3339); got != tt.next {
				t.Errorf("%q: next after %v = %s, want %s", tt.give, from, got, tt.next)
			}
		}
	}
}

// gate is a RunFunc that blocks each run until released.
type gate struct {
	mu      sync.Mutex
	started []state.Progress
	release chan error
}

func newGate() *gate { return &gate{release: make(chan error)} }

func (g *gate) run(ctx context.Context, p state.Progress, onPage func(snapshot.Page)) error {
	g.mu.Lock()
	g.started = append(g.started, p)
	g.mu.Unlock()
	onPage(snapshot.Page{Table: p.Tables[0], RowsRead: 10, Upserts: 3, Deletes: 1})
	select {
	case err := <-g.release:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func newManager(t *testing.T, cfg Config, run RunFunc, pending *state.Progress) (*Manager, context.CancelFunc, chan error) {
	t.Helper()
	if cfg.History == 0 {
		cfg.History = 10
	}
	if cfg.StaleAfter == 0 {
		cfg.StaleAfter = time.Hour
	}
	var mu sync.Mutex
	m, err := New(cfg, Deps{Run: func(ctx context.Context, p state.Progress, onPage func(snapshot.Page)) error {
		err := run(ctx, p, onPage)
		if err == nil {
			mu.Lock()
			pending = nil
			mu.Unlock()
		}
		return err
	}, Pending: func() *state.Progress { mu.Lock(); defer mu.Unlock(); return pending },
		Meter: noop.NewMeterProvider().Meter("test"), Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	for { // Run has taken ctx
		m.mu.Lock()
		ok := m.ctx != nil
		m.mu.Unlock()
		if ok {
			break
		}
		time.Sleep(time.Millisecond)
	}
	return m, cancel, done
}

func TestJoinActive(t *testing.T) {
	g := newGate()
	m, _, _ := newManager(t, Config{}, g.run, nil)
	first, joined, err := m.Trigger(TriggerAPI, []string{snapshot.Products}, false)
	if err != nil || joined {
		t.Fatalf("first trigger: joined %v, err %v", joined, err)
	}
	tests := []struct {
		name     string
		tables   []string
		full     bool
		wantJoin bool
		wantErr  error
	}{
		{name: "same request joins", tables: []string{snapshot.Products}, wantJoin: true},
		{name: "the schedule's (all tables) does not fit a products-only run", tables: nil, wantErr: ErrBusy},
		{name: "full does not fit an incremental run", tables: []string{snapshot.Products}, full: true, wantErr: ErrBusy},
		{name: "another table does not fit", tables: []string{snapshot.Customers}, wantErr: ErrBusy},
	}
	for _, tt := range tests {
		r, joined, err := m.Trigger(TriggerAPI, tt.tables, tt.full)
		if joined != tt.wantJoin || !errors.Is(err, tt.wantErr) || r.ID != first.ID {
			t.Errorf("%s: run %s joined %v err %v; want run %s joined %v err %v", tt.name, r.ID, joined, err, first.ID, tt.wantJoin, tt.wantErr)
		}
	}
	g.release <- nil
	done, err := m.Wait(context.Background(), first.ID)
	if err != nil || done.Outcome != Succeeded || done.RowsRead != 10 || done.Changes != 4 || done.Deletes != 1 || done.Finished == nil {
		t.Fatalf("finished run = %+v, %v", done, err)
	}
	// A full run of all tables covers any request.
	full, _, err := m.Trigger(TriggerAPI, nil, true)
	if err != nil || full.ID == first.ID {
		t.Fatalf("second run %+v, %v", full, err)
	}
	for _, req := range [][]string{nil, {snapshot.Customers}} {
		if r, joined, err := m.Trigger(TriggerSchedule, req, false); !joined || err != nil || r.ID != full.ID {
			t.Errorf("%v while a full run is active: joined %v err %v", req, joined, err)
		}
	}
	g.release <- errors.New("postgres went away")
	failed, _ := m.Wait(context.Background(), full.ID)
	if failed.Outcome != Failed || failed.Error != "postgres went away" {
		t.Errorf("failed run = %+v", failed)
	}
	if got := m.List(); len(got) != 2 || got[0].ID != full.ID || got[1].ID != first.ID {
		t.Errorf("history = %+v", got)
	}
	if len(g.started) != 2 {
		t.Errorf("%d runs started, want 2", len(g.started))
	}
}

// TestResumeAtStart: an interrupted run is continued at once, with its id,
// and a request meanwhile joins it.
func TestResumeAtStart(t *testing.T) {
	g := newGate()
	pending := &state.Progress{RunID: "run-interrupted", Tables: []string{snapshot.Products, snapshot.Customers}, Table: snapshot.Customers,
		Phase: state.PhaseRows, After: "u-000100"}
	m, _, _ := newManager(t, Config{}, g.run, pending)
	var r Run
	for r.ID == "" {
		if l := m.List(); len(l) > 0 {
			r = l[0]
		}
		time.Sleep(time.Millisecond)
	}
	if r.ID != "run-interrupted" || !r.Resumed || r.Trigger != TriggerResume {
		t.Fatalf("run at start = %+v", r)
	}
	if j, joined, err := m.Trigger(TriggerAPI, []string{snapshot.Customers}, false); !joined || err != nil || j.ID != r.ID {
		t.Errorf("request during the resumed run: %s joined %v err %v", j.ID, joined, err)
	}
	g.release <- nil
	if _, err := m.Wait(context.Background(), r.ID); err != nil {
		t.Fatal(err)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.started) != 1 || g.started[0].After != "u-000100" {
		t.Errorf("runs started %+v, want the pending progress", g.started)
	}
}

func TestHistoryBounded(t *testing.T) {
	m, _, _ := newManager(t, Config{History: 3}, func(context.Context, state.Progress, func(snapshot.Page)) error { return nil }, nil)
	var ids []string
	for range 5 {
		r, _, err := m.Trigger(TriggerAPI, nil, false)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := m.Wait(context.Background(), r.ID); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, r.ID)
	}
	got := m.List()
	if len(got) != 3 || got[0].ID != ids[4] || got[2].ID != ids[2] {
		t.Errorf("history %v, want the last 3 of %v", got, ids)
	}
	if _, ok := m.Get(ids[0]); ok {
		t.Error("the oldest run is still kept")
	}
}

func TestReady(t *testing.T) {
	g := newGate()
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	m, _, _ := newManager(t, Config{StaleAfter: time.Hour, Schedule: "off"}, g.run, nil)
	m.d.Now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	m.lastOK = now
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	runOnce := func(err error) {
		r, _, terr := m.Trigger(TriggerAPI, nil, false)
		if terr != nil {
			t.Fatal(terr)
		}
		g.release <- err
		if _, werr := m.Wait(context.Background(), r.ID); werr != nil {
			t.Fatal(werr)
		}
	}
	steps := []struct {
		name    string
		advance time.Duration
		runErr  error
		run     bool
		ready   bool
	}{
		{name: "fresh", ready: true},
		{name: "a failed run, recently succeeded", run: true, runErr: errors.New("boom"), ready: true},
		{name: "failing for longer than the limit", advance: 2 * time.Hour, ready: false},
		{name: "a success clears it", run: true, ready: true},
		{name: "no run for long, but the last did not fail", advance: 5 * time.Hour, ready: true},
	}
	for _, s := range steps {
		advance(s.advance)
		if s.run {
			runOnce(s.runErr)
		}
		if err := m.Ready(context.Background()); (err == nil) != s.ready {
			t.Errorf("%s: Ready = %v", s.name, err)
		}
	}
}

func TestAPI(t *testing.T) {
	const token = "operator-token-0123456789"
	g := newGate()
	m, _, _ := newManager(t, Config{}, g.run, nil)
	r := chi.NewRouter()
	m.Routes(r, token)
	srv := httptest.NewServer(r)
	defer srv.Close()
	do := func(method, path, auth, body string) (int, string) {
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	bearer := "Bearer " + token
	tests := []struct {
		name       string
		method     string
		path       string
		auth, body string
		wantStatus int
		wantBody   string
	}{
		{name: "sync without token", method: http.MethodPost, path: SyncPath, wantStatus: 401},
		{name: "sync with a wrong token", method: http.MethodPost, path: SyncPath, auth: "Bearer nope-nope-nope-nope", wantStatus: 401},
		{name: "sync with the token as basic auth", method: http.MethodPost, path: SyncPath, auth: "Basic " + token, wantStatus: 401},
		{name: "runs without token", method: http.MethodGet, path: RunsPath, wantStatus: 401},
		{name: "a run without token", method: http.MethodGet, path: RunsPath + "/run-x", wantStatus: 401},
		{name: "unknown table", method: http.MethodPost, path: SyncPath, auth: bearer, body: `{"table":"orders"}`, wantStatus: 400},
		{name: "unknown field", method: http.MethodPost, path: SyncPath, auth: bearer, body: `{"tables":["products"]}`, wantStatus: 400},
		{name: "starts a run", method: http.MethodPost, path: SyncPath, auth: bearer, body: `{"table":"products"}`, wantStatus: 202, wantBody: `"joined":false`},
		{name: "joins it", method: http.MethodPost, path: SyncPath, auth: bearer, body: `{"table":"products"}`, wantStatus: 200, wantBody: `"joined":true`},
		{name: "a full request does not fit", method: http.MethodPost, path: SyncPath, auth: bearer, body: `{"full":true}`, wantStatus: 409},
		{name: "lists it", method: http.MethodGet, path: RunsPath, auth: bearer, wantStatus: 200, wantBody: `"outcome":"running"`},
		{name: "no such run", method: http.MethodGet, path: RunsPath + "/run-x", auth: bearer, wantStatus: 404},
	}
	for _, tt := range tests {
		status, body := do(tt.method, tt.path, tt.auth, tt.body)
		if status != tt.wantStatus || !strings.Contains(body, tt.wantBody) {
			t.Errorf("%s: %d %s, want %d with %s", tt.name, status, body, tt.wantStatus, tt.wantBody)
		}
	}
	// An empty token disables the API rather than opening it.
	open := chi.NewRouter()
	m.Routes(open, "")
	rec := httptest.NewRecorder()
	open.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, RunsPath, nil))
	if rec.Code != 401 {
		t.Errorf("API with no operator token configured: %d", rec.Code)
	}
	l := m.List()
	status, body := do(http.MethodGet, RunsPath+"/"+l[0].ID, bearer, "")
	if status != 200 || !strings.Contains(body, `"tables":["products"]`) {
		t.Errorf("get run: %d %s", status, body)
	}
	g.release <- nil
	if _, err := m.Wait(context.Background(), l[0].ID); err != nil {
		t.Fatal(err)
	}
	http.DefaultClient.CloseIdleConnections()
}

// TestNotReadyBeforeRun: the HTTP server is up before Run takes its
// context; until then /readyz must say not ready (a caller waits for it)
// and POST /v1/sync answers 503 with Retry-After, not a run. Before this,
// Ready said ready while the sync was refused.
func TestNotReadyBeforeRun(t *testing.T) {
	const token = "operator-token-0123456789"
	m, err := New(Config{History: 10, StaleAfter: time.Hour, Schedule: "off"}, Deps{
		Run:     func(context.Context, state.Progress, func(snapshot.Page)) error { return nil },
		Pending: func() *state.Progress { return nil },
		Meter:   noop.NewMeterProvider().Meter("test"), Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Ready(context.Background()); !errors.Is(err, ErrStopped) {
		t.Errorf("Ready before Run = %v, want ErrStopped", err)
	}
	r := chi.NewRouter()
	m.Routes(r, token)
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodPost, SyncPath, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	r.ServeHTTP(rec, req)
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" {
		t.Errorf("POST /v1/sync before Run: %d, Retry-After %q; want 503 with Retry-After", rec.Code, rec.Header().Get("Retry-After"))
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	deadline := time.Now().Add(5 * time.Second)
	for m.Ready(context.Background()) != nil {
		if time.Now().After(deadline) {
			t.Fatal("Ready still fails 5s after Run started")
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := m.Ready(context.Background()); !errors.Is(err, ErrStopped) {
		t.Errorf("Ready after Run ended = %v, want ErrStopped", err)
	}
}
