package storefront_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ecomstream/platform/deploy/local/storefront"
)

const testToken = "test-token"

type server struct {
	*httptest.Server
	sim    *storefront.Simulator
	clock  *storefront.ManualClock
	faults *storefront.Faults
}

func newServer(t *testing.T, cfg storefront.SimConfig) *server {
	t.Helper()
	sim, clock := newSim(t, cfg)
	faults := storefront.NewFaults(1, 0, nil, 50*time.Millisecond, 1)
	api, err := storefront.NewAPI(sim, storefront.APIConfig{Token: testToken, TokenSecret: []byte("k"), Faults: faults})
	if err != nil {
		t.Fatal(err)
	}
	s := &server{Server: httptest.NewServer(api), sim: sim, clock: clock, faults: faults}
	t.Cleanup(s.Close)
	return s
}

func (s *server) get(t *testing.T, path string, auth string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, s.URL+path, nil)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := s.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: reading body: %v", path, err)
	}
	return resp, b
}

func (s *server) page(t *testing.T, q url.Values) storefront.OrderPage {
	t.Helper()
	resp, b := s.get(t, "/v1/orders?"+q.Encode(), "Bearer "+testToken)
	if resp.StatusCode != 200 {
		t.Fatalf("GET /v1/orders?%s: %d %s", q.Encode(), resp.StatusCode, b)
	}
	var p storefront.OrderPage
	if err := json.Unmarshal(b, &p); err != nil {
		t.Fatal(err)
	}
	return p
}

func errorCode(t *testing.T, b []byte) string {
	t.Helper()
	var e struct {
		Error struct{ Code, Message string }
	}
	if err := json.Unmarshal(b, &e); err != nil || e.Error.Code == "" {
		t.Fatalf("not a JSON error: %s", b)
	}
	return e.Error.Code
}

func TestAuth(t *testing.T) {
	s := newServer(t, storefront.SimConfig{Seed: 1})
	tests := []struct {
		name string
		auth string
		want int
	}{
		{"none", "", 401},
		{"wrong token", "Bearer nope", 401},
		{"no scheme", testToken, 401},
		{"basic", "Basic " + testToken, 401},
		{"right", "Bearer " + testToken, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, path := range []string{"/v1/orders", "/v1/admin/versions", "/v1/admin/faults", "/v1/admin/stats"} {
				resp, b := s.get(t, path, tt.auth)
				if resp.StatusCode != tt.want {
					t.Fatalf("%s: %d, want %d", path, resp.StatusCode, tt.want)
				}
				if tt.want == 401 {
					if code := errorCode(t, b); code != "unauthorized" || resp.Header.Get("WWW-Authenticate") == "" {
						t.Fatalf("%s: code %q, WWW-Authenticate %q", path, code, resp.Header.Get("WWW-Authenticate"))
					}
				}
			}
		})
	}
	if resp, _ := s.get(t, "/readyz", ""); resp.StatusCode != 200 {
		t.Fatalf("readyz without a token: %d", resp.StatusCode)
	}
	if resp, _ := s.get(t, "/healthz", ""); resp.StatusCode != 200 {
		t.Fatalf("healthz without a token: %d", resp.StatusCode)
	}
}

