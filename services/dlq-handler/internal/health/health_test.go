package health

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ecomstream/platform/pkg/config"
)

// series is one sample of a fake answer: labels as k=v pairs, and the value.
type series struct {
	labels []string
	value  string
}

func vector(ss ...series) string {
	var parts []string
	for _, s := range ss {
		m := map[string]string{}
		for _, kv := range s.labels {
			k, v, _ := strings.Cut(kv, "=")
			m[k] = v
		}
		b, _ := json.Marshal(m)
		parts = append(parts, fmt.Sprintf(`{"metric":%s,"value":[1764590400,%q]}`, b, s.value))
	}
	return `{"status":"success","data":{"resultType":"vector","result":[` + strings.Join(parts, ",") + `]}}`
}

// fakeProm answers the queries it knows (exact PromQL) and an empty vector
// to the others; it counts the queries.
type fakeProm struct {
	answers map[string]string
	n       atomic.Int64
}

func (f *fakeProm) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.n.Add(1)
	if r.URL.Path != "/api/v1/query" || r.Method != http.MethodPost {
		http.NotFound(w, r)
		return
	}
	q := r.PostFormValue("query")
	if a, ok := f.answers[q]; ok {
		if strings.HasPrefix(a, "HTTP400 ") {
			w.WriteHeader(http.StatusBadRequest)
			a = strings.TrimPrefix(a, "HTTP400 ")
		}
		_, _ = w.Write([]byte(a))
		return
	}
	_, _ = w.Write([]byte(vector()))
}

func testConfig(url string) Config {
	var c Config
	if err := config.LoadFrom(config.MapLookup(map[string]string{"PROMETHEUS_URL": url, "HEALTH_SERVICES": "ingest-clickstream,validator,bq-writer",
		"HEALTH_CACHE": "0s"}), &c); err != nil {
		panic(err)
	}
	return c
}

func up(job, instance, v string) series {
	return series{[]string{"job=" + job, "instance=" + instance}, v}
}
func byJob(job, v string) series { return series{[]string{"job=" + job}, v} }

// healthy are the answers of a healthy three-service platform.
func healthy(q queries) map[string]string {
	return map[string]string{
		q.Up:    vector(up("ingest-clickstream", "127.0.0.1:1", "1"), up("validator", "127.0.0.1:2", "1"), up("bq-writer", "127.0.0.1:3", "1")),
		q.Ready: vector(byJob("ingest-clickstream", "1"), byJob("validator", "1"), byJob("bq-writer", "1")),
		q.Lag:   vector(byJob("ingest-clickstream", "3"), byJob("validator", "0"), byJob("bq-writer", "120")),
		q.ErrorRate: vector(byJob("ingest-clickstream", "0"), byJob("validator", "0.002"),
			byJob("bq-writer", "NaN")), // no traffic: no rate, not a number
	}
}

