package collector

import (
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ecomstream/platform/pkg/config"
)

// TestConfigValidate: a setting that cannot work stops the service with one
// line naming the variable; the collector off checks only values.
func TestConfigValidate(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "keys.json")
	if err := os.WriteFile(good, []byte(`{"keys":[{"source":"web","key":"wk_web_0123456789abcdef"}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	short := filepath.Join(dir, "short.json")
	if err := os.WriteFile(short, []byte(`{"keys":[{"source":"web","key":"secret-short"}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	unknown := filepath.Join(dir, "unknown.json")
	if err := os.WriteFile(unknown, []byte(`{"keys":[{"source":"web","kee":"wk_web_0123456789abcdef"}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		env     map[string]string
		wantVar string // "" = valid
		notIn   string // a secret the message must not hold
	}{
		{name: "off by default", env: map[string]string{}},
		{name: "loopback with a file", env: map[string]string{"COLLECTOR_ADDR": "127.0.0.1:8090", "COLLECTOR_WRITE_KEYS_FILE": good}},
		{name: "inline keys", env: map[string]string{"COLLECTOR_ADDR": "localhost:8090", "COLLECTOR_WRITE_KEYS": "web=wk_web_0123456789abcdef,srv=wk_srv_0123456789abcdef"}},
		{name: "network plain HTTP refused", env: map[string]string{"COLLECTOR_ADDR": ":8090", "COLLECTOR_WRITE_KEYS_FILE": good}, wantVar: "COLLECTOR_ADDR"},
		{name: "network plain HTTP allowed", env: map[string]string{"COLLECTOR_ADDR": ":8090", "COLLECTOR_WRITE_KEYS_FILE": good, "COLLECTOR_ALLOW_PLAINTEXT": "true"}},
		{name: "no keys", env: map[string]string{"COLLECTOR_ADDR": "127.0.0.1:8090"}, wantVar: "COLLECTOR_WRITE_KEYS_FILE"},
		{name: "missing file", env: map[string]string{"COLLECTOR_ADDR": "127.0.0.1:8090", "COLLECTOR_WRITE_KEYS_FILE": filepath.Join(dir, "nope")}, wantVar: "COLLECTOR_WRITE_KEYS_FILE"},
		{name: "short key in the file", env: map[string]string{"COLLECTOR_ADDR": "127.0.0.1:8090", "COLLECTOR_WRITE_KEYS_FILE": short}, wantVar: "COLLECTOR_WRITE_KEYS_FILE", notIn: "secret-short"},
		{name: "unknown field in the file", env: map[string]string{"COLLECTOR_ADDR": "127.0.0.1:8090", "COLLECTOR_WRITE_KEYS_FILE": unknown}, wantVar: "COLLECTOR_WRITE_KEYS_FILE", notIn: "wk_web"},
		{name: "inline key too short", env: map[string]string{"COLLECTOR_WRITE_KEYS": "web=tiny-secret"}, wantVar: "COLLECTOR_WRITE_KEYS", notIn: "tiny-secret"},
		{name: "inline entry without =", env: map[string]string{"COLLECTOR_WRITE_KEYS": "wk_web_0123456789abcdef"}, wantVar: "COLLECTOR_WRITE_KEYS", notIn: "wk_web"},
		{name: "TLS half set", env: map[string]string{"COLLECTOR_ADDR": ":8090", "COLLECTOR_WRITE_KEYS_FILE": good, "COLLECTOR_TLS_CERT_FILE": good}, wantVar: "COLLECTOR_TLS_KEY_FILE"},
		{name: "TLS pair does not load", env: map[string]string{"COLLECTOR_ADDR": ":8090", "COLLECTOR_WRITE_KEYS_FILE": good, "COLLECTOR_TLS_CERT_FILE": good, "COLLECTOR_TLS_KEY_FILE": good}, wantVar: "COLLECTOR_TLS_CERT_FILE"},
		{name: "burst under a request", env: map[string]string{"COLLECTOR_RATE_BURST": "100"}, wantVar: "COLLECTOR_RATE_BURST"},
		{name: "decompressed under the body", env: map[string]string{"COLLECTOR_MAX_DECOMPRESSED_BYTES": "1000"}, wantVar: "COLLECTOR_MAX_DECOMPRESSED_BYTES"},
		{name: "in-flight under a request", env: map[string]string{"COLLECTOR_MAX_INFLIGHT_BYTES": "1000000"}, wantVar: "COLLECTOR_MAX_INFLIGHT_BYTES"},
		{name: "client ip mode", env: map[string]string{"COLLECTOR_CLIENT_IP": "full"}, wantVar: "COLLECTOR_CLIENT_IP"},
		{name: "trusted proxies", env: map[string]string{"COLLECTOR_TRUSTED_PROXIES": "10.0.0.0/8,nonsense"}, wantVar: "COLLECTOR_TRUSTED_PROXIES"},
		{name: "origin with a path", env: map[string]string{"COLLECTOR_ALLOWED_ORIGINS": "https://shop.example.com/"}, wantVar: "COLLECTOR_ALLOWED_ORIGINS"},
		{name: "produce timeout", env: map[string]string{"COLLECTOR_PRODUCE_TIMEOUT": "0s"}, wantVar: "COLLECTOR_PRODUCE_TIMEOUT"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var cfg Config
			err := config.LoadFrom(config.MapLookup(tt.env), &cfg)
			if tt.wantVar == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			ce, ok := err.(*config.Error)
			if !ok || ce.Var != tt.wantVar {
				t.Fatalf("err = %v, want one naming %s", err, tt.wantVar)
			}
			if tt.notIn != "" && strings.Contains(err.Error(), tt.notIn) {
				t.Errorf("error %q quotes a key", err)
			}
		})
	}
}

// TestClientIP: the peer's address, or behind trusted proxies the rightmost
// hop they did not add; truncated to /24 or /48.
func TestClientIP(t *testing.T) {
	trusted, err := parseCIDRs([]string{"10.0.0.0/8", "2001:db8:ffff::/48", "192.0.2.1"})
	if err != nil {
		t.Fatal(err)
	}
	ips := clientIPs{trusted: trusted}
	tests := []struct {
		name   string
		remote string
		xff    []string
		want   string
	}{
		{"direct", "198.51.100.23:4000", nil, "198.51.100.0"},
		{"direct ignores XFF", "198.51.100.23:4000", []string{"203.0.113.9"}, "198.51.100.0"},
		{"behind a trusted proxy", "10.1.2.3:4000", []string{"203.0.113.9"}, "203.0.113.0"},
		{"spoofed hops left of the client", "10.1.2.3:4000", []string{"1.2.3.4, 203.0.113.9, 10.9.9.9"}, "203.0.113.0"},
		{"several headers", "192.0.2.1:4000", []string{"1.2.3.4", "203.0.113.9", "10.0.0.1"}, "203.0.113.0"},
		{"only proxies", "10.1.2.3:4000", []string{"10.2.2.2"}, "10.2.2.0"},
		{"garbage hop", "10.1.2.3:4000", []string{"203.0.113.9, nonsense"}, "10.1.2.0"},
		{"IPv6 client", "[2001:db8:1234:5678::1]:4000", nil, "2001:db8:1234::"},
		{"IPv6 proxy", "[2001:db8:ffff::1]:4000", []string{"2001:db8:aaaa:bbbb::2"}, "2001:db8:aaaa::"},
		{"no address", "pipe", nil, ""},
	}
	for _, tt := range tests {
		r := httptest.NewRequest("POST", Path, nil)
		r.RemoteAddr = tt.remote
		for _, h := range tt.xff {
			r.Header.Add("X-Forwarded-For", h)
		}
		if got := truncateIP(ips.of(r)); got != tt.want {
			t.Errorf("%s: %q, want %q", tt.name, got, tt.want)
		}
	}
}

// TestConstantTimeLookup: a key is found by its hash among all keys, and
// a prefix or an extension of a key is not a key.
func TestConstantTimeLookup(t *testing.T) {
	s, err := newKeyStore(&Config{WriteKeys: "a=wk_aaaa_0123456789abcdef,b=wk_bbbb_0123456789abcdef", RateLimit: 1, RateBurst: 1, MaxEvents: 1}, nil, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	set := s.set.Load()
	for give, want := range map[string]string{"wk_aaaa_0123456789abcdef": "a", "wk_bbbb_0123456789abcdef": "b",
		"wk_bbbb_0123456789abcde": "", "wk_bbbb_0123456789abcdeff": "", "": ""} {
		got := ""
		if k := set.lookup(give); k != nil {
			got = k.source
		}
		if got != want {
			t.Errorf("lookup(%q) = %q, want %q", give, got, want)
		}
	}
}

// TestBadKeysFileLoggedOnce: a keys file that stops loading is logged once,
// not on every check, and its keys stay; the next good version is logged
// as reloaded.
func TestBadKeysFileLoggedOnce(t *testing.T) {
	var logs strings.Builder
	log := slog.New(slog.NewTextHandler(&logs, nil))
	path := filepath.Join(t.TempDir(), "keys.json")
	write := func(content string, at time.Time) {
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		_ = os.Chtimes(path, at, at)
	}
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	write(`{"keys":[{"source":"web","key":"wk_web_0123456789abcdef"}]}`, now)
	s, err := newKeyStore(&Config{WriteKeysFile: path, RateLimit: 1, RateBurst: 1, MaxEvents: 1}, log, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	write(`{"keys":[`, now.Add(time.Second))
	for range 3 {
		now = now.Add(keyCheckInterval)
		if s.current().lookup("wk_web_0123456789abcdef") == nil {
			t.Fatal("a broken file dropped the keys in force")
		}
	}
	if n := strings.Count(logs.String(), "does not load"); n != 1 {
		t.Errorf("logged %d times, want once:\n%s", n, logs.String())
	}
	write(`{"keys":[{"source":"web","key":"wk_web_rotated_0123456789"}]}`, now.Add(time.Second))
	now = now.Add(keyCheckInterval)
	if s.current().lookup("wk_web_rotated_0123456789") == nil || !strings.Contains(logs.String(), "write keys reloaded") {
		t.Errorf("the fixed file was not loaded:\n%s", logs.String())
	}
	if strings.Contains(logs.String(), "wk_web_") {
		t.Errorf("a key in the log:\n%s", logs.String())
	}
}
