// Package httpserver is the operational HTTP server every service runs: a chi
// router with /healthz (the process is alive), /readyz (its dependencies
// answer) and /metrics, to which a service adds its own routes.
//
// It is safe by default: it listens on loopback unless HTTP_ADDR says
// otherwise, serves TLS when given a certificate, refuses to carry bearer
// tokens in clear across a network, and shows readiness detail (dependency
// errors) only to a caller holding the operator token.
package httpserver

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"

	"github.com/ecomstream/platform/pkg/config"
)

// MinTokenLen is the shortest bearer token a service accepts.
const MinTokenLen = 16

// Config is the HTTP part of a service config.
type Config struct {
	Addr            string        `env:"HTTP_ADDR" default:"127.0.0.1:8080" usage:"listen address for health, readiness, metrics and the service API; loopback by default, set e.g. :8080 to serve other hosts (Kubernetes probes)"`
	TLSCertFile     string        `env:"HTTP_TLS_CERT_FILE" default:"" usage:"PEM certificate (chain) to serve HTTPS, TLS 1.2 or newer; set with HTTP_TLS_KEY_FILE; re-read when the file changes"`
	TLSKeyFile      string        `env:"HTTP_TLS_KEY_FILE" default:"" usage:"PEM private key of HTTP_TLS_CERT_FILE"`
	OperatorToken   string        `env:"HTTP_OPERATOR_TOKEN" default:"" secret:"true" usage:"bearer token that shows /readyz detail (dependency errors); at least 16 characters; empty = detail only in the log"`
	PlaintextTokens bool          `env:"HTTP_ALLOW_PLAINTEXT_TOKENS" default:"false" usage:"allow bearer tokens over plain HTTP on a non-loopback HTTP_ADDR (only where a mesh or proxy encrypts the hop)"`
	ShutdownTimeout time.Duration `env:"HTTP_SHUTDOWN_TIMEOUT" default:"10s" usage:"how long in-flight requests get on shutdown"`
	ReadyTimeout    time.Duration `env:"HTTP_READY_CHECK_TIMEOUT" default:"2s" usage:"timeout of each readiness check"`
	Pprof           bool          `env:"HTTP_PPROF_ENABLED" default:"false" usage:"serve Go profiles on /debug/pprof/ (bind HTTP_ADDR to a private interface when on)"`
}

// Validate implements config.Validator.
func (c *Config) Validate() error {
	errs := []error{config.HostPort("HTTP_ADDR", c.Addr)}
	switch {
	case c.TLSCertFile == "" && c.TLSKeyFile == "":
	case c.TLSCertFile == "":
		errs = append(errs, config.Errorf("HTTP_TLS_CERT_FILE", "must be set with HTTP_TLS_KEY_FILE"))
	case c.TLSKeyFile == "":
		errs = append(errs, config.Errorf("HTTP_TLS_KEY_FILE", "must be set with HTTP_TLS_CERT_FILE"))
	default:
		if _, err := tls.LoadX509KeyPair(c.TLSCertFile, c.TLSKeyFile); err != nil {
			errs = append(errs, config.Errorf("HTTP_TLS_CERT_FILE", "cannot load the key pair %s, %s: %v", c.TLSCertFile, c.TLSKeyFile, err))
		}
	}
	errs = append(errs,
		c.CheckToken("HTTP_OPERATOR_TOKEN", c.OperatorToken),
		config.Positive("HTTP_SHUTDOWN_TIMEOUT", c.ShutdownTimeout),
		config.Positive("HTTP_READY_CHECK_TIMEOUT", c.ReadyTimeout),
	)
	return config.First(errs...)
}

// TLS reports whether the server serves HTTPS.
func (c *Config) TLS() bool { return c.TLSCertFile != "" }

// Loopback reports whether Addr accepts connections from this host only.
// An empty host, an unspecified address or a name other than localhost
// counts as reachable from the network.
func (c *Config) Loopback() bool {
	host, _, err := net.SplitHostPort(c.Addr)
	return err == nil && config.LoopbackHost(host)
}

