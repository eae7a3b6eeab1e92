package collector

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr/srfake"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.uber.org/goleak"

	"github.com/ecomstream/platform/pkg/avroserde"
	"github.com/ecomstream/platform/pkg/config"
	"github.com/ecomstream/platform/pkg/deadletter"
	"github.com/ecomstream/platform/pkg/events"
	"github.com/ecomstream/platform/pkg/stream"
	protoavro "github.com/ecomstream/platform/proto/avro"
	"github.com/ecomstream/platform/services/ingest-clickstream/internal/clickparse"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// the OTel SDK's and kfake's background goroutines outlive single tests
		goleak.IgnoreTopFunction("go.opencensus.io/stats/view.(*worker).start"),
		goleak.IgnoreAnyFunction("github.com/twmb/franz-go/pkg/kfake.(*Cluster).run"),
	)
}

const (
	outTopic = "ecom.events.v1"
	inTopic  = "clickstream"
	webKey   = "wk_web_0123456789abcdef"
	srvKey   = "wk_srv_0123456789abcdef"
	origin   = "http://127.0.0.1:8095"
)

// rawEvent is a valid raw event with id id.
func rawEvent(id string) string {
	return `{"event_id":"` + id + `","event_timestamp":"2026-11-25T21:00:00Z","event_type":"page_view","session_id":"s-` + id +
		`","page_url":"https://shop.example.com/"}`
}

// badEvent lacks session_id.
func badEvent(id string) string {
	return `{"event_id":"` + id + `","event_timestamp":"2026-11-25T21:00:00Z","event_type":"page_view","page_url":"https://shop.example.com/"}`
}

// env is a collector on a kfake cluster, with a fake registry, a manual
// clock, a test tracer and a metric reader.
type env struct {
	t        testing.TB
	cluster  *kfake.Cluster
	producer *kgo.Client
	c        *Collector
	cfg      Config
	kafka    stream.Config
	events   *avroserde.Codec
	dlq      *avroserde.Codec
	keysFile string
	now      time.Time
	reader   *sdkmetric.ManualReader
	tracer   *sdktrace.TracerProvider
}