// TestStatusRules: green, amber and red per the contract's rules, each
// with its reason, and the overall status the worst of them.
func TestStatusRules(t *testing.T) {
	q := buildQueries(testConfig("http://x"))
	tests := []struct {
		name        string
		change      func(map[string]string)
		want        map[string]Status
		wantReason  map[string]string
		wantOverall Overall
	}{
		{name: "healthy", change: func(map[string]string) {},
			want:        map[string]Status{"ingest-clickstream": Green, "validator": Green, "bq-writer": Green},
			wantReason:  map[string]string{"validator": "up, ready, lag 0, dead-lettered 0.2%", "bq-writer": "up, ready, lag 120"},
			wantOverall: Overall{Green, "all 3 services green"}},
		{name: "lag above the threshold", change: func(a map[string]string) {
			a[q.Lag] = vector(byJob("ingest-clickstream", "3"), byJob("validator", "12340"), byJob("bq-writer", "0"))
		},
			want:        map[string]Status{"ingest-clickstream": Green, "validator": Amber, "bq-writer": Green},
			wantReason:  map[string]string{"validator": "lag 12 340 > 10 000"},
			wantOverall: Overall{Amber, "validator: lag 12 340 > 10 000"}},
		{name: "lag at the threshold is amber", change: func(a map[string]string) {
			a[q.Lag] = vector(byJob("bq-writer", "10000"))
		}, want: map[string]Status{"bq-writer": Amber, "validator": Green}, wantReason: map[string]string{"bq-writer": "lag 10 000 > 10 000"}},
		{name: "dead-letter rate above the threshold", change: func(a map[string]string) {
			a[q.ErrorRate] = vector(byJob("validator", "0.05"))
		}, want: map[string]Status{"validator": Amber, "ingest-clickstream": Green},
			wantReason: map[string]string{"validator": "dead-lettered 5.0% > 1.0%", "ingest-clickstream": "up, ready, lag 3"}},
		{name: "lag and rate both", change: func(a map[string]string) {
			a[q.Lag] = vector(byJob("validator", "20000"))
			a[q.ErrorRate] = vector(byJob("validator", "0.5"))
		}, want: map[string]Status{"validator": Amber}, wantReason: map[string]string{"validator": "lag 20 000 > 10 000; dead-lettered 50% > 1.0%"}},
		{name: "no scrape target", change: func(a map[string]string) {
			a[q.Up] = vector(up("ingest-clickstream", "127.0.0.1:1", "1"), up("bq-writer", "127.0.0.1:3", "1"))
		},
			want:        map[string]Status{"validator": Red, "bq-writer": Green},
			wantReason:  map[string]string{"validator": "down: no scrape target"},
			wantOverall: Overall{Red, "validator: down: no scrape target"}},
		{name: "scrape failing", change: func(a map[string]string) {
			a[q.Up] = vector(up("ingest-clickstream", "127.0.0.1:1", "1"), up("validator", "127.0.0.1:2", "0"), up("bq-writer", "127.0.0.1:3", "1"))
			a[q.Ready] = vector(byJob("ingest-clickstream", "1"), byJob("bq-writer", "1")) // its last samples went stale
		}, want: map[string]Status{"validator": Red}, wantReason: map[string]string{"validator": "down: scrape of 127.0.0.1:2 failing"}},
		{name: "one replica of two down", change: func(a map[string]string) {
			a[q.Up] = vector(up("ingest-clickstream", "127.0.0.1:1", "1"), up("validator", "127.0.0.1:2", "1"), up("validator", "127.0.0.1:4", "0"), up("bq-writer", "127.0.0.1:3", "1"))
		}, want: map[string]Status{"validator": Red}, wantReason: map[string]string{"validator": "down: scrape of 127.0.0.1:4 failing"}},
		{name: "not ready", change: func(a map[string]string) {
			a[q.Ready] = vector(byJob("ingest-clickstream", "1"), byJob("validator", "0"), byJob("bq-writer", "1"))
			a[q.ReadyChecks] = vector(series{[]string{"job=validator", "check=schema_registry"}, "0"}, series{[]string{"job=validator", "check=kafka"}, "0"})
		},
			want:        map[string]Status{"validator": Red, "ingest-clickstream": Green},
			wantReason:  map[string]string{"validator": "not ready: kafka, schema_registry failing"},
			wantOverall: Overall{Red, "validator: not ready: kafka, schema_registry failing"}},
		{name: "readiness not reported", change: func(a map[string]string) {
			a[q.Ready] = vector(byJob("ingest-clickstream", "1"), byJob("bq-writer", "1"))
		}, want: map[string]Status{"validator": Amber}, wantReason: map[string]string{"validator": "readiness not reported (no ecom_ready)"}},
		{name: "two red: the first named, the other counted", change: func(a map[string]string) {
			a[q.Up] = vector(up("ingest-clickstream", "127.0.0.1:1", "1"))
		}, want: map[string]Status{"validator": Red, "bq-writer": Red},
			wantOverall: Overall{Red, "validator: down: no scrape target (and bq-writer)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			answers := healthy(q)
			tt.change(answers)
			srv := httptest.NewServer(&fakeProm{answers: answers})
			defer srv.Close()
			c, err := New(testConfig(srv.URL), nil)
			if err != nil {
				t.Fatal(err)
			}
			r := c.Report(context.Background())
			if r.Monitoring != MonitoringOK {
				t.Fatalf("monitoring %s (%s)", r.Monitoring, r.MonitoringError)
			}
			got := map[string]ServiceHealth{}
			for _, s := range r.Services {
				got[s.Name] = s
			}
			if len(got) != 3 {
				t.Fatalf("services %v", r.Services)
			}
			for name, want := range tt.want {
				if got[name].Status != want {
					t.Errorf("%s: %s (%s), want %s", name, got[name].Status, got[name].Reason, want)
				}
			}
			for name, want := range tt.wantReason {
				if got[name].Reason != want {
					t.Errorf("%s: reason %q, want %q", name, got[name].Reason, want)
				}
			}
			if tt.wantOverall != (Overall{}) && r.Overall != tt.wantOverall {
				t.Errorf("overall %+v, want %+v", r.Overall, tt.wantOverall)
			}
			if v := got["validator"]; strings.HasPrefix(v.Reason, "down: scrape") && (v.Lag != nil || v.ErrorRate != nil) {
				t.Errorf("a service down shows figures from before: lag %v, rate %v", v.Lag, v.ErrorRate)
			}
			if got["validator"].Runbook != "https://github.com/ecomstream/platform/blob/main/docs/runbooks/validator.md" {
				t.Errorf("runbook %s", got["validator"].Runbook)
			}
		})
	}
}

