// Package ordertest holds the fixtures ingest-orders' tests share: a
// well-formed API order, a scripted fake storefront, a kfake cluster and a
// reader of what reached a topic, a JSON stand-in for the Avro codec, and an
// in-memory tracer with the trace context a produced record carries. Only
// tests import it.
package ordertest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kotel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/ecomstream/platform/pkg/events"
	"github.com/ecomstream/platform/services/ingest-orders/internal/storefront"
)

// T0 is the shop time the fixtures' orders are created at.
var T0 = time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)

// Order is a well-formed order, status created, with one line, created at
// T0 and updated at T0 + updated.
func Order(id string, version int64, updated time.Duration) storefront.Order {
	return storefront.Order{ID: id, Version: version, CustomerID: "u-000001", Status: "created", Currency: "USD",
		Lines:         []storefront.Line{{LineID: id + "-1", ProductID: "p-00001", Quantity: 1, UnitPriceMinor: 100, LineTotalMinor: 100}},
		SubtotalMinor: 100, TotalMinor: 100, CreatedAt: T0, UpdatedAt: T0.Add(updated)}
}

// JSON is o as the API sends it.
func JSON(o storefront.Order) string {
	b, err := json.Marshal(o)
	if err != nil {
		panic(err) // a storefront.Order always marshals
	}
	return string(b)
}

// JSONEncoder stands in for the Avro codec; it fails the order FailOn.
type JSONEncoder struct{ FailOn string }

// Encode implements stream.Encoder.
func (e JSONEncoder) Encode(v any) ([]byte, error) {
	if o, ok := v.(events.Order); ok && e.FailOn != "" && o.OrderID == e.FailOn {
		return nil, errors.New("cannot encode")
	}
	return json.Marshal(v)
}

// Token is the bearer token the fake API requires.
const Token = "tok"

// Answer is one scripted answer of the fake API.
type Answer struct {
	Status     int    // 0 = 200
	RetryAfter string // Retry-After header
	Body       string // raw 200 body; empty = the page below
	Page       []storefront.Order
	HasMore    bool
	Token      string // next_page_token
}

// API is a fake storefront: GET /v1/orders answers its script in order (an
// empty page once it runs out) and records each request's query. Every 200
// carries X-Storefront-Shop-Time T0 + 1h.
type API struct {
	URL     string
	mu      sync.Mutex
	answers []Answer
	queries []map[string]string
	gate    chan struct{}
}

// NewAPI serves answers until the test ends.
func NewAPI(t testing.TB, answers ...Answer) *API {
	a := &API{answers: answers}
	srv := httptest.NewServer(a)
	t.Cleanup(srv.Close)
	a.URL = srv.URL
	return a
}

// Gate makes every answer wait until g is closed (set it before the first
// request).
func (a *API) Gate(g chan struct{}) {
	a.mu.Lock()
	a.gate = g
	a.mu.Unlock()
}

// Client is a client of a with its token.
func (a *API) Client() *storefront.Client {
	return storefront.New(storefront.Config{URL: a.URL, Token: Token, Timeout: 5 * time.Second}, nil)
}

// Queries are the requests' query parameters so far, in order.
func (a *API) Queries() []map[string]string {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]map[string]string, len(a.queries))
	for i, q := range a.queries {
		out[i] = maps.Clone(q)
	}
	return out
}

// ServeHTTP implements http.Handler.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	gate := a.gate
	a.mu.Unlock()
	if gate != nil {
		<-gate
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if r.Header.Get("Authorization") != "Bearer "+Token {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	q := map[string]string{}
	for k := range r.URL.Query() {
		q[k] = r.URL.Query().Get(k)
	}
	a.queries = append(a.queries, q)
	var ans Answer
	if len(a.answers) > 0 {
		ans, a.answers = a.answers[0], a.answers[1:]
	}
	if ans.RetryAfter != "" {
		w.Header().Set("Retry-After", ans.RetryAfter)
	}
	if ans.Status != 0 && ans.Status != http.StatusOK {
		w.WriteHeader(ans.Status)
		fmt.Fprintf(w, `{"error":{"code":"x","message":"scripted"}}`)
		return
	}
	w.Header().Set("X-Storefront-Shop-Time", T0.Add(time.Hour).Format(time.RFC3339Nano))
	if ans.Body != "" {
		io.WriteString(w, ans.Body)
		return
	}
	p := storefront.Page{Orders: ans.Page, HasMore: ans.HasMore, NextPageToken: ans.Token}
	if p.Orders == nil {
		p.Orders = []storefront.Order{}
	}
	json.NewEncoder(w).Encode(p)
}

// Cluster is a one-broker kfake cluster with topics (one partition each),
// closed when the test ends.
func Cluster(t testing.TB, topics ...string) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, topics...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// Records reads topic from the start, read_committed unless opts say
// otherwise, until every partition reached the end it had when Records began
// (its last record, or the commit marker after it), or, for a partition whose
// end is never reached (an aborted or open transaction last), until no record
// came for idle once recordsGrace has passed: a slow first fetch of a new
// client on a loaded machine is not taken for the end. opts hold the
// connection.
func Records(t testing.TB, idle time.Duration, topic string, opts ...kgo.Opt) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.FetchMaxWait(200 * time.Millisecond)},
		append(opts, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	lctx, lcancel := context.WithTimeout(context.Background(), 30*time.Second)
	ends, err := kadm.NewClient(cl).ListEndOffsets(lctx, topic)
	lcancel()
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		t.Fatalf("end offsets of %s: %v", topic, err)
	}
	want := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			want[o.Partition] = o.Offset
		}
	})
	var out []*kgo.Record
	start := time.Now()
	for len(want) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), idle)
		fs := cl.PollFetches(ctx)
		cancel()
		n := 0
		fs.EachRecord(func(r *kgo.Record) {
			n++
			out = append(out, r)
			if r.Offset+1 >= want[r.Partition] || r.Attrs.IsTransactional() && r.Offset+2 >= want[r.Partition] {
				delete(want, r.Partition)
			}
		})
		if n == 0 && time.Since(start) > recordsGrace {
			break
		}
	}
	return out
}

// recordsGrace is how long Records reads before an idle poll may end it.
const recordsGrace = 3 * time.Second

// Tracer is a tracer that samples everything into the returned recorder.
func Tracer(t testing.TB) (trace.Tracer, *tracetest.SpanRecorder) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()), sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return tp.Tracer("ordertest"), rec
}

// SpanContext is the trace context in rec's headers (invalid if none).
func SpanContext(rec *kgo.Record) trace.SpanContext {
	ctx := propagation.TraceContext{}.Extract(context.Background(), kotel.NewRecordCarrier(rec))
	return trace.SpanContextFromContext(ctx)
}

// Spans are the ended spans named name.
func Spans(rec *tracetest.SpanRecorder, name string) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		if s.Name() == name {
			out = append(out, s)
		}
	}
	return out
}

// Attr is span s's attribute key ("" when absent), formatted.
func Attr(s sdktrace.ReadOnlySpan, key string) string {
	for _, kv := range s.Attributes() {
		if string(kv.Key) == key {
			return kv.Value.Emit()
		}
	}
	return ""
}