func TestQueryErrorsAndCap(t *testing.T) {
	s := newServer(t, storefront.SimConfig{Seed: 1, Speed: 60, RatePerMinute: 600})
	run(s.sim, s.clock, 2*time.Hour, time.Minute) // ~1200 orders
	first := s.page(t, url.Values{"limit": {"2"}})
	good := first.NextPageToken
	p, sig, _ := strings.Cut(good, ".")
	flip := func(s string) string {
		b := []byte(s)
		if b[3] == 'A' {
			b[3] = 'B'
		} else {
			b[3] = 'A'
		}
		return string(b)
	}
	tests := []struct {
		name     string
		query    string
		want     int
		wantCode string
	}{
		{"bad updated_since", "updated_since=yesterday", 400, "bad_request"},
		{"limit zero", "limit=0", 400, "bad_request"},
		{"limit text", "limit=ten", 400, "bad_request"},
		{"token garbage", "page_token=garbage", 400, "bad_page_token"},
		{"token payload edited", "page_token=" + flip(p) + "." + sig, 400, "bad_page_token"},
		{"token signature edited", "page_token=" + p + "." + flip(sig), 400, "bad_page_token"},
		{"token without signature", "page_token=" + p, 400, "bad_page_token"},
		{"token for another query", "updated_since=2026-12-01T01:00:00Z&page_token=" + url.QueryEscape(good), 400, "bad_page_token"},
		{"token good", "page_token=" + url.QueryEscape(good), 200, ""},
		{"token good, same query", "updated_since=0001-01-01T00:00:00Z&page_token=" + url.QueryEscape(good), 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, b := s.get(t, "/v1/orders?"+tt.query, "Bearer "+testToken)
			if resp.StatusCode != tt.want {
				t.Fatalf("%d, want %d: %s", resp.StatusCode, tt.want, b)
			}
			if tt.wantCode != "" && errorCode(t, b) != tt.wantCode {
				t.Fatalf("code %s, want %s", errorCode(t, b), tt.wantCode)
			}
		})
	}
	// A token signed with another secret is as good as forged.
	other, _ := storefront.NewAPI(s.sim, storefront.APIConfig{Token: testToken, TokenSecret: []byte("other")})
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/v1/orders?page_token="+url.QueryEscape(good), nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	other.ServeHTTP(rec, req)
	if rec.Code != 400 {
		t.Fatalf("token from another secret: %d", rec.Code)
	}

	for _, tt := range []struct{ limit, want int }{{1, 1}, {250, 250}, {500, 500}, {501, 500}, {100000, 500}} {
		p := s.page(t, url.Values{"limit": {strconv.Itoa(tt.limit)}})
		if len(p.Orders) != tt.want || !p.HasMore {
			t.Errorf("limit %d: %d orders (more %v), want %d", tt.limit, len(p.Orders), p.HasMore, tt.want)
		}
	}
	resp, _ := s.get(t, "/v1/orders", "Bearer "+testToken)
	if got, err := time.Parse(time.RFC3339Nano, resp.Header.Get(storefront.HeaderShopTime)); err != nil || !got.Equal(s.clock.Now()) {
		t.Errorf("%s %q, want %s", storefront.HeaderShopTime, resp.Header.Get(storefront.HeaderShopTime), s.clock.Now())
	}
	if p := s.page(t, url.Values{}); len(p.Orders) != storefront.DefaultLimit {
		t.Errorf("no limit: %d orders, want %d", len(p.Orders), storefront.DefaultLimit)
	}
}

type orderKey struct {
	t  time.Time
	id string
}

func less(a, b orderKey) bool { return a.t.Before(b.t) || a.t.Equal(b.t) && a.id < b.id }

// TestPaginationUnderChange walks the API as a poller does (pages with the
// token; each round from the largest updated_at seen minus the documented
// lateness) while the shop keeps changing, and checks that pages are in
// (updated_at, id) order and that the latest version of every order is seen.
func TestPaginationUnderChange(t *testing.T) {
	s := newServer(t, storefront.SimConfig{Seed: 5, RatePerMinute: 3000, LateFraction: 0.2})
	run(s.sim, s.clock, 6*time.Hour, time.Minute) // a backlog to page through

	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Go(func() {
		for range 600 { // 600 more shop minutes, while the poller walks
			s.sim.Advance(s.clock.Add(time.Minute))
			time.Sleep(200 * time.Microsecond)
		}
		close(stop)
	})

	seen := map[string]int{} // order id -> highest version seen
	var cursor time.Time
	pages := 0
	walk := func() {
		q := url.Values{"limit": {"37"}}
		if !cursor.IsZero() {
			q.Set("updated_since", cursor.Add(-storefront.DefaultMaxLateness).Format(time.RFC3339Nano))
		}
		var prev *orderKey
		for {
			p := s.page(t, q)
			pages++
			for _, o := range p.Orders {
				k := orderKey{o.UpdatedAt, o.ID}
				if prev != nil && !less(*prev, k) {
					t.Fatalf("page order: %v then %v", *prev, k)
				}
				prev = &k
				seen[o.ID] = max(seen[o.ID], o.Version)
				if o.UpdatedAt.After(cursor) {
					cursor = o.UpdatedAt
				}
			}
			if !p.HasMore {
				return
			}
			q = url.Values{"page_token": {p.NextPageToken}}
		}
	}
	for done := false; !done; {
		select {
		case <-stop:
			done = true
		default:
		}
		walk()
	}
	wg.Wait()
	walk() // the round after the last change

	latest := map[string]int{}
	for _, v := range s.sim.Versions() {
		latest[v.Order.ID] = v.Order.Version
	}
	missed := 0
	for id, v := range latest {
		if seen[id] != v {
			missed++
			if missed < 5 {
				t.Errorf("order %s: saw version %d, latest %d", id, seen[id], v)
			}
		}
	}
	if missed > 0 {
		t.Fatalf("%d of %d orders not seen at their latest version", missed, len(latest))
	}
	t.Logf("%d orders, %d pages", len(latest), pages)
}

