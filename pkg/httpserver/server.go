// Package httpserver is the operational HTTP server every service runs: a chi
// router with /healthz (the process is alive), /readyz (its dependencies
// answer) and /metrics, to which a service adds its own routes.
package httpserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"

	"github.com/ecomstream/platform/pkg/config"
)

// Config is the HTTP part of a service config.
type Config struct {
	Addr            string        `env:"HTTP_ADDR" default:":8080" usage:"listen address for health, readiness, metrics and the service API"`
	ShutdownTimeout time.Duration `env:"HTTP_SHUTDOWN_TIMEOUT" default:"10s" usage:"how long in-flight requests get on shutdown"`
	ReadyTimeout    time.Duration `env:"HTTP_READY_CHECK_TIMEOUT" default:"2s" usage:"timeout of each readiness check"`
	Pprof           bool          `env:"HTTP_PPROF_ENABLED" default:"false" usage:"serve Go profiles on /debug/pprof/ (bind HTTP_ADDR to a private interface when on)"`
}

// Validate implements config.Validator.
func (c *Config) Validate() error {
	return config.First(
		config.HostPort("HTTP_ADDR", c.Addr),
		config.Positive("HTTP_SHUTDOWN_TIMEOUT", c.ShutdownTimeout),
		config.Positive("HTTP_READY_CHECK_TIMEOUT", c.ReadyTimeout),
	)
}

// Check is a readiness probe of one dependency.
type Check func(ctx context.Context) error

// Server is the service's HTTP server.
type Server struct {
	Router chi.Router

	cfg     Config
	log     *slog.Logger
	mu      sync.Mutex
	checks  map[string]Check
	names   []string
	srv     *http.Server
	started chan string
}

// New returns a server with /healthz, /readyz and /metrics mounted.
func New(cfg Config, log *slog.Logger, metrics http.Handler) *Server {
	s := &Server{cfg: cfg, log: log, checks: map[string]Check{}, started: make(chan string, 1)}
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

func (s *Server) ready(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	names := append([]string(nil), s.names...)
	checks := make([]Check, len(names))
	for i, n := range names {
		checks[i] = s.checks[n]
	}
	s.mu.Unlock()

	type result struct {
		Status string `json:"status"`
		Error  string `json:"error,omitempty"`
	}
	results := make(map[string]result, len(names))
	var wg sync.WaitGroup
	var mu sync.Mutex
	for i, n := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(r.Context(), s.cfg.ReadyTimeout)
			defer cancel()
			res := result{Status: "ok"}
			if err := checks[i](ctx); err != nil {
				res = result{Status: "failing", Error: err.Error()}
			}
			mu.Lock()
			results[n] = res
			mu.Unlock()
		}()
	}
	wg.Wait()
	status := http.StatusOK
	overall := "ready"
	for _, res := range results {
		if res.Status != "ok" {
			status, overall = http.StatusServiceUnavailable, "not ready"
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"status": overall, "checks": results})
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
	}
	s.started <- ln.Addr().String()
	s.log.InfoContext(ctx, "http server listening", "addr", ln.Addr().String())

	errc := make(chan error, 1)
	go func() { errc <- s.srv.Serve(ln) }()
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
