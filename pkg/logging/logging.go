// Package logging builds the JSON slog logger every service uses. Records
// logged with a context that carries an OpenTelemetry span get trace_id and
// span_id attributes, so a log line can be joined to its trace in Jaeger.
package logging

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"go.opentelemetry.io/otel/trace"

	"github.com/ecomstream/platform/pkg/config"
)

// Config is the logging part of a service config.
type Config struct {
	Level string `env:"LOG_LEVEL" default:"info" usage:"debug, info, warn or error"`
}

// Validate implements config.Validator.
func (c *Config) Validate() error {
	if _, err := ParseLevel(c.Level); err != nil {
		return config.Errorf("LOG_LEVEL", "%v", err)
	}
	return nil
}

// ParseLevel parses debug, info, warn or error.
func ParseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(strings.ToLower(strings.TrimSpace(s)))); err != nil {
		return 0, fmt.Errorf("unknown level %q (use debug, info, warn or error)", s)
	}
	return l, nil
}

// New returns a JSON logger writing to w, tagged with the service name.
func New(w io.Writer, service string, level slog.Level) *slog.Logger {
	h := slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level})
	return slog.New(traceHandler{h}).With("service", service)
}

// traceHandler adds the span context of the record's ctx.
type traceHandler struct{ slog.Handler }

func (h traceHandler) Handle(ctx context.Context, r slog.Record) error {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		r.AddAttrs(slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String()))
	}
	return h.Handler.Handle(ctx, r)
}

func (h traceHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return traceHandler{h.Handler.WithAttrs(as)}
}

func (h traceHandler) WithGroup(name string) slog.Handler {
	return traceHandler{h.Handler.WithGroup(name)}
}
