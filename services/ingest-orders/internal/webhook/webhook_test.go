package webhook

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sr/srfake"
	"go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/goleak"

	"github.com/ecomstream/platform/pkg/avroserde"
	"github.com/ecomstream/platform/pkg/deadletter"
	"github.com/ecomstream/platform/pkg/events"
	"github.com/ecomstream/platform/pkg/stream"
	protoavro "github.com/ecomstream/platform/proto/avro"
	"github.com/ecomstream/platform/services/ingest-orders/internal/ordertest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestSignExample is the contract's worked example.
func TestSignExample(t *testing.T) {
	got := Sign([]byte("whsec_test"), "1700000000", []byte(`{"id":"o-1","version":1}`))
	if want := "sha256=74a49411476526cbabe71377f5f0841a9ddd6ed021acb173bab68187e51889ef"; got != want {
		t.Errorf("Sign() = %s, want %s", got, want)
	}
}

func TestVerify(t *testing.T) {
	secret, body := []byte("whsec_test"), []byte(`{"id":"o-1","version":1}`)
	now := time.Unix(1700000000, 0)
	ts := "1700000000"
	good := Sign(secret, ts, body)
	tests := []struct {
		name    string
		secret  []byte
		ts, sig string
		body    []byte
		now     time.Time
		want    Result
	}{
		{name: "valid", secret: secret, ts: ts, sig: good, body: body, now: now, want: Valid},
		{name: "valid within the window", secret: secret, ts: ts, sig: good, body: body, now: now.Add(4 * time.Minute), want: Valid},
		{name: "tampered body", secret: secret, ts: ts, sig: good, body: []byte(`{"id":"o-1","version":2}`), now: now, want: BadSignature},
		{name: "wrong secret", secret: []byte("other"), ts: ts, sig: good, body: body, now: now, want: BadSignature},
		{name: "timestamp not the signed one", secret: secret, ts: "1700000001", sig: good, body: body, now: now, want: BadSignature},
		{name: "upper-case hex", secret: secret, ts: ts, sig: "sha256=" + strings.ToUpper(strings.TrimPrefix(good, "sha256=")), body: body, now: now, want: Valid},
		{name: "no scheme", secret: secret, ts: ts, sig: strings.TrimPrefix(good, "sha256="), body: body, now: now, want: BadSignature},
		{name: "not hex", secret: secret, ts: ts, sig: "sha256=" + strings.Repeat("zz", 32), body: body, now: now, want: BadSignature},
		{name: "short", secret: secret, ts: ts, sig: good[:20], body: body, now: now, want: BadSignature},
		{name: "stale", secret: secret, ts: ts, sig: good, body: body, now: now.Add(6 * time.Minute), want: Stale},
		{name: "from the future", secret: secret, ts: ts, sig: good, body: body, now: now.Add(-6 * time.Minute), want: Stale},
		{name: "timestamp not a number", secret: secret, ts: "yesterday", sig: good, body: body, now: now, want: BadTimestamp},
		{name: "missing timestamp", secret: secret, sig: good, body: body, now: now, want: Missing},
		{name: "missing signature", secret: secret, ts: ts, body: body, now: now, want: Missing},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Verify(tt.secret, tt.ts, tt.sig, tt.body, tt.now, 5*time.Minute); got != tt.want {
				t.Errorf("Verify() = %s, want %s", got, tt.want)
			}
		})
	}
}

// upper-case hex is not what the contract sends, but hex decoding accepts
// it; the MAC comparison is what matters.