// CheckToken validates a bearer token that this server will accept, as the
// config error of variable name: at least MinTokenLen characters, and not on
// a network-reachable plain-HTTP address (where anyone on the path reads it)
// unless HTTP_ALLOW_PLAINTEXT_TOKENS says the hop is encrypted elsewhere.
// An empty token (the endpoint disabled) always passes. Services call it for
// every token their routes take (e.g. bq-writer's WAREHOUSE_QUERY_TOKEN).
func (c *Config) CheckToken(name, token string) error {
	if token == "" {
		return nil
	}
	if len(token) < MinTokenLen {
		return config.Errorf(name, "must be at least %d characters", MinTokenLen)
	}
	if !c.TLS() && !c.Loopback() && !c.PlaintextTokens {
		return config.Errorf(name, "would travel in clear text: HTTP_ADDR %s is reachable from the network without TLS; set HTTP_TLS_CERT_FILE and HTTP_TLS_KEY_FILE, bind HTTP_ADDR to loopback, or set HTTP_ALLOW_PLAINTEXT_TOKENS=true where a mesh encrypts the hop", c.Addr)
	}
	return nil
}

// Option configures a Server.
type Option interface{ apply(*options) }

type options struct {
	redact  func(string) string
	observe func([]CheckResult)
}

type optionFunc func(*options)

func (f optionFunc) apply(o *options) { f(o) }

// WithRedact passes every dependency error the server prints (in /readyz
// detail and the log) through redact, e.g. (*config.Redactor).String, so an
// error quoting a URL with credentials does not leak them.
func WithRedact(redact func(string) string) Option {
	return optionFunc(func(o *options) { o.redact = redact })
}

// WithReadinessObserver passes every readiness round's outcome (each /readyz
// and each Evaluate) to observe, e.g. to export it as metrics. observe runs
// on the request's goroutine and must not block.
func WithReadinessObserver(observe func([]CheckResult)) Option {
	return optionFunc(func(o *options) { o.observe = observe })
}

// CheckResult is one readiness check's outcome; Err nil = ok.
type CheckResult struct {
	Name string
	Err  error
}

// Check is a readiness probe of one dependency.
type Check func(ctx context.Context) error

// Server is the service's HTTP server.
type Server struct {
	Router chi.Router

	cfg     Config
	log     *slog.Logger
	redact  func(string) string
	observe func([]CheckResult)
	mu      sync.Mutex
	checks  map[string]Check
	names   []string
	failing map[string]bool // last outcome per check, to log changes only
	srv     *http.Server
	started chan string
}

// New returns a server with /healthz, /readyz and /metrics mounted.
func New(cfg Config, log *slog.Logger, metrics http.Handler, opts ...Option) *Server {
	o := options{redact: func(s string) string { return s }}
	for _, opt := range opts {
		opt.apply(&o)
	}
	s := &Server{cfg: cfg, log: log, redact: o.redact, observe: o.observe, checks: map[string]Check{}, failing: map[string]bool{},
		started: make(chan string, 1)}
	r := chi.NewRouter()
	r.Use(middleware.Recoverer)
	r.Get("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":"ok"}`))
	})
	r.Get("/readyz", s.ready)
	if metrics != nil {
		r.Method(http.MethodGet, "/metrics", metrics)
	}
	if cfg.Pprof {
		r.Mount("/debug", middleware.Profiler())
	}
	s.Router = r
	return s
}

// AddCheck registers a readiness check; /readyz fails while any check fails.
func (s *Server) AddCheck(name string, c Check) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.checks[name]; !ok {
		s.names = append(s.names, name)
	}
	s.checks[name] = c
}

// ready answers 200 or 503 to anyone, with each check's name and status:
// enough for a probe and for an on-call glance. The checks' errors can name
// hosts, users and internals, so they are shown only to a caller presenting
// the operator token; everyone else finds them in the log, where each
// change of a check's outcome is logged once.
func (s *Server) ready(w http.ResponseWriter, r *http.Request) {
	detail := false
	if auth := r.Header.Get("Authorization"); auth != "" {
		if !s.operator(auth) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="operator"`)
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "missing or wrong operator token (HTTP_OPERATOR_TOKEN)"})
			return
		}
		detail = true
	}

	results := s.Evaluate(r.Context())
	type result struct {
		Status string `json:"status"`
		Error  string `json:"error,omitempty"`
	}
	out := make(map[string]result, len(results))
	status := http.StatusOK
	overall := "ready"
	for _, c := range results {
		res := result{Status: "ok"}
		if c.Err != nil {
			res.Status = "failing"
			status, overall = http.StatusServiceUnavailable, "not ready"
			if detail {
				res.Error = s.redact(c.Err.Error())
			}
		}
		out[c.Name] = res
	}
	if detail {
		w.Header().Set("Cache-Control", "no-store")
	}
	writeJSON(w, status, map[string]any{"status": overall, "checks": out})
}

