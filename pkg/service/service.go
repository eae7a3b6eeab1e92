// Package service is the start-up and shutdown every service shares: logger,
// telemetry, schema registry, runtime metrics and the operational HTTP
// server, and running a service's long-lived parts under one errgroup.
package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/ecomstream/platform/pkg/avroserde"
	"github.com/ecomstream/platform/pkg/config"
	"github.com/ecomstream/platform/pkg/httpserver"
	"github.com/ecomstream/platform/pkg/logging"
	"github.com/ecomstream/platform/pkg/stream"
	"github.com/ecomstream/platform/pkg/telemetry"
)

// Base is the configuration every service shares; a service's Config embeds
// it and adds its own variables.
type Base struct {
	Log       logging.Config
	Telemetry telemetry.Config
	HTTP      httpserver.Config
	Kafka     stream.Config
	Registry  avroserde.Config
}

// Runtime is what Start built.
type Runtime struct {
	Name     string
	Log      *slog.Logger
	Tel      *telemetry.Telemetry
	HTTP     *httpserver.Server
	Registry *avroserde.Registry
	Metrics  *stream.Metrics

	readiness   *readiness
	shutdownTel func(context.Context) error
}

// Start builds the shared runtime. The caller defers Close.
func Start(ctx context.Context, name, version string, base Base) (*Runtime, error) {
	return start(ctx, name, version, base, config.NewRedactor(&base))
}

// start builds the runtime with red, the redactor of the service's whole
// config (Base and the service's own secrets such as bq-writer's query token).
func start(ctx context.Context, name, version string, base Base, red *config.Redactor) (*Runtime, error) {
	level, err := logging.ParseLevel(base.Log.Level)
	if err != nil {
		return nil, err
	}
	// Every line the service logs passes the redactor: client errors quote
	// URLs (franz-go's sr client puts the full request URL, userinfo
	// included, into its errors), and no caller has to remember that.
	log := slog.New(red.Handler(logging.New(os.Stderr, name, level).Handler())).With("version", version)
	tel, shutdown, err := telemetry.Setup(ctx, name, version, base.Telemetry)
	if err != nil {
		return nil, err
	}
	reg, err := avroserde.New(base.Registry)
	if err != nil {
		return nil, errors.Join(err, shutdown(ctx))
	}
	m, err := stream.NewMetrics(tel.Meter)
	if err != nil {
		return nil, errors.Join(err, shutdown(ctx))
	}
	m.DeclareStage(ctx, name)
	rd, err := newReadiness(tel.Meter, ReadinessInterval, time.Now)
	if err != nil {
		return nil, errors.Join(err, shutdown(ctx))
	}
	srv := httpserver.New(base.HTTP, log, tel.MetricsHandler(), httpserver.WithRedact(red.String),
		httpserver.WithReadinessObserver(rd.observe))
	srv.AddCheck("schema_registry", reg.Ping)
	// URLs are redacted here as well as by the handler, so this line stays
	// safe for a Runtime built without the service's full config.
	log.InfoContext(ctx, "starting", "otlp_endpoint", config.RedactURL(base.Telemetry.OTLPEndpoint),
		"kafka_brokers", base.Kafka.Brokers, "schema_registry", config.RedactURL(base.Registry.URL),
		"http_addr", base.HTTP.Addr, "http_tls", base.HTTP.TLS())
	return &Runtime{Name: name, Log: log, Tel: tel, HTTP: srv, Registry: reg, Metrics: m,
		readiness: rd, shutdownTel: shutdown}, nil
}

// Run runs the HTTP server, the background readiness round (every
// ReadinessInterval without a /readyz, exported as ecom.ready and
// ecom.ready.check) and parts concurrently until ctx is done or one of them
// fails; the first failure cancels the others and is returned.
func (rt *Runtime) Run(ctx context.Context, parts ...func(context.Context) error) error {
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return rt.HTTP.Run(gctx) })
	g.Go(func() error { return rt.readiness.run(gctx, rt.HTTP.Evaluate) })
	for _, p := range parts {
		g.Go(func() error { return p(gctx) })
	}
	err := g.Wait()
	if err != nil && ctx.Err() == nil {
		return err
	}
	rt.Log.InfoContext(ctx, "stopped")
	return err
}

// Close flushes telemetry (traces still queued are exported).
func (rt *Runtime) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := rt.shutdownTel(ctx); err != nil {
		rt.Log.Warn("telemetry shutdown", "err", err)
	}
}

// Fail prints err as the service's one-line exit message.
func Fail(name string, err error) {
	fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
}

// Config is a service's configuration: a struct embedding Base, passed by
// pointer so Load can fill it.
type Config interface {
	BaseConfig() Base
}

// BaseConfig implements Config for every struct that embeds Base.
func (b Base) BaseConfig() Base { return b }

// Main is the whole of a service's main: it loads cfg from the environment,
// starts the runtime, runs body until SIGINT or SIGTERM, and is the one place
// the process exits non-zero, with one line on stderr (for a bad setting:
// "<service>: config: VAR: what is wrong").
func Main(name, version string, cfg Config, body func(ctx context.Context, rt *Runtime) error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, name, version, config.Load, cfg, body)
	stop()
	if err != nil {
		Fail(name, err)
		os.Exit(1)
	}
}

// run is Main without the signals and the exit: it returns the error to
// print, already redacted (a registry error quoting its URL, or a body error
// quoting a token, never reaches stderr whole).
func run(ctx context.Context, name, version string, load func(any) error, cfg Config, body func(ctx context.Context, rt *Runtime) error) error {
	err := load(cfg) // redacts its own errors
	red := config.NewRedactor(cfg)
	if err != nil {
		return red.Error(err)
	}
	rt, err := start(ctx, name, version, cfg.BaseConfig(), red)
	if err != nil {
		return red.Error(err)
	}
	defer rt.Close()
	return red.Error(body(ctx, rt))
}
