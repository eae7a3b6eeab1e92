package httpserver

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ecomstream/platform/pkg/config"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// start runs s until the test ends and returns its address.
func start(t *testing.T, s *Server) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		http.DefaultClient.CloseIdleConnections()
	})
	addr, err := s.Addr(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

func get(t *testing.T, url, auth string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
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

func TestServer(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	metrics := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("m 1\n")) })
	s := New(Config{Addr: "127.0.0.1:0", ShutdownTimeout: time.Second, ReadyTimeout: time.Second}, log, metrics)
	failing := errors.New("broker unreachable at 10.0.0.7:9092")
	var kafkaErr error
	s.AddCheck("kafka", func(context.Context) error { return kafkaErr })
	s.AddCheck("registry", func(context.Context) error { return nil })
	addr := start(t, s)

	tests := []struct {
		name     string
		path     string
		kafka    error
		wantCode int
		want     []string
		notWant  string
	}{
		{"healthz", "/healthz", nil, 200, []string{`"ok"`}, ""},
		{"ready", "/readyz", nil, 200, []string{`"ready"`, `"kafka":{"status":"ok"}`}, ""},
		// Anyone may learn that kafka fails, not why: the error names
		// internal hosts (and for some clients, credentials).
		{"not ready names the check, not its error", "/readyz", failing, 503,
			[]string{`"not ready"`, `"kafka":{"status":"failing"}`, `"registry":{"status":"ok"}`}, "unreachable"},
		{"metrics", "/metrics", nil, 200, []string{"m 1"}, ""},
		{"pprof off by default", "/debug/pprof/", nil, 404, nil, ""},
	}
	for _, tt := range tests {
		kafkaErr = tt.kafka
		code, body := get(t, "http://"+addr+tt.path, "")
		if code != tt.wantCode {
			t.Errorf("%s: %d %q, want %d", tt.name, code, body, tt.wantCode)
		}
		for _, w := range tt.want {
			if !strings.Contains(body, w) {
				t.Errorf("%s: %q lacks %q", tt.name, body, w)
			}
		}
		if tt.notWant != "" && strings.Contains(body, tt.notWant) {
			t.Errorf("%s: %q shows %q to an anonymous caller", tt.name, body, tt.notWant)
		}
	}
}

// TestDefaultAddrIsLoopback: with no HTTP_ADDR the server is reachable from
// this host only; serving the network is a decision the operator writes down.
func TestDefaultAddrIsLoopback(t *testing.T) {
	var cfg Config
	if err := config.LoadFrom(config.MapLookup(nil), &cfg); err != nil {
		t.Fatal(err)
	}
	host, _, err := net.SplitHostPort(cfg.Addr)
	if err != nil {
		t.Fatal(err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		t.Errorf("default HTTP_ADDR = %q, want a loopback address", cfg.Addr)
	}
}