// TestMonitoringDown: no Prometheus, a Prometheus that refuses the query,
// and none configured: every service unknown (never green), and the
// report says why; the dead letters waiting still come from the store.
func TestMonitoringDown(t *testing.T) {
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close() // connection refused from now on
	q := buildQueries(testConfig("http://x"))
	bad := healthy(q)
	bad[q.Lag] = `HTTP400 {"status":"error","errorType":"bad_data","error":"parse error"}`
	refusing := httptest.NewServer(&fakeProm{answers: bad})
	defer refusing.Close()
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "bad gateway", http.StatusBadGateway) }))
	defer proxy.Close()

	tests := []struct {
		name       string
		url        string
		monitoring Monitoring
		reason     string
		errPart    string
	}{
		{"connection refused", strings.Replace(deadURL, "http://", "http://user:s3cret@", 1), MonitoringUnreachable, "monitoring unreachable", "unreachable"},
		{"a query refused", refusing.URL, MonitoringUnreachable, "monitoring query failed", "bad_data: parse error"},
		{"a proxy's 502", proxy.URL, MonitoringUnreachable, "monitoring query failed", "HTTP 502"},
		{"not configured", "", MonitoringNotConfigured, "monitoring not configured (PROMETHEUS_URL is empty)", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			waiting := func(context.Context) (DeadLetters, error) {
				return DeadLetters{Waiting: 7, ByStage: []StageCount{{"validator", 7}}}, nil
			}
			c, err := New(testConfig(tt.url), waiting)
			if err != nil {
				t.Fatal(err)
			}
			r := c.Report(context.Background())
			if r.Monitoring != tt.monitoring || !strings.Contains(r.MonitoringError, tt.errPart) {
				t.Errorf("monitoring %s %q, want %s with %q", r.Monitoring, r.MonitoringError, tt.monitoring, tt.errPart)
			}
			if strings.Contains(r.MonitoringError, "s3cret") {
				t.Errorf("the error shows the URL's password: %s", r.MonitoringError)
			}
			for _, s := range r.Services {
				if s.Status != Unknown || s.Reason != tt.reason {
					t.Errorf("%s: %s %q, want unknown %q", s.Name, s.Status, s.Reason, tt.reason)
				}
			}
			if r.Overall.Status != Unknown || r.Overall.Reason != tt.reason {
				t.Errorf("overall %+v", r.Overall)
			}
			if r.DeadLetters.Waiting != 7 {
				t.Errorf("dead letters waiting %+v", r.DeadLetters)
			}
		})
	}
}

