package webdemo

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	cdppage "github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/ecomstream/platform/deploy/local/svcrun"
)

// chromiumPath is where Debian's chromium package (make deps-browser) puts it.
const chromiumPath = "/usr/bin/chromium"

// browserBudget bounds a browser test's clicking; a passing run takes a
// fraction of it, so it costs nothing and keeps a slow machine from failing.
const browserBudget = 3 * time.Minute

// neverFlush is the tests' FlushInterval: the snippet sends only when a test
// calls ecom.flush(), when a page is left (beacon), or when a batch is full,
// so nothing depends on how long a click or a navigation takes.
const neverFlush = time.Hour

// browser is one headless Chromium tab driven through the shop.
type browser struct {
	t      *testing.T
	ctx    context.Context
	shots  string // screenshot folder
	mu     sync.Mutex
	thrown []string // uncaught JavaScript exceptions
}

// requireChromium fails the test, saying how to install it, when Chromium
// is missing.
func requireChromium(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("headless Chromium is not installed at %s (%v): `make deps-browser` (deploy/local/bootstrap.sh --browser) installs it", chromiumPath, err)
	}
}

// newBrowser starts headless Chromium; it is stopped when the test ends.
func newBrowser(t *testing.T, shots string, timeout time.Duration) *browser {
	t.Helper()
	requireChromium(t)
	if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath),
		chromedp.NoSandbox, // root in CI; the pages are our own
		chromedp.WindowSize(1200, 900),
		chromedp.UserDataDir(t.TempDir()),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, timeout)
	b := &browser{t: t, ctx: ctx, shots: shots}
	exceptions := chromedp.Events(ctx, runtime.ExceptionThrown)
	var wg sync.WaitGroup
	wg.Go(func() {
		for ev, err := range exceptions {
			if err != nil {
				return
			}
			b.mu.Lock()
			b.thrown = append(b.thrown, exceptionText(ev))
			b.mu.Unlock()
		}
	})
	t.Cleanup(func() {
		cancelTimeout()
		cancelTab()
		cancelAlloc()
		wg.Wait()
		b.mu.Lock()
		defer b.mu.Unlock()
		for _, e := range b.thrown {
			t.Errorf("uncaught JavaScript exception: %s", e)
		}
	})
	// Start the browser now, so a missing library fails here and not in
	// the middle of a step.
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("start %s: %v", chromiumPath, err)
	}
	return b
}

func exceptionText(ev runtime.EventExceptionThrown) string {
	d := ev.ExceptionDetails
	s := d.Text
	if d.Exception != nil && d.Exception.Description != "" {
		s += " " + d.Exception.Description
	}
	return fmt.Sprintf("%s (%s:%d:%d)", s, d.URL, d.LineNumber, d.ColumnNumber)
}

func (b *browser) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, steps...); err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
}

// open loads url and waits until the shop's scripts have run.
func (b *browser) open(url string) {
	b.t.Helper()
	b.do("open "+url, chromedp.Navigate(url), chromedp.WaitVisible(chromedp.CSS("#tracking-summary")))
	b.waitScripts()
}

// follow clicks a link and waits for the next page's load event.
func (b *browser) follow(sel string) {
	b.t.Helper()
	if _, err := chromedp.Run(b.ctx, chromedp.WaitEvent(cdppage.LoadEventFired, nil, chromedp.Click(chromedp.CSS(sel)))); err != nil {
		b.t.Fatalf("follow %s: %v", sel, err)
	}
	b.waitScripts()
}

func (b *browser) waitScripts() {
	b.t.Helper()
	if _, err := chromedp.Run(b.ctx, chromedp.Poll[bool](`!!(window.ecom && document.getElementById("session-id").textContent)`)); err != nil {
		b.t.Fatalf("the shop's scripts did not run: %v", err)
	}
}

func (b *browser) click(sel string) {
	b.t.Helper()
	b.do("click "+sel, chromedp.Click(chromedp.CSS(sel)))
}

// flush makes the snippet send what it holds (the tests' flush interval is
// an hour).
func (b *browser) flush() {
	b.t.Helper()
	if _, err := chromedp.Run(b.ctx, chromedp.Evaluate[bool](`window.ecom.flush(), true`)); err != nil {
		b.t.Fatalf("ecom.flush(): %v", err)
	}
}

// waitAnswered sends what the snippet holds, then waits until the panel
// shows the collector's answer for every event sent so far and for at least
// one event of each given type.
func (b *browser) waitAnswered(types ...string) {
	b.t.Helper()
	b.flush()
	var conds []string
	for _, typ := range types {
		conds = append(conds, fmt.Sprintf(`document.querySelector('#tracking-log [data-event-type=%q]:not([data-status="pending"])')`, typ))
	}
	conds = append(conds, `!document.querySelector('#tracking-log [data-status="pending"]')`)
	expr := strings.Join(conds, " && ")
	if _, err := chromedp.Run(b.ctx, chromedp.Poll[bool]("!!("+expr+")", chromedp.WithPollingInterval(50*time.Millisecond))); err != nil {
		b.t.Fatalf("waiting for the collector's answer to %v: %v\npanel:\n%s", types, err, b.text("#tracking"))
	}
}

