package webdemo

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// The oracle is the contract itself, read by a JSON Schema validator with
// format assertions on (date-time), as in clickparse's contract test.
const contractPath = "../../../proto/json/clickstream-raw.schema.json"

const testKey = "wk_web_0123456789abcdef"

// request is one POST the fake collector received.
type request struct {
	contentType, auth, origin string
	writeKey                  string // from the envelope
	size                      int    // body bytes
	events                    []map[string]any
	invalid                   []string // contract violations
}

// fakeCollector answers like ingest-clickstream's collector (CORS, per-event
// verdicts) and keeps what it got. It rejects remove_from_cart events so the
// test sees the page show a rejection too.
type fakeCollector struct {
	t      *testing.T
	origin string
	schema *jsonschema.Schema
	// hook, when set, sees the n-th POST (from 1) first and answers it
	// itself when it returns true.
	hook  func(w http.ResponseWriter, r *http.Request, n int) bool
	mu    sync.Mutex
	posts int
	reqs  []request
}

func (f *fakeCollector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/v1/events" {
		http.NotFound(w, r)
		return
	}
	if r.Header.Get("Origin") == f.origin {
		w.Header().Set("Access-Control-Allow-Origin", f.origin)
		w.Header().Set("Vary", "Origin")
	}
	if r.Method == http.MethodOptions {
		w.Header().Set("Access-Control-Allow-Methods", "POST, OPTIONS")
		w.Header().Set("Access-Control-Allow-Headers", "Content-Type, Authorization, X-Write-Key, Content-Encoding")
		w.Header().Set("Access-Control-Max-Age", "600")
		w.WriteHeader(http.StatusNoContent)
		return
	}
	f.mu.Lock()
	f.posts++
	n := f.posts
	f.mu.Unlock()
	if f.hook != nil && f.hook(w, r, n) {
		return
	}
	body, _ := io.ReadAll(r.Body)
	req := request{contentType: r.Header.Get("Content-Type"), auth: r.Header.Get("Authorization"), origin: r.Header.Get("Origin"), size: len(body)}
	var raws []json.RawMessage
	var env struct {
		WriteKey string            `json:"write_key"`
		Events   []json.RawMessage `json:"events"`
	}
	switch {
	case bytes.HasPrefix(bytes.TrimSpace(body), []byte("[")):
		if err := json.Unmarshal(body, &raws); err != nil {
			req.invalid = append(req.invalid, "body: "+err.Error())
		}
	case json.Unmarshal(body, &env) == nil && env.Events != nil:
		req.writeKey, raws = env.WriteKey, env.Events
	default:
		req.invalid = append(req.invalid, "body is neither an array nor an envelope: "+string(body))
	}
	type verdict struct {
		Index   int              `json:"index"`
		EventID string           `json:"event_id,omitempty"`
		Status  string           `json:"status"`
		Reasons []map[string]any `json:"reasons,omitempty"`
	}
	answer := struct {
		Accepted int       `json:"accepted"`
		Rejected int       `json:"rejected"`
		Events   []verdict `json:"events"`
	}{}
	for i, raw := range raws {
		inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
		if err == nil {
			err = f.schema.Validate(inst)
		}
		if err != nil {
			req.invalid = append(req.invalid, string(raw)+": "+err.Error())
		}
		var ev map[string]any
		_ = json.Unmarshal(raw, &ev)
		req.events = append(req.events, ev)
		id, _ := ev["event_id"].(string)
		v := verdict{Index: i, EventID: id, Status: "accepted"}
		if err != nil || ev["event_type"] == "remove_from_cart" {
			v.Status = "rejected"
			v.Reasons = []map[string]any{{"code": "RULE_FAILED", "field": "event_type", "message": "the test collector rejects remove_from_cart"}}
			answer.Rejected++
		} else {
			answer.Accepted++
		}
		answer.Events = append(answer.Events, v)
	}
	f.mu.Lock()
	f.reqs = append(f.reqs, req)
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(answer)
}

