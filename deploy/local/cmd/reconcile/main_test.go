package main

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/ecomstream/platform/deploy/local/reconcile"
	"github.com/ecomstream/platform/pkg/avroserde"
	protoavro "github.com/ecomstream/platform/proto/avro"
)

func TestWindow(t *testing.T) {
	now := time.Date(2026, 12, 1, 21, 0, 0, 0, time.UTC)
	tests := []struct {
		name, from, to string
		want           [2]time.Time
		err            string
	}{
		{"times", "2026-12-01T20:00:00Z", "2026-12-01T20:30:00Z", [2]time.Time{now.Add(-time.Hour), now.Add(-30 * time.Minute)}, ""},
		{"durations before now", "2h", "1h", [2]time.Time{now.Add(-2 * time.Hour), now.Add(-time.Hour)}, ""},
		{"to defaults to now", "15m", "", [2]time.Time{now.Add(-15 * time.Minute), now}, ""},
		{"from required", "", "", [2]time.Time{}, "-from"},
		{"not a time", "yesterday", "", [2]time.Time{}, "-from \"yesterday\""},
		{"empty window", "1h", "2h", [2]time.Time{}, "is not before"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, err := window(tt.from, tt.to, now)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err %v, want one with %q", err, tt.err)
				}
				return
			}
			if err != nil || !w.From.Equal(tt.want[0]) || !w.To.Equal(tt.want[1]) {
				t.Errorf("window %v, %v; want %v", w, err, tt.want)
			}
		})
	}
}

// TestRunRefusesBadInvocations: each mistake stops with exit status 1 and one line naming it,
// before anything is read.
func TestRunRefusesBadInvocations(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  string // WAREHOUSE_QUERY_TOKEN
		want string
	}{
		{"unknown source", []string{"-source", "payments", "-from", "1h"}, "t", `-source "payments"`},
		{"no token", []string{"-from", "1h"}, "", "WAREHOUSE_QUERY_TOKEN"},
		{"bad window", []string{"-from", "soon"}, "t", "-from"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("WAREHOUSE_QUERY_TOKEN", tt.env)
			code, err := run(context.Background(), tt.args)
			if code != exitError || err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("run = %d, %v; want %d and an error naming %q", code, err, exitError, tt.want)
			}
		})
	}
}

// fakes starts a Kafka with the clickstream's topics (empty), a registry holding their schemas
// and a query endpoint answering an empty warehouse; it returns the flags that reach them.
func fakes(t *testing.T) []string {
	t.Helper()
	var c reconcile.Clickstream
	c.ClickstreamNames("")
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, c.Raw, c.Events, c.Valid, c.DeadLetters))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	reg := srfake.New()
	t.Cleanup(reg.Close)
	r, err := avroserde.New(avroserde.Config{URL: reg.URL(), AutoRegister: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	for subject, schema := range map[string]string{c.Events: protoavro.ClickEvent, c.DeadLetters: protoavro.DeadLetter} {
		if _, err := r.Codec(context.Background(), avroserde.SubjectFor(subject), schema); err != nil {
			t.Fatal(err)
		}
	}
	wh := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		var q struct{ SQL string }
		_ = json.NewDecoder(req.Body).Decode(&q)
		if req.Header.Get("Authorization") != "Bearer test-token" {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"error":"token"}`))
			return
		}
		if strings.Contains(q.SQL, "count(*)") {
			_, _ = w.Write([]byte(`{"columns":["n","z"],"rows":[[0,0]]}`))
			return
		}
		_, _ = w.Write([]byte(`{"columns":["p","o"],"rows":[]}`))
	}))
	t.Cleanup(wh.Close)
	t.Setenv("WAREHOUSE_QUERY_TOKEN", "test-token")
	return []string{"-brokers", strings.Join(cluster.ListenAddrs(), ","), "-registry", reg.URL(), "-warehouse", wh.URL, "-from", "10m"}
}

// TestRunOnce: an empty window balances (exit 0) and its figures go to -metrics-file.
func TestRunOnce(t *testing.T) {
	file := filepath.Join(t.TempDir(), "recon.prom")
	code, err := run(context.Background(), append(fakes(t), "-metrics-file", file))
	if code != 0 || err != nil {
		t.Fatalf("run = %d, %v; want 0", code, err)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`ecom_reconciliation_difference{source="clickstream"} 0`, `ecom_reconciliation_settled{source="clickstream"} 1`,
		`ecom_reconciliation_records{source="clickstream",term="consumed"} 0`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("metrics file lacks %q:\n%s", want, b)
		}
	}
}

// TestRunListen: -listen serves the figures until the context ends.
func TestRunListen(t *testing.T) {
	addr := "127.0.0.1:" + freePort(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := run(ctx, append(fakes(t), "-listen", addr, "-every", "100ms"))
		done <- err
	}()
	var body string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if body = string(b); strings.Contains(body, "ecom_reconciliation_difference") {
			break
		}
	}
	http.DefaultClient.CloseIdleConnections()
	cancel()
	if err := <-done; err != nil {
		t.Errorf("run: %v", err)
	}
	if !strings.Contains(body, `ecom_reconciliation_difference{source="clickstream"} 0`) {
		t.Errorf("/metrics:\n%s", body)
	}
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}