// newEnv builds an env; envVars override the collector's defaults.
func newEnv(t testing.TB, envVars map[string]string) *env {
	t.Helper()
	e := &env{t: t, now: time.Date(2026, 11, 25, 21, 0, 1, 0, time.UTC)}
	var err error
	if e.cluster, err = kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, outTopic, inTopic, deadletter.Topic)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.cluster.Close)
	reg := srfake.New()
	t.Cleanup(reg.Close)
	r, err := avroserde.New(avroserde.Config{URL: reg.URL(), AutoRegister: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if e.events, err = r.Codec(ctx, avroserde.SubjectFor(outTopic), protoavro.ClickEvent); err != nil {
		t.Fatal(err)
	}
	if e.dlq, err = r.Codec(ctx, avroserde.SubjectFor(deadletter.Topic), protoavro.DeadLetter); err != nil {
		t.Fatal(err)
	}

	e.keysFile = filepath.Join(t.TempDir(), "write-keys.json")
	e.writeKeys(`{"keys": [
		{"source": "web", "key": "` + webKey + `", "origins": ["` + origin + `"]},
		{"source": "server", "key": "` + srvKey + `", "rate_limit": 20000, "burst": 40000}]}`)
	vars := map[string]string{"COLLECTOR_ADDR": "127.0.0.1:0", "COLLECTOR_WRITE_KEYS_FILE": e.keysFile,
		"KAFKA_BROKERS": strings.Join(e.cluster.ListenAddrs(), ","), "COLLECTOR_PRODUCE_TIMEOUT": "5s"}
	for k, v := range envVars {
		vars[k] = v
	}
	var all struct {
		Kafka     stream.Config
		Collector Config
	}
	if err := config.LoadFrom(config.MapLookup(vars), &all); err != nil {
		t.Fatal(err)
	}
	e.cfg, e.kafka = all.Collector, all.Kafka
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if e.producer, err = NewProducer(all.Kafka, all.Collector, "collector-test", log, nil,
		kgo.RecordDeliveryTimeout(0)); err != nil { // kgo measures it from the timestamp, received_at: e.now is days ago {
		t.Fatal(err)
	}
	t.Cleanup(e.producer.Close)
	e.reader = sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(e.reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	e.tracer = sdktrace.NewTracerProvider()
	t.Cleanup(func() { _ = e.tracer.Shutdown(context.Background()) })
	m, err := stream.NewMetrics(mp.Meter("test"))
	if err != nil {
		t.Fatal(err)
	}
	e.c, err = New(e.cfg, Deps{
		Parser: &clickparse.Parser{MaxBytes: 65536, Source: "kafka"}, Events: e.events, DeadLetters: e.dlq,
		OutputTopic: outTopic, InputTopic: inTopic, Stage: "ingest-clickstream", DeadLetterBudget: stream.DeadLetterLimit(all.Kafka),
		Producer: e.producer, Tracer: e.tracer.Tracer("test"), Meter: mp.Meter("test"), Metrics: m, Log: log,
		Now: func() time.Time { return e.now },
	})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// writeKeys rewrites the keys file, with a new modification time.
func (e *env) writeKeys(content string) {
	e.t.Helper()
	if err := os.WriteFile(e.keysFile, []byte(content), 0o600); err != nil {
		e.t.Fatal(err)
	}
	mt := e.now.Add(time.Duration(len(content)) * time.Millisecond)
	_ = os.Chtimes(e.keysFile, mt, mt)
}

// req describes one request.
type req struct {
	method  string // POST by default
	path    string // Path by default
	body    string
	gzip    bool
	headers map[string]string
	query   string
	chunked bool // no Content-Length: the body is read until its end
}

// do sends r to the collector and returns the recorded response.
func (e *env) do(r req) *httptest.ResponseRecorder {
	e.t.Helper()
	method, path := r.method, r.path
	if method == "" {
		method = http.MethodPost
	}
	if path == "" {
		path = Path
	}
	if r.query != "" {
		path += "?" + r.query
	}
	var body io.Reader = strings.NewReader(r.body)
	if r.gzip {
		var b bytes.Buffer
		zw := gzip.NewWriter(&b)
		_, _ = zw.Write([]byte(r.body))
		_ = zw.Close()
		body = &b
	}
	if r.chunked {
		body = io.MultiReader(body) // hides the length httptest would take from a *strings.Reader
	}
	hr := httptest.NewRequest(method, path, body)
	if r.chunked {
		hr.ContentLength = -1
	}
	hr.RemoteAddr = "198.51.100.23:40000"
	if _, ok := r.headers["Content-Type"]; !ok {
		hr.Header.Set("Content-Type", "application/json")
	}
	if r.gzip {
		hr.Header.Set("Content-Encoding", "gzip")
	}
	for k, v := range r.headers {
		if v == "" {
			hr.Header.Del(k)
			continue
		}
		hr.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	e.c.ServeHTTP(w, hr)
	return w
}

// post sends body with the web key in the Authorization header.
func (e *env) post(body string) *httptest.ResponseRecorder {
	e.t.Helper()
	return e.do(req{body: body, headers: map[string]string{"Authorization": "Bearer " + srvKey}})
}

// answerOf decodes a 200 answer.
func answerOf(t *testing.T, w *httptest.ResponseRecorder) answer {
	t.Helper()
	if w.Code != http.StatusOK {
		t.Fatalf("status %d, body %s", w.Code, w.Body)
	}
	var a answer
	if err := json.Unmarshal(w.Body.Bytes(), &a); err != nil {
		t.Fatalf("answer %q: %v", w.Body, err)
	}
	return a
}

// errorOf decodes a refusal's sentence.
func errorOf(t *testing.T, w *httptest.ResponseRecorder) string {
	t.Helper()
	var m map[string]string
	if err := json.Unmarshal(w.Body.Bytes(), &m); err != nil || m["error"] == "" {
		t.Fatalf("status %d: body %q is not {\"error\": ...}", w.Code, w.Body)
	}
	return m["error"]
}

// consume reads n records from topic (all partitions, from the start).
func (e *env) consume(topic string, n int) []*kgo.Record {
	e.t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.cluster.ListenAddrs()...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		e.t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out []*kgo.Record
	for len(out) < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			e.t.Fatalf("%s: %d of %d records within 10s", topic, len(out), n)
		}
		fs.EachRecord(func(r *kgo.Record) { out = append(out, r) })
	}
	return out
}

// clickEvent decodes an output record.
func (e *env) clickEvent(r *kgo.Record) events.ClickEvent {
	e.t.Helper()
	var ev events.ClickEvent
	if _, err := e.events.Decode(context.Background(), r.Value, &ev); err != nil {
		e.t.Fatal(err)
	}
	return ev
}

// deadLetter decodes a dead-letter record.
func (e *env) deadLetter(r *kgo.Record) events.DeadLetter {
	e.t.Helper()
	var dl events.DeadLetter
	if _, err := e.dlq.Decode(context.Background(), r.Value, &dl); err != nil {
		e.t.Fatal(err)
	}
	return dl
}

// counter sums the metric name's data points whose attribute key is value.
func (e *env) counter(name, key, value string) int64 {
	e.t.Helper()
	var rm metricdata.ResourceMetrics
	if err := e.reader.Collect(context.Background(), &rm); err != nil {
		e.t.Fatal(err)
	}
	var n int64
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != name {
				continue
			}
			if sum, ok := m.Data.(metricdata.Sum[int64]); ok {
				for _, dp := range sum.DataPoints {
					if v, ok := dp.Attributes.Value(attribute.Key(key)); ok && v.AsString() == value {
						n += dp.Value
					}
				}
			}
		}
	}
	return n
}

func header(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

func batch(events ...string) string { return "[" + strings.Join(events, ",") + "]" }

func manyEvents(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = rawEvent(fmt.Sprintf("%s-%d", prefix, i))
	}
	return out
}
