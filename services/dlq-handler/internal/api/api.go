// Package api is dlq-handler's HTTP API (JSON, under /v1): list, count and
// inspect dead letters, replay and discard them, follow replay jobs, read
// the audit log and run the retention on demand. Every route takes a bearer token (internal/auth);
// reads need the viewer role, actions the operator role, and personal data
// is redacted for identities without the PII right (internal/redact).
// proto/openapi/dlq.v1.yaml documents it.
package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ecomstream/platform/pkg/avroserde"
	"github.com/ecomstream/platform/pkg/config"
	"github.com/ecomstream/platform/services/dlq-handler/internal/auth"
	"github.com/ecomstream/platform/services/dlq-handler/internal/query"
)

// Decoder decodes a wire-format Avro record by the schema id it carries
// into a generic value; *avroserde.Generic is one.
type Decoder interface {
	Decode(ctx context.Context, b []byte) (schemaID int, v any, err error)
}

var _ Decoder = (*avroserde.Generic)(nil)

// Config is what the API needs.
type Config struct {
	Pool      *pgxpool.Pool // search_path = the store's schema
	Auth      *auth.Tokens
	Registry  Decoder // decodes Avro originals; nil = shown as hex
	Log       *slog.Logger
	Retention func(ctx context.Context) (any, error) // POST /v1/retention; nil = 503
	Replay    Replayer                               // POST /v1/dead-letters/replay, GET /v1/replay-jobs[/{id}]; nil = 503
	Now       func() time.Time
	// TraceURLTemplate (DLQ_TRACE_URL_TEMPLATE) makes a dead letter's
	// trace link: {trace_id} is replaced; "" = no link.
	TraceURLTemplate string
	// MaxHexBytes is how much of an original is shown as hex; default
	// DefaultMaxHexBytes.
	MaxHexBytes int
}

// Limits.
const (
	DefaultMaxHexBytes = 64 << 10
	maxBodyBytes       = 256 << 10 // of a request body
	maxDiscardIDs      = 1000
	maxReasonLen       = 1000
)

// Paths.
const (
	DeadLettersPath = "/v1/dead-letters"
	DiscardPath     = "/v1/dead-letters/discard"
	StatsPath       = "/v1/stats"
	AuditPath       = "/v1/audit"
	RetentionPath   = "/v1/retention"
)

// CheckTraceTemplate validates a DLQ_TRACE_URL_TEMPLATE value for the
// service config: empty, or an http(s) URL holding {trace_id}.
func CheckTraceTemplate(name, s string) error {
	if s == "" {
		return nil
	}
	if !strings.Contains(s, "{trace_id}") {
		return config.Errorf(name, "must hold {trace_id}, e.g. http://127.0.0.1:16686/trace/{trace_id}")
	}
	u, err := url.Parse(strings.ReplaceAll(s, "{trace_id}", "x"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return config.Errorf(name, "must be an http(s) URL, e.g. http://127.0.0.1:16686/trace/{trace_id}")
	}
	return nil
}

type server struct {
	cfg Config
	log *slog.Logger
}

// New returns the API handler serving /v1/...; mount it on the service's
// router. It panics on a Config without Pool or Auth (a wiring error).
func New(cfg Config) http.Handler {
	if cfg.Pool == nil || cfg.Auth == nil {
		panic("api.New: Config.Pool and Config.Auth are required")
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MaxHexBytes <= 0 {
		cfg.MaxHexBytes = DefaultMaxHexBytes
	}
	s := &server{cfg: cfg, log: cfg.Log}
	r := chi.NewRouter()
	r.Use(headers)
	r.NotFound(func(w http.ResponseWriter, _ *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", "no such route")
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, _ *http.Request) {
		writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", "method not allowed on this route")
	})
	r.Group(func(r chi.Router) {
		r.Use(cfg.Auth.Bearer)
		r.Group(func(r chi.Router) {
			r.Use(auth.Require(auth.Viewer))
			r.Get(DeadLettersPath, s.list)
			r.Get(DeadLettersPath+"/{id}", s.get)
			r.Get(StatsPath, s.stats)
			r.Get(AuditPath, s.audit)
			r.Get(ReplayJobsPath, s.replayJobs)
			r.Get(ReplayJobsPath+"/{id}", s.replayJob)
		})
		r.Group(func(r chi.Router) {
			r.Use(auth.Require(auth.Operator))
			r.Post(DiscardPath, s.discard)
			r.Post(RetentionPath, s.retention)
			r.Post(ReplayPath, s.replay)
		})
	})
	return r
}

// headers: answers may hold personal data; no cache keeps them.
func headers(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		next.ServeHTTP(w, r)
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	auth.WriteError(w, status, code, msg)
}

// fail answers err: a query error is the caller's (400), anything else is
// logged and answered 500 without detail.
func (s *server) fail(w http.ResponseWriter, r *http.Request, what string, err error) {
	var qe *query.Error
	switch {
	case errors.As(err, &qe):
		writeError(w, http.StatusBadRequest, "invalid_argument", qe.Error())
	case errors.Is(err, context.Canceled):
		// The caller went away; nobody reads an answer.
	case timedOut(err):
		s.log.WarnContext(r.Context(), "API request hit the statement timeout", "what", what, "path", r.URL.Path,
			"request_id", middleware.GetReqID(r.Context()))
		writeError(w, http.StatusServiceUnavailable, "timeout", what+" took longer than the statement timeout (DLQ_API_STATEMENT_TIMEOUT); narrow the filter (from/to, stage, code) or try again")
	default:
		s.log.ErrorContext(r.Context(), "API request failed", "what", what, "path", r.URL.Path,
			"request_id", middleware.GetReqID(r.Context()), "err", err)
		writeError(w, http.StatusInternalServerError, "internal", what+" failed; see the service log")
	}
}

// timedOut reports a statement cancelled by statement_timeout (SQLSTATE
// 57014, query_canceled; the caller's own cancel is context.Canceled).
func timedOut(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "57014"
}

// decodeBody reads a JSON body of at most maxBodyBytes into v; an empty
// body leaves v as it is when allowEmpty. It answers the error itself and
// reports whether to go on.
func decodeBody(w http.ResponseWriter, r *http.Request, v any, allowEmpty bool) bool {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
			writeError(w, http.StatusUnsupportedMediaType, "unsupported_media_type", "the body must be application/json")
			return false
		}
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		writeError(w, http.StatusRequestEntityTooLarge, "payload_too_large", fmt.Sprintf("the body must be at most %d bytes", maxBodyBytes))
		return false
	case errors.Is(err, io.EOF) && allowEmpty:
		return true
	case errors.Is(err, io.EOF):
		writeError(w, http.StatusBadRequest, "invalid_argument", "a JSON body is required")
		return false
	case err != nil:
		writeError(w, http.StatusBadRequest, "invalid_argument", "body: "+err.Error())
		return false
	}
	if dec.More() {
		writeError(w, http.StatusBadRequest, "invalid_argument", "body: one JSON value expected")
		return false
	}
	return true
}

func identity(r *http.Request) auth.Identity {
	id, _ := auth.FromContext(r.Context()) // Require ran before every handler
	return id
}
