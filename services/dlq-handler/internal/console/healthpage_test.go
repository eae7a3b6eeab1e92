package console

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/ecomstream/platform/services/dlq-handler/internal/health"
)

type fakeHealth struct{ r health.Report }

func (f fakeHealth) Report(context.Context) health.Report { return f.r }

func fullHealthReport() health.Report {
	f := func(v float64) *float64 { return &v }
	oldest := time.Date(2026, 12, 1, 11, 0, 0, 0, time.UTC)
	return health.Report{GeneratedAt: time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC), Monitoring: health.MonitoringOK,
		Overall: health.Overall{Status: health.Red, Reason: "validator: down: no scrape target"},
		Services: []health.ServiceHealth{
			{Name: "ingest-clickstream", Status: health.Green, Reason: "up, ready, lag 0", Lag: f(0), ErrorRate: f(0), Runbook: health.RunbookBase + "ingest-clickstream.md"},
			{Name: "bq-writer", Status: health.Amber, Reason: "lag 12 340 > 10 000", Lag: f(12340), Runbook: health.RunbookBase + "bq-writer.md"},
			{Name: "validator", Status: health.Red, Reason: "down: no scrape target", Runbook: health.RunbookBase + "validator.md"},
		},
		Throughput:   []health.Throughput{{Source: "orders", PerMinute: f(120)}, {Source: "catalog"}},
		Latency:      health.Latency{P50: f(0.25), P99: f(2.5)},
		DQ:           []health.DQScore{{Entity: "order", Score: 0.995, Evaluated: 2000, Window: "1h"}},
		DeadLetters:  health.DeadLetters{Waiting: 3, ByStage: []health.StageCount{{Stage: "validator", Count: 3}}, Oldest: &oldest, Link: health.ConsoleDeadLetters},
		CostTodayUSD: f(0.0123),
		Links:        health.Links{Traces: "http://127.0.0.1:16686/search", DeadLetters: health.ConsoleDeadLetters, Runbooks: "https://x/runbooks"},
		Thresholds:   health.Thresholds{LagAmber: 10000, ErrorRateAmber: 0.01},
		Errors:       []string{"cost today: prometheus: query_failed: bad_data: x"},
	}
}

// TestHealthPage: a signed-in viewer sees the overall status, a row per
// service with its status as text and the reason, the panels, and a page
// that reloads itself; without a session it is the login; without a
// reporter, 404; monitoring not configured or unreachable is said.
func TestHealthPage(t *testing.T) {
	tests := []struct {
		name   string
		report health.Report
		want   []string
	}{
		{"full", fullHealthReport(), []string{
			`id="overall" data-status="red"`, `id="overall-status">Failing<`, `validator: down: no scrape target`,
			`<tr data-service="validator" data-status="red">`, `<tr data-service="bq-writer" data-status="amber">`,
			`lag 12 340 &gt; 10 000`, "<td data-label=\"Max lag\" class=\"num\">12\u00a0340</td>", `<meta http-equiv="refresh" content="10">`,
			`href="https://github.com/ecomstream/platform/blob/main/docs/runbooks/validator.md"`,
			`id="traces-link"`, `href="/console/dead-letters?state=new,failed_again"`, `id="waiting">3<`,
			`id="latency-p50">250 ms<`, `id="latency-p99">2.50 s<`, `99.50%`, `$0.0123`, `Panels without data`, `aria-current="page">Health<`}},
		{"not configured", health.Report{Monitoring: health.MonitoringNotConfigured,
			Overall:  health.Overall{Status: health.Unknown, Reason: "monitoring not configured (PROMETHEUS_URL is empty)"},
			Services: []health.ServiceHealth{{Name: "validator", Status: health.Unknown, Reason: "monitoring not configured (PROMETHEUS_URL is empty)"}}},
			[]string{`data-monitoring="not_configured"`, `Monitoring not configured`, `id="overall-status">Unknown<`, `data-status="unknown"`, `no data`, `JAEGER_URL not set`}},
		{"unreachable", health.Report{Monitoring: health.MonitoringUnreachable, MonitoringError: "prometheus: unreachable: connection refused",
			Overall:  health.Overall{Status: health.Unknown, Reason: "monitoring unreachable"},
			Services: []health.ServiceHealth{{Name: "validator", Status: health.Unknown, Reason: "monitoring unreachable"}}},
			[]string{`data-monitoring="unreachable"`, `Monitoring unreachable: the statuses are unknown, not green`, `connection refused`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, false, func(c *Config) { c.Health = fakeHealth{tt.report} })
			b := e.browser()
			if resp, _ := b.do(http.MethodGet, HealthPath, nil); resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/console/login?next=health" {
				t.Fatalf("signed out: %d %s, want the login leading back", resp.StatusCode, resp.Header.Get("Location"))
			}
			b.login(viewerToken)
			st, body := b.get(HealthPath)
			if st != http.StatusOK {
				t.Fatalf("health page: %d\n%s", st, body)
			}
			for _, w := range tt.want {
				if !strings.Contains(body, w) {
					t.Errorf("the page lacks %s\n%s", w, body)
				}
			}
			if strings.Contains(body, "<script") {
				t.Error("the page carries a script")
			}
		})
	}

	// Signing in from the health page leads back to it; no other next is
	// followed.
	e := newEnv(t, false, func(c *Config) { c.Health = fakeHealth{fullHealthReport()} })
	for _, tt := range []struct{ next, want string }{{"health", HealthPath}, {"", "/console/"}, {"//evil.example/", "/console/"}, {"/console/health", "/console/"}} {
		b := e.browser()
		_, form := b.get("/console/login?next=" + url.QueryEscape(tt.next))
		if want := `name="next" value="health"`; strings.Contains(form, want) != (tt.next == "health") {
			t.Errorf("next %q: the form's next field: %v", tt.next, strings.Contains(form, want))
		}
		resp, _ := b.do(http.MethodPost, "/console/login", url.Values{"csrf": {b.csrf}, "token": {viewerToken}, "next": {tt.next}})
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != tt.want {
			t.Errorf("next %q: %d %s, want %s", tt.next, resp.StatusCode, resp.Header.Get("Location"), tt.want)
		}
	}

	e = newEnv(t, false)
	b := e.browser()
	b.login(viewerToken)
	if st, _ := b.get(HealthPath); st != http.StatusNotFound {
		t.Errorf("without a reporter: %d, want 404", st)
	}
}
