package storefront_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ecomstream/platform/deploy/local/storefront"
)

const testSecret = "whsec_test"

// verify is the receiver's check, written from the documented scheme rather
// than from storefront.Sign: HMAC-SHA256 over "<timestamp>.<raw body>",
// hex, behind "sha256=", compared in constant time, within a replay window.
func verify(secret string, h http.Header, body []byte, now time.Time) bool {
	ts := h.Get("X-Storefront-Timestamp")
	sig, ok := strings.CutPrefix(h.Get("X-Storefront-Signature"), "sha256=")
	if !ok {
		return false
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || now.Sub(time.Unix(sec, 0)).Abs() > 5*time.Minute {
		return false
	}
	got, err := hex.DecodeString(sig)
	if err != nil {
		return false
	}
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(ts + "." + string(body)))
	return hmac.Equal(got, m.Sum(nil))
}

func TestSignKnownVector(t *testing.T) {
	// Computed with: printf '%s' '1700000000.{"id":"o-1","version":1}' | openssl dgst -sha256 -hmac whsec_test
	want := "sha256=74a49411476526cbabe71377f5f0841a9ddd6ed021acb173bab68187e51889ef"
	if got := storefront.Sign([]byte(testSecret), "1700000000", []byte(`{"id":"o-1","version":1}`)); got != want {
		t.Fatalf("Sign = %s, want %s", got, want)
	}
}

type received struct {
	header http.Header
	body   []byte
	ok     bool // the signature verified
}

// receiver records deliveries and answers with status(n) for the n-th (from 1).
type receiver struct {
	mu     sync.Mutex
	got    []received
	status func(n int) int
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	rc.mu.Lock()
	rc.got = append(rc.got, received{r.Header.Clone(), b, verify(testSecret, r.Header, b, time.Now())})
	n := len(rc.got)
	rc.mu.Unlock()
	code := 200
	if rc.status != nil {
		code = rc.status(n)
	}
	w.WriteHeader(code)
}

func (rc *receiver) all() []received {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]received(nil), rc.got...)
}

func startWebhooks(t *testing.T, rc *receiver, cfg storefront.WebhookConfig) *storefront.Webhooks {
	t.Helper()
	srv := httptest.NewServer(rc)
	cfg.URL, cfg.Secret = srv.URL, []byte(testSecret)
	cfg.Backoff, cfg.MaxBackoff = time.Millisecond, 4*time.Millisecond
	if cfg.DuplicateFraction == 0 {
		cfg.DuplicateFraction = -1
	}
	if cfg.ReorderFraction == 0 {
		cfg.ReorderFraction = -1
	}
	h, err := storefront.NewWebhooks(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- h.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
		srv.Close()
	})
	return h
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func someVersions(t *testing.T, n int) []storefront.Version {
	t.Helper()
	sim, clock := newSim(t, storefront.SimConfig{Seed: 9})
	for len(sim.Versions()) < n {
		sim.Advance(clock.Add(10 * time.Minute))
	}
	return sim.Versions()[:n]
}

func TestWebhookSignatureAndHeaders(t *testing.T) {
	rc := &receiver{}
	h := startWebhooks(t, rc, storefront.WebhookConfig{})
	vs := someVersions(t, 20)
	for _, v := range vs {
		h.Enqueue(v)
	}
	waitFor(t, "20 deliveries", func() bool { return len(rc.all()) == 20 })
	ids := map[string]bool{}
	for _, r := range rc.all() {
		if !r.ok {
			t.Fatalf("signature does not verify: %v", r.header)
		}
		var o storefront.Order
		if err := json.Unmarshal(r.body, &o); err != nil || o.ID == "" {
			t.Fatalf("body is not an order: %s", r.body)
		}
		wantEvent := "order.updated"
		if o.Version == 1 {
			wantEvent = "order.created"
		}
		if r.header.Get("X-Storefront-Event") != wantEvent || r.header.Get("Content-Type") != "application/json" || r.header.Get("X-Storefront-Attempt") != "1" {
			t.Fatalf("headers %v", r.header)
		}
		ids[r.header.Get("X-Storefront-Delivery-Id")] = true
		// A tampered body or another secret must not verify.
		if verify(testSecret, r.header, append([]byte(nil), append(r.body, ' ')...), time.Now()) || verify("other", r.header, r.body, time.Now()) {
			t.Fatal("verification accepts a tampered body or a wrong secret")
		}
	}
	if len(ids) != 20 {
		t.Fatalf("%d distinct delivery ids for 20 deliveries", len(ids))
	}
}

