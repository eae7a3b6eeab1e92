package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ecomstream/platform/deploy/local/clickgen"
)

func TestParseHTTPRuns(t *testing.T) {
	tests := []struct {
		give    string
		want    []httpRun
		wantErr bool
	}{
		{give: "1:20000,50:200000", want: []httpRun{{1, 20000}, {50, 200000}}},
		{give: " 50:100 ", want: []httpRun{{50, 100}}},
		{give: "", wantErr: true},
		{give: "50", wantErr: true},
		{give: "0:100", wantErr: true},
		{give: "50:10", wantErr: true},
		{give: "a:b", wantErr: true},
	}
	for _, tt := range tests {
		got, err := parseHTTPRuns(tt.give)
		if (err != nil) != tt.wantErr || fmt.Sprint(got) != fmt.Sprint(tt.want) {
			t.Errorf("parseHTTPRuns(%q) = %v, %v; want %v, error %v", tt.give, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestParsePhases(t *testing.T) {
	tests := []struct {
		give    string
		want    string
		wantErr string
	}{
		{give: "throughput,latency,http", want: "map[http:true latency:true throughput:true]"},
		{give: "http", want: "map[http:true]"},
		{give: "bigquery", want: "map[bigquery:true]"},
		{give: "throughput,bigquery", want: "map[bigquery:true throughput:true]"},
		{give: " latency , http", want: "map[http:true latency:true]"},
		{give: "", wantErr: "no phase"},
		{give: "throughput,htp", wantErr: `unknown phase "htp"`},
	}
	for _, tt := range tests {
		got, err := parsePhases(tt.give)
		switch {
		case tt.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("parsePhases(%q) error = %v, want %q", tt.give, err, tt.wantErr)
			}
		case err != nil || fmt.Sprint(got) != tt.want:
			t.Errorf("parsePhases(%q) = %v, %v; want %s", tt.give, got, err, tt.want)
		}
	}
}

func TestPercentile(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		var out []time.Duration
		for _, x := range v {
			out = append(out, time.Duration(x)*time.Millisecond)
		}
		return out
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = i + 1
	}
	tests := []struct {
		give []time.Duration
		q    float64
		want time.Duration
	}{
		{give: nil, q: 0.5, want: 0},
		{give: ms(7), q: 0.99, want: 7 * time.Millisecond},
		{give: ms(1, 2, 3, 4), q: 0.5, want: 2 * time.Millisecond},
		{give: ms(hundred...), q: 0.99, want: 99 * time.Millisecond},
		{give: ms(hundred...), q: 1, want: 100 * time.Millisecond},
	}
	for _, tt := range tests {
		if got := percentile(tt.give, tt.q); got != tt.want {
			t.Errorf("percentile(%d values, %v) = %v, want %v", len(tt.give), tt.q, got, tt.want)
		}
	}
}

func TestRetryWait(t *testing.T) {
	tests := []struct {
		give string
		want time.Duration
	}{
		{"1", time.Second},
		{" 0 ", 0},
		{"30", maxRetryWait},
		{"", 100 * time.Millisecond},
		{"Wed, 21 Oct 2026 07:28:00 GMT", 100 * time.Millisecond},
	}
	for _, tt := range tests {
		if got := retryWait(tt.give); got != tt.want {
			t.Errorf("retryWait(%q) = %v, want %v", tt.give, got, tt.want)
		}
	}
}

func TestBuildRequests(t *testing.T) {
	gen := clickgen.New(clickgen.WithSeed(3), clickgen.WithBrokenFraction(0.3), clickgen.WithBrokenKinds(httpBrokenKinds()...))
	reqs := buildRequests(gen, httpRun{batch: 50, events: 420})
	if len(reqs) != 9 || reqs[8].events != 20 {
		t.Fatalf("%d requests, last of %d events; want 9, the last of 20", len(reqs), reqs[len(reqs)-1].events)
	}
	total, valid, accept := 0, 0, 0
	for _, r := range reqs {
		var arr []json.RawMessage
		if err := json.Unmarshal(r.body, &arr); err != nil || len(arr) != r.events {
			t.Fatalf("body is not a JSON array of %d events: %v", r.events, err)
		}
		for i, ev := range arr {
			// A bigger event refuses its whole request (413), which the phase does not measure.
			if len(ev) > 65536 {
				t.Fatalf("event %d of a request is %d bytes, over the collector's MAX_EVENT_BYTES default", i, len(ev))
			}
		}
		total, valid, accept = total+r.events, valid+r.valid, accept+r.accept
	}
	if total != 420 || valid >= accept || accept >= total || valid < 200 {
		t.Errorf("420 events at 30%% broken: %d events, %d accepted, %d valid; want valid < accepted < events", total, accept, valid)
	}
}

// fakeCollector answers every request's first attempt 503 (Retry-After 0)
// after firstDelay and the second 200, accepting all but the events whose
// body holds "reject".
type fakeCollector struct {
	mu         sync.Mutex
	seen       map[string]int
	other      int // status for bodies holding "refuse"
	firstDelay time.Duration
}

func (f *fakeCollector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	if r.Header.Get("Authorization") != "Bearer wk_bench_0123456789abcdef" {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	if strings.Contains(string(b), "refuse") {
		w.WriteHeader(f.other)
		fmt.Fprint(w, `{"error":"no"}`)
		return
	}
	f.mu.Lock()
	f.seen[string(b)]++
	n := f.seen[string(b)]
	f.mu.Unlock()
	if n == 1 {
		time.Sleep(f.firstDelay)
		w.Header().Set("Retry-After", "0")
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	var arr []string
	_ = json.Unmarshal(b, &arr)
	acc := 0
	for _, e := range arr {
		if e != "reject" {
			acc++
		}
	}
	fmt.Fprintf(w, `{"accepted":%d,"rejected":%d,"events":[]}`, acc, len(arr)-acc)
}

func TestDrive(t *testing.T) {
	const firstDelay = 40 * time.Millisecond
	f := &fakeCollector{seen: map[string]int{}, other: http.StatusBadRequest, firstDelay: firstDelay}
	srv := httptest.NewServer(f)
	defer srv.Close()
	var reqs []httpRequest
	for i := range 40 {
		body := fmt.Sprintf(`["e%d-a","e%d-b","reject"]`, i, i)
		reqs = append(reqs, httpRequest{body: []byte(body), events: 3, accept: 2, valid: 1})
	}
	reqs[5].accept = 3 // the collector disagrees with this one
	res, err := drive(context.Background(), srv.Client(), srv.URL, "wk_bench_0123456789abcdef", reqs, 4)
	if err != nil {
		t.Fatal(err)
	}
	if res.ok != 40 || res.events != 120 || res.accepted != 80 || res.valid != 40 || res.mismatched != 1 ||
		res.retried[http.StatusServiceUnavailable] != 40 || len(res.latencies) != 40 || len(res.perceived) != 40 {
		t.Errorf("drive() = ok %d, events %d, accepted %d, valid %d, mismatched %d, retried %v, %d and %d latencies; want 40, 120, 80, 40, 1, 503:40, 40 and 40",
			res.ok, res.events, res.accepted, res.valid, res.mismatched, res.retried, len(res.latencies), len(res.perceived))
	}
	// The client waited for the 503 before the 2xx: its latency includes it,
	// the answer's (the 2xx attempt alone) does not.
	var answers, perceived time.Duration
	for i, d := range res.perceived {
		if d < firstDelay {
			t.Errorf("client-perceived latency %d is %v, below the %v the first attempt's 503 took", i, d, firstDelay)
		}
		perceived += d
		answers += res.latencies[i]
	}
	if perceived < answers+40*firstDelay {
		t.Errorf("client-perceived latencies sum to %v, want at least the answers' %v plus 40 × %v", perceived, answers, firstDelay)
	}

	// A refusal other than 429/503 ends the run with the collector's answer.
	reqs = append(reqs, httpRequest{body: []byte(`["refuse"]`), events: 1})
	_, err = drive(context.Background(), srv.Client(), srv.URL, "wk_bench_0123456789abcdef", reqs[35:], 2)
	if err == nil || !strings.Contains(err.Error(), "400 Bad Request") || !strings.Contains(err.Error(), `{"error":"no"}`) {
		t.Errorf("drive() with a refused request: error %v, want the 400 and its body", err)
	}
}

func TestCollectorAnswers(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	addr := strings.TrimPrefix(srv.URL, "http://")
	if !collectorAnswers(context.Background(), addr, 300*time.Millisecond) {
		t.Error("collectorAnswers() = false for a listening server")
	}
	srv.Close() // nothing listens there now
	if collectorAnswers(context.Background(), addr, 300*time.Millisecond) {
		t.Error("collectorAnswers() = true for a closed port")
	}
	if collectorAnswers(context.Background(), "", time.Second) {
		t.Error(`collectorAnswers("") = true`)
	}
}

func TestKnowsCollector(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		give string
		want bool
	}{
		{"with the collector", "\x7fELF...env:\"COLLECTOR_ADDR\" default:\"\"...", true},
		{"before the collector", "\x7fELF...env:\"INPUT_TOPIC\"...", false},
	}
	for _, tt := range tests {
		path := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "-"))
		if err := os.WriteFile(path, []byte(tt.give), 0o755); err != nil {
			t.Fatal(err)
		}
		if got, err := knowsCollector(path); err != nil || got != tt.want {
			t.Errorf("knowsCollector(%s) = %v, %v; want %v", tt.name, got, err, tt.want)
		}
	}
	if _, err := knowsCollector(filepath.Join(dir, "missing")); err == nil {
		t.Error("knowsCollector(missing file): no error")
	}
}

func TestLastLoad(t *testing.T) {
	at := time.Date(2026, 12, 1, 10, 0, 0, 123456000, time.UTC)
	tests := []struct {
		name    string
		give    [][]any
		want    time.Time
		wantErr string
	}{
		{name: "a number from JSON", give: [][]any{{float64(at.UnixMicro())}}, want: at},
		{name: "an integer", give: [][]any{{at.UnixMicro()}}, want: at},
		{name: "NULL: no HTTP row", give: [][]any{{nil}}, wantErr: "NULL"},
		{name: "no row", give: nil, wantErr: "0 rows"},
		{name: "a string", give: [][]any{{"soon"}}, wantErr: "string"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := lastLoad(tt.give)
			switch {
			case tt.wantErr != "":
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("lastLoad() error %v, want one saying %q", err, tt.wantErr)
				}
			case err != nil || !got.Equal(tt.want):
				t.Errorf("lastLoad() = %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}
