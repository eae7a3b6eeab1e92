package webdemo

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func testConfig() Config {
	return Config{CollectorURL: "http://127.0.0.1:18090", WriteKey: "wk_web_0123456789abcdef", FlushInterval: 250 * time.Millisecond, BatchSize: 5}
}

func newTestServer(t *testing.T) *httptest.Server {
	t.Helper()
	s, err := New(testConfig())
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	return ts
}

func get(t *testing.T, method, url string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestRoutes(t *testing.T) {
	ts := newTestServer(t)
	tests := []struct {
		name, method, path string
		wantStatus         int
		wantType           string
		wantBody           []string
	}{
		{name: "home lists every product", method: "GET", path: "/", wantStatus: 200, wantType: "text/html; charset=utf-8",
			wantBody: []string{`data-page="home"`, `href="/products/sku-1001"`, `href="/products/sku-1004"`, "89.90 EUR", `src="/ecom.js"`, `src="/config.js"`, `id="tracking-log"`}},
		{name: "product page has the cart buttons with the product's data", method: "GET", path: "/products/sku-1003", wantStatus: 200, wantType: "text/html; charset=utf-8",
			wantBody: []string{`data-page="product"`, `id="add-to-cart"`, `id="remove-from-cart"`, `id="checkout"`, `data-product-id="sku-1003"`, `data-price="19.99"`, `data-currency="EUR"`}},
		{name: "checkout", method: "GET", path: "/checkout", wantStatus: 200, wantType: "text/html; charset=utf-8",
			wantBody: []string{`data-page="checkout"`, `id="place-order"`}},
		{name: "the collector's URL is on the page", method: "GET", path: "/checkout", wantStatus: 200, wantType: "text/html; charset=utf-8",
			wantBody: []string{"http://127.0.0.1:18090/v1/events"}},
		{name: "HEAD", method: "HEAD", path: "/", wantStatus: 200, wantType: "text/html; charset=utf-8"},
		{name: "unknown product", method: "GET", path: "/products/sku-9999", wantStatus: 404, wantType: "text/html; charset=utf-8", wantBody: []string{"Not found"}},
		{name: "unknown path", method: "GET", path: "/admin", wantStatus: 404, wantType: "text/html; charset=utf-8"},
		{name: "a directory is not listed", method: "GET", path: "/assets/", wantStatus: 404, wantType: "text/html; charset=utf-8"},
		{name: "snippet", method: "GET", path: "/ecom.js", wantStatus: 200, wantType: "text/javascript; charset=utf-8",
			wantBody: []string{"navigator.sendBeacon", "keepalive: keepalive", "crypto.randomUUID", "TextEncoder", "/v1/events"}},
		{name: "shop script", method: "GET", path: "/shop.js", wantStatus: 200, wantType: "text/javascript; charset=utf-8", wantBody: []string{"ecom.track"}},
		{name: "stylesheet", method: "GET", path: "/style.css", wantStatus: 200, wantType: "text/css; charset=utf-8"},
		{name: "config", method: "GET", path: "/config.js", wantStatus: 200, wantType: "text/javascript; charset=utf-8", wantBody: []string{"window.ECOM_CONFIG = {"}},
		{name: "POST is not a method of the shop", method: "POST", path: "/", wantStatus: 405, wantType: "text/plain; charset=utf-8"},
		{name: "POST to a page", method: "POST", path: "/checkout", wantStatus: 405, wantType: "text/plain; charset=utf-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := get(t, tt.method, ts.URL+tt.path)
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.wantStatus)
			}
			if got := resp.Header.Get("Content-Type"); got != tt.wantType {
				t.Errorf("Content-Type %q, want %q", got, tt.wantType)
			}
			for h, want := range map[string]string{"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"} {
				if got := resp.Header.Get(h); got != want {
					t.Errorf("%s %q, want %q", h, got, want)
				}
			}
			csp := resp.Header.Get("Content-Security-Policy")
			if !strings.Contains(csp, "default-src 'self'") || !strings.Contains(csp, "connect-src 'self' http://127.0.0.1:18090;") {
				t.Errorf("Content-Security-Policy %q lacks self-only sources or the collector", csp)
			}
			for _, w := range tt.wantBody {
				if !strings.Contains(body, w) {
					t.Errorf("body lacks %q", w)
				}
			}
		})
	}
}

