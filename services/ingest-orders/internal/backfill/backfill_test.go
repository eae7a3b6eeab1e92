package backfill

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.uber.org/goleak"

	"github.com/ecomstream/platform/pkg/events"
	"github.com/ecomstream/platform/services/ingest-orders/internal/ordertest"
	"github.com/ecomstream/platform/services/ingest-orders/internal/storefront"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const token = "operator-token-0123456789"

var t0 = ordertest.T0

func order(id string, at time.Duration) storefront.Order { return ordertest.Order(id, 1, at) }

type env struct {
	t       *testing.T
	srv     *httptest.Server
	api     *ordertest.API
	cluster *kfake.Cluster
	spans   *tracetest.SpanRecorder
	cancel  context.CancelFunc
	done    chan error
}

// newEnv runs a manager whose jobs read api's answers; release, when set,
// gates every answer.
func newEnv(t *testing.T, answers []ordertest.Answer, release chan struct{}) *env {
	t.Helper()
	c := ordertest.Cluster(t, "orders")
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	a := ordertest.NewAPI(t, answers...)
	if release != nil {
		a.Gate(release)
	}
	tracer, spans := ordertest.Tracer(t)
	m := New(Deps{
		Reader: &storefront.Reader{API: a.Client(), Limit: 2, BackoffMin: time.Millisecond, BackoffMax: 2 * time.Millisecond,
			Sleep: func(context.Context, time.Duration) error { return nil }, Tracer: tracer},
		Producer: cl, Orders: ordertest.JSONEncoder{}, Topic: "orders", OperatorToken: token, Log: slog.New(slog.DiscardHandler),
	})
	r := chi.NewRouter()
	m.Routes(r)
	e := &env{t: t, srv: httptest.NewServer(r), api: a, cluster: c, spans: spans, done: make(chan error, 1)}
	t.Cleanup(e.srv.Close)
	ctx, cancel := context.WithCancel(context.Background())
	e.cancel = cancel
	go func() { e.done <- m.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-e.done })
	for { // until Run has stored its context
		m.mu.Lock()
		ready := m.ctx != nil
		m.mu.Unlock()
		if ready {
			break
		}
		time.Sleep(time.Millisecond)
	}
	return e
}

func (e *env) do(method, path, auth, body string) (int, Job) {
	e.t.Helper()
	req, _ := http.NewRequest(method, e.srv.URL+path, strings.NewReader(body))
	if auth != "" {
		req.Header.Set("Authorization", "Bearer "+auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var j Job
	_ = json.NewDecoder(resp.Body).Decode(&j)
	return resp.StatusCode, j
}

func (e *env) records() []*kgo.Record {
	e.t.Helper()
	return ordertest.Records(e.t, 300*time.Millisecond, "orders", kgo.SeedBrokers(e.cluster.ListenAddrs()...))
}

func (e *env) produced() []string {
	e.t.Helper()
	var out []string
	for _, r := range e.records() {
		var o events.Order
		_ = json.Unmarshal(r.Value, &o)
		if o.Source != storefront.SourceBackfill {
			e.t.Errorf("source %q", o.Source)
		}
		out = append(out, o.OrderID)
	}
	return out
}

func TestStartRequests(t *testing.T) {
	e := newEnv(t, nil, nil)
	good := fmt.Sprintf(`{"from":%q,"to":%q}`, t0.Format(time.RFC3339), t0.Add(time.Hour).Format(time.RFC3339))
	tests := []struct {
		name, auth, body string
		want             int
	}{
		{name: "no token", body: good, want: 401},
		{name: "wrong token", auth: "another-token-0123456789", body: good, want: 401},
		{name: "not JSON", auth: token, body: `{`, want: 400},
		{name: "to before from", auth: token, body: fmt.Sprintf(`{"from":%q,"to":%q}`, t0.Format(time.RFC3339), t0.Add(-time.Hour).Format(time.RFC3339)), want: 400},
		{name: "missing to", auth: token, body: fmt.Sprintf(`{"from":%q}`, t0.Format(time.RFC3339)), want: 400},
	}
	for _, tt := range tests {
		if got, _ := e.do(http.MethodPost, Path, tt.auth, tt.body); got != tt.want {
			t.Errorf("%s: %d, want %d", tt.name, got, tt.want)
		}
	}
	if got, _ := e.do(http.MethodGet, Path+"/bf-nope", token, ""); got != 404 {
		t.Errorf("unknown job: %d", got)
	}
	if got, _ := e.do(http.MethodGet, Path+"/bf-nope", "", ""); got != 401 {
		t.Errorf("unknown job without token: %d", got)
	}
}

// TestBackfill: a job reads its range (and only it) into the topic, after a
// 503, reporting progress; a second job waits its turn. Each page is a span
// naming the job, and the records carry it.
func TestBackfill(t *testing.T) {
	release := make(chan struct{})
	e := newEnv(t, []ordertest.Answer{
		{Status: 503, RetryAfter: "1"},
		{Page: []storefront.Order{order("o-before", -time.Minute), order("o-1", 0)}, HasMore: true, Token: "p2"},
		{Page: []storefront.Order{order("o-2", time.Minute), order("o-3", 2*time.Minute)}, HasMore: true, Token: "p3"},
		{Page: []storefront.Order{order("o-4", 3*time.Minute), order("o-after", time.Hour)}, HasMore: true, Token: "p4"},
	}, release)
	body := fmt.Sprintf(`{"from":%q,"to":%q}`, t0.Format(time.RFC3339), t0.Add(30*time.Minute).Format(time.RFC3339))
	status, j := e.do(http.MethodPost, Path, token, body)
	if status != http.StatusAccepted || j.State != Running || j.ID == "" {
		t.Fatalf("start: %d %+v", status, j)
	}
	if status, _ := e.do(http.MethodPost, Path, token, body); status != http.StatusConflict {
		t.Errorf("second job while one runs: %d", status)
	}
	close(release)
	deadline := time.Now().Add(10 * time.Second)
	for j.State == Running && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		_, j = e.do(http.MethodGet, Path+"/"+j.ID, token, "")
	}
	if j.State != Done || j.Orders != 4 || j.Pages != 3 || j.Finished == nil || j.Position == nil {
		t.Fatalf("job %+v", j)
	}
	if got, want := fmt.Sprint(e.produced()), "[o-1 o-2 o-3 o-4]"; got != want {
		t.Errorf("produced %v, want %v", got, want)
	}
	// From the range's start; no request after the page that passed its end.
	q := e.api.Queries()
	if len(q) != 4 || q[0]["updated_since"] != t0.Format(time.RFC3339Nano) || q[3]["page_token"] != "p3" {
		t.Errorf("queries %v", q)
	}
	spans := ordertest.Spans(e.spans, SpanPage)
	if len(spans) != 3 {
		t.Fatalf("%d page spans, want 3", len(spans))
	}
	for i, s := range spans {
		if ordertest.Attr(s, AttrJob) != j.ID || ordertest.Attr(s, storefront.AttrStatus) != "200" {
			t.Errorf("page span %d: %v", i, s.Attributes())
		}
	}
	if got := ordertest.Attr(spans[0], storefront.AttrAttempts); got != "2" {
		t.Errorf("first page after %s attempts, want 2 (the 503)", got)
	}
	for _, r := range e.records() {
		sc, ok := ordertest.SpanContext(r), false
		for _, s := range spans {
			ok = ok || (sc.SpanID() == s.SpanContext().SpanID() && sc.TraceID() == s.SpanContext().TraceID())
		}
		if !ok {
			t.Errorf("record %s carries %v, not a page span", r.Key, sc)
		}
	}
}
