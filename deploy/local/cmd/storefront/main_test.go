package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ecomstream/platform/deploy/local/storefront"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestConfig(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		wantErr string
	}{
		{"defaults", nil, nil, ""},
		{"env sets defaults", nil, map[string]string{"STOREFRONT_SPEED": "3600", "STOREFRONT_WEBHOOK_URL": "http://x", "STOREFRONT_WEBHOOK_SECRET": "s"}, ""},
		{"webhook without secret", []string{"-webhook-url", "http://x"}, nil, "-webhook-secret"},
		{"empty token", []string{"-token", ""}, nil, "-token"},
		{"bad speed", []string{"-speed", "0"}, nil, "-speed"},
		{"max lateness below the minimum", []string{"-max-lateness", "1us"}, nil, "-max-lateness (STOREFRONT_MAX_LATENESS) 1µs: must be at least 2µs"},
		{"max lateness at the minimum", []string{"-max-lateness", "2us"}, nil, ""},
		{"max lateness zero", nil, map[string]string{"STOREFRONT_MAX_LATENESS": "0s"}, "-max-lateness"},
		{"bad fraction", []string{"-broken", "1.5"}, nil, "-broken"},
		{"bad fault kind", []string{"-faults", "rate_limit,fire"}, nil, `unknown kind "fire"`},
		{"bad env number", nil, map[string]string{"STOREFRONT_RATE": "lots"}, "STOREFRONT_RATE"},
		{"bad start", []string{"-start", "monday"}, nil, "-start"},
		{"negative max orders", nil, map[string]string{"STOREFRONT_MAX_ORDERS": "-1"}, "STOREFRONT_MAX_ORDERS"},
		{"bad max orders", []string{"-max-orders", "many"}, nil, "-max-orders"},
		{"extra args", []string{"x"}, nil, "unexpected"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseConfig(tt.args, func(k string) string { return tt.env[k] }, io.Discard)
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("err %v, want %q", err, tt.wantErr)
			}
		})
	}
	c, _ := parseConfig(nil, func(k string) string {
		return map[string]string{"STOREFRONT_SPEED": "3600", "STOREFRONT_MAX_ORDERS": "3000"}[k]
	}, io.Discard)
	if c.speed != 3600 || c.addr != "127.0.0.1:8097" || c.rate != storefront.DefaultRatePerMinute || c.maxOrders != 3000 {
		t.Fatalf("config %+v", c)
	}
}

// TestUsageHidesSecrets: a bad flag prints the usage, often into a log; the
// token and keys taken from the environment must not be in it, and they still apply.
func TestUsageHidesSecrets(t *testing.T) {
	env := map[string]string{"STOREFRONT_TOKEN": "tok-from-env-1234", "STOREFRONT_WEBHOOK_SECRET": "whsec-from-env-5678",
		"STOREFRONT_PAGE_TOKEN_SECRET": "pts-from-env-9012", "STOREFRONT_WEBHOOK_URL": "http://127.0.0.1:1/hook"}
	var usage strings.Builder
	if _, err := parseConfig([]string{"-no-such-flag"}, func(k string) string { return env[k] }, &usage); err == nil {
		t.Fatal("a bad flag parsed")
	}
	for k, v := range env {
		if k != "STOREFRONT_WEBHOOK_URL" && strings.Contains(usage.String(), v) {
			t.Errorf("usage shows %s's value:\n%s", k, usage.String())
		}
	}
	c, err := parseConfig(nil, func(k string) string { return env[k] }, io.Discard)
	if err != nil || c.token != env["STOREFRONT_TOKEN"] || c.webhookSecret != env["STOREFRONT_WEBHOOK_SECRET"] || c.pageTokenSecret != env["STOREFRONT_PAGE_TOKEN_SECRET"] {
		t.Fatalf("secrets from the environment not applied: %v %+v", err, c)
	}
	if c, err = parseConfig([]string{"-token", "tok-from-flag-0000"}, func(k string) string { return env[k] }, io.Discard); err != nil || c.token != "tok-from-flag-0000" {
		t.Fatalf("the flag does not win over the environment: %v %q", err, c.token)
	}
}