// Evaluate runs every registered check once, concurrently, each under
// HTTP_READY_CHECK_TIMEOUT, logs the checks whose outcome changed, passes the
// results to the readiness observer and returns them in registration order.
// A round whose ctx ended is returned but neither logged nor observed.
// /readyz is one Evaluate; a service's background readiness loop is another.
func (s *Server) Evaluate(ctx context.Context) []CheckResult {
	s.mu.Lock()
	results := make([]CheckResult, len(s.names))
	checks := make([]Check, len(s.names))
	for i, n := range s.names {
		results[i].Name, checks[i] = n, s.checks[n]
	}
	s.mu.Unlock()

	var wg sync.WaitGroup
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, s.cfg.ReadyTimeout)
			defer cancel()
			results[i].Err = checks[i](cctx)
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		// The caller went away (a probe that hung up, shutdown): the
		// failures are the cancellation's, not the dependencies'.
		return results
	}
	s.logChanges(ctx, results)
	if s.observe != nil {
		s.observe(results)
	}
	return results
}

// operator reports whether auth is "Bearer <HTTP_OPERATOR_TOKEN>". With no
// operator token configured, nobody is.
func (s *Server) operator(auth string) bool { return BearerMatches(auth, s.cfg.OperatorToken) }

// BearerMatches reports whether the Authorization header value auth is
// "Bearer <token>", comparing in constant time. An empty token matches
// nothing.
func BearerMatches(auth, token string) bool {
	got, ok := strings.CutPrefix(auth, "Bearer ")
	return ok && token != "" && subtle.ConstantTimeCompare([]byte(got), []byte(token)) == 1
}

// logChanges logs each check that started failing (with its error) or
// recovered since the previous round, so probes every few seconds do not
// repeat the same line.
func (s *Server) logChanges(ctx context.Context, results []CheckResult) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range results {
		failing := c.Err != nil
		if failing == s.failing[c.Name] {
			continue
		}
		s.failing[c.Name] = failing
		if failing {
			s.log.WarnContext(ctx, "readiness check failing", "check", c.Name, "err", s.redact(c.Err.Error()))
		} else {
			s.log.InfoContext(ctx, "readiness check recovered", "check", c.Name)
		}
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// Addr returns the bound address once Run has started listening.
func (s *Server) Addr(ctx context.Context) (string, error) {
	select {
	case a := <-s.started:
		s.started <- a
		return a, nil
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// Run serves until ctx is done, then shuts down gracefully within
// ShutdownTimeout.
func (s *Server) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("http: listen %s: %w", s.cfg.Addr, err)
	}
	s.srv = &http.Server{
		Handler:           s.Router,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
		// net/http's own complaints (TLS handshakes, accept errors) in the
		// service's JSON log, not on a bare stderr line.
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	scheme := "http"
	if s.cfg.TLS() {
		if s.srv.TLSConfig, err = TLSConfig(s.cfg.TLSCertFile, s.cfg.TLSKeyFile, s.log); err != nil {
			ln.Close()
			return fmt.Errorf("http: tls: %w", err)
		}
		scheme = "https"
	}
	s.started <- ln.Addr().String()
	s.log.InfoContext(ctx, "http server listening", "addr", ln.Addr().String(), "scheme", scheme)
	if !s.cfg.TLS() && !s.cfg.Loopback() && s.cfg.PlaintextTokens {
		s.log.WarnContext(ctx, "bearer tokens accepted over plain HTTP on a network address (HTTP_ALLOW_PLAINTEXT_TOKENS=true): the hop must be encrypted by a mesh or proxy", "addr", s.cfg.Addr)
	}

	errc := make(chan error, 1)
	go func() {
		if s.cfg.TLS() {
			errc <- s.srv.ServeTLS(ln, "", "") // the certificate comes from TLSConfig
			return
		}
		errc <- s.srv.Serve(ln)
	}()
	select {
	case err := <-errc:
		return fmt.Errorf("http: serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.ShutdownTimeout)
	defer cancel()
	if err := s.srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("http: shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("http: serve: %w", err)
	}
	return nil
}
