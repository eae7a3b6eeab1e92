package poller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/metric/noop"
	"go.uber.org/goleak"

	"github.com/ecomstream/platform/pkg/events"
	"github.com/ecomstream/platform/services/ingest-orders/internal/cursor"
	"github.com/ecomstream/platform/services/ingest-orders/internal/storefront"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	topic       = "orders"
	cursorTopic = "cursor"
)

var t0 = time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)

// jsonEncoder stands in for the Avro codec.
type jsonEncoder struct{ failOn string }

func (e jsonEncoder) Encode(v any) ([]byte, error) {
	if o, ok := v.(events.Order); ok && o.OrderID == e.failOn {
		return nil, errors.New("cannot encode")
	}
	return json.Marshal(v)
}

// answer is one scripted API answer.
type answer struct {
	status     int
	retryAfter string
	body       string // raw body; empty = the page below
	page       []storefront.Order
	hasMore    bool
	token      string
}

// fakeAPI serves answers in order and records the requests' queries.
type fakeAPI struct {
	mu      sync.Mutex
	answers []answer
	queries []map[string]string
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r.Header.Get("Authorization") != "Bearer tok" {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	q := map[string]string{}
	for k := range r.URL.Query() {
		q[k] = r.URL.Query().Get(k)
	}
	f.queries = append(f.queries, q)
	a := answer{page: nil}
	if len(f.answers) > 0 {
		a, f.answers = f.answers[0], f.answers[1:]
	}
	if a.retryAfter != "" {
		w.Header().Set("Retry-After", a.retryAfter)
	}
	if a.status != 0 && a.status != http.StatusOK {
		w.WriteHeader(a.status)
		fmt.Fprintf(w, `{"error":{"code":"x","message":"scripted"}}`)
		return
	}
	w.Header().Set("X-Storefront-Shop-Time", t0.Add(time.Hour).Format(time.RFC3339Nano))
	if a.body != "" {
		io.WriteString(w, a.body)
		return
	}
	p := storefront.Page{Orders: a.page, HasMore: a.hasMore, NextPageToken: a.token}
	if p.Orders == nil {
		p.Orders = []storefront.Order{}
	}
	json.NewEncoder(w).Encode(p)
}

func order(id string, version int64, updated time.Duration) storefront.Order {
	return storefront.Order{ID: id, Version: version, CustomerID: "u-000001", Status: "created", Currency: "USD",
		Lines:     []storefront.Line{{LineID: id + "-1", ProductID: "p-00001", Quantity: 1, UnitPriceMinor: 100, LineTotalMinor: 100}},
		CreatedAt: t0, UpdatedAt: t0.Add(updated)}
}

type env struct {
	t      *testing.T
	api    *fakeAPI
	p      *Poller
	txn    *kgo.Client
	opts   []kgo.Opt
	sleeps []time.Duration
}

func newEnv(t *testing.T, answers []answer, enc jsonEncoder, start cursor.Cursor) *env {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, topic, cursorTopic))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	opts := []kgo.Opt{kgo.SeedBrokers(c.ListenAddrs()...)}
	txn, err := kgo.NewClient(append(opts, kgo.TransactionalID("ingest-orders-cursor-live"))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(txn.Close)
	if err := cursor.Fence(context.Background(), txn); err != nil {
		t.Fatal(err)
	}
	api := &fakeAPI{answers: answers}
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	e := &env{t: t, api: api, txn: txn, opts: opts}
	cfg := Config{Interval: time.Second, Overlap: 2 * time.Minute, PageSize: 2, CursorName: "live", CursorTopic: cursorTopic,
		BackoffMin: 100 * time.Millisecond, BackoffMax: 400 * time.Millisecond, StaleAfter: time.Minute}
	p, err := New(cfg, Deps{
		API: storefront.New(storefront.Config{URL: srv.URL, Token: "tok", Timeout: 5 * time.Second}, nil),
		Txn: txn, Orders: enc, Topic: topic, Start: start, Meter: noop.NewMeterProvider().Meter("t"),
		Log: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	p.reader.Jitter = func(d time.Duration) time.Duration { return d }
	p.reader.Sleep = func(_ context.Context, d time.Duration) error { e.sleeps = append(e.sleeps, d); return nil }
	p.sleep = p.reader.Sleep
	e.p = p
	return e
}

// produced reads the committed orders as (id, version) pairs.
func (e *env) produced() []string {
	e.t.Helper()
	cl, err := kgo.NewClient(append(e.opts, kgo.ConsumeTopics(topic), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))...)
	if err != nil {
		e.t.Fatal(err)
	}
	defer cl.Close()
	var out []string
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		fs := cl.PollFetches(ctx)
		cancel()
		n := 0
		fs.EachRecord(func(r *kgo.Record) {
			n++
			var o events.Order
			if err := json.Unmarshal(r.Value, &o); err != nil {
				e.t.Fatal(err)
			}
			if string(r.Key) != o.OrderID || o.Source != storefront.SourceAPI || o.ReceivedAt == nil {
				e.t.Errorf("record key %q, order %+v", r.Key, o)
			}
			out = append(out, fmt.Sprintf("%s@%d", o.OrderID, o.OrderVersion))
		})
		if n == 0 {
			return out
		}
	}
}

func (e *env) loadCursor() (cursor.Cursor, bool) {
	e.t.Helper()
	c, ok, err := cursor.Load(context.Background(), e.opts, cursorTopic, "live")
	if err != nil {
		e.t.Fatal(err)
	}
	return c, ok
}