// TestPanels: throughput per source, latency, DQ per entity and cost from
// their queries; a failing panel is listed and leaves the statuses rated.
func TestPanels(t *testing.T) {
	cfg := testConfig("http://x")
	q := buildQueries(cfg)
	a := healthy(q)
	a[q.Throughput[0].Query] = vector(series{nil, "600"})
	a[q.Throughput[2].Query] = vector(series{nil, "42.5"})
	a[q.P50] = vector(series{nil, "0.2"})
	a[q.P99] = vector(series{nil, "1.5"})
	a[q.DQPass] = vector(series{[]string{"entity=order"}, "990"}, series{[]string{"entity=click"}, "500"})
	a[q.DQAll] = vector(series{[]string{"entity=order"}, "1000"}, series{[]string{"entity=click"}, "500"}, series{[]string{"entity=product"}, "0"})
	a[q.Cost] = `HTTP400 {"status":"error","errorType":"execution","error":"boom"}`
	srv := httptest.NewServer(&fakeProm{answers: a})
	defer srv.Close()
	cfg.PrometheusURL, cfg.JaegerURL = srv.URL, "http://127.0.0.1:16686/"
	c, err := New(cfg, func(context.Context) (DeadLetters, error) {
		return DeadLetters{}, errors.New("pool closed: secret detail")
	})
	if err != nil {
		t.Fatal(err)
	}
	r := c.Report(context.Background())
	if r.Overall.Status != Green {
		t.Fatalf("overall %+v", r.Overall)
	}
	f := func(p *float64) string {
		if p == nil {
			return "nil"
		}
		return fmt.Sprint(*p)
	}
	if got := fmt.Sprintf("%s=%s %s=%s %s=%s %s=%s", r.Throughput[0].Source, f(r.Throughput[0].PerMinute), r.Throughput[1].Source, f(r.Throughput[1].PerMinute),
		r.Throughput[2].Source, f(r.Throughput[2].PerMinute), r.Throughput[3].Source, f(r.Throughput[3].PerMinute)); got != "clickstream (Kafka)=600 clickstream (HTTP collector)=nil orders=42.5 catalog=nil" {
		t.Errorf("throughput %s", got)
	}
	if f(r.Latency.P50) != "0.2" || f(r.Latency.P99) != "1.5" {
		t.Errorf("latency %s %s", f(r.Latency.P50), f(r.Latency.P99))
	}
	if got := fmt.Sprint(r.DQ); got != "[{click 1 500 1h} {order 0.99 1000 1h}]" {
		t.Errorf("dq %s", got)
	}
	if r.CostTodayUSD != nil || len(r.Errors) != 1 || !strings.HasPrefix(r.Errors[0], "cost today: prometheus: query_failed") {
		t.Errorf("cost %s, errors %q", f(r.CostTodayUSD), r.Errors)
	}
	if r.DeadLetters.Error != "the store did not answer; see the service log" || strings.Contains(r.DeadLetters.Error, "secret") {
		t.Errorf("dead letters %+v", r.DeadLetters)
	}
	if r.Links.Traces != "http://127.0.0.1:16686/search" || r.Links.DeadLetters != ConsoleDeadLetters {
		t.Errorf("links %+v", r.Links)
	}
}

// TestReportCached: within HEALTH_CACHE one set of queries serves every
// caller; after it, a new set.
func TestReportCached(t *testing.T) {
	cfg := testConfig("http://x")
	fp := &fakeProm{answers: healthy(buildQueries(cfg))}
	srv := httptest.NewServer(fp)
	defer srv.Close()
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	cfg.PrometheusURL, cfg.CacheFor = srv.URL, 2*time.Second
	c, err := New(cfg, nil, WithClock(func() time.Time { return now }))
	if err != nil {
		t.Fatal(err)
	}
	c.Report(context.Background())
	per := fp.n.Load()
	if per < 5 {
		t.Fatalf("%d queries for a report", per)
	}
	c.Report(context.Background())
	now = now.Add(1900 * time.Millisecond)
	c.Report(context.Background())
	if n := fp.n.Load(); n != per {
		t.Errorf("%d queries for 3 reports within the cache, want %d", n, per)
	}
	now = now.Add(200 * time.Millisecond)
	c.Report(context.Background())
	if n := fp.n.Load(); n != 2*per {
		t.Errorf("%d queries after the cache expired, want %d", n, 2*per)
	}
}

