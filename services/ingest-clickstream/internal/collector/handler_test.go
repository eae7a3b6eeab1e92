package collector

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/ecomstream/platform/pkg/deadletter"
	"github.com/ecomstream/platform/pkg/stream"
)

// TestAcceptedAndRejectedLand: a batch of good and bad events is answered
// per event, the good ones land as ClickEvents (source http, received_at =
// the request time, collector_source, keyed by session, timestamped
// received_at, with the request's traceparent), the bad one as a dead letter
// with its original bytes and the contract's id and headers.
func TestAcceptedAndRejectedLand(t *testing.T) {
	e := newEnv(t, map[string]string{"COLLECTOR_CLIENT_IP": "truncated"})
	w := e.post(batch(rawEvent("e1"), badEvent("e2"), rawEvent("e3")))
	a := answerOf(t, w)
	if a.Accepted != 2 || a.Rejected != 1 || len(a.Events) != 3 {
		t.Fatalf("answer %s", w.Body)
	}
	if r := a.Events[1]; r.Index != 1 || r.EventID != "e2" || r.Status != "rejected" || len(r.Reasons) != 1 ||
		r.Reasons[0].Code != "MISSING_FIELD" || r.Reasons[0].Field != "session_id" || r.Reasons[0].Message != "session_id is required" {
		t.Errorf("rejected event: %+v", r)
	}
	if r := a.Events[2]; r.Index != 2 || r.EventID != "e3" || r.Status != "accepted" || r.Reasons != nil {
		t.Errorf("accepted event: %+v", r)
	}

	outs := e.consume(outTopic, 2)
	for _, r := range outs {
		ev := e.clickEvent(r)
		if ev.Source != "http" || !ev.ReceivedAt.Equal(e.now) || !r.Timestamp.Equal(e.now) || string(r.Key) != ev.SessionID ||
			ev.CollectorSource == nil || *ev.CollectorSource != "server" || ev.ClientIP == nil || *ev.ClientIP != "198.51.100.0" {
			t.Errorf("output %+v (key %q, timestamp %v)", ev, r.Key, r.Timestamp)
		}
		if tp := header(r, "traceparent"); len(tp) != 55 {
			t.Errorf("output traceparent %q", tp)
		}
	}
	dls := e.consume(deadletter.Topic, 1)
	dl := e.deadLetter(dls[0])
	if string(dl.OriginalValue) != badEvent("e2") || dl.Stage != "ingest-clickstream" || *dl.Entity != "click_event" ||
		dl.SourceTopic != inTopic || dl.SourcePartition != -1 || dl.SourceOffset != -1 ||
		dl.DeadLetterID != deadletter.ContentID("ingest-clickstream", "http", []byte(badEvent("e2"))) ||
		!strings.HasPrefix(dl.DeadLetterID, "ingest-clickstream-http-") || dl.TraceID == nil ||
		!strings.Contains(header(dls[0], "traceparent"), *dl.TraceID) || !dl.SourceTimestamp.Equal(e.now) {
		t.Errorf("dead letter %+v", dl)
	}
	hs := map[string]string{}
	for _, h := range dl.OriginalHeaders {
		hs[h.Key] = string(h.Value)
	}
	if hs["ecom-origin"] != "http" || hs["ecom-collector-source"] != "server" || len(hs) != 2 {
		t.Errorf("dead letter's original headers %v", hs)
	}
	if n := e.counter("ecom.dead_letters", "code", "MISSING_FIELD"); n != 1 {
		t.Errorf("ecom.dead_letters{code=MISSING_FIELD} = %d, want 1", n)
	}
	if n := e.counter("ecom.collector.requests", "code", "200"); n != 1 {
		t.Errorf("ecom.collector.requests{code=200} = %d", n)
	}
	if n := e.counter("ecom.collector.events", "result", "accepted"); n != 2 {
		t.Errorf("ecom.collector.events{result=accepted} = %d", n)
	}
}

