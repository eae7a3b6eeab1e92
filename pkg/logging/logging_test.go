package logging

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"testing"

	"go.opentelemetry.io/otel/trace"
)

func TestNewAddsTraceIDs(t *testing.T) {
	tid, _ := trace.TraceIDFromHex("0102030405060708090a0b0c0d0e0f10")
	sid, _ := trace.SpanIDFromHex("0102030405060708")
	spanCtx := trace.ContextWithSpanContext(context.Background(),
		trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled}))

	tests := []struct {
		name        string
		ctx         context.Context
		wantTraceID string
	}{
		{name: "with span", ctx: spanCtx, wantTraceID: tid.String()},
		{name: "without span", ctx: context.Background(), wantTraceID: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			log := New(&buf, "svc", slog.LevelInfo).With("k", "v")
			log.InfoContext(tt.ctx, "hello")
			var got map[string]any
			if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
				t.Fatalf("not JSON: %v: %s", err, buf.String())
			}
			if got["service"] != "svc" || got["k"] != "v" || got["msg"] != "hello" {
				t.Errorf("missing attrs: %v", got)
			}
			if tid, _ := got["trace_id"].(string); tid != tt.wantTraceID {
				t.Errorf("trace_id = %q, want %q", tid, tt.wantTraceID)
			}
		})
	}
}

func TestParseLevel(t *testing.T) {
	tests := []struct {
		give    string
		want    slog.Level
		wantErr bool
	}{
		{give: "debug", want: slog.LevelDebug},
		{give: "INFO", want: slog.LevelInfo},
		{give: " warn ", want: slog.LevelWarn},
		{give: "error", want: slog.LevelError},
		{give: "loud", wantErr: true},
	}
	for _, tt := range tests {
		got, err := ParseLevel(tt.give)
		if (err != nil) != tt.wantErr || (!tt.wantErr && got != tt.want) {
			t.Errorf("ParseLevel(%q) = %v, %v", tt.give, got, err)
		}
	}
}
