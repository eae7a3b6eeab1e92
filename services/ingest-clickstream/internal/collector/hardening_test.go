package collector

// Tests of the collector's defences against clients that hold slots, lie
// about sizes or push more than they pay for, and of the accounting that
// keeps its memory bounded.

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/goleak"

	"github.com/ecomstream/platform/pkg/deadletter"
	"github.com/ecomstream/platform/pkg/stream"
)

var _ stream.Encoder = failingEncoder{}

// failingEncoder cannot encode anything.
type failingEncoder struct{}

func (failingEncoder) Encode(any) ([]byte, error) { return nil, errors.New("registry unavailable") }

// panickingEncoder panics on every event.
type panickingEncoder struct{}

func (panickingEncoder) Encode(any) ([]byte, error) { panic("encoder bug") }

// refuseProduce answers a produce request with code on every partition.
func refuseProduce(req *kmsg.ProduceRequest, code *kerr.Error) *kmsg.ProduceResponse {
	resp := req.ResponseKind().(*kmsg.ProduceResponse)
	ec := code.Code
	for _, rt := range req.Topics {
		st := kmsg.NewProduceResponseTopic()
		st.Topic, st.TopicID = rt.Topic, rt.TopicID
		for _, rp := range rt.Partitions {
			sp := kmsg.NewProduceResponseTopicPartition()
			sp.Partition = rp.Partition
			sp.ErrorCode = ec
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp
}

// slowRequest opens a connection and sends the headers of a POST with a
// 1000-byte body, and one byte of it; it returns the connection, which the
// caller closes.
func slowRequest(t *testing.T, addr string, headers ...string) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	h := "POST " + Path + " HTTP/1.1\r\nHost: collector\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n"
	for _, x := range headers {
		h += x + "\r\n"
	}
	if _, err := io.WriteString(conn, h+"\r\n["); err != nil {
		t.Fatal(err)
	}
	return conn
}

// TestSlowKeylessBodiesDoNotStarveKeyedRequests: connections without a
// header key trickling their bodies take only the small keyless pool; a
// request that names its key is still served, and the trickling ones are
// cut by COLLECTOR_MIN_BODY_RATE, not held for COLLECTOR_READ_TIMEOUT.
func TestSlowKeylessBodiesDoNotStarveKeyedRequests(t *testing.T) {
	e := newEnv(t, map[string]string{"COLLECTOR_MAX_CONCURRENT_REQUESTS": "4", "COLLECTOR_MAX_CONNECTIONS": "64"})
	entered := make(chan struct{}, 64)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		e.c.ServeHTTP(w, r)
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	var conns []net.Conn
	for range 8 {
		conns = append(conns, slowRequest(t, addr))
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range conns {
		<-entered
	}
	time.Sleep(50 * time.Millisecond) // let them take what slots they get
	if code, body := postTo(t, srv.Client(), srv.URL+Path, batch(rawEvent("keyed"))); code != 200 {
		t.Fatalf("a keyed request while 8 keyless bodies trickle: %d %s", code, body)
	}
	// One of them holds the keyless slot: cut for its rate (it is keyless,
	// so the answer is a 401 that tells nothing), long before the read timeout.
	var codes []int
	for _, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("a trickling connection got no answer within 5s: %v", err)
		}
		resp.Body.Close()
		codes = append(codes, resp.StatusCode)
	}
	t.Logf("trickling keyless requests answered %v", codes)
}

// TestSlowKeyedBodyIsCut: a request with a key whose body trickles is
// answered 408 once its average rate falls below COLLECTOR_MIN_BODY_RATE.
func TestSlowKeyedBodyIsCut(t *testing.T) {
	e := newEnv(t, nil)
	srv := httptest.NewServer(e.c) // no read timeout of its own: only the rate cuts it
	defer srv.Close()
	conn := slowRequest(t, strings.TrimPrefix(srv.URL, "http://"), "Authorization: Bearer "+srvKey)
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer to a trickling body within 10s: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusRequestTimeout || !strings.Contains(string(b), "COLLECTOR_MIN_BODY_RATE=4096") {
		t.Errorf("%d %s, want 408 naming COLLECTOR_MIN_BODY_RATE", resp.StatusCode, b)
	}
}

