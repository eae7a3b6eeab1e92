package webdemo

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// snippetRig is the shop in headless Chromium against a fake collector.
type snippetRig struct {
	shopURL string
	fake    *fakeCollector
	b       *browser
}

// newSnippetRig serves the shop (flushed only by the test) against a fake
// collector whose POSTs go to hook first.
func newSnippetRig(t *testing.T, batchSize int, hook func(w http.ResponseWriter, r *http.Request, n int) bool) *snippetRig {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: runs without -short, with headless Chromium")
	}
	requireChromium(t)
	ln := listen(t)
	shopURL := Origin(ln.Addr().String())
	fake := &fakeCollector{t: t, origin: shopURL, schema: compileContract(t), hook: hook}
	collector := httptest.NewServer(fake)
	t.Cleanup(collector.Close)
	s, err := New(Config{CollectorURL: collector.URL, WriteKey: testKey, FlushInterval: neverFlush, BatchSize: batchSize})
	if err != nil {
		t.Fatal(err)
	}
	serve(t, s, ln)
	return &snippetRig{shopURL: shopURL, fake: fake, b: newBrowser(t, runFolder(t, ""), browserBudget)}
}

// waitFor polls the page until expr is true, failing t after budget with
// what and the panel.
func (b *browser) waitFor(what, expr string, budget time.Duration) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, budget)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool]("!!("+expr+")", chromedp.WithPollingInterval(50*time.Millisecond))); err != nil {
		b.t.Fatalf("waiting %s for %s: %v\npanel:\n%s", budget, what, err, b.text("#tracking"))
	}
}

// waitPosts waits until the fake collector has seen n POSTs.
func (r *snippetRig) waitPosts(t *testing.T, n int) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); r.fake.postCount() < n; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the collector saw %d POSTs, want %d", r.fake.postCount(), n)
		}
	}
}

// TestIntegrationSnippetInFlightAtNavigation leaves a page while its fetch
// waits for the collector: the old page never sees that answer, so the panel
// must say so ("sent with keepalive, answer unreadable") rather than show the
// events awaiting an answer forever; the keepalive request still arrives.
func TestIntegrationSnippetInFlightAtNavigation(t *testing.T) {
	release := make(chan struct{})
	var once sync.Once
	rig := newSnippetRig(t, 10, func(w http.ResponseWriter, r *http.Request, n int) bool {
		if n == 1 { // the home page's page_view: held until the test lets it go
			select {
			case <-release:
			case <-r.Context().Done():
				return true
			}
		}
		return false
	})
	t.Cleanup(func() { once.Do(func() { close(release) }) }) // before the collector closes
	b := rig.b
	b.open(rig.shopURL + "/")
	b.flush()
	rig.waitPosts(t, 1) // the fetch is at the collector, unanswered
	b.follow("#product-sku-1003")

	b.waitFor("the home page's fetch marked as left in flight",
		`(JSON.parse(sessionStorage.getItem("ecom_demo_log") || "[]").find(e => e.page === "/" && e.transport === "fetch") || {}).phase === "left"`, 20*time.Second)
	entries := b.log()
	statuses, logged := statusOf(t, entries)
	if len(logged) != 1 || statuses[str(t, logged[0], "event_id")] != "keepalive" {
		t.Fatalf("after leaving the home page: %d events, verdicts %v; want its page_view as sent with keepalive", len(logged), statuses)
	}
	if s := b.text("#tracking"); !strings.Contains(s, "answer unreadable 1 · awaiting answer 0") || !strings.Contains(s, "sent with keepalive, answer unreadable") {
		t.Errorf("the panel does not show the unreadable answer:\n%s", s)
	}
	homeView := str(t, logged[0], "event_id")

	once.Do(func() { close(release) })
	b.waitAnswered("product_view")
	statuses, _ = statusOf(t, b.log())
	for id, st := range statuses {
		if want := map[bool]string{true: "keepalive", false: "accepted"}[id == homeView]; st != want {
			t.Errorf("event %s: verdict %q, want %q", id, st, want)
		}
	}
	// The keepalive request outlived its page: the collector gets it.
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(20 * time.Millisecond) {
		got := false
		for _, r := range rig.fake.requests() {
			for _, ev := range r.events {
				got = got || ev["event_id"] == homeView
			}
		}
		if got {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the home page's keepalive fetch (page_view %s) never reached the collector", homeView)
		}
	}
}