func TestRound(t *testing.T) {
	a, b, c := order("o-a", 1, time.Second), order("o-b", 1, 2*time.Second), order("o-c", 2, 3*time.Second)
	tests := []struct {
		name       string
		answers    []answer
		enc        jsonEncoder
		wantErr    bool
		want       []string
		wantSince  time.Time // zero: no cursor committed
		wantSleeps []time.Duration
	}{
		{
			name: "pagination: every page, cursor at the newest updated_at",
			answers: []answer{
				{page: []storefront.Order{a, b}, hasMore: true, token: "t1"},
				{page: []storefront.Order{c}, token: "t2"},
			},
			want: []string{"o-a@1", "o-b@1", "o-c@2"}, wantSince: c.UpdatedAt,
		},
		{
			name: "429 waits Retry-After, then the same request",
			answers: []answer{
				{status: 429, retryAfter: "7"},
				{page: []storefront.Order{a}},
			},
			want: []string{"o-a@1"}, wantSince: a.UpdatedAt, wantSleeps: []time.Duration{7 * time.Second},
		},
		{
			name: "5xx backs off exponentially, capped",
			answers: []answer{
				{status: 500}, {status: 503}, {status: 502}, {status: 500},
				{page: []storefront.Order{a}},
			},
			want: []string{"o-a@1"}, wantSince: a.UpdatedAt,
			wantSleeps: []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 400 * time.Millisecond},
		},
		{
			name: "truncated body is retried",
			answers: []answer{
				{page: []storefront.Order{a}, hasMore: true, token: "t1"},
				{body: `{"orders":[{"id":"o-b","vers`},
				{page: []storefront.Order{b}},
			},
			want: []string{"o-a@1", "o-b@1"}, wantSince: b.UpdatedAt, wantSleeps: []time.Duration{100 * time.Millisecond},
		},
		{
			name: "a page repeating the previous page's last item produces it once",
			answers: []answer{
				{page: []storefront.Order{a, b}, hasMore: true, token: "t1"},
				{page: []storefront.Order{b, c}},
			},
			want: []string{"o-a@1", "o-b@1", "o-c@2"}, wantSince: c.UpdatedAt,
		},
		{
			name:    "401 ends the round",
			answers: []answer{{status: 401}},
			wantErr: true,
		},
		{
			name: "a page that cannot be produced does not move the cursor",
			answers: []answer{
				{page: []storefront.Order{a}, hasMore: true, token: "t1"},
				{page: []storefront.Order{b, c}},
			},
			enc:     jsonEncoder{failOn: "o-c"},
			wantErr: true, want: []string{"o-a@1"}, wantSince: a.UpdatedAt,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, tt.answers, tt.enc, cursor.Cursor{})
			err := e.p.Round(context.Background())
			if (err != nil) != tt.wantErr {
				t.Fatalf("Round() = %v, want error %v", err, tt.wantErr)
			}
			if got := e.produced(); fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("produced %v, want %v", got, tt.want)
			}
			got, ok := e.loadCursor()
			if ok != !tt.wantSince.IsZero() || !got.Since.Equal(tt.wantSince) || !e.p.Cursor().Since.Equal(tt.wantSince) {
				t.Errorf("cursor %v (found %v, poller %v), want %v", got.Since, ok, e.p.Cursor().Since, tt.wantSince)
			}
			if fmt.Sprint(e.sleeps) != fmt.Sprint(tt.wantSleeps) {
				t.Errorf("slept %v, want %v", e.sleeps, tt.wantSleeps)
			}
		})
	}
}

// TestOverlap: a round starts the overlap before the cursor, sees late
// updates there, and does not produce again what it already produced.
func TestOverlap(t *testing.T) {
	a, b := order("o-a", 1, time.Minute), order("o-b", 1, 5*time.Minute)
	late := order("o-late", 1, 4*time.Minute) // updated_at before the cursor: a late change
	b2 := order("o-b", 2, 6*time.Minute)
	e := newEnv(t, []answer{
		{page: []storefront.Order{a, b}},
		{page: []storefront.Order{late, b}, hasMore: true, token: "t1"},
		{page: []storefront.Order{b2}},
	}, jsonEncoder{}, cursor.Cursor{})
	for range 2 {
		if err := e.p.Round(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if q := e.api.queries; len(q) != 3 || q[0]["updated_since"] != "" || q[1]["updated_since"] != b.UpdatedAt.Add(-2*time.Minute).Format(time.RFC3339Nano) ||
		q[2]["page_token"] != "t1" {
		t.Errorf("queries %v", q)
	}
	if got, want := fmt.Sprint(e.produced()), "[o-a@1 o-b@1 o-late@1 o-b@2]"; got != want {
		t.Errorf("produced %v, want %v", got, want)
	}
	if c, _ := e.loadCursor(); !c.Since.Equal(b2.UpdatedAt) {
		t.Errorf("cursor %v", c.Since)
	}
}

// TestStartsFromTheLoadedCursor: a restarted poller resumes the overlap
// before its committed cursor.
func TestStartsFromTheLoadedCursor(t *testing.T) {
	e := newEnv(t, []answer{{}}, jsonEncoder{}, cursor.Cursor{Since: t0})
	if err := e.p.Round(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := e.api.queries[0]["updated_since"]; got != t0.Add(-2*time.Minute).Format(time.RFC3339Nano) {
		t.Errorf("updated_since %q", got)
	}
	if _, ok := e.loadCursor(); ok {
		t.Error("an empty page committed a cursor")
	}
}

func TestReady(t *testing.T) {
	e := newEnv(t, nil, jsonEncoder{}, cursor.Cursor{})
	now := t0
	e.p.now = func() time.Time { return now }
	e.p.lastOK.Store(t0.UnixNano())
	if err := e.p.Ready(context.Background()); err != nil {
		t.Errorf("fresh: %v", err)
	}
	now = t0.Add(2 * time.Minute)
	if err := e.p.Ready(context.Background()); err == nil {
		t.Error("stale poll reported ready")
	}
}