func (b *browser) text(sel string) string {
	s, err := chromedp.Run(b.ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		return "(" + err.Error() + ")"
	}
	return s
}

func (b *browser) attr(sel, name string) string {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.AttributeValue(chromedp.CSS(sel), name))
	if err != nil || !v.Exists {
		b.t.Fatalf("attribute %s of %s: %v (present %v)", name, sel, err, v.Exists)
	}
	return v.Value
}

// screenshot saves the whole page as <n>-<name>.png in the test's run folder.
func (b *browser) screenshot(name string) {
	b.t.Helper()
	png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatalf("screenshot %s: %v", name, err)
	}
	path := filepath.Join(b.shots, name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

// logEntry is one request in the panel's log (shop.js keeps it in
// sessionStorage).
type logEntry struct {
	Transport string                     `json:"transport"`
	Page      string                     `json:"page"`
	Status    int                        `json:"status"`
	Sent      []map[string]any           `json:"sent"`
	Verdicts  map[string]json.RawMessage `json:"verdicts"`
	Attempt   int                        `json:"attempt"`   // 1 = the first time these events were sent
	RetryBy   string                     `json:"retryBy"`   // when retried: Retry-After or backoff
	RetryInMs *int                       `json:"retryInMs"` // when retried: the wait
}

func (b *browser) log() []logEntry {
	b.t.Helper()
	raw, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](`sessionStorage.getItem("ecom_demo_log") || "[]"`))
	if err != nil {
		b.t.Fatal(err)
	}
	var out []logEntry
	if err := json.Unmarshal([]byte(raw), &out); err != nil {
		b.t.Fatalf("the panel's log: %v: %s", err, raw)
	}
	return out
}

// statusOf is the panel's verdict on each event id, and the events sent; an
// event without a string event_id or a verdict that is not JSON fails t.
func statusOf(t *testing.T, entries []logEntry) (map[string]string, []map[string]any) {
	t.Helper()
	st := map[string]string{}
	var sent []map[string]any
	for _, e := range entries {
		for _, ev := range e.Sent {
			id := str(t, ev, "event_id")
			var v struct{ Status string }
			if raw, ok := e.Verdicts[id]; ok {
				if err := json.Unmarshal(raw, &v); err != nil {
					t.Fatalf("the panel's verdict on %s: %v: %s", id, err, raw)
				}
			}
			if _, seen := st[id]; !seen {
				sent = append(sent, ev)
			}
			// A retry sends the event again; the last verdict counts.
			st[id] = v.Status
		}
	}
	return st, sent
}

// str is ev[k] as a non-empty string, or fails t.
func str(t *testing.T, ev map[string]any, k string) string {
	t.Helper()
	s, ok := ev[k].(string)
	if !ok || s == "" {
		t.Fatalf("event %v: %s is %#v, want a non-empty string", ev, k, ev[k])
	}
	return s
}

// shop walks the way a shopper does: the home page, a product, add to
// cart, remove, add twice more (two items in the cart) and leave for the
// checkout at once (those two events are still held, so they go by
// sendBeacon on pagehide), then place the order. It returns the order id the
// page showed. The server's FlushInterval must be neverFlush.
func shop(b *browser, base string) string {
	b.t.Helper()
	b.open(base + "/")
	b.waitAnswered("page_view")
	b.screenshot("1-home")

	b.follow("#product-sku-1003")
	b.waitAnswered("product_view")
	b.screenshot("2-product")

	b.click("#add-to-cart")
	b.waitAnswered("add_to_cart")
	b.screenshot("3-product-in-cart")
	b.click("#remove-from-cart")
	b.waitAnswered("remove_from_cart")
	b.click("#add-to-cart")
	b.click("#add-to-cart")
	b.follow("#checkout")
	b.waitAnswered("begin_checkout")
	b.screenshot("4-checkout")

	b.click("#place-order")
	b.do("order confirmation", chromedp.WaitVisible(chromedp.CSS("#order-done")))
	b.waitAnswered("purchase")
	b.screenshot("5-order-placed")
	return b.attr("#order-done", "data-order-id")
}

// runFolder is the git-ignored folder of a test's output.
func runFolder(t *testing.T, suffix string) string {
	t.Helper()
	root, err := svcrun.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(root, ".run", "e2e", t.Name()+suffix)
}

// listen takes a free loopback port for the shop.
func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// serve runs s on ln until the test ends.
func serve(t *testing.T, s *Server, ln net.Listener) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("shop server: %v", err)
		}
	})
}