func TestFaults(t *testing.T) {
	s := newServer(t, storefront.SimConfig{Seed: 2, RatePerMinute: 6000})
	run(s.sim, s.clock, time.Hour, time.Minute)
	auth := "Bearer " + testToken
	tests := []struct {
		fault      string
		wantStatus int
		retryAfter string
	}{
		{storefront.FaultRateLimit, 429, "1"},
		{storefront.FaultServerError, 500, ""},
		{storefront.FaultUnavailable, 503, "1"},
	}
	for _, tt := range tests {
		t.Run(tt.fault, func(t *testing.T) {
			s.faults.Queue(tt.fault)
			resp, b := s.get(t, "/v1/orders", auth)
			if resp.StatusCode != tt.wantStatus || resp.Header.Get("Retry-After") != tt.retryAfter {
				t.Fatalf("%d Retry-After %q: %s", resp.StatusCode, resp.Header.Get("Retry-After"), b)
			}
			errorCode(t, b)
			if resp, _ := s.get(t, "/v1/orders", auth); resp.StatusCode != 200 {
				t.Fatalf("the request after the fault: %d", resp.StatusCode)
			}
		})
	}
	t.Run(storefront.FaultSlow, func(t *testing.T) {
		s.faults.Queue(storefront.FaultSlow)
		start := time.Now()
		if resp, _ := s.get(t, "/v1/orders", auth); resp.StatusCode != 200 || time.Since(start) < 50*time.Millisecond {
			t.Fatalf("%d after %s", resp.StatusCode, time.Since(start))
		}
	})
	// A client that goes away while a slow answer is held counts as aborted;
	// one that waits does not.
	t.Run("slow aborted", func(t *testing.T) {
		before := s.faults.Status().Aborted
		s.faults.Queue(storefront.FaultSlow)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "GET", s.URL+"/v1/orders", nil)
		req.Header.Set("Authorization", auth)
		if resp, err := s.Client().Do(req); err == nil {
			resp.Body.Close()
			t.Fatalf("the held request answered %d within 10ms", resp.StatusCode)
		}
		deadline := time.Now().Add(5 * time.Second)
		for s.faults.Status().Aborted != before+1 && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		if got := s.faults.Status().Aborted; got != before+1 {
			t.Fatalf("aborted %d, want %d", got, before+1)
		}
		s.faults.Queue(storefront.FaultSlow)
		if resp, _ := s.get(t, "/v1/orders", auth); resp.StatusCode != 200 {
			t.Fatalf("slow answer: %d", resp.StatusCode)
		}
		if got := s.faults.Status().Aborted; got != before+1 {
			t.Fatalf("aborted %d after an answered slow request, want %d", got, before+1)
		}
	})
	t.Run(storefront.FaultDrop, func(t *testing.T) {
		s.faults.Queue(storefront.FaultDrop)
		req, _ := http.NewRequest("GET", s.URL+"/v1/orders", nil)
		req.Header.Set("Authorization", auth)
		resp, err := s.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || err == nil {
			t.Fatalf("%d, read err %v, %d bytes", resp.StatusCode, err, len(b))
		}
		if json.Valid(b) {
			t.Fatal("the cut body is valid JSON")
		}
	})
	t.Run(storefront.FaultRepeat, func(t *testing.T) {
		s.faults.Queue(storefront.FaultRepeat)
		p1 := s.page(t, url.Values{"limit": {"5"}}) // no token: the queued repeat waits
		p2 := s.page(t, url.Values{"page_token": {p1.NextPageToken}})
		if p2.Orders[0].ID != p1.Orders[4].ID {
			t.Fatalf("page 2 starts with %s, page 1 ended with %s", p2.Orders[0].ID, p1.Orders[4].ID)
		}
		p3 := s.page(t, url.Values{"page_token": {p2.NextPageToken}})
		if p3.Orders[0].ID == p2.Orders[4].ID {
			t.Fatal("repeated without a fault")
		}
	})
	// A queued repeat waits for a paged request without holding up the
	// faults queued behind it.
	t.Run("repeat does not block the queue", func(t *testing.T) {
		s.faults.Queue(storefront.FaultRepeat, storefront.FaultRateLimit)
		if resp, _ := s.get(t, "/v1/orders?limit=5", auth); resp.StatusCode != 429 {
			t.Fatalf("unpaged request behind a queued repeat: %d, want 429", resp.StatusCode)
		}
		if q := s.faults.Status().Queued; len(q) != 1 || q[0] != storefront.FaultRepeat {
			t.Fatalf("queued %v, want [repeat]", q)
		}
		p1 := s.page(t, url.Values{"limit": {"5"}})
		if p2 := s.page(t, url.Values{"page_token": {p1.NextPageToken}}); p2.Orders[0].ID != p1.Orders[4].ID {
			t.Fatalf("the queued repeat was not served on the paged request")
		}
	})
	t.Run("random rate", func(t *testing.T) {
		s.faults.SetRate(1)
		defer s.faults.SetRate(0)
		failed := 0
		for range 20 {
			req, _ := http.NewRequest("GET", s.URL+"/v1/orders?limit=1", nil)
			req.Header.Set("Authorization", auth)
			resp, err := s.Client().Do(req)
			if err != nil {
				failed++
				continue
			}
			_, err = io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != 200 {
				failed++
			}
		}
		if failed == 0 {
			t.Fatal("rate 1 and no request failed")
		}
	})
}

