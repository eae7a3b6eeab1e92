package httpserver

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestServer(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	metrics := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("m 1\n")) })
	s := New(Config{Addr: "127.0.0.1:0", ShutdownTimeout: time.Second, ReadyTimeout: time.Second}, log, metrics)
	failing := errors.New("broker unreachable")
	var kafkaErr error
	s.AddCheck("kafka", func(context.Context) error { return kafkaErr })
	s.AddCheck("registry", func(context.Context) error { return nil })

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	addr, err := s.Addr(ctx)
	if err != nil {
		t.Fatal(err)
	}
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	tests := []struct {
		name     string
		path     string
		kafka    error
		wantCode int
		wantBody string
	}{
		{"healthz", "/healthz", nil, 200, `"ok"`},
		{"ready", "/readyz", nil, 200, `"ready"`},
		{"not ready names the check", "/readyz", failing, 503, "broker unreachable"},
		{"metrics", "/metrics", nil, 200, "m 1"},
		{"pprof off by default", "/debug/pprof/", nil, 404, ""},
	}
	for _, tt := range tests {
		kafkaErr = tt.kafka
		code, body := get(tt.path)
		if code != tt.wantCode || !strings.Contains(body, tt.wantBody) {
			t.Errorf("%s: %d %q, want %d containing %q", tt.name, code, body, tt.wantCode, tt.wantBody)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
	http.DefaultClient.CloseIdleConnections()
}