// TestWrongHeaderKeyNeedsNoSlot: a wrong key in a header is refused 401 at
// once, even with every slot taken.
func TestWrongHeaderKeyNeedsNoSlot(t *testing.T) {
	e := newEnv(t, nil)
	for range cap(e.c.slots) {
		e.c.slots <- struct{}{}
	}
	w := e.do(req{body: batch(rawEvent("e")), headers: map[string]string{"Authorization": "Bearer wk_nobody_0123456789"}})
	if w.Code != 401 {
		t.Errorf("wrong key with the slots full: %d %s, want 401", w.Code, w.Body)
	}
}

// TestConnectionCap: beyond COLLECTOR_MAX_CONNECTIONS a connection is not
// served until another closes.
func TestConnectionCap(t *testing.T) {
	e := newEnv(t, nil)
	cfg := e.cfg
	cfg.MaxConcurrent, cfg.MaxConnections = 2, 2
	addr, stop := e.serve(cfg)
	defer func() {
		if err := stop(); err != nil {
			t.Error(err)
		}
	}()
	var idle []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		idle = append(idle, c)
	}
	third := &http.Client{Timeout: 300 * time.Millisecond}
	rq, _ := http.NewRequest(http.MethodGet, "http://"+addr+Path, nil)
	if resp, err := third.Do(rq); err == nil {
		resp.Body.Close()
		t.Fatalf("a third connection was served (%d) with 2 open and COLLECTOR_MAX_CONNECTIONS=2", resp.StatusCode)
	}
	idle[0].Close()
	idle[1].Close()
	ok := &http.Client{Timeout: 5 * time.Second}
	resp, err := ok.Do(rq)
	if err != nil {
		t.Fatalf("once the others closed: %v", err)
	}
	resp.Body.Close()
	ok.CloseIdleConnections()
	third.CloseIdleConnections()
}

// TestKeylessBodyIsBounded: a request without a header or query key is
// read only up to KeylessMaxBytes, after gzip too: a 4 KB gzip body that
// inflates to 4 MB costs about 64 KiB and gets a 401, not a 413.
func TestKeylessBodyIsBounded(t *testing.T) {
	e := newEnv(t, nil)
	var gz bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&gz, gzip.BestCompression)
	_, _ = zw.Write([]byte(`{"events":[` + strings.Repeat(" ", 4<<20-12) + `]}`))
	_ = zw.Close()
	binary.LittleEndian.PutUint32(gz.Bytes()[gz.Len()-4:], 100) // the trailer lies
	send := func() *httptest.ResponseRecorder {
		hr := httptest.NewRequest(http.MethodPost, Path, bytes.NewReader(gz.Bytes()))
		hr.Header.Set("Content-Type", "text/plain")
		hr.Header.Set("Content-Encoding", "gzip")
		w := httptest.NewRecorder()
		e.c.ServeHTTP(w, hr)
		return w
	}
	send()
	allocated, w := allocations(send)
	t.Logf("a keyless %d-byte gzip body of 4 MiB allocated %d bytes", gz.Len(), allocated)
	if w.Code != 401 || !strings.Contains(errorOf(t, w), "missing write key") {
		t.Errorf("%d %s, want 401", w.Code, w.Body)
	}
	if allocated > 1<<20 {
		t.Errorf("allocated %d bytes for an unauthenticated body, want about %d", allocated, KeylessMaxBytes)
	}
}

// TestGzipTrailerIsOnlyAHint: a 26-byte gzip body whose trailer claims
// 4 MiB is not given a 4 MiB buffer: deflate cannot inflate 26 bytes that far.
func TestGzipTrailerIsOnlyAHint(t *testing.T) {
	e := newEnv(t, nil)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = zw.Write([]byte("[]"))
	_ = zw.Close()
	body := gz.Bytes()
	binary.LittleEndian.PutUint32(body[len(body)-4:], 4<<20)
	send := func() *httptest.ResponseRecorder {
		hr := httptest.NewRequest(http.MethodPost, Path, bytes.NewReader(body))
		hr.Header.Set("Authorization", "Bearer "+srvKey)
		hr.Header.Set("Content-Encoding", "gzip")
		w := httptest.NewRecorder()
		e.c.ServeHTTP(w, hr)
		return w
	}
	send()
	allocated, w := allocations(send)
	t.Logf("a %d-byte gzip body claiming 4 MiB allocated %d bytes", len(body), allocated)
	if w.Code != 400 {
		t.Errorf("%d %s, want 400 (its size is wrong)", w.Code, w.Body)
	}
	if allocated > 256<<10 {
		t.Errorf("allocated %d bytes: the trailer's size was trusted", allocated)
	}
}