// postCount is how many POSTs arrived, answered or not.
func (f *fakeCollector) postCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.posts
}

func (f *fakeCollector) requests() []request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.reqs)
}

var uuidV4 = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

// TestIntegrationSnippetContract runs the shop in headless Chromium against
// a fake collector and checks what the snippet sends: every event valid
// against proto/json/clickstream-raw.schema.json, with the fields a shopper's
// clicks should give; batches by fetch with the write key in a header, and
// what is queued when a page is left by sendBeacon, a text/plain envelope
// that carries the key; and the page shows each verdict.
func TestIntegrationSnippetContract(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: runs without -short, with headless Chromium")
	}
	requireChromium(t)
	schema := compileContract(t)
	ln := listen(t)
	shopURL := Origin(ln.Addr().String())
	fake := &fakeCollector{t: t, origin: shopURL, schema: schema}
	collector := httptest.NewServer(fake)
	defer collector.Close()
	// The snippet sends when the test flushes it or a page is left, so the
	// two add_to_cart clicked just before leaving go by beacon.
	s, err := New(Config{CollectorURL: collector.URL, WriteKey: testKey, FlushInterval: neverFlush, BatchSize: 10})
	if err != nil {
		t.Fatal(err)
	}
	serve(t, s, ln)

	started := time.Now()
	b := newBrowser(t, runFolder(t, ""), browserBudget)
	orderID := shop(b, shopURL)
	statuses, logged := statusOf(t, b.log())
	panel := b.text("#tracking")

	wantTypes := []string{"page_view", "page_view", "product_view", "add_to_cart", "remove_from_cart", "add_to_cart", "add_to_cart", "page_view", "begin_checkout", "purchase"}
	// The beacon is delivered after the page is gone; wait for it.
	var got []map[string]any
	deadline := time.Now().Add(time.Minute)
	for {
		got = got[:0]
		for _, r := range fake.requests() {
			got = append(got, r.events...)
		}
		if len(got) >= len(wantTypes) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}

	var fetches, beacons int
	for _, r := range fake.requests() {
		for _, bad := range r.invalid {
			t.Errorf("not a valid raw event: %s", bad)
		}
		if r.origin != shopURL {
			t.Errorf("Origin %q, want %q", r.origin, shopURL)
		}
		switch {
		case r.contentType == "application/json":
			fetches++
			if r.auth != "Bearer "+testKey || r.writeKey != "" {
				t.Errorf("fetch: Authorization %q, envelope key %q; want the key in the header only", r.auth, r.writeKey)
			}
		case strings.HasPrefix(r.contentType, "text/plain"):
			beacons++
			if r.writeKey != testKey || r.auth != "" {
				t.Errorf("beacon: envelope key %q, Authorization %q; want the key in the envelope (a beacon has no headers)", r.writeKey, r.auth)
			}
		default:
			t.Errorf("Content-Type %q", r.contentType)
		}
	}
	if fetches == 0 || beacons == 0 {
		t.Errorf("%d fetch and %d beacon requests; want both", fetches, beacons)
	}

	var types []string
	ids := map[string]bool{}
	for _, ev := range got {
		types = append(types, str(t, ev, "event_type"))
		id, _ := ev["event_id"].(string)
		if !uuidV4.MatchString(id) || ids[id] {
			t.Errorf("event_id %q is not a fresh random UUID", id)
		}
		ids[id] = true
		ts, err := time.Parse(time.RFC3339Nano, str(t, ev, "event_timestamp"))
		if err != nil || ts.Before(started.Add(-time.Second)) || ts.After(time.Now().Add(time.Second)) {
			t.Errorf("event_timestamp %v (%v) is not the time of the click", ev["event_timestamp"], err)
		}
		for _, k := range []string{"session_id", "anonymous_id", "user_agent"} {
			if ev[k] != got[0][k] || ev[k] == "" {
				t.Errorf("%s %v differs from the first event's %v", k, ev[k], got[0][k])
			}
		}
		dev, _ := ev["device"].(map[string]any)
		if dev["type"] != "desktop" || dev["browser"] != "Chrome" || dev["os"] != "Linux" {
			t.Errorf("device %v, want desktop Chrome on Linux", dev)
		}
		page, _ := ev["page_url"].(string)
		want := map[string]string{"product_view": "/products/sku-1003", "add_to_cart": "/products/sku-1003", "remove_from_cart": "/products/sku-1003",
			"begin_checkout": "/checkout", "purchase": "/checkout"}[types[len(types)-1]]
		if want != "" && page != shopURL+want {
			t.Errorf("%s page_url %q, want %q", types[len(types)-1], page, shopURL+want)
		}
		switch ev["event_type"] {
		case "product_view":
			wantFields(t, ev, map[string]any{"product_id": "sku-1003", "price": "19.99", "currency": "EUR"})
		case "add_to_cart", "remove_from_cart":
			wantFields(t, ev, map[string]any{"product_id": "sku-1003", "quantity": 1.0, "price": "19.99", "currency": "EUR"})
		case "begin_checkout", "purchase":
			// Two items in the cart: a cart total as price with the item
			// count as quantity would say 2 × 39.98 of revenue. The
			// contract's price is a unit price, so these carry none.
			if ev["event_type"] == "purchase" {
				wantFields(t, ev, map[string]any{"order_id": orderID})
			}
			for _, k := range []string{"price", "quantity", "currency"} {
				if v, ok := ev[k]; ok {
					t.Errorf("%s carries %s %#v; the contract's price is per unit, so a cart-wide event has none", ev["event_type"], k, v)
				}
			}
		case "page_view":
			if page == shopURL+"/products/sku-1003" && ev["referrer"] != shopURL+"/" {
				t.Errorf("product page_view referrer %v, want the home page", ev["referrer"])
			}
		}
	}
	slices.Sort(types)
	slices.Sort(wantTypes)
	if !slices.Equal(types, wantTypes) {
		t.Errorf("event types %v, want %v", types, wantTypes)
	}

	// The panel: every event it logged reached the collector, each with the
	// collector's verdict, and the beacon's marked as unanswerable.
	want := map[string]int{"accepted": 7, "rejected": 1, "beacon": 2}
	n := map[string]int{}
	for _, ev := range logged {
		id := str(t, ev, "event_id")
		if !ids[id] {
			t.Errorf("the page logged %s %s, which the collector never got", ev["event_type"], id)
		}
		n[statuses[id]]++
	}
	if len(logged) != len(got) || n["accepted"] != want["accepted"] || n["rejected"] != want["rejected"] || n["beacon"] != want["beacon"] {
		t.Errorf("the panel logged %d events with verdicts %v; want %d with %v", len(logged), n, len(got), want)
	}
	for _, w := range []string{"accepted 7 · rejected 1 · by beacon 2 · answer unreadable 0 · awaiting answer 0 · refused 0", "RULE_FAILED event_type: the test collector rejects remove_from_cart", "sent by beacon (answer not readable)"} {
		if !strings.Contains(panel, w) {
			t.Errorf("the panel does not show %q:\n%s", w, panel)
		}
	}
	t.Logf("%d events in %d fetch and %d beacon requests, all valid raw events; screenshots in %s", len(got), fetches, beacons, b.shots)
}

// compileContract is the raw clickstream contract's validator.
func compileContract(t *testing.T) *jsonschema.Schema {
	t.Helper()
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	schema, err := c.Compile(contractPath)
	if err != nil {
		t.Fatalf("compile the contract: %v", err)
	}
	return schema
}

func wantFields(t *testing.T, ev map[string]any, want map[string]any) {
	t.Helper()
	for k, v := range want {
		if ev[k] != v {
			t.Errorf("%s: %s = %#v, want %#v", ev["event_type"], k, ev[k], v)
		}
	}
}
