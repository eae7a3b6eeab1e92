// Package console is dlq-handler's web console: server-rendered pages
// (html/template, assets embedded, no JavaScript needed, nothing fetched
// from elsewhere) under /console/ for an overview of the dead letters, a
// filterable list, a dead letter's detail with its decoded original, and
// replay and discard with a confirmation that shows how many records a
// dry run counts.
//
// A login with an API token (internal/auth) opens a cookie session: a
// random id naming a server-side session (expiry, a cap on their number)
// that keeps the token and re-checks it on every request, so a token
// removed from the tokens file ends its sessions. Every form carries the
// session's CSRF token (and the Origin or Referer, when sent, must be this
// host). Viewers see no actions and are refused them; personal data is
// redacted as in the API for identities without the PII right.
package console

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ecomstream/platform/services/dlq-handler/internal/api"
	"github.com/ecomstream/platform/services/dlq-handler/internal/auth"
	"github.com/ecomstream/platform/services/dlq-handler/internal/query"
	"github.com/ecomstream/platform/services/dlq-handler/internal/replay"
)

// Prefix is where the console is served.
const Prefix = "/console"

// Defaults of Config.
const (
	DefaultSessionTTL  = 8 * time.Hour
	DefaultMaxSessions = 1000
)

// Replayer is the replay engine as the console uses it; *replay.Service
// satisfies it.
type Replayer interface {
	Replay(ctx context.Context, who auth.Identity, req replay.Request) (replay.Result, error)
	Job(ctx context.Context, id string) (replay.Job, error)
	Jobs(ctx context.Context, limit int) ([]replay.Job, error)
}

// Store is what the pages read and change; PGStore is the real one.
type Store interface {
	List(ctx context.Context, f query.Filter, p query.Page) (query.ListResult, error)
	Get(ctx context.Context, id string) (query.Record, error) // query.ErrNotFound when unknown
	Stats(ctx context.Context, r query.StatsRequest, now time.Time) (query.Stats, error)
	Discard(ctx context.Context, who auth.Identity, req api.DiscardRequest) (api.DiscardResponse, error)
}

// Authenticator maps a login token to an identity; *auth.Tokens is one.
type Authenticator interface {
	Lookup(token string) (auth.Identity, bool)
}

// Config is what the console needs.
type Config struct {
	Store  Store
	Tokens Authenticator
	Replay Replayer // nil: replay is shown as unavailable
	// Health builds the pipeline health page (HealthPath); nil: the page
	// answers 404.
	Health HealthReporter
	// Detail decodes originals and makes trace links (Registry,
	// TraceURLTemplate, MaxHexBytes of api.Config; the rest is unused).
	Detail      api.Config
	Log         *slog.Logger
	Now         func() time.Time
	SessionTTL  time.Duration // default DefaultSessionTTL
	MaxSessions int           // default DefaultMaxSessions
}

// PGStore is the Store over the dead-letter store's pool (search_path = its
// schema).
type PGStore struct{ Pool *pgxpool.Pool }

// List implements Store.
func (s PGStore) List(ctx context.Context, f query.Filter, p query.Page) (query.ListResult, error) {
	return query.List(ctx, s.Pool, f, p)
}

// Get implements Store.
func (s PGStore) Get(ctx context.Context, id string) (query.Record, error) {
	return query.Get(ctx, s.Pool, id)
}

// Stats implements Store: the counts in one REPEATABLE READ snapshot.
func (s PGStore) Stats(ctx context.Context, r query.StatsRequest, now time.Time) (query.Stats, error) {
	tx, err := s.Pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return query.Stats{}, fmt.Errorf("stats: %w", err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	return query.GetStats(ctx, tx, r, now)
}

// Discard implements Store.
func (s PGStore) Discard(ctx context.Context, who auth.Identity, req api.DiscardRequest) (api.DiscardResponse, error) {
	return api.Discard(ctx, s.Pool, who, req)
}

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

type server struct {
	cfg      Config
	log      *slog.Logger
	sessions *sessions
	pages    map[string]*template.Template
}

// New returns the console's handler for Prefix and everything under it;
// mount it on the service's router. It panics on a Config without Store or
// Tokens, or on templates that do not parse (wiring errors).
func New(cfg Config) http.Handler {
	if cfg.Store == nil || cfg.Tokens == nil {
		panic("console.New: Config.Store and Config.Tokens are required")
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = DefaultSessionTTL
	}
	if cfg.MaxSessions <= 0 {
		cfg.MaxSessions = DefaultMaxSessions
	}
	pages, err := parsePages()
	if err != nil {
		panic("console.New: " + err.Error())
	}
	s := &server{cfg: cfg, log: cfg.Log, pages: pages, sessions: newSessions(cfg.SessionTTL, cfg.MaxSessions, cfg.Now)}
	static, _ := fs.Sub(staticFS, "static")

	r := chi.NewRouter()
	r.Use(secureHeaders)
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		s.errorPage(w, r, http.StatusNotFound, "No such page.")
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) {
		s.errorPage(w, r, http.StatusMethodNotAllowed, "This page does not take that method.")
	})
	r.Get(Prefix, func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, Prefix+"/", http.StatusSeeOther) })
	r.Handle(Prefix+"/static/*", http.StripPrefix(Prefix+"/static/", http.FileServerFS(static)))
	r.Get(Prefix+"/login", s.loginForm)
	r.Post(Prefix+"/login", s.login)
	r.Group(func(r chi.Router) {
		r.Use(s.authenticate)
		r.Use(s.checkCSRF)
		r.Post(Prefix+"/logout", s.logout)
		r.Get(Prefix+"/", s.overview)
		r.Get(Prefix+"/dead-letters", s.list)
		r.Get(Prefix+"/dead-letters/{id}", s.detail)
		r.Get(Prefix+"/replay-jobs", s.jobs)
		r.Get(Prefix+"/replay-jobs/{id}", s.job)
		r.Get(HealthPath, s.healthPage)
		r.Group(func(r chi.Router) {
			r.Use(s.requireOperator)
			r.Post(Prefix+"/confirm", s.confirm)
			r.Post(Prefix+"/execute", s.execute)
		})
	})
	return r
}

// secureHeaders: no framing, nothing from elsewhere, no sniffing, no
// caching of pages that may hold personal data.
func secureHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "same-origin")
		h.Set("Cache-Control", "no-store")
		next.ServeHTTP(w, r)
	})
}

// requireOperator refuses the actions to viewers with 403.
func (s *server) requireOperator(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !current(r).id.Can(auth.Operator) {
			s.errorPage(w, r, http.StatusForbidden, "Replay and discard need the operator role; you are signed in as a viewer.")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// fail answers err: a query error is the caller's (400, its message shown),
// anything else is logged and answered 500 without detail.
func (s *server) fail(w http.ResponseWriter, r *http.Request, what string, err error) {
	var qe *query.Error
	switch {
	case errors.As(err, &qe):
		s.errorPage(w, r, http.StatusBadRequest, qe.Error())
	case errors.Is(err, context.Canceled):
	default:
		s.log.ErrorContext(r.Context(), "console request failed", "what", what, "path", r.URL.Path, "err", err)
		s.errorPage(w, r, http.StatusInternalServerError, what+" failed; see the service log.")
	}
}