// TestRefusals: requests refused whole answer the contract's status with a
// sentence naming the limit or the variable, and produce nothing.
func TestRefusals(t *testing.T) {
	bearer := map[string]string{"Authorization": "Bearer " + srvKey}
	with := func(kv ...string) map[string]string {
		m := map[string]string{"Authorization": "Bearer " + srvKey}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	big := batch(manyEvents("big", 2000)...) // about 260 KB
	tests := []struct {
		name       string
		env        map[string]string
		give       req
		wantStatus int
		wantMsg    string
	}{
		{"malformed body", nil, req{body: `[{"a":1}`, headers: bearer}, 400, "malformed body: unterminated array"},
		{"scalar body", nil, req{body: `"x"`, headers: bearer}, 400, "malformed body"},
		{"bad gzip", nil, req{body: "not gzip", headers: with("Content-Encoding", "gzip")}, 400, "not valid gzip"},
		{"no key", nil, req{body: batch(rawEvent("e"))}, 401, "missing write key"},
		// Without a header or query key nothing about the limits is told.
		{"no key, malformed body", nil, req{body: `[{"a":1}`}, 401, "missing write key"},
		{"no key, body over 64 KiB", nil, req{body: big}, 401, "read only from bodies up to 64 KiB"},
		{"no key, chunked body over 64 KiB", nil, req{body: big, chunked: true}, 401, "missing write key"},
		{"no key, gzip over 64 KiB inflated", nil, req{body: big, gzip: true}, 401, "missing write key"},
		{"no key, too many events", map[string]string{"COLLECTOR_MAX_EVENTS": "3"}, req{body: batch(manyEvents("m", 4)...)}, 401, "missing write key"},
		{"no key, unsupported type", nil, req{body: "x", headers: map[string]string{"Content-Type": "application/xml"}}, 401, "missing write key"},
		{"event over MAX_EVENT_BYTES", nil, req{body: batch(rawEvent("e0"), rawEvent("e1"), rawEvent("e2"), `{"event_id":"e3","pad":"`+strings.Repeat("x", 69974)+`"}`), headers: bearer},
			413, "event 3 is 70000 bytes, limit is 65536 (MAX_EVENT_BYTES)"},
		{"unknown key in the header", nil, req{body: batch(rawEvent("e")), headers: map[string]string{"Authorization": "Bearer wk_nobody_0123456789"}}, 401, "unknown write key"},
		{"unknown key in the envelope", nil, req{body: `{"write_key":"wk_nobody_0123456789","events":[]}`}, 401, "unknown write key"},
		{"origin not allowed for the key", nil, req{body: batch(rawEvent("e")), headers: with("Origin", "https://evil.example")}, 403, "origin https://evil.example is not allowed"},
		{"origin of another key", nil, req{body: batch(rawEvent("e")), headers: with("Origin", origin)}, 403, "not allowed"},
		{"GET", nil, req{method: http.MethodGet, headers: bearer}, 405, "use POST /v1/events"},
		{"other path", nil, req{path: "/v1/other", headers: bearer}, 404, "no such endpoint"},
		{"body over the limit", map[string]string{"COLLECTOR_MAX_BODY_BYTES": "100000"}, req{body: big, headers: bearer}, 413, "COLLECTOR_MAX_BODY_BYTES=100000"},
		{"body over the limit, no length", map[string]string{"COLLECTOR_MAX_BODY_BYTES": "100000"}, req{body: big, headers: bearer, chunked: true}, 413, "COLLECTOR_MAX_BODY_BYTES=100000"},
		{"decompressed over the limit", map[string]string{"COLLECTOR_MAX_DECOMPRESSED_BYTES": "100000", "COLLECTOR_MAX_BODY_BYTES": "100000"},
			req{body: big, gzip: true, headers: bearer}, 413, "COLLECTOR_MAX_DECOMPRESSED_BYTES=100000"},
		{"too many events", map[string]string{"COLLECTOR_MAX_EVENTS": "3"}, req{body: batch(manyEvents("m", 4)...), headers: bearer}, 413, "COLLECTOR_MAX_EVENTS=3"},
		{"unsupported encoding", nil, req{body: "x", headers: with("Content-Encoding", "br")}, 415, `Content-Encoding "br"`},
		{"unsupported type", nil, req{body: "x", headers: with("Content-Type", "application/xml")}, 415, `Content-Type "application/xml"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, tt.env)
			w := e.do(tt.give)
			if w.Code != tt.wantStatus {
				t.Fatalf("status %d, want %d: %s", w.Code, tt.wantStatus, w.Body)
			}
			if msg := errorOf(t, w); !strings.Contains(msg, tt.wantMsg) {
				t.Errorf("error %q, want it to contain %q", msg, tt.wantMsg)
			}
			if ct := w.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			if n := e.counter("ecom.collector.requests", "code", strconv.Itoa(tt.wantStatus)); n != 1 {
				t.Errorf("ecom.collector.requests{code=%d} = %d, want 1", tt.wantStatus, n)
			}
		})
	}
}

// TestGzipBombIsCutEarly: a body of 1 MiB of gzip that inflates to 1 GiB is
// refused 413 having inflated no more than the limit: the memory it costs is
// bounded by COLLECTOR_MAX_DECOMPRESSED_BYTES, not by its ratio. One that
// declares its size in the gzip trailer is refused without inflating; one
// that lies there is cut at the limit.
func TestGzipBombIsCutEarly(t *testing.T) {
	var bomb bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&bomb, gzip.BestCompression)
	zeros := make([]byte, 1<<20)
	for range 1024 {
		_, _ = zw.Write(zeros)
	}
	_ = zw.Close()
	if bomb.Len() > 1<<20 {
		t.Fatalf("bomb is %d bytes", bomb.Len())
	}
	lying := bytes.Clone(bomb.Bytes())
	binary.LittleEndian.PutUint32(lying[len(lying)-4:], 100) // "100 bytes inflated"
	tests := []struct {
		name     string
		body     []byte
		maxAlloc int // in multiples of the limit
	}{
		{"declared in the trailer", bomb.Bytes(), 1},
		{"trailer lies", lying, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, nil)
			send := func() *httptest.ResponseRecorder {
				hr := httptest.NewRequest(http.MethodPost, Path, bytes.NewReader(tt.body))
				hr.Header.Set("Authorization", "Bearer "+srvKey)
				hr.Header.Set("Content-Type", "application/json")
				hr.Header.Set("Content-Encoding", "gzip")
				w := httptest.NewRecorder()
				e.c.ServeHTTP(w, hr)
				return w
			}
			send() // warm the buffer pool
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			w := send()
			runtime.ReadMemStats(&after)
			if w.Code != http.StatusRequestEntityTooLarge || !strings.Contains(errorOf(t, w), "COLLECTOR_MAX_DECOMPRESSED_BYTES=4194304") {
				t.Fatalf("status %d: %s", w.Code, w.Body)
			}
			allocated := after.TotalAlloc - before.TotalAlloc
			t.Logf("a %d-byte gzip bomb of 1 GiB allocated %d bytes before its 413", len(tt.body), allocated)
			if limit := uint64(tt.maxAlloc * e.cfg.MaxDecompressedBytes); allocated > limit {
				t.Errorf("allocated %d bytes, more than %d: the bomb was inflated beyond the limit", allocated, limit)
			}
		})
	}
}

// TestWriteKeyPlaces: the key is taken from the Authorization header, the
// X-Write-Key header, the query string or the envelope.
func TestWriteKeyPlaces(t *testing.T) {
	tests := []struct {
		name string
		give req
	}{
		{"bearer", req{body: batch(rawEvent("e")), headers: map[string]string{"Authorization": "Bearer " + webKey}}},
		{"X-Write-Key", req{body: batch(rawEvent("e")), headers: map[string]string{"X-Write-Key": webKey}}},
		{"query", req{body: batch(rawEvent("e")), query: "write_key=" + webKey}},
		{"envelope, sendBeacon text/plain", req{body: `{"write_key":"` + webKey + `","events":[` + rawEvent("e") + `]}`,
			headers: map[string]string{"Content-Type": "text/plain;charset=UTF-8", "Origin": origin}}},
		{"NDJSON", req{body: rawEvent("e") + "\n", headers: map[string]string{"Content-Type": "application/x-ndjson", "X-Write-Key": webKey}}},
		{"gzip", req{body: batch(rawEvent("e")), gzip: true, headers: map[string]string{"X-Write-Key": webKey}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, nil)
			if a := answerOf(t, e.do(tt.give)); a.Accepted != 1 {
				t.Fatalf("answer %+v", a)
			}
			if ev := e.clickEvent(e.consume(outTopic, 1)[0]); *ev.CollectorSource != "web" {
				t.Errorf("collector_source %q", *ev.CollectorSource)
			}
		})
	}
}

// TestKeyRotation: rewriting the keys file takes effect within the check
// interval without a restart; a file that no longer loads keeps the previous
// keys.
func TestKeyRotation(t *testing.T) {
	const newKey = "wk_web_rotated_0123456789"
	e := newEnv(t, nil)
	send := func(key string) int {
		return e.do(req{body: batch(rawEvent("e")), headers: map[string]string{"X-Write-Key": key}}).Code
	}
	if got := send(webKey); got != 200 {
		t.Fatalf("old key before rotation: %d", got)
	}
	// Overlap: old and new key both valid.
	e.writeKeys(`{"keys":[{"source":"web","key":"` + webKey + `"},{"source":"web","key":"` + newKey + `"}]}`)
	if got := send(newKey); got != 401 {
		t.Errorf("new key before the check interval: %d, want 401 (not yet read)", got)
	}
	e.now = e.now.Add(keyCheckInterval)
	if a, b := send(newKey), send(webKey); a != 200 || b != 200 {
		t.Errorf("during the overlap: new key %d, old key %d, want 200 and 200", a, b)
	}
	// The old key retired.
	e.writeKeys(`{"keys":[{"source":"web","key":"` + newKey + `"}]}`)
	e.now = e.now.Add(keyCheckInterval)
	if a, b := send(newKey), send(webKey); a != 200 || b != 401 {
		t.Errorf("after retiring the old key: new key %d, old key %d, want 200 and 401", a, b)
	}
	// A broken file keeps the keys in force.
	e.writeKeys(`{"keys":[{"source":"web","key":"short"}]}`)
	e.now = e.now.Add(keyCheckInterval)
	if got := send(newKey); got != 200 {
		t.Errorf("after a broken rewrite: %d, want 200 (previous keys kept)", got)
	}
}

// TestCORS: a preflight from an allowed origin gets the contract's headers,
// one from elsewhere 403; a POST from an allowed origin may read its answer.
func TestCORS(t *testing.T) {
	tests := []struct {
		name       string
		env        map[string]string
		origin     string
		wantStatus int
	}{
		{"a key's origin", nil, origin, 204},
		{"a global origin", map[string]string{"COLLECTOR_ALLOWED_ORIGINS": "https://shop.example.com"}, "https://shop.example.com", 204},
		{"unknown origin", nil, "https://evil.example", 403},
		{"no origin", nil, "", 403},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, tt.env)
			w := e.do(req{method: http.MethodOptions, headers: map[string]string{"Origin": tt.origin, "Access-Control-Request-Method": "POST"}})
			if w.Code != tt.wantStatus {
				t.Fatalf("preflight: %d, want %d", w.Code, tt.wantStatus)
			}
			h := w.Header()
			if tt.wantStatus != 204 {
				if h.Get("Access-Control-Allow-Origin") != "" {
					t.Errorf("refused preflight allows origin %q", h.Get("Access-Control-Allow-Origin"))
				}
				return
			}
			want := map[string]string{"Access-Control-Allow-Origin": tt.origin, "Vary": "Origin", "Access-Control-Allow-Methods": "POST, OPTIONS",
				"Access-Control-Allow-Headers": "Content-Type, Authorization, X-Write-Key, Content-Encoding", "Access-Control-Max-Age": "600",
				"Access-Control-Allow-Credentials": ""}
			for k, v := range want {
				if got := h.Get(k); got != v {
					t.Errorf("%s: %q, want %q", k, got, v)
				}
			}
			key := webKey
			if tt.env != nil {
				key = srvKey // allowed by the global list
			}
			w = e.do(req{body: batch(rawEvent("e")), headers: map[string]string{"Origin": tt.origin, "X-Write-Key": key}})
			if w.Code != 200 || w.Header().Get("Access-Control-Allow-Origin") != tt.origin || w.Header().Get("Vary") != "Origin" {
				t.Errorf("POST: %d, Allow-Origin %q, Vary %q", w.Code, w.Header().Get("Access-Control-Allow-Origin"), w.Header().Get("Vary"))
			}
		})
	}
}

// TestRateLimit: a key's bucket lets its burst through, then answers 429
// with the seconds until the request would fit; other keys are not held up.
func TestRateLimit(t *testing.T) {
	e := newEnv(t, map[string]string{"COLLECTOR_RATE_LIMIT": "10", "COLLECTOR_RATE_BURST": "20", "COLLECTOR_MAX_EVENTS": "20"})
	e.writeKeys(`{"keys":[{"source":"web","key":"` + webKey + `"},{"source":"server","key":"` + srvKey + `","rate_limit":1000,"burst":1000}]}`)
	e.now = e.now.Add(keyCheckInterval)
	send := func(key string, n int) *httptest.ResponseRecorder {
		return e.do(req{body: batch(manyEvents("r", n)...), headers: map[string]string{"X-Write-Key": key}})
	}
	if w := send(webKey, 15); w.Code != 200 {
		t.Fatalf("within the burst: %d", w.Code)
	}
	w := send(webKey, 15) // 5 tokens left, 10 short: 1s at 10/s
	if w.Code != 429 || w.Header().Get("Retry-After") != "1" || !strings.Contains(errorOf(t, w), "10 events/s") {
		t.Fatalf("over the limit: %d, Retry-After %q: %s", w.Code, w.Header().Get("Retry-After"), w.Body)
	}
	if w := send(webKey, 20); w.Code != 429 || w.Header().Get("Retry-After") != "2" {
		t.Errorf("a full burst short: %d, Retry-After %q, want 429 and 2", w.Code, w.Header().Get("Retry-After"))
	}
	if w := send(srvKey, 15); w.Code != 200 {
		t.Errorf("another key: %d", w.Code)
	}
	e.now = e.now.Add(time.Second)
	if w := send(webKey, 15); w.Code != 200 {
		t.Errorf("after Retry-After: %d", w.Code)
	}
}

// TestBackpressure: with every request slot taken, or the in-flight bytes
// at their limit, a request is refused 503 with Retry-After before it is
// read.
func TestBackpressure(t *testing.T) {
	tests := []struct {
		name    string
		fill    func(c *Collector)
		wantMsg string
	}{
		{"requests", func(c *Collector) {
			for range cap(c.slots) {
				c.slots <- struct{}{}
			}
		}, "COLLECTOR_MAX_CONCURRENT_REQUESTS=64"},
		{"in-flight bytes", func(c *Collector) { c.inflight.Store(int64(c.cfg.MaxInflightBytes) - 10) }, "COLLECTOR_MAX_INFLIGHT_BYTES=67108864"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, nil)
			tt.fill(e.c)
			w := e.post(batch(rawEvent("e")))
			if w.Code != 503 || w.Header().Get("Retry-After") != "1" || !strings.Contains(errorOf(t, w), tt.wantMsg) {
				t.Errorf("%d, Retry-After %q: %s", w.Code, w.Header().Get("Retry-After"), w.Body)
			}
		})
	}
}

// TestKafkaNotAcking: when the broker does not acknowledge within
// COLLECTOR_PRODUCE_TIMEOUT the request is answered 503 with Retry-After;
// its bytes stay counted as in flight until Kafka answers, so a stalled
// broker refuses new requests instead of queueing them without bound.
func TestKafkaNotAcking(t *testing.T) {
	e := newEnv(t, map[string]string{"COLLECTOR_PRODUCE_TIMEOUT": "300ms", "COLLECTOR_MAX_INFLIGHT_BYTES": "4194304"})
	if w := e.post(batch(rawEvent("warm"))); w.Code != 200 { // connections and producer id in place
		t.Fatalf("warm-up: %d", w.Code)
	}
	release := make(chan struct{})
	var once sync.Once
	e.cluster.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		e.cluster.KeepControl()
		e.cluster.SleepControl(func() { <-release })
		return nil, nil, false
	})
	defer once.Do(func() { close(release) })
	body := batch(append(manyEvents("slow", 50), badEvent("slow-bad"))...)
	w := e.post(body)
	if w.Code != 503 || w.Header().Get("Retry-After") == "" || !strings.Contains(errorOf(t, w), "COLLECTOR_PRODUCE_TIMEOUT=300ms") {
		t.Fatalf("stalled broker: %d, Retry-After %q: %s", w.Code, w.Header().Get("Retry-After"), w.Body)
	}
	held := e.c.inflight.Load()
	once.Do(func() { close(release) })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.c.Wait(ctx); err != nil {
		t.Fatalf("records of the answered request never resolved: %v", err)
	}
	// What was held is what the records really weigh: each output record,
	// and the dead letter with the copy of the original its fallback keeps.
	want := len(badEvent("slow-bad"))
	for _, r := range e.consume(outTopic, 51) {
		if strings.HasPrefix(e.clickEvent(r).EventID, "slow-") {
			want += stream.RecordBytes(r)
		}
	}
	want += stream.RecordBytes(e.consume(deadletter.Topic, 1)[0])
	if held != int64(want) {
		t.Errorf("in flight after the 503: %d bytes, want the records' %d (the body is %d)", held, want, len(body))
	}
	if got := e.c.inflight.Load(); got != 0 {
		t.Errorf("in flight once Kafka answered: %d", got)
	}
}

// TestProduceErrorIs503: a produce Kafka refuses (not retriable) is a 503,
// never a 200.
func TestProduceErrorIs503(t *testing.T) {
	e := newEnv(t, nil)
	e.cluster.ControlKey(int16(kmsg.Produce), func(r kmsg.Request) (kmsg.Response, error, bool) {
		e.cluster.KeepControl()
		return refuseProduce(r.(*kmsg.ProduceRequest), kerr.TopicAuthorizationFailed), nil, true
	})
	w := e.post(batch(rawEvent("e1"), badEvent("e2")))
	if w.Code != 503 || w.Header().Get("Retry-After") == "" {
		t.Fatalf("refused produce: %d: %s", w.Code, w.Body)
	}
	if n := e.counter("ecom.dead_letters", "code", "MISSING_FIELD"); n != 0 {
		t.Errorf("a dead letter Kafka refused is counted: %d", n)
	}
}

// TestOversizedEventRefusesTheRequest: an event over MAX_EVENT_BYTES
// refuses its request whole with 413 naming the limit; nothing of the
// request lands, not even a dead letter (the client still holds it).
func TestOversizedEventRefusesTheRequest(t *testing.T) {
	e := newEnv(t, nil)
	huge := `{"event_id":"huge","pad":"` + strings.Repeat("x", 70000) + `"}`
	w := e.post(batch(rawEvent("e1"), huge, badEvent("e3")))
	if want := "event 1 is 70028 bytes, limit is 65536 (MAX_EVENT_BYTES)"; w.Code != 413 || errorOf(t, w) != want {
		t.Fatalf("%d %s, want 413 and %q", w.Code, w.Body, want)
	}
	// What lands next is the next request's, on both topics.
	if a := answerOf(t, e.post(batch(rawEvent("after"), badEvent("bad-after")))); a.Accepted != 1 || a.Rejected != 1 {
		t.Fatalf("next request: %+v", a)
	}
	if ev := e.clickEvent(e.consume(outTopic, 1)[0]); ev.EventID != "after" {
		t.Errorf("first output is %s: the refused request wrote events", ev.EventID)
	}
	if dl := e.deadLetter(e.consume(deadletter.Topic, 1)[0]); string(dl.OriginalValue) != badEvent("bad-after") {
		t.Errorf("first dead letter is %.60s: the refused request was dead-lettered", dl.OriginalValue)
	}
}

// TestAnswerFormat: the 200 answer is exactly the contract's document.
func TestAnswerFormat(t *testing.T) {
	e := newEnv(t, nil)
	w := e.post(batch(rawEvent("e1"), `{"event_id":"e2",}`, `7`))
	want := `{"accepted":1,"rejected":2,"events":[{"index":0,"event_id":"e1","status":"accepted"},` +
		`{"index":1,"status":"rejected","reasons":[{"code":"MALFORMED_JSON","message":"expected a member name: found '}' at byte 17"}]},` +
		`{"index":2,"status":"rejected","reasons":[{"code":"MALFORMED_JSON","message":"not a JSON object at byte 0"}]}]}` + "\n"
	if w.Code != 200 || w.Body.String() != want || w.Header().Get("Content-Type") != "application/json" {
		t.Errorf("%d %q\n got %s\nwant %s", w.Code, w.Header().Get("Content-Type"), w.Body, want)
	}
}

// TestTraceAtTheBoundary: each request is a new trace; the caller's
// traceparent is only a link. Every record of the request carries the
// request span's traceparent, and its dead letters its trace id.
func TestTraceAtTheBoundary(t *testing.T) {
	e := newEnv(t, nil)
	rec := tracetest.NewSpanRecorder()
	e.tracer.RegisterSpanProcessor(rec)
	const callerTrace = "0af7651916cd43dd8448eb211c80319c"
	w := e.do(req{body: batch(rawEvent("e1"), badEvent("e2")), headers: map[string]string{"X-Write-Key": srvKey,
		"traceparent": "00-" + callerTrace + "-b7ad6b7169203331-01"}})
	if w.Code != 200 {
		t.Fatalf("%d", w.Code)
	}
	spans := rec.Ended()
	if len(spans) != 1 {
		t.Fatalf("%d spans, want 1", len(spans))
	}
	sp := spans[0]
	tid := sp.SpanContext().TraceID().String()
	if tid == callerTrace || sp.Parent().IsValid() || len(sp.Links()) != 1 || sp.Links()[0].SpanContext.TraceID().String() != callerTrace ||
		sp.SpanKind() != trace.SpanKindServer {
		t.Errorf("span %s: trace %s, parent %v, links %v", sp.Name(), tid, sp.Parent(), sp.Links())
	}
	want := "00-" + tid + "-" + sp.SpanContext().SpanID().String() + "-01"
	if got := header(e.consume(outTopic, 1)[0], "traceparent"); got != want {
		t.Errorf("output traceparent %q, want %q", got, want)
	}
	dlr := e.consume(deadletter.Topic, 1)[0]
	if dl := e.deadLetter(dlr); header(dlr, "traceparent") != want || dl.TraceID == nil || *dl.TraceID != tid {
		t.Errorf("dead letter traceparent %q, trace id %v", header(dlr, "traceparent"), dl.TraceID)
	}
}

// TestDeadLetterTooLargeForTheBroker: a dead letter the broker refuses as
// too large (its topic's max.message.bytes) is replaced by its minimal
// envelope, as stream.ProduceDeadLetters does, and the request still gets
// its 200 once that is acknowledged.
func TestDeadLetterTooLargeForTheBroker(t *testing.T) {
	e := newEnv(t, nil)
	var refused atomic.Bool
	// The request has only a bad event: the first produce is its dead letter.
	e.cluster.ControlKey(int16(kmsg.Produce), func(r kmsg.Request) (kmsg.Response, error, bool) {
		req := r.(*kmsg.ProduceRequest)
		refused.Store(true)
		resp := req.ResponseKind().(*kmsg.ProduceResponse)
		st := kmsg.NewProduceResponseTopic()
		st.Topic, st.TopicID = req.Topics[0].Topic, req.Topics[0].TopicID
		for _, rp := range req.Topics[0].Partitions {
			sp := kmsg.NewProduceResponseTopicPartition()
			sp.Partition = rp.Partition
			sp.ErrorCode = kerr.MessageTooLarge.Code
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
		return resp, nil, true
	})
	a := answerOf(t, e.post(batch(badEvent("e1"))))
	if a.Rejected != 1 || !refused.Load() {
		t.Fatalf("answer %+v, refused %v", a, refused.Load())
	}
	dlr := e.consume(deadletter.Topic, 1)[0]
	dl := e.deadLetter(dlr)
	if len(dl.OriginalValue) != 0 || !deadletter.Truncated(&dl) || dl.DeadLetterID != deadletter.ContentID("ingest-clickstream", "http", []byte(badEvent("e1"))) ||
		header(dlr, "traceparent") == "" {
		t.Errorf("minimal dead letter: %+v (traceparent %q)", dl, header(dlr, "traceparent"))
	}
}

// TestRefusedForKafkaKeepsTheTokens: a request refused 503 for Kafka's sake
// (the in-flight budget, an encoding failure, a produce Kafka refuses or
// does not acknowledge in time) does not spend its key's rate: the client's
// retry is not also rate limited.
func TestRefusedForKafkaKeepsTheTokens(t *testing.T) {
	tests := []struct {
		name   string
		env    map[string]string
		break_ func(e *env) (restore func())
	}{
		{"in-flight budget", nil, func(e *env) func() {
			e.c.inflight.Store(int64(e.cfg.MaxInflightBytes))
			return func() { e.c.inflight.Store(0) }
		}},
		{"encode error", nil, func(e *env) func() {
			enc := e.c.d.Events
			e.c.d.Events = failingEncoder{}
			return func() { e.c.d.Events = enc }
		}},
		{"produce refused", nil, func(e *env) func() {
			var on atomic.Bool
			on.Store(true)
			e.cluster.ControlKey(int16(kmsg.Produce), func(r kmsg.Request) (kmsg.Response, error, bool) {
				e.cluster.KeepControl()
				if !on.Load() {
					return nil, nil, false
				}
				return refuseProduce(r.(*kmsg.ProduceRequest), kerr.TopicAuthorizationFailed), nil, true
			})
			return func() { on.Store(false) }
		}},
		{"produce timeout", map[string]string{"COLLECTOR_PRODUCE_TIMEOUT": "300ms"}, func(e *env) func() {
			release := make(chan struct{})
			e.cluster.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
				e.cluster.SleepControl(func() { <-release })
				return nil, nil, false
			})
			return func() {
				close(release)
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				_ = e.c.Wait(ctx)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vars := map[string]string{"COLLECTOR_RATE_LIMIT": "1", "COLLECTOR_RATE_BURST": "20", "COLLECTOR_MAX_EVENTS": "20"}
			for k, v := range tt.env {
				vars[k] = v
			}
			e := newEnv(t, vars)
			e.writeKeys(`{"keys":[{"source":"web","key":"` + webKey + `"}]}`)
			e.now = e.now.Add(keyCheckInterval)
			send := func() int {
				return e.do(req{body: batch(manyEvents("t", 15)...), headers: map[string]string{"X-Write-Key": webKey}}).Code
			}
			restore := tt.break_(e)
			got := send()
			restore()
			if got != 503 {
				t.Fatalf("broken: %d, want 503", got)
			}
			if got := send(); got != 200 {
				t.Errorf("the retry: %d, want 200 (tokens of the 503 returned)", got)
			}
			if got := send(); got != 429 {
				t.Errorf("a third request: %d, want 429 (bucket spent)", got)
			}
		})
	}
}

// TestRefusalReadableByAllowedOrigin: a browser on an origin some key allows
// can read a 401 (CORS headers on the refusal); another origin cannot.
func TestRefusalReadableByAllowedOrigin(t *testing.T) {
	e := newEnv(t, nil)
	for give, want := range map[string]string{origin: origin, "https://evil.example": ""} {
		w := e.do(req{body: batch(rawEvent("e")), headers: map[string]string{"Origin": give}})
		if w.Code != 401 || w.Header().Get("Access-Control-Allow-Origin") != want {
			t.Errorf("origin %s: %d, Allow-Origin %q, want 401 and %q", give, w.Code, w.Header().Get("Access-Control-Allow-Origin"), want)
		}
	}
}