// TestRateZero: -rate 0 means no arrivals (a shop that only has the orders
// placed with POST /v1/admin/orders), not the library's default rate.
func TestRateZero(t *testing.T) {
	tests := []struct {
		args     []string
		min, max int
	}{
		{[]string{"-rate", "0"}, 0, 0},
		{[]string{"-rate", "60"}, 30, 90}, // one a wall second for a wall minute
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			c, err := parseConfig(append(tt.args, "-customers", "100", "-products", "50"), func(string) string { return "" }, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			start := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
			clock := storefront.NewManualClock(start)
			sim := storefront.NewSimulator(c.simConfig(clock, nil))
			sim.Advance(clock.Add(time.Minute)) // speed 1: a wall minute
			if n := sim.Stats().Arrivals; n < tt.min || n > tt.max {
				t.Fatalf("%d orders in a minute, want %d..%d", n, tt.min, tt.max)
			}
		})
	}
}

func TestRun(t *testing.T) {
	var hooks atomic.Int64
	rc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.Header.Get(storefront.HeaderSignature) == storefront.Sign([]byte("s"), r.Header.Get(storefront.HeaderTimestamp), b) {
			hooks.Add(1)
		}
	}))
	defer rc.Close()
	out := filepath.Join(t.TempDir(), "versions.jsonl")
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	args := []string{"-addr", "127.0.0.1:0", "-speed", "3600", "-rate", "3000", "-fault-rate", "0",
		"-webhook-url", rc.URL, "-webhook-secret", "s", "-versions-out", out, "-tick", "10ms", "-customers", "500", "-products", "100", "-max-orders", "20"}
	go func() {
		done <- run(ctx, args, func(string) string { return "" }, io.Discard, slog.New(slog.DiscardHandler), ready)
	}()
	addr := <-ready
	deadline := time.Now().Add(10 * time.Second)
	var page storefront.OrderPage
	for len(page.Orders) == 0 || hooks.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no orders or webhooks after 10s (%d hooks)", hooks.Load())
		}
		time.Sleep(50 * time.Millisecond)
		req, _ := http.NewRequest("GET", "http://"+addr+"/v1/orders", nil)
		req.Header.Set("Authorization", "Bearer storefront-dev-token")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = json.NewDecoder(resp.Body).Decode(&page)
		resp.Body.Close()
	}
	// -max-orders: the arrivals stop at 20 (50 a second at -rate 3000).
	var st storefront.Stats
	for !st.ArrivalsDone {
		if time.Now().After(deadline) {
			t.Fatalf("stats %+v after 10s: -max-orders 20 not reached", st)
		}
		time.Sleep(50 * time.Millisecond)
		req, _ := http.NewRequest("GET", "http://"+addr+"/v1/admin/stats", nil)
		req.Header.Set("Authorization", "Bearer storefront-dev-token")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = json.NewDecoder(resp.Body).Decode(&st)
		resp.Body.Close()
	}
	if st.Arrivals != 20 || st.Orders != 20 || st.MaxOrders != 20 {
		t.Fatalf("stats %+v, want 20 orders", st)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	http.DefaultClient.CloseIdleConnections()
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	lines := 0
	for sc := bufio.NewScanner(f); sc.Scan(); lines++ {
		var v storefront.Version
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			t.Fatal(err)
		}
	}
	if lines == 0 {
		t.Fatal("empty versions file")
	}
}

// TestFlagsDocumented: every flag is in the README's storefront table.
func TestFlagsDocumented(t *testing.T) {
	var usage strings.Builder
	if _, err := parseConfig([]string{"-h"}, func(string) string { return "" }, &usage); err == nil {
		t.Fatal("-h did not stop")
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, _ := strings.Cut(string(readme), "## Storefront simulator")
	section, _, _ = strings.Cut(section, "\n## ")
	flags := regexp.MustCompile(`(?m)^  -([a-z-]+)`).FindAllStringSubmatch(usage.String(), -1)
	if len(flags) < 20 {
		t.Fatalf("only %d flags in the usage", len(flags))
	}
	for _, f := range flags {
		if !strings.Contains(section, "`-"+f[1]+"`") {
			t.Errorf("flag -%s is not in the README's storefront table", f[1])
		}
	}
}