// TestHandler: JSON, not cached by the browser, GET only.
func TestHandler(t *testing.T) {
	c, err := New(testConfig(""), nil)
	if err != nil {
		t.Fatal(err)
	}
	h := c.Handler()
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/v1/health", nil))
	var r Report
	if err := json.Unmarshal(w.Body.Bytes(), &r); err != nil || w.Code != http.StatusOK {
		t.Fatalf("%d %v\n%s", w.Code, err, w.Body)
	}
	if w.Header().Get("Content-Type") != "application/json" || w.Header().Get("Cache-Control") != "no-store" {
		t.Errorf("headers %v", w.Header())
	}
	if r.Monitoring != MonitoringNotConfigured || r.Overall.Status != Unknown || len(r.Services) != 3 || r.DeadLetters.Error == "" {
		t.Errorf("report %+v", r)
	}
	for _, key := range []string{`"overall"`, `"services"`, `"throughput"`, `"latency"`, `"dq"`, `"dead_letters"`, `"cost_today_usd"`, `"links"`} {
		if !strings.Contains(w.Body.String(), key) {
			t.Errorf("no %s in %s", key, w.Body)
		}
	}
	w = httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/v1/health", nil))
	if w.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d", w.Code)
	}
}

// TestQueries: the fixed set carries HEALTH_PROMETHEUS_MATCHERS in every
// selector and the configured jobs, quoted.
func TestQueries(t *testing.T) {
	cfg := testConfig("http://x")
	cfg.Matchers = []string{"slice=e2e-1a2b", "env=local"}
	q := buildQueries(cfg)
	all := []string{q.Up, q.Ready, q.ReadyChecks, q.Lag, q.ErrorRate, q.P50, q.P99, q.DQPass, q.DQAll, q.Cost}
	for _, s := range q.Throughput {
		all = append(all, s.Query)
	}
	for _, s := range all {
		if n := strings.Count(s, "{"); n == 0 || strings.Count(s, `slice="e2e-1a2b",env="local"}`) != n {
			t.Errorf("a selector without the matchers: %s", s)
		}
	}
	if want := `up{job=~"ingest-clickstream|validator|bq-writer",slice="e2e-1a2b",env="local"}`; q.Up != want {
		t.Errorf("up query %s, want %s", q.Up, want)
	}
	if !strings.Contains(q.DQAll, "[3600s]") {
		t.Errorf("dq window: %s", q.DQAll)
	}
}

// TestConfigValidate: a bad setting names its variable.
func TestConfigValidate(t *testing.T) {
	tests := []struct {
		env     map[string]string
		wantVar string
	}{
		{map[string]string{"PROMETHEUS_URL": "127.0.0.1:19090"}, "PROMETHEUS_URL"},
		{map[string]string{"JAEGER_URL": "ftp://x"}, "JAEGER_URL"},
		{map[string]string{"HEALTH_PROMETHEUS_MATCHERS": "slice"}, "HEALTH_PROMETHEUS_MATCHERS"},
		{map[string]string{"HEALTH_PROMETHEUS_MATCHERS": `slice=a"}or{`}, "HEALTH_PROMETHEUS_MATCHERS"},
		{map[string]string{"HEALTH_PROMETHEUS_MATCHERS": "job=x"}, "HEALTH_PROMETHEUS_MATCHERS"},
		{map[string]string{"HEALTH_PROMETHEUS_MATCHERS": "__name__=x"}, "HEALTH_PROMETHEUS_MATCHERS"},
		{map[string]string{"HEALTH_SERVICES": ""}, "HEALTH_SERVICES"},
		{map[string]string{"HEALTH_SERVICES": "validator,Validator"}, "HEALTH_SERVICES"},
		{map[string]string{"HEALTH_SERVICES": "validator,validator"}, "HEALTH_SERVICES"},
		{map[string]string{"HEALTH_LAG_AMBER": "0"}, "HEALTH_LAG_AMBER"},
		{map[string]string{"HEALTH_LAG_AMBER": "NaN"}, "HEALTH_LAG_AMBER"},
		{map[string]string{"HEALTH_ERROR_RATE_AMBER": "5"}, "HEALTH_ERROR_RATE_AMBER"},
		{map[string]string{"HEALTH_ERROR_RATE_AMBER": "0"}, "HEALTH_ERROR_RATE_AMBER"},
		{map[string]string{"PROMETHEUS_TIMEOUT": "0s"}, "PROMETHEUS_TIMEOUT"},
		{map[string]string{"HEALTH_DQ_WINDOW": "10s"}, "HEALTH_DQ_WINDOW"},
		{map[string]string{"HEALTH_CACHE": "5m"}, "HEALTH_CACHE"},
	}
	for _, tt := range tests {
		var c Config
		err := config.LoadFrom(config.MapLookup(tt.env), &c)
		if err == nil || !strings.Contains(err.Error(), tt.wantVar) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%v: %v, want one line naming %s", tt.env, err, tt.wantVar)
		}
	}
	var c Config
	if err := config.LoadFrom(config.MapLookup(nil), &c); err != nil || c.PrometheusURL != "" || len(c.Jobs) != len(Services) {
		t.Errorf("defaults: %v %+v", err, c)
	}
}

