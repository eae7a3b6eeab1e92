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
	"go.uber.org/goleak"

	"github.com/ecomstream/platform/pkg/events"
	"github.com/ecomstream/platform/services/ingest-orders/internal/storefront"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const token = "operator-token-0123456789"

var t0 = time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)

type jsonEncoder struct{}

func (jsonEncoder) Encode(v any) ([]byte, error) { return json.Marshal(v) }

func order(id string, at time.Duration) storefront.Order {
	return storefront.Order{ID: id, Version: 1, CustomerID: "u-000001", Status: "created", Currency: "USD", CreatedAt: t0, UpdatedAt: t0.Add(at)}
}

// api serves orders (sorted by updated_at) two per page, failing the first
// request with a 503 so the job's retry is exercised; release gates every
// answer when set.
func api(t *testing.T, orders []storefront.Order, release chan struct{}) *httptest.Server {
	first := true
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if release != nil {
			<-release
		}
		if first {
			first = false
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(503)
			return
		}
		since, _ := time.Parse(time.RFC3339Nano, r.URL.Query().Get("updated_since"))
		start := 0
		if tok := r.URL.Query().Get("page_token"); tok != "" {
			fmt.Sscan(tok, &start)
		}
		var page []storefront.Order
		i := start
		for ; i < len(orders) && len(page) < 2; i++ {
			if !orders[i].UpdatedAt.Before(since) {
				page = append(page, orders[i])
			}
		}
		p := storefront.Page{Orders: page, HasMore: i < len(orders), NextPageToken: fmt.Sprint(i)}
		json.NewEncoder(w).Encode(p)
	}))
}

type env struct {
	t       *testing.T
	srv     *httptest.Server
	cluster *kfake.Cluster
	cancel  context.CancelFunc
	done    chan error
}

func newEnv(t *testing.T, orders []storefront.Order, release chan struct{}) *env {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "orders"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	a := api(t, orders, release)
	t.Cleanup(a.Close)
	m := New(Deps{
		Reader: &storefront.Reader{API: storefront.New(storefront.Config{URL: a.URL, Token: "t", Timeout: 5 * time.Second}, nil), Limit: 2,
			BackoffMin: time.Millisecond, BackoffMax: 2 * time.Millisecond, Sleep: func(context.Context, time.Duration) error { return nil }},
		Producer: cl, Orders: jsonEncoder{}, Topic: "orders", OperatorToken: token, Log: slog.New(slog.DiscardHandler),
	})
	r := chi.NewRouter()
	m.Routes(r)
	e := &env{t: t, srv: httptest.NewServer(r), cluster: c, done: make(chan error, 1)}
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

func (e *env) produced() []string {
	e.t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.cluster.ListenAddrs()...), kgo.ConsumeTopics("orders"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		e.t.Fatal(err)
	}
	defer cl.Close()
	var out []string
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		fs := cl.PollFetches(ctx)
		cancel()
		n := 0
		fs.EachRecord(func(r *kgo.Record) {
			n++
			var o events.Order
			_ = json.Unmarshal(r.Value, &o)
			if o.Source != storefront.SourceBackfill {
				e.t.Errorf("source %q", o.Source)
			}
			out = append(out, o.OrderID)
		})
		if n == 0 {
			return out
		}
	}
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
// 503, reporting progress; a second job waits its turn.
func TestBackfill(t *testing.T) {
	orders := []storefront.Order{order("o-before", -time.Minute), order("o-1", 0), order("o-2", time.Minute),
		order("o-3", 2*time.Minute), order("o-4", 3*time.Minute), order("o-after", time.Hour)}
	release := make(chan struct{})
	e := newEnv(t, orders, release)
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
	if j.State != Done || j.Orders != 4 || j.Pages == 0 || j.Finished == nil || j.Position == nil {
		t.Fatalf("job %+v", j)
	}
	if got, want := fmt.Sprint(e.produced()), "[o-1 o-2 o-3 o-4]"; got != want {
		t.Errorf("produced %v, want %v", got, want)
	}
}