func TestConfigJS(t *testing.T) {
	tests := []struct {
		name string
		give Config
		want map[string]any
	}{
		{name: "given values", give: testConfig(),
			want: map[string]any{"collectorURL": "http://127.0.0.1:18090", "writeKey": "wk_web_0123456789abcdef", "flushIntervalMs": 250.0, "batchSize": 5.0}},
		{name: "defaults, trailing slash dropped", give: Config{CollectorURL: "http://127.0.0.1:18090/", WriteKey: "k"},
			want: map[string]any{"collectorURL": "http://127.0.0.1:18090", "writeKey": "k", "flushIntervalMs": 500.0, "batchSize": 10.0}},
		{name: "a key cannot end the script", give: Config{CollectorURL: "https://c.example", WriteKey: "</script><b>"},
			want: map[string]any{"collectorURL": "https://c.example", "writeKey": "</script><b>", "flushIntervalMs": 500.0, "batchSize": 10.0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := New(tt.give)
			if err != nil {
				t.Fatal(err)
			}
			ts := httptest.NewServer(s.Handler())
			defer ts.Close()
			_, body := get(t, "GET", ts.URL+"/config.js")
			if strings.Contains(body, "<") {
				t.Errorf("config.js holds a raw '<': %s", body)
			}
			js, ok := strings.CutPrefix(strings.TrimSpace(body), "window.ECOM_CONFIG = ")
			if !ok {
				t.Fatalf("config.js = %q", body)
			}
			var got map[string]any
			if err := json.Unmarshal([]byte(strings.TrimSuffix(js, ";")), &got); err != nil {
				t.Fatalf("config.js is not an object literal: %v: %s", err, body)
			}
			if len(got) != len(tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
			for k, v := range tt.want {
				if got[k] != v {
					t.Errorf("%s = %v, want %v", k, got[k], v)
				}
			}
		})
	}
}

func TestValidate(t *testing.T) {
	ok := testConfig()
	tests := []struct {
		name    string
		give    func(*Config)
		wantErr string
	}{
		{name: "valid", give: func(*Config) {}},
		{name: "https collector", give: func(c *Config) { c.CollectorURL = "https://collect.example.com" }},
		{name: "no collector", give: func(c *Config) { c.CollectorURL = "" }, wantErr: "CollectorURL"},
		{name: "collector without scheme", give: func(c *Config) { c.CollectorURL = "127.0.0.1:8090" }, wantErr: "CollectorURL"},
		{name: "collector with a path", give: func(c *Config) { c.CollectorURL = "http://127.0.0.1:8090/v1/events" }, wantErr: "CollectorURL"},
		{name: "no write key", give: func(c *Config) { c.WriteKey = "" }, wantErr: "WriteKey"},
		{name: "negative flush interval", give: func(c *Config) { c.FlushInterval = -time.Second }, wantErr: "FlushInterval"},
		{name: "batch over the collector's limit", give: func(c *Config) { c.BatchSize = 501 }, wantErr: "BatchSize"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ok
			tt.give(&c)
			_, err := New(c)
			if tt.wantErr == "" && err != nil {
				t.Fatalf("unexpected error %v", err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("error %v, want one naming %s", err, tt.wantErr)
			}
		})
	}
}

func TestServeStopsWithContext(t *testing.T) {
	s, err := New(testConfig())
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	resp, _ := get(t, "GET", "http://"+ln.Addr().String()+"/")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after its context ended")
	}
	if _, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
		t.Error("still listening after Serve returned")
	}
}

func TestRunRefusesABusyAddress(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c := testConfig()
	c.Addr = ln.Addr().String()
	s, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("Run on a busy address: %v", err)
	}
}