func allocations(f func() *httptest.ResponseRecorder) (uint64, *httptest.ResponseRecorder) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	w := f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc, w
}

// stuckProducer is a producer whose buffer is full: Produce blocks until
// its context ends and the record then stays buffered, its promise called
// only by release.
type stuckProducer struct {
	mu       sync.Mutex
	returned time.Time // when the last Produce returned
	noDL     int       // dead letters produced without a deadline
	held     []func()
}

func (p *stuckProducer) Produce(ctx context.Context, r *kgo.Record, promise func(*kgo.Record, error)) {
	<-ctx.Done()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.returned = time.Now()
	rctx := r.Context
	if rctx == nil {
		rctx = ctx
	}
	if _, ok := rctx.Deadline(); !ok && r.Topic == deadletter.Topic {
		p.noDL++
	}
	p.held = append(p.held, func() { promise(r, context.DeadlineExceeded) })
}

func (p *stuckProducer) release() {
	p.mu.Lock()
	held := p.held
	p.held = nil
	p.mu.Unlock()
	for _, f := range held {
		f()
	}
}

// TestProduceDeadlineIsOne: a Produce blocked on a full buffer spends the
// request's COLLECTOR_PRODUCE_TIMEOUT; the wait for the acks does not start
// a second one. Dead letters are produced under the same deadline.
func TestProduceDeadlineIsOne(t *testing.T) {
	e := newEnv(t, map[string]string{"COLLECTOR_PRODUCE_TIMEOUT": "2s"})
	p := &stuckProducer{}
	e.c.d.Producer = p
	w := e.post(batch(rawEvent("e1"), badEvent("e2")))
	answered := time.Now()
	if w.Code != 503 {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	p.mu.Lock()
	after, noDL := answered.Sub(p.returned), p.noDL
	p.mu.Unlock()
	t.Logf("answered %v after the blocked Produce returned", after)
	if after > time.Second { // a second COLLECTOR_PRODUCE_TIMEOUT would be 2s
		t.Errorf("answered %v after the produce deadline passed: a second timeout was waited", after)
	}
	if noDL != 0 {
		t.Errorf("%d dead letters produced without the produce deadline", noDL)
	}
	if e.c.inflight.Load() == 0 {
		t.Error("the records still buffered are not counted in flight")
	}
	p.release()
	if err := e.c.Wait(context.Background()); err != nil || e.c.inflight.Load() != 0 {
		t.Errorf("after release: %v, in flight %d", err, e.c.inflight.Load())
	}
}

// TestProducerBounds: the collector's producer fails a record it could not
// deliver in time and buffers what the in-flight budget allows.
func TestProducerBounds(t *testing.T) {
	e := newEnv(t, nil)
	cl, err := NewProducer(e.kafka, e.cfg, "collector-test", e.c.d.Log, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if got := cl.OptValue(kgo.RecordDeliveryTimeout); got != DeliveryTimeout(e.cfg) || DeliveryTimeout(e.cfg) <= 0 {
		t.Errorf("record delivery timeout %v, want %v", got, DeliveryTimeout(e.cfg))
	}
	if got := cl.OptValue(kgo.MaxBufferedBytes); got != int64(e.cfg.MaxInflightBytes) {
		t.Errorf("max buffered bytes %v, want COLLECTOR_MAX_INFLIGHT_BYTES", got)
	}
}

// TestPanicReleasesInflight: a panic between reserving the in-flight bytes
// and producing does not leak them.
func TestPanicReleasesInflight(t *testing.T) {
	e := newEnv(t, nil)
	e.c.d.Events = panickingEncoder{}
	func() {
		defer func() {
			if r := recover(); r == nil {
				t.Fatal("the encoder's panic did not reach the server")
			}
		}()
		e.post(batch(rawEvent("e1")))
	}()
	if got := e.c.inflight.Load(); got != 0 {
		t.Errorf("in flight after a panic: %d bytes leaked", got)
	}
}

// TestWaitDoesNotLeak: a Wait that ends with its context leaves no
// goroutine behind, and work may be added while it waits.
func TestWaitDoesNotLeak(t *testing.T) {
	e := newEnv(t, nil)
	before := goleak.IgnoreCurrent()
	e.c.pending.add()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := e.c.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait with work pending: %v", err)
	}
	if err := goleak.Find(before); err != nil {
		t.Errorf("Wait left a goroutine: %v", err)
	}
	e.c.pending.add() // a handler still running after a timed-out Shutdown
	e.c.pending.done()
	e.c.pending.done()
	if err := e.c.Wait(context.Background()); err != nil {
		t.Error(err)
	}
}

// TestRateChargesBytes: large events cost the rate limit their bytes (one
// token per KiB of body), not one token each.
func TestRateChargesBytes(t *testing.T) {
	e := newEnv(t, map[string]string{"COLLECTOR_RATE_LIMIT": "1", "COLLECTOR_RATE_BURST": "100", "COLLECTOR_MAX_EVENTS": "100"})
	e.writeKeys(`{"keys":[{"source":"web","key":"` + webKey + `"}]}`)
	e.now = e.now.Add(keyCheckInterval)
	big := make([]string, 3)
	for i := range big {
		big[i] = fmt.Sprintf(`{"event_id":"big-%d","pad":"%s"}`, i, strings.Repeat("x", 40<<10))
	}
	// 3 events of 40 KiB: 120 tokens, more than the burst left after 1.
	if w := e.do(req{body: batch(rawEvent("small")), headers: map[string]string{"X-Write-Key": webKey}}); w.Code != 200 {
		t.Fatalf("small: %d", w.Code)
	}
	if w := e.do(req{body: batch(big...), headers: map[string]string{"X-Write-Key": webKey}}); w.Code != 429 {
		t.Errorf("120 KiB with 99 tokens left: %d %s, want 429", w.Code, w.Body)
	}
}

// TestCORSDetails: answers expose Retry-After, a preflight asking for
// another method or header is refused, origins compare as browsers send
// them, and a 503 for too many requests is readable too.
func TestCORSDetails(t *testing.T) {
	e := newEnv(t, map[string]string{"COLLECTOR_ALLOWED_ORIGINS": "HTTPS://Shop.Example.com:443"})
	pre := func(method, headers string) int {
		return e.do(req{method: http.MethodOptions, headers: map[string]string{"Origin": "https://shop.example.com",
			"Access-Control-Request-Method": method, "Access-Control-Request-Headers": headers}}).Code
	}
	tests := []struct {
		name         string
		method, hdrs string
		want         int
	}{
		{"POST with allowed headers", "POST", "content-type, authorization,X-Write-Key", 204},
		{"PUT", "PUT", "", 403},
		{"no method", "", "", 403},
		{"a header not allowed", "POST", "content-type, x-evil", 403},
	}
	for _, tt := range tests {
		if got := pre(tt.method, tt.hdrs); got != tt.want {
			t.Errorf("preflight %s: %d, want %d", tt.name, got, tt.want)
		}
	}
	w := e.do(req{body: batch(rawEvent("e")), headers: map[string]string{"Origin": "https://shop.example.com", "X-Write-Key": srvKey}})
	if w.Code != 200 || w.Header().Get("Access-Control-Allow-Origin") != "https://shop.example.com" || w.Header().Get("Access-Control-Expose-Headers") != "Retry-After" {
		t.Errorf("POST from a normalised origin: %d, Allow-Origin %q, Expose %q", w.Code, w.Header().Get("Access-Control-Allow-Origin"),
			w.Header().Get("Access-Control-Expose-Headers"))
	}
	for range cap(e.c.slots) {
		e.c.slots <- struct{}{}
	}
	w = e.do(req{body: batch(rawEvent("e")), headers: map[string]string{"Origin": "https://shop.example.com", "X-Write-Key": srvKey}})
	if w.Code != 503 || w.Header().Get("Access-Control-Allow-Origin") != "https://shop.example.com" || w.Header().Get("Access-Control-Expose-Headers") != "Retry-After" {
		t.Errorf("503 for too many at once: %d, Allow-Origin %q, Expose %q", w.Code, w.Header().Get("Access-Control-Allow-Origin"),
			w.Header().Get("Access-Control-Expose-Headers"))
	}
}

// TestIdleConnectionsMakeRoomAtTheCap: keep-alive connections between
// requests do not hold COLLECTOR_MAX_CONNECTIONS against new clients: at the
// cap an idle one is closed, so a new client is served at once rather than
// after the idle timeout.
func TestIdleConnectionsMakeRoomAtTheCap(t *testing.T) {
	e := newEnv(t, nil)
	cfg := e.cfg
	cfg.MaxConcurrent, cfg.MaxConnections = 2, 2
	addr, stop := e.serve(cfg)
	defer func() {
		if err := stop(); err != nil {
			t.Error(err)
		}
	}()
	rq := func() *http.Request {
		r, _ := http.NewRequest(http.MethodGet, "http://"+addr+Path, nil)
		return r
	}
	var clients []*http.Client
	for i := range 2 {
		cl := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}, Timeout: 5 * time.Second}
		clients = append(clients, cl)
		resp, err := cl.Do(rq())
		if err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close() // the connection goes back to the client's pool, open and idle
	}
	third := &http.Client{Transport: &http.Transport{}, Timeout: 2 * time.Second}
	resp, err := third.Do(rq())
	if err != nil {
		t.Fatalf("a new client with 2 idle keep-alive connections at COLLECTOR_MAX_CONNECTIONS=2: %v", err)
	}
	resp.Body.Close()
	for _, cl := range append(clients, third) {
		cl.CloseIdleConnections()
	}
}