func TestParse(t *testing.T) {
	tests := []struct {
		name      string
		body      string
		wantCodes []deadletter.Code
	}{
		{name: "order", body: validBody("o-1", 2)},
		{name: "not JSON", body: `{"id":`, wantCodes: []deadletter.Code{deadletter.MalformedJSON}},
		{name: "wrong type", body: `{"id":"o-1","version":"2"}`, wantCodes: []deadletter.Code{deadletter.WrongType}},
		{name: "bad timestamp", body: `{"id":"o-1","version":2,"created_at":"monday"}`, wantCodes: []deadletter.Code{deadletter.InvalidValue}},
		{name: "missing fields", body: `{"id":"o-1"}`, wantCodes: []deadletter.Code{deadletter.MissingField, deadletter.MissingField,
			deadletter.MissingField, deadletter.MissingField, deadletter.MissingField, deadletter.MissingField}},
		{name: "negative version", body: strings.Replace(validBody("o-1", 2), `"version":2`, `"version":-1`, 1), wantCodes: []deadletter.Code{deadletter.InvalidValue}},
		{name: "null", body: `null`, wantCodes: []deadletter.Code{deadletter.MissingField, deadletter.MissingField, deadletter.MissingField,
			deadletter.MissingField, deadletter.MissingField, deadletter.MissingField, deadletter.MissingField}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, rej := Parse([]byte(tt.body))
			var codes []deadletter.Code
			if rej != nil {
				for _, r := range rej.Reasons {
					codes = append(codes, r.Code)
				}
			} else if o == nil {
				t.Fatal("no order and no rejection")
			}
			if strings.Join(toStrings(codes), ",") != strings.Join(toStrings(tt.wantCodes), ",") {
				t.Errorf("codes %v, want %v (%v)", codes, tt.wantCodes, rej)
			}
		})
	}
}

func toStrings(cs []deadletter.Code) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = string(c)
	}
	return out
}

// validBody is a paid order as the storefront sends it.
func validBody(id string, version int64) string {
	o := ordertest.Order(id, version, time.Minute)
	o.Status, o.PaidAt = "paid", &o.UpdatedAt
	return ordertest.JSON(o)
}

const secret = "s3cret-for-tests"