func TestWebhookRetries(t *testing.T) {
	tests := []struct {
		name          string
		status        func(n int) int
		attempts      int
		wantRequests  int
		wantDelivered int
		wantAbandoned int
	}{
		{"2xx at once", func(int) int { return 204 }, 8, 1, 1, 0},
		{"two 500s then 200", func(n int) int { return map[bool]int{true: 500, false: 200}[n <= 2] }, 8, 3, 1, 0},
		{"429 and 503 then 202", func(n int) int { return []int{429, 503, 202}[min(n, 3)-1] }, 8, 3, 1, 0},
		{"always 500", func(int) int { return 500 }, 3, 3, 0, 1},
		{"3xx is not success", func(int) int { return 302 }, 2, 2, 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc := &receiver{status: tt.status}
			h := startWebhooks(t, rc, storefront.WebhookConfig{MaxAttempts: tt.attempts})
			h.Enqueue(someVersions(t, 1)[0])
			waitFor(t, "the delivery to end", func() bool {
				s := h.Stats()
				return s.Delivered+s.Abandoned == 1
			})
			got := rc.all()
			if len(got) != tt.wantRequests {
				t.Fatalf("%d requests, want %d", len(got), tt.wantRequests)
			}
			for i, r := range got {
				if !r.ok || r.header.Get("X-Storefront-Attempt") != strconv.Itoa(i+1) ||
					r.header.Get("X-Storefront-Delivery-Id") != got[0].header.Get("X-Storefront-Delivery-Id") {
					t.Fatalf("attempt %d: verified %v, headers %v", i+1, r.ok, r.header)
				}
			}
			if s := h.Stats(); s.Delivered != tt.wantDelivered || s.Abandoned != tt.wantAbandoned || s.Failed != tt.wantRequests-tt.wantDelivered {
				t.Fatalf("stats %+v", s)
			}
		})
	}
}

func TestWebhookDuplicatesAndReordering(t *testing.T) {
	t.Run("duplicates", func(t *testing.T) {
		rc := &receiver{}
		h := startWebhooks(t, rc, storefront.WebhookConfig{DuplicateFraction: 1})
		for _, v := range someVersions(t, 5) {
			h.Enqueue(v)
		}
		waitFor(t, "10 deliveries", func() bool { return len(rc.all()) == 10 })
		perID := map[string]int{}
		for _, r := range rc.all() {
			perID[r.header.Get("X-Storefront-Delivery-Id")]++
		}
		for id, n := range perID {
			if n != 2 {
				t.Fatalf("delivery %s arrived %d times", id, n)
			}
		}
	})
	t.Run("out of order", func(t *testing.T) {
		rc := &receiver{}
		h := startWebhooks(t, rc, storefront.WebhookConfig{ReorderFraction: 1, ReorderDelay: 300 * time.Millisecond})
		vs := someVersions(t, 30)
		for _, v := range vs {
			h.Enqueue(v)
		}
		waitFor(t, "30 deliveries", func() bool { return len(rc.all()) == 30 })
		inOrder := true
		for i, r := range rc.all() {
			var o storefront.Order
			_ = json.Unmarshal(r.body, &o)
			if o.ID != vs[i].Order.ID || o.Version != vs[i].Order.Version {
				inOrder = false
			}
		}
		if inOrder || h.Stats().Reordered != 30 {
			t.Fatalf("held back %d, arrived in order %v", h.Stats().Reordered, inOrder)
		}
	})
}

func TestWebhookConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  storefront.WebhookConfig
	}{
		{"no url", storefront.WebhookConfig{Secret: []byte("s")}},
		{"no secret", storefront.WebhookConfig{URL: "http://x"}},
	}
	for _, tt := range tests {
		if _, err := storefront.NewWebhooks(tt.cfg); err == nil {
			t.Errorf("%s: no error", tt.name)
		}
	}
}
