// Package telemetry sets up OpenTelemetry for a service: traces exported over
// OTLP/HTTP when an endpoint is configured, metrics exposed in the Prometheus
// format, and W3C trace-context propagation. Setup returns one shutdown func.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/ecomstream/platform/pkg/config"
)

// Config is the telemetry part of a service config. The variable names are the
// standard OpenTelemetry ones so operators can reuse what they know.
type Config struct {
	// OTLPEndpoint is the OTLP/HTTP base URL, e.g. http://127.0.0.1:4318.
	// Empty disables trace export; trace ids are still generated and
	// propagated so dead letters and warehouse rows can be traced later.
	OTLPEndpoint string  `env:"OTEL_EXPORTER_OTLP_ENDPOINT" default:"" usage:"OTLP/HTTP endpoint for traces (e.g. http://127.0.0.1:4318); empty = no export"`
	SampleRatio  float64 `env:"OTEL_TRACES_SAMPLER_ARG" default:"1" usage:"fraction of new traces sampled (parent-based), 0..1"`
	Environment  string  `env:"DEPLOYMENT_ENVIRONMENT" default:"local" usage:"resource attribute deployment.environment.name"`
}

// Validate implements config.Validator.
func (c *Config) Validate() error {
	if c.OTLPEndpoint != "" {
		if err := config.HTTPURL("OTEL_EXPORTER_OTLP_ENDPOINT", c.OTLPEndpoint); err != nil {
			return err
		}
	}
	return config.Between("OTEL_TRACES_SAMPLER_ARG", c.SampleRatio, 0, 1)
}

// Telemetry is what Setup built.
type Telemetry struct {
	Tracer   trace.Tracer
	Meter    metric.Meter
	Registry *prometheus.Registry // also where franz-go's kprom registers

	tp *sdktrace.TracerProvider
	mp *sdkmetric.MeterProvider
}

// MetricsHandler serves the Prometheus exposition of Registry.
func (t *Telemetry) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(t.Registry, promhttp.HandlerOpts{Registry: t.Registry})
}

// Setup installs the global tracer provider, meter provider and propagator and
// returns a shutdown func that flushes and stops them.
func Setup(ctx context.Context, service, version string, cfg Config) (*Telemetry, func(context.Context) error, error) {
	// Schemaless: merging with the SDK's default resource must not fail when
	// the SDK's semantic-convention version differs from ours.
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(
		semconv.ServiceName(service),
		semconv.ServiceVersion(version),
		attribute.String("deployment.environment.name", cfg.Environment),
	))
	if err != nil {
		return nil, nil, fmt.Errorf("telemetry: resource: %w", err)
	}

	tpOpts := []sdktrace.TracerProviderOption{
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(cfg.SampleRatio))),
	}
	if cfg.OTLPEndpoint != "" {
		u, _ := url.Parse(cfg.OTLPEndpoint)
		opts := []otlptracehttp.Option{otlptracehttp.WithEndpoint(u.Host)}
		if u.Scheme == "http" {
			opts = append(opts, otlptracehttp.WithInsecure())
		}
		if p := u.Path; p != "" && p != "/" {
			opts = append(opts, otlptracehttp.WithURLPath(p+"/v1/traces"))
		}
		exp, err := otlptracehttp.New(ctx, opts...)
		if err != nil {
			return nil, nil, fmt.Errorf("telemetry: otlp exporter: %w", err)
		}
		// Large queue and batches: at tens of thousands of spans per second
		// the default queue (2048) would drop spans between exports.
		tpOpts = append(tpOpts, sdktrace.WithBatcher(exp,
			sdktrace.WithMaxQueueSize(65536),
			sdktrace.WithMaxExportBatchSize(4096),
			sdktrace.WithBatchTimeout(500*time.Millisecond)))
	}
	tp := sdktrace.NewTracerProvider(tpOpts...)

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	promExp, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		return nil, nil, fmt.Errorf("telemetry: prometheus exporter: %w", err)
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithResource(res), sdkmetric.WithReader(promExp))

	otel.SetTracerProvider(tp)
	otel.SetMeterProvider(mp)
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))

	t := &Telemetry{
		Tracer:   tp.Tracer("github.com/ecomstream/platform/" + service),
		Meter:    mp.Meter("github.com/ecomstream/platform/" + service),
		Registry: reg,
		tp:       tp,
		mp:       mp,
	}
	shutdown := func(ctx context.Context) error {
		return errors.Join(tp.Shutdown(ctx), mp.Shutdown(ctx))
	}
	return t, shutdown, nil
}