type env struct {
	t        *testing.T
	cluster  *kfake.Cluster
	cl       *kgo.Client
	srv      *httptest.Server
	h        *Handler
	orders   *avroserde.Codec
	dlq      *avroserde.Codec
	spans    *tracetest.SpanRecorder
	produced atomic.Int64
	now      time.Time
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{t: t, now: time.Now().Truncate(time.Second)}
	c := ordertest.Cluster(t, "orders", deadletter.Topic)
	e.cluster = c
	// Every produce request is counted, so a test can tell an answer came
	// after the ack.
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		e.produced.Add(1)
		return nil, nil, false
	})
	var err error
	e.cl, err = kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.RequiredAcks(kgo.AllISRAcks()), kgo.RecordDeliveryTimeout(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.cl.Close)
	reg := srfake.New()
	t.Cleanup(reg.Close)
	r, err := avroserde.New(avroserde.Config{URL: reg.URL(), AutoRegister: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if e.orders, err = r.Codec(ctx, avroserde.SubjectFor("orders"), protoavro.Order); err != nil {
		t.Fatal(err)
	}
	if e.dlq, err = r.Codec(ctx, avroserde.SubjectFor(deadletter.Topic), protoavro.DeadLetter); err != nil {
		t.Fatal(err)
	}
	var tracer trace.Tracer
	tracer, e.spans = ordertest.Tracer(t)
	e.h, err = New(Config{Secret: secret, ReplayWindow: 5 * time.Minute, MaxBodyBytes: 4096, ProduceTimeout: 500 * time.Millisecond}, Deps{
		Producer: e.cl, Orders: e.orders, DeadLetters: e.dlq, Topic: "orders", Stage: "ingest-orders", DeadLetterBudget: 1 << 20,
		Tracer: tracer, Meter: noop.NewMeterProvider().Meter("t"), Log: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	e.h.now = func() time.Time { return e.now }
	e.srv = httptest.NewServer(e.h)
	t.Cleanup(e.srv.Close)
	return e
}

// post sends body signed at ts with secret s (no headers when s is empty).
func (e *env) post(body, s string, ts time.Time, extra map[string]string) (int, map[string]any) {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+Path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if s != "" {
		tss := strconv.FormatInt(ts.Unix(), 10)
		req.Header.Set(HeaderTimestamp, tss)
		req.Header.Set(HeaderSignature, Sign([]byte(s), tss, []byte(body)))
	}
	req.Header.Set(HeaderDeliveryID, "d-1")
	for k, v := range extra {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		e.t.Fatalf("answer %d is not JSON: %v", resp.StatusCode, err)
	}
	return resp.StatusCode, m
}

// records reads what reached topic.
func (e *env) records(topic string) []*kgo.Record {
	e.t.Helper()
	return ordertest.Records(e.t, 300*time.Millisecond, topic, kgo.SeedBrokers(e.cluster.ListenAddrs()...))
}

func TestHandler(t *testing.T) {
	tests := []struct {
		name       string
		body       string
		secret     string
		age        time.Duration
		extra      map[string]string
		wantStatus int
		wantCode   string
		wantOrders int
		wantDLQ    int
	}{
		{name: "valid", body: validBody("o-1", 2), secret: secret, wantStatus: 200, wantOrders: 1},
		{name: "wrong secret", body: validBody("o-1", 2), secret: "another-secret", wantStatus: 401, wantCode: string(BadSignature)},
		{name: "tampered body", body: validBody("o-1", 2), secret: secret, extra: map[string]string{HeaderSignature: Sign([]byte(secret), "1", []byte("x"))},
			wantStatus: 401, wantCode: string(BadSignature)},
		{name: "stale", body: validBody("o-1", 2), secret: secret, age: 10 * time.Minute, wantStatus: 401, wantCode: string(Stale)},
		{name: "no signature headers", body: validBody("o-1", 2), wantStatus: 401, wantCode: string(Missing)},
		{name: "too large", body: validBody("o-1", 2) + strings.Repeat(" ", 5000), secret: secret, wantStatus: 413, wantCode: string(BodyTooLarge)},
		{name: "well signed, malformed: dead-lettered", body: `{"id":"o-1","version":"two"}`, secret: secret, wantStatus: 400, wantCode: "malformed_order", wantDLQ: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			status, ans := e.post(tt.body, tt.secret, e.now.Add(-tt.age), tt.extra)
			if status != tt.wantStatus || (tt.wantCode != "" && ans["code"] != tt.wantCode) {
				t.Errorf("answer %d %v, want %d %s", status, ans, tt.wantStatus, tt.wantCode)
			}
			orders, dls := e.records("orders"), e.records(deadletter.Topic)
			if len(orders) != tt.wantOrders || len(dls) != tt.wantDLQ {
				t.Fatalf("%d orders, %d dead letters; want %d, %d", len(orders), len(dls), tt.wantOrders, tt.wantDLQ)
			}
			for _, r := range orders {
				var o events.Order
				if _, err := e.orders.Decode(context.Background(), r.Value, &o); err != nil {
					t.Fatal(err)
				}
				if string(r.Key) != "o-1" || o.OrderID != "o-1" || o.OrderVersion != 2 || o.Source != "webhook" ||
					o.WebhookDeliveryID == nil || *o.WebhookDeliveryID != "d-1" || o.ReceivedAt == nil || !o.ReceivedAt.Equal(e.now) {
					t.Errorf("order %+v", o)
				}
			}
			for _, r := range dls {
				var dl events.DeadLetter
				if _, err := e.dlq.Decode(context.Background(), r.Value, &dl); err != nil {
					t.Fatal(err)
				}
				if string(dl.OriginalValue) != tt.body || dl.Stage != "ingest-orders" || dl.SourceTopic != SourceTopic ||
					dl.DeadLetterID != deadletter.ContentID("ingest-orders", Origin, []byte(tt.body)) || ans["dead_letter_id"] != dl.DeadLetterID ||
					dl.Entity == nil || *dl.Entity != "order" || len(dl.Reasons) == 0 || dl.Reasons[0].Code != string(deadletter.WrongType) {
					t.Errorf("dead letter %+v", dl)
				}
			}
		})
	}
}

// TestAnswersOnlyAfterTheAck: 200 comes after Kafka served the produce
// request; with Kafka gone the delivery is answered 503 (the storefront
// retries) within the produce timeout.
func TestAnswersOnlyAfterTheAck(t *testing.T) {
	e := newEnv(t)
	before := e.produced.Load()
	if status, ans := e.post(validBody("o-2", 1), secret, e.now, nil); status != http.StatusOK || ans["order_id"] != "o-2" {
		t.Fatalf("answer %d %v", status, ans)
	}
	if e.produced.Load() == before {
		t.Error("200 before any produce request reached Kafka")
	}
	if got := e.records("orders"); len(got) != 1 || string(got[0].Key) != "o-2" {
		t.Errorf("orders topic holds %d records", len(got))
	}
	e.cluster.Close()
	start := time.Now()
	if status, ans := e.post(validBody("o-3", 1), secret, e.now, nil); status != http.StatusServiceUnavailable {
		t.Errorf("answer with Kafka down: %d %v", status, ans)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("503 after %v", took)
	}
}

// TestTrace: a verified delivery is one server span, and the record it
// produces (order or dead letter) carries that span. The storefront's own
// traceparent is kept as a link of a new trace, not continued: the
// receiver is a trust boundary (stream.TrustBoundary), so the sender
// cannot choose our sampling or graft its trace ids onto ours.
func TestTrace(t *testing.T) {
	const incoming = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	tests := []struct {
		name        string
		body        string
		traceparent string
		topic       string
		wantStatus  int
	}{
		{name: "order", body: validBody("o-1", 2), topic: "orders", wantStatus: 200},
		{name: "order with the storefront's traceparent", body: validBody("o-1", 2), traceparent: incoming, topic: "orders", wantStatus: 200},
		{name: "dead letter with the storefront's traceparent", body: `{"id":"o-1","version":"two"}`, traceparent: incoming,
			topic: deadletter.Topic, wantStatus: 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			var extra map[string]string
			if tt.traceparent != "" {
				extra = map[string]string{"traceparent": tt.traceparent}
			}
			if status, ans := e.post(tt.body, secret, e.now, extra); status != tt.wantStatus {
				t.Fatalf("answer %d %v", status, ans)
			}
			spans := ordertest.Spans(e.spans, SpanName)
			if len(spans) != 1 {
				t.Fatalf("%d %q spans, want 1", len(spans), SpanName)
			}
			s := spans[0]
			if s.Parent().IsValid() || s.SpanKind() != trace.SpanKindServer || ordertest.Attr(s, "http.response.status_code") != strconv.Itoa(tt.wantStatus) {
				t.Errorf("span: parent %v, kind %v, attributes %v", s.Parent(), s.SpanKind(), s.Attributes())
			}
			links := s.Links()
			if tt.traceparent == "" && len(links) != 0 {
				t.Errorf("links %v without an incoming traceparent", links)
			}
			if tt.traceparent != "" {
				if len(links) != 1 || links[0].SpanContext.TraceID().String() != "0af7651916cd43dd8448eb211c80319c" ||
					len(links[0].Attributes) != 1 || string(links[0].Attributes[0].Key) != stream.UntrustedParentAttr {
					t.Errorf("links %v, want the storefront's span as an untrusted link", links)
				}
				if s.SpanContext().TraceID() == links[0].SpanContext.TraceID() {
					t.Error("the storefront's trace was continued")
				}
			}
			recs := e.records(tt.topic)
			if len(recs) != 1 {
				t.Fatalf("%d records on %s", len(recs), tt.topic)
			}
			if sc := ordertest.SpanContext(recs[0]); sc.TraceID() != s.SpanContext().TraceID() || sc.SpanID() != s.SpanContext().SpanID() {
				t.Errorf("record carries %v, want the delivery's span %v", sc, s.SpanContext())
			}
		})
	}
}