// TestIntegrationSnippetRetry checks how the snippet retries: after the
// collector's Retry-After when CORS lets the page read it, after a backoff
// when not, and a request without a readable answer (a refusal without CORS
// headers looks like a network error to the page) a bounded 3 times, then
// given up with a clear entry.
func TestIntegrationSnippetRetry(t *testing.T) {
	tooMany := func(expose bool) func(w http.ResponseWriter, r *http.Request, n int) bool {
		return func(w http.ResponseWriter, r *http.Request, n int) bool {
			if n > 1 {
				return false
			}
			if expose {
				w.Header().Set("Access-Control-Expose-Headers", "Retry-After")
			}
			w.Header().Set("Retry-After", "1")
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusTooManyRequests)
			fmt.Fprint(w, `{"error":"over COLLECTOR_RATE_LIMIT"}`)
			return true
		}
	}
	tests := []struct {
		name      string
		hook      func(w http.ResponseWriter, r *http.Request, n int) bool
		wantPosts int
		wantFirst string // the first entry's retryBy; "" = given up
		wantFinal string // the page_view's last verdict
		wantPanel []string
	}{
		{name: "429 with an exposed Retry-After", hook: tooMany(true), wantPosts: 2, wantFirst: "Retry-After", wantFinal: "accepted",
			wantPanel: []string{"HTTP 429: over COLLECTOR_RATE_LIMIT", "sending again in 1.0 s (the collector's Retry-After)"}},
		{name: "429, Retry-After hidden by CORS", hook: tooMany(false), wantPosts: 2, wantFirst: "backoff", wantFinal: "accepted",
			wantPanel: []string{"HTTP 429: over COLLECTOR_RATE_LIMIT", "(backoff)"}},
		{name: "answers without CORS headers", wantPosts: 3, wantFinal: "refused",
			hook: func(w http.ResponseWriter, r *http.Request, n int) bool {
				w.Header().Del("Access-Control-Allow-Origin") // the browser hides the answer
				return false
			},
			wantPanel: []string{"no readable answer", "refused this page's origin", "gave up after 3 attempts without an answer"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rig := newSnippetRig(t, 10, tt.hook)
			b := rig.b
			b.open(rig.shopURL + "/")
			b.flush()
			b.waitFor("the page_view's final verdict "+tt.wantFinal,
				fmt.Sprintf(`document.querySelectorAll('#tracking-log [data-status=%q]').length === 1 && !document.querySelector('#tracking-log [data-status="pending"]')`, tt.wantFinal),
				time.Minute)
			// A further attempt would come within 4 s (backoff) if the
			// snippet had not stopped.
			if tt.wantFinal == "refused" {
				time.Sleep(4 * time.Second)
			}
			if n := rig.fake.postCount(); n != tt.wantPosts {
				t.Errorf("the collector saw %d POSTs, want %d", n, tt.wantPosts)
			}
			entries := b.log()
			if len(entries) != tt.wantPosts {
				t.Fatalf("the panel logged %d requests, want %d", len(entries), tt.wantPosts)
			}
			first := entries[0]
			if tt.wantFirst != "" && (first.RetryBy != tt.wantFirst || first.Status != http.StatusTooManyRequests) {
				t.Errorf("first request: HTTP %d, retried by %q after %v ms; want 429 retried by %s", first.Status, first.RetryBy, first.RetryInMs, tt.wantFirst)
			}
			if tt.wantFirst == "Retry-After" && (first.RetryInMs == nil || *first.RetryInMs != 1000) {
				t.Errorf("first request retried after %v ms, want the collector's Retry-After, 1000 ms", first.RetryInMs)
			}
			if last := entries[len(entries)-1]; last.Attempt != tt.wantPosts {
				t.Errorf("last request is attempt %d, want %d", last.Attempt, tt.wantPosts)
			}
			panel := b.text("#tracking")
			for _, w := range tt.wantPanel {
				if !strings.Contains(panel, w) {
					t.Errorf("the panel does not show %q:\n%s", w, panel)
				}
			}
		})
	}
}

// TestIntegrationSnippetLargeBatch sends a batch whose body is over the
// browser's 64 KiB keepalive limit in bytes (non-ASCII text: fewer UTF-16
// units than bytes): the snippet must split it, and every event arrive.
func TestIntegrationSnippetLargeBatch(t *testing.T) {
	rig := newSnippetRig(t, 50, nil)
	b := rig.b
	b.open(rig.shopURL + "/")
	// 20 searches of 1024 "€" (3 bytes each in UTF-8, 1 UTF-16 unit): ~75 KB
	// of body, ~35,000 characters.
	if _, err := chromedp.Run(b.ctx, chromedp.Evaluate[bool](`(() => {
		for (let i = 0; i < 20; i++) window.ecom.track("search", {search_query: "€".repeat(1024)});
		return true;
	})()`)); err != nil {
		t.Fatal(err)
	}
	b.waitAnswered("search")
	statuses, logged := statusOf(t, b.log())
	if len(logged) != 21 {
		t.Fatalf("the panel logged %d events, want 21", len(logged))
	}
	for id, st := range statuses {
		if st != "accepted" {
			t.Errorf("event %s: verdict %q, want accepted", id, st)
		}
	}
	events, largest := 0, 0
	reqs := rig.fake.requests()
	for _, r := range reqs {
		events += len(r.events)
		largest = max(largest, r.size)
	}
	if events != 21 || len(reqs) < 2 || largest > 60000 {
		t.Errorf("the collector got %d events in %d requests, the largest %d bytes; want 21 in at least 2, none over 60000 bytes", events, len(reqs), largest)
	}
}