// TestOutageLoggedOnce: a Prometheus outage is logged when it starts and
// when it ends, not on every report.
func TestOutageLoggedOnce(t *testing.T) {
	var down atomic.Bool
	cfg := testConfig("http://x")
	fp := &fakeProm{answers: healthy(buildQueries(cfg))}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if down.Load() {
			http.Error(w, "bad gateway", http.StatusBadGateway)
			return
		}
		fp.ServeHTTP(w, r)
	}))
	defer srv.Close()
	cfg.PrometheusURL = srv.URL
	var buf strings.Builder
	c, err := New(cfg, nil, WithLogger(slog.New(slog.NewTextHandler(&buf, nil))))
	if err != nil {
		t.Fatal(err)
	}
	c.Report(context.Background())
	down.Store(true)
	for range 3 {
		c.Report(context.Background())
	}
	down.Store(false)
	c.Report(context.Background())
	c.Report(context.Background())
	if w, i := strings.Count(buf.String(), "status queries failed"), strings.Count(buf.String(), "Prometheus answers again"); w != 1 || i != 1 {
		t.Errorf("%d outage and %d recovery lines, want 1 and 1:\n%s", w, i, buf.String())
	}
}

// TestHungStore: a store that does not answer holds neither the page nor
// the requests queued behind it: its query ends at PROMETHEUS_TIMEOUT with
// the panel saying so, and a caller that gives up waiting for the report in
// progress gets the last one at once.
func TestHungStore(t *testing.T) {
	cfg := testConfig("http://x")
	fp := &fakeProm{answers: healthy(buildQueries(cfg))}
	srv := httptest.NewServer(fp)
	defer srv.Close()
	cfg.PrometheusURL, cfg.Timeout = srv.URL, 200*time.Millisecond
	release := make(chan struct{})
	var calls atomic.Int64
	hung := func(ctx context.Context) (DeadLetters, error) {
		if calls.Add(1) > 1 {
			select { // the second report's store call hangs until released
			case <-release:
			case <-ctx.Done():
				return DeadLetters{}, ctx.Err()
			}
			return DeadLetters{Waiting: 7}, nil
		}
		<-ctx.Done() // the first never answers: only the deadline ends it
		return DeadLetters{}, ctx.Err()
	}
	c, err := New(cfg, hung)
	if err != nil {
		t.Fatal(err)
	}
	within := func(what string, f func() Report) Report {
		t.Helper()
		ch := make(chan Report, 1)
		go func() { ch <- f() }()
		select {
		case r := <-ch:
			return r
		case <-time.After(3 * time.Second):
			t.Fatalf("%s: no answer within 3 s", what)
			return Report{}
		}
	}
	r := within("a report with a hung store (want about PROMETHEUS_TIMEOUT, 200ms)", func() Report { return c.Report(context.Background()) })
	if r.DeadLetters.Error == "" || r.Overall.Status != Green {
		t.Fatalf("report with a hung store: dead letters %+v, overall %+v; want the panel's error and the services still rated", r.DeadLetters, r.Overall)
	}
	// A second report blocks in the store (until released); a caller with a
	// short deadline meanwhile gets the first report at once.
	cfg.Timeout = 10 * time.Second
	c.cfg.Timeout = cfg.Timeout
	done := make(chan Report, 1)
	go func() { done <- c.Report(context.Background()) }()
	for calls.Load() < 2 {
		time.Sleep(5 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	got := within("a caller waiting behind a hung report (want its own deadline, 100ms)", func() Report { return c.Report(ctx) })
	if !got.GeneratedAt.Equal(r.GeneratedAt) {
		t.Errorf("the waiting caller got a report of %s, want the last one (%s)", got.GeneratedAt, r.GeneratedAt)
	}
	close(release)
	if second := <-done; second.DeadLetters.Waiting != 7 {
		t.Errorf("the second report, once the store answered: %+v", second.DeadLetters)
	}
}