func TestAdmin(t *testing.T) {
	s := newServer(t, storefront.SimConfig{Seed: 4})
	run(s.sim, s.clock, 5*time.Hour, time.Minute)
	post := func(path, body string) (int, []byte) {
		req, _ := http.NewRequestWithContext(context.Background(), "POST", s.URL+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+testToken)
		resp, err := s.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	tests := []struct {
		path, body string
		want       int
	}{
		{"/v1/admin/faults", `{"next":["rate_limit","drop"]}`, 200},
		{"/v1/admin/faults", `{"next":["earthquake"]}`, 400},
		{"/v1/admin/faults", `{"rate":0.5}`, 200},
		{"/v1/admin/faults", `not json`, 400},
		{"/v1/admin/burst", `{"on":true}`, 200},
		{"/v1/admin/burst", `on`, 400},
		{"/v1/admin/orders", `{"id":"o-from-click","customer_id":"u-000001","lines":[{"product_id":"p-00001","quantity":2}]}`, 201},
		{"/v1/admin/orders", `{"id":"o-from-click","customer_id":"u-000001","lines":[{"product_id":"p-00001","quantity":2}]}`, 409},
		{"/v1/admin/orders", `{"customer_id":"u-999999","lines":[{"product_id":"p-00001","quantity":1}]}`, 400},
		{"/v1/admin/orders", `{"customer_id":"u-000001","lines":[{"product_id":"p-99999","quantity":1}]}`, 400},
		{"/v1/admin/orders", `{"customer_id":"u-000001","lines":[{"product_id":"p-00001","quantity":0}]}`, 400},
		{"/v1/admin/orders", `{"customer_id":"u-000001","lines":[]}`, 400},
	}
	for _, tt := range tests {
		code, b := post(tt.path, tt.body)
		if code != tt.want {
			t.Errorf("POST %s %s: %d, want %d: %s", tt.path, tt.body, code, tt.want, b)
		}
		if want := map[int]string{400: "bad_request", 409: "exists"}[code]; want != "" && errorCode(t, b) != want {
			t.Errorf("POST %s %s: code %q, want %q", tt.path, tt.body, errorCode(t, b), want)
		}
	}
	resp, b := s.get(t, "/v1/admin/stats", "Bearer "+testToken)
	var st storefront.Stats
	if err := json.Unmarshal(b, &st); err != nil || resp.StatusCode != 200 {
		t.Fatalf("stats: %d %v %s", resp.StatusCode, err, b)
	}
	if want := s.sim.Stats(); st.Placed != 1 || st.Orders != want.Orders || st.Orders != st.Arrivals+1 || st.Versions != want.Versions || !st.Burst ||
		len(st.Broken) != len(storefront.BrokenKinds()) || st.ShopTime.IsZero() {
		t.Fatalf("stats %s, simulator %+v", b, want)
	}
	placed, ok := s.sim.Order("o-from-click")
	if !ok || placed.CustomerID != "u-000001" || len(placed.Lines) != 1 || placed.Lines[0].Quantity != 2 || len(placed.Problems()) > 0 {
		t.Fatalf("placed order %+v (found %v): %v", placed, ok, placed.Problems())
	}
	if st := s.faults.Status(); st.Rate != 0.5 || len(st.Queued) != 2 || !s.sim.Burst() {
		t.Fatalf("status %+v, burst %v", st, s.sim.Burst())
	}

	resp, b = s.get(t, "/v1/admin/versions", "Bearer "+testToken)
	if ct := resp.Header.Get("Content-Type"); ct != "application/x-ndjson" {
		t.Fatalf("content type %q", ct)
	}
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	n := 0
	for sc.Scan() {
		var v storefront.Version
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil || v.Order.ID == "" {
			t.Fatalf("line %d: %v %s", n, err, sc.Text())
		}
		n++
	}
	if want := len(s.sim.Versions()); n != want || n == 0 {
		t.Fatalf("%d lines, want %d", n, want)
	}
	id := s.sim.Versions()[0].Order.ID
	if _, b := s.get(t, "/v1/admin/versions?order_id="+id, "Bearer "+testToken); strings.Count(string(b), "\n") != len(versionsOf(s.sim, id)) {
		t.Fatalf("versions of %s: %s", id, b)
	}
	if resp, _ := s.get(t, "/v1/orders/"+id, "Bearer "+testToken); resp.StatusCode != 200 {
		t.Fatalf("GET order: %d", resp.StatusCode)
	}
	if resp, _ := s.get(t, "/v1/orders/o-none", "Bearer "+testToken); resp.StatusCode != 404 {
		t.Fatalf("GET missing order: %d", resp.StatusCode)
	}
}

func versionsOf(sim *storefront.Simulator, id string) []storefront.Version {
	var out []storefront.Version
	for _, v := range sim.Versions() {
		if v.Order.ID == id {
			out = append(out, v)
		}
	}
	return out
}

// TestStatsWebhooks: with webhooks on, GET /v1/admin/stats shows their
// counters (a test can then require that none was abandoned).
func TestStatsWebhooks(t *testing.T) {
	sim, _ := newSim(t, storefront.SimConfig{Seed: 2})
	hooks, err := storefront.NewWebhooks(storefront.WebhookConfig{URL: "http://127.0.0.1:1/hook", Secret: []byte("whsec_test")})
	if err != nil {
		t.Fatal(err)
	}
	for _, cfg := range []storefront.APIConfig{{Token: testToken}, {Token: testToken, Webhooks: hooks}} {
		api, err := storefront.NewAPI(sim, cfg)
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(api)
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/v1/admin/stats", nil)
		req.Header.Set("Authorization", "Bearer "+testToken)
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var st map[string]any
		err = json.NewDecoder(resp.Body).Decode(&st)
		resp.Body.Close()
		srv.Close()
		if err != nil {
			t.Fatal(err)
		}
		wh, ok := st["webhooks"].(map[string]any)
		if ok != (cfg.Webhooks != nil) {
			t.Fatalf("webhooks configured %v, stats %v", cfg.Webhooks != nil, st)
		}
		if ok {
			for _, k := range []string{"queued", "delivered", "failed", "abandoned", "dropped"} {
				if _, ok := wh[k]; !ok {
					t.Errorf("stats.webhooks has no %q: %v", k, wh)
				}
			}
		}
	}
}