// TestIdleConnectionMadeRoomForAWaitingClient: the connection that reached
// the cap was not idle then (it had not sent its request yet), and another
// went idle after it; a new client must still get an idle one's place, not
// wait in the backlog until the idle timeout. (Reaping only when a connection
// reached the cap missed this; under CPU load a keep-alive connection is
// often marked idle only after the next client connected.)
func TestIdleConnectionMadeRoomForAWaitingClient(t *testing.T) {
	e := newEnv(t, nil)
	cfg := e.cfg
	cfg.MaxConcurrent, cfg.MaxConnections = 2, 2
	addr, stop := e.serve(cfg)
	defer func() {
		if err := stop(); err != nil {
			t.Error(err)
		}
	}()
	quiet, err := net.Dial("tcp", addr) // open, never sends: not idle, not closable
	if err != nil {
		t.Fatal(err)
	}
	defer quiet.Close()
	rq := func() *http.Request {
		r, _ := http.NewRequest(http.MethodGet, "http://"+addr+Path, nil)
		return r
	}
	first := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}, Timeout: 5 * time.Second}
	resp, err := first.Do(rq()) // the second connection: the cap is reached, nothing idle yet
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close() // idle now, kept open by its client
	next := &http.Client{Transport: &http.Transport{}, Timeout: 3 * time.Second}
	resp, err = next.Do(rq())
	if err != nil {
		t.Fatalf("a new client with one idle keep-alive connection at COLLECTOR_MAX_CONNECTIONS=2: %v", err)
	}
	resp.Body.Close()
	first.CloseIdleConnections()
	next.CloseIdleConnections()
}

