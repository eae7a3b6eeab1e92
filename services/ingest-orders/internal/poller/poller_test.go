package poller

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/goleak"

	"github.com/ecomstream/platform/pkg/events"
	"github.com/ecomstream/platform/services/ingest-orders/internal/cursor"
	"github.com/ecomstream/platform/services/ingest-orders/internal/ordertest"
	"github.com/ecomstream/platform/services/ingest-orders/internal/storefront"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	topic       = "orders"
	cursorTopic = "cursor"
)

type (
	answer      = ordertest.Answer
	jsonEncoder = ordertest.JSONEncoder
)

var (
	t0    = ordertest.T0
	order = ordertest.Order
)

type env struct {
	t      *testing.T
	api    *ordertest.API
	p      *Poller
	txn    *kgo.Client
	opts   []kgo.Opt
	sleeps []time.Duration
	spans  *tracetest.SpanRecorder
}

func newEnv(t *testing.T, answers []answer, enc jsonEncoder, start cursor.Cursor) *env {
	t.Helper()
	c := ordertest.Cluster(t, topic, cursorTopic)
	opts := []kgo.Opt{kgo.SeedBrokers(c.ListenAddrs()...)}
	txn, err := kgo.NewClient(append(opts, kgo.TransactionalID("ingest-orders-cursor-live"))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(txn.Close)
	if err := cursor.Fence(context.Background(), txn); err != nil {
		t.Fatal(err)
	}
	api := ordertest.NewAPI(t, answers...)
	tracer, spans := ordertest.Tracer(t)
	e := &env{t: t, api: api, txn: txn, opts: opts, spans: spans}
	cfg := Config{Interval: time.Second, Overlap: 2 * time.Minute, PageSize: 2, CursorName: "live", CursorTopic: cursorTopic,
		BackoffMin: 100 * time.Millisecond, BackoffMax: 400 * time.Millisecond, StaleAfter: time.Minute}
	p, err := New(cfg, Deps{
		API: api.Client(), Txn: txn, Orders: enc, Topic: topic, Start: start, Tracer: tracer,
		Meter: noop.NewMeterProvider().Meter("t"), Log: slog.New(slog.DiscardHandler),
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

// records are the committed records of the orders topic.
func (e *env) records() []*kgo.Record {
	e.t.Helper()
	return ordertest.Records(e.t, 500*time.Millisecond, topic, e.opts...)
}

// produced reads the committed orders as (id, version) pairs.
func (e *env) produced() []string {
	e.t.Helper()
	var out []string
	for _, r := range e.records() {
		var o events.Order
		if err := json.Unmarshal(r.Value, &o); err != nil {
			e.t.Fatal(err)
		}
		if string(r.Key) != o.OrderID || o.Source != storefront.SourceAPI || o.ReceivedAt == nil || r.Timestamp.UnixMilli() != o.ReceivedAt.UnixMilli() {
			e.t.Errorf("record key %q at %v, order %+v", r.Key, r.Timestamp, o)
		}
		out = append(out, fmt.Sprintf("%s@%d", o.OrderID, o.OrderVersion))
	}
	return out
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
				{Page: []storefront.Order{a, b}, HasMore: true, Token: "t1"},
				{Page: []storefront.Order{c}, Token: "t2"},
			},
			want: []string{"o-a@1", "o-b@1", "o-c@2"}, wantSince: c.UpdatedAt,
		},
		{
			name: "429 waits Retry-After, then the same request",
			answers: []answer{
				{Status: 429, RetryAfter: "7"},
				{Page: []storefront.Order{a}},
			},
			want: []string{"o-a@1"}, wantSince: a.UpdatedAt, wantSleeps: []time.Duration{7 * time.Second},
		},
		{
			name: "5xx backs off exponentially, capped",
			answers: []answer{
				{Status: 500}, {Status: 503}, {Status: 502}, {Status: 500},
				{Page: []storefront.Order{a}},
			},
			want: []string{"o-a@1"}, wantSince: a.UpdatedAt,
			wantSleeps: []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 400 * time.Millisecond},
		},
		{
			name: "truncated body is retried",
			answers: []answer{
				{Page: []storefront.Order{a}, HasMore: true, Token: "t1"},
				{Body: `{"orders":[{"id":"o-b","vers`},
				{Page: []storefront.Order{b}},
			},
			want: []string{"o-a@1", "o-b@1"}, wantSince: b.UpdatedAt, wantSleeps: []time.Duration{100 * time.Millisecond},
		},
		{
			name: "a page repeating the previous page's last item produces it once",
			answers: []answer{
				{Page: []storefront.Order{a, b}, HasMore: true, Token: "t1"},
				{Page: []storefront.Order{b, c}},
			},
			want: []string{"o-a@1", "o-b@1", "o-c@2"}, wantSince: c.UpdatedAt,
		},
		{
			name:    "401 ends the round",
			answers: []answer{{Status: 401}},
			wantErr: true,
		},
		{
			name: "a page that cannot be produced does not move the cursor",
			answers: []answer{
				{Page: []storefront.Order{a}, HasMore: true, Token: "t1"},
				{Page: []storefront.Order{b, c}},
			},
			enc:     jsonEncoder{FailOn: "o-c"},
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
		{Page: []storefront.Order{a, b}},
		{Page: []storefront.Order{late, b}, HasMore: true, Token: "t1"},
		{Page: []storefront.Order{b2}},
	}, jsonEncoder{}, cursor.Cursor{})
	for range 2 {
		if err := e.p.Round(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if q := e.api.Queries(); len(q) != 3 || q[0]["updated_since"] != "" || q[1]["updated_since"] != b.UpdatedAt.Add(-2*time.Minute).Format(time.RFC3339Nano) ||
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
	if got := e.api.Queries()[0]["updated_since"]; got != t0.Add(-2*time.Minute).Format(time.RFC3339Nano) {
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

// TestPageSpans: every page is a span of its own trace, with its size,
// cursor and HTTP status, and every order record produced from it carries
// that span in its traceparent header.
func TestPageSpans(t *testing.T) {
	a, b, c := order("o-a", 1, time.Second), order("o-b", 1, 2*time.Second), order("o-c", 2, 3*time.Second)
	type span struct {
		orders, attempts, status, produced string
		cursor                             string // "" = none committed
		retries                            int
		failed                             bool
	}
	tests := []struct {
		name      string
		answers   []answer
		wantSpans []span
		wantPage  map[string]int // order id -> index of the page span its record carries
	}{
		{
			name: "two pages, the second after a 500",
			answers: []answer{
				{Page: []storefront.Order{a, b}, HasMore: true, Token: "t1"},
				{Status: 500},
				{Page: []storefront.Order{c}},
			},
			wantSpans: []span{
				{orders: "2", attempts: "1", status: "200", produced: "2", cursor: b.UpdatedAt.Format(time.RFC3339Nano)},
				{orders: "1", attempts: "2", status: "200", produced: "1", cursor: c.UpdatedAt.Format(time.RFC3339Nano), retries: 1},
			},
			wantPage: map[string]int{"o-a": 0, "o-b": 0, "o-c": 1},
		},
		{
			name:      "a 401 fails the page's span",
			answers:   []answer{{Status: 401}},
			wantSpans: []span{{attempts: "1", status: "401", failed: true}},
		},
		{
			name:      "an empty page commits nothing",
			answers:   []answer{{}},
			wantSpans: []span{{orders: "0", attempts: "1", status: "200", produced: "0"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, tt.answers, jsonEncoder{}, cursor.Cursor{})
			_ = e.p.Round(context.Background()) // the 401's error is the span's to show
			spans := ordertest.Spans(e.spans, SpanPage)
			if len(spans) != len(tt.wantSpans) {
				t.Fatalf("%d page spans, want %d", len(spans), len(tt.wantSpans))
			}
			for i, s := range spans {
				w := tt.wantSpans[i]
				got := span{orders: ordertest.Attr(s, storefront.AttrOrders), attempts: ordertest.Attr(s, storefront.AttrAttempts),
					status: ordertest.Attr(s, storefront.AttrStatus), produced: ordertest.Attr(s, storefront.AttrProduced),
					cursor: ordertest.Attr(s, storefront.AttrCursor), failed: s.Status().Code == codes.Error}
				for _, ev := range s.Events() {
					if ev.Name == "retry" {
						got.retries++
					}
				}
				if got != w {
					t.Errorf("page span %d: %+v, want %+v", i, got, w)
				}
				if s.Parent().IsValid() || ordertest.Attr(s, storefront.AttrLimit) != "2" || ordertest.Attr(s, "messaging.destination.name") != topic ||
					s.SpanKind() != trace.SpanKindProducer {
					t.Errorf("page span %d: parent %v, kind %v, attributes %v", i, s.Parent(), s.SpanKind(), s.Attributes())
				}
			}
			if len(spans) == 2 && spans[0].SpanContext().TraceID() == spans[1].SpanContext().TraceID() {
				t.Error("two pages share a trace")
			}
			recs := e.records()
			if len(recs) != len(tt.wantPage) {
				t.Fatalf("%d records, want %d", len(recs), len(tt.wantPage))
			}
			for _, r := range recs {
				sc, want := ordertest.SpanContext(r), spans[tt.wantPage[string(r.Key)]].SpanContext()
				if !sc.IsValid() || sc.TraceID() != want.TraceID() || sc.SpanID() != want.SpanID() || !sc.IsSampled() {
					t.Errorf("record %s carries %v, want the page span %v", r.Key, sc, want)
				}
			}
		})
	}
}