// TestDeliveryTimeoutCoversTheUpload: the producer's record timeout counts
// from received_at, the request's arrival, so it must cover the longest body
// upload as well as the produce: a slow upload's records would otherwise
// time out before they are sent, and every retry of the request with them.
func TestDeliveryTimeoutCoversTheUpload(t *testing.T) {
	cfg := Config{ReadTimeout: 30 * time.Second, ProduceTimeout: 2 * time.Second}
	if got, min := DeliveryTimeout(cfg), cfg.ReadTimeout+cfg.ProduceTimeout; got < min {
		t.Errorf("DeliveryTimeout = %v with COLLECTOR_READ_TIMEOUT=30s and COLLECTOR_PRODUCE_TIMEOUT=2s, want at least %v", got, min)
	}
}

// TestEarlyRefusalClosesOnlyHTTP1Connections: a refusal before the body is
// read closes an HTTP/1 connection (else net/http waits for a trickled
// body), but not an HTTP/2 one, where Connection: close makes the server end
// every stream of the browser's connection with GOAWAY.
func TestEarlyRefusalClosesOnlyHTTP1Connections(t *testing.T) {
	e := newEnv(t, nil)
	for _, tt := range []struct {
		major, minor int
		want         string
	}{{1, 1, "close"}, {2, 0, ""}} {
		hr := httptest.NewRequest(http.MethodPost, Path, strings.NewReader(batch(rawEvent("e"))))
		hr.Proto, hr.ProtoMajor, hr.ProtoMinor = fmt.Sprintf("HTTP/%d.%d", tt.major, tt.minor), tt.major, tt.minor
		hr.Header.Set("Content-Type", "application/json")
		hr.Header.Set("Authorization", "Bearer wk_nobody_0123456789")
		w := httptest.NewRecorder()
		e.c.ServeHTTP(w, hr)
		if w.Code != http.StatusUnauthorized || w.Header().Get("Connection") != tt.want {
			t.Errorf("%s: %d, Connection %q; want 401, Connection %q", hr.Proto, w.Code, w.Header().Get("Connection"), tt.want)
		}
	}
}
