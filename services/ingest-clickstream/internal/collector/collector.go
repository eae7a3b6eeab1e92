// Package collector is ingest-clickstream's HTTP front door: POST /v1/events
// takes batches of raw clickstream events from browsers, apps and servers,
// authenticated by write key, and writes them to the same topics as the
// Kafka path (ClickEvents to the output topic, rejected events as dead
// letters), answering 200 only once Kafka has acknowledged every record of
// the request.
//
// Every request is bounded before it costs memory: the number of requests
// at once, the body on the wire and after gzip, the events per request, the
// request bytes awaiting Kafka's acks, and the events per second per key.
// Beyond a bound the request is refused whole with a JSON sentence naming
// the COLLECTOR_* variable, and the client (which still holds the events)
// retries 429 and 503.
package collector

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/time/rate"

	"github.com/ecomstream/platform/pkg/deadletter"
	"github.com/ecomstream/platform/pkg/stream"
	"github.com/ecomstream/platform/services/ingest-clickstream/internal/clickparse"
)

// Path is the collector's endpoint.
const Path = "/v1/events"

// Source is the ClickEvent source of events that came through the collector.
const Source = "http"

// Headers of a dead letter's original record: where the event came from.
const (
	OriginHeader          = deadletter.OriginHeader // "http"
	CollectorSourceHeader = "ecom-collector-source" // the write key's source
)

// Producer is the part of *kgo.Client the collector uses.
type Producer interface {
	Produce(ctx context.Context, r *kgo.Record, promise func(*kgo.Record, error))
}

var _ Producer = (*kgo.Client)(nil)

// Deps are what a Collector writes with.
type Deps struct {
	Parser           *clickparse.Parser // Source is set to "http"
	Events           stream.Encoder     // ClickEvent codec of OutputTopic
	DeadLetters      stream.Encoder     // DeadLetter codec
	OutputTopic      string
	InputTopic       string // named as the dead letters' source topic: where a replay sends them
	Stage            string // ingest-clickstream
	DeadLetterBudget int    // stream.DeadLetterLimit
	Producer         Producer
	Tracer           trace.Tracer // wrapped in stream.TrustBoundary here
	Meter            metric.Meter
	Metrics          *stream.Metrics // counts dead letters
	Log              *slog.Logger
	Now              func() time.Time // nil = time.Now
}

// Collector is the http.Handler of POST /v1/events.
type Collector struct {
	cfg      Config
	d        Deps
	parser   clickparse.Parser
	keys     *keyStore
	ips      clientIPs
	tracer   trace.Tracer
	m        *metrics
	slots    chan struct{} // requests with a header or query key being handled
	keyless  chan struct{} // requests whose key can only be in the body
	inflight atomic.Int64  // bytes of records (and their dead letters' originals) awaiting acks
	pending  pending       // requests answered whose records still await their outcome
}

var _ http.Handler = (*Collector)(nil)

// New builds a Collector; cfg must have passed Validate.
func New(cfg Config, d Deps) (*Collector, error) {
	if d.Now == nil {
		d.Now = time.Now
	}
	keys, err := newKeyStore(&cfg, d.Log, d.Now)
	if err != nil {
		return nil, err
	}
	trusted, err := parseCIDRs(cfg.TrustedProxies)
	if err != nil {
		return nil, err
	}
	c := &Collector{cfg: cfg, d: d, parser: *d.Parser, keys: keys, ips: clientIPs{trusted: trusted},
		tracer: stream.TrustBoundary(d.Tracer), slots: make(chan struct{}, cfg.MaxConcurrent),
		keyless: make(chan struct{}, KeylessSlots(cfg.MaxConcurrent))}
	c.parser.Source = Source
	if c.m, err = newMetrics(d.Meter, c.inflight.Load); err != nil {
		return nil, err
	}
	return c, nil
}

// KeylessSlots is the pool of requests whose key can only be in the body
// (the envelope, for sendBeacon): a quarter of
// COLLECTOR_MAX_CONCURRENT_REQUESTS, at least one, so unauthenticated
// bodies cannot take the slots of requests that name a key.
func KeylessSlots(maxConcurrent int) int { return max(1, maxConcurrent/4) }

// Wait blocks until every record produced for a request answered early
// (503 after COLLECTOR_PRODUCE_TIMEOUT) has its outcome, or ctx ends.
func (c *Collector) Wait(ctx context.Context) error { return c.pending.wait(ctx) }

// pending counts requests whose records await their outcome. Unlike a
// sync.WaitGroup it may be added to while it is waited on (a handler still
// running after a timed-out Shutdown), and its wait ends with ctx without
// leaving a goroutine behind.
type pending struct {
	mu   sync.Mutex
	n    int
	idle chan struct{} // closed when n drops to 0
}

func (p *pending) add() {
	p.mu.Lock()
	if p.n == 0 {
		p.idle = make(chan struct{})
	}
	p.n++
	p.mu.Unlock()
}

func (p *pending) done() {
	p.mu.Lock()
	if p.n--; p.n == 0 {
		close(p.idle)
	}
	p.mu.Unlock()
}

func (p *pending) wait(ctx context.Context) error {
	p.mu.Lock()
	if p.n == 0 {
		p.mu.Unlock()
		return nil
	}
	idle := p.idle
	p.mu.Unlock()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ServeHTTP implements http.Handler.
func (c *Collector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start, received := time.Now(), c.d.Now() // the duration's clock, and received_at's
	if r.URL.Path != Path {
		writeError(w, http.StatusNotFound, "no such endpoint: POST "+Path)
		c.m.request(r.Context(), http.StatusNotFound, time.Since(start).Seconds())
		return
	}
	switch r.Method {
	case http.MethodPost:
	case http.MethodOptions:
		status := c.preflight(w, r)
		c.m.request(r.Context(), status, time.Since(start).Seconds())
		return
	default:
		w.Header().Set("Allow", "POST, OPTIONS")
		writeError(w, http.StatusMethodNotAllowed, "use POST "+Path)
		c.m.request(r.Context(), http.StatusMethodNotAllowed, time.Since(start).Seconds())
		return
	}

	// The trust boundary: a new trace per request, the caller's traceparent
	// only a link (it must not choose our sampling).
	ctx := propagation.TraceContext{}.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
	ctx, span := c.tracer.Start(ctx, "POST "+Path, trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(attribute.String("http.request.method", r.Method), attribute.String("url.path", Path),
			attribute.String("http.route", Path)))
	defer span.End()
	res := c.post(ctx, w, r, start, received)
	span.SetAttributes(attribute.Int("http.response.status_code", res.status))
	if res.status != http.StatusOK {
		span.SetStatus(codes.Error, res.msg)
	} else {
		span.SetAttributes(attribute.Int("ecom.events.accepted", res.accepted), attribute.Int("ecom.events.rejected", res.rejected))
		c.m.eventsAnswered(ctx, res.accepted, res.rejected)
	}
	c.m.request(ctx, res.status, time.Since(start).Seconds())
}

// outcome is how a request was answered.
type outcome struct {
	status             int
	msg                string
	accepted, rejected int
}

func (c *Collector) fail(w http.ResponseWriter, ref *refusal) outcome {
	if ref.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(ref.retryAfter))
	}
	if ref.status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="collector"`)
	}
	writeError(w, ref.status, ref.msg)
	return outcome{status: ref.status, msg: ref.msg}
}

// KeylessMaxBytes bounds the body of a request without a header or query
// key, on the wire and after gzip: its key can only be in the envelope, so
// the body is read unauthenticated. 64 KiB is what navigator.sendBeacon
// may queue anyway.
const KeylessMaxBytes = 64 << 10

// tokenBytes is the body bytes one rate token covers: a request costs
// max(events, body/tokenBytes) tokens, so large events are charged as the
// bytes they are, while an ordinary event (a few hundred bytes) costs one.
const tokenBytes = 1024

// post handles POST /v1/events. The order is the cheapest refusal first: a
// key in the headers or query is checked before the request takes a slot
// or its body is read; a request without one takes a slot of the small
// keyless pool and has its body read only up to KeylessMaxBytes, and any
// refusal before its envelope's key is known is a 401 (an unauthenticated
// client learns no limits).
func (c *Collector) post(ctx context.Context, w http.ResponseWriter, r *http.Request, start, received time.Time) outcome {
	origin := normOrigin(r.Header.Get("Origin"))
	w.Header().Add("Vary", "Origin")
	// Until the body is read whole, an HTTP/1 answer closes the connection:
	// else net/http would wait for the rest of the body (a trickling
	// client's) before it writes the refusal. Not on HTTP/2, where the
	// stream is reset alone, and Connection: close would make the server
	// send GOAWAY and end every other stream of the browser's connection.
	http1 := r.ProtoMajor < 2
	if http1 {
		w.Header().Set("Connection", "close")
	}
	set := c.keys.current()
	if origin != "" && set.origins[origin] {
		setCORS(w, origin) // an origin some key allows may read even a refusal (no credentials are involved)
	}
	var key *writeKey
	if presented := keyFromRequest(r); presented != "" {
		if key = set.lookup(presented); key == nil {
			return c.fail(w, refuse(http.StatusUnauthorized, "unknown write key"))
		}
	}
	slots, lim := c.slots, readLimits{maxBody: c.cfg.MaxBodyBytes, maxDecompressed: c.cfg.MaxDecompressedBytes,
		minRate: c.cfg.MinBodyRate, start: start, end: start.Add(c.cfg.ReadTimeout)}
	if key == nil {
		slots = c.keyless
		lim.maxBody, lim.maxDecompressed = min(lim.maxBody, KeylessMaxBytes), min(lim.maxDecompressed, KeylessMaxBytes)
	}
	select {
	case slots <- struct{}{}:
		defer func() { <-slots }()
	default:
		return c.fail(w, &refusal{status: http.StatusServiceUnavailable, retryAfter: 1,
			msg: "too many requests at once (COLLECTOR_MAX_CONCURRENT_REQUESTS=" + strconv.Itoa(c.cfg.MaxConcurrent) + "); retry later"})
	}
	// keyless turns a refusal of a request whose key is not known yet into
	// the 401 it is.
	keyless := func(ref *refusal) outcome {
		if key == nil {
			ref = missingKey()
		}
		return c.fail(w, ref)
	}
	format, ref := formatOf(r.Header.Get("Content-Type"))
	if ref != nil {
		return keyless(ref)
	}
	buf := getBody()
	defer func() {
		if buf != nil {
			buf.release()
		}
	}()
	if ref := readBody(w, r, buf, lim); ref != nil {
		return keyless(ref)
	}
	if http1 {
		w.Header().Del("Connection")
	}
	// Back to the read timeout's deadline: the rate's would fire during
	// the produce, on the server's wait for the connection's next request.
	_ = http.NewResponseController(w).SetReadDeadline(lim.end)
	envKey, raws, err := split(buf.text, format, c.cfg.MaxEvents)
	if err != nil {
		var se *splitError
		if errors.As(err, &se) && se.tooMany {
			return keyless(refuse(http.StatusRequestEntityTooLarge, "%s", se.msg))
		}
		return keyless(refuse(http.StatusBadRequest, "malformed body: %v", err))
	}
	if key == nil {
		if envKey == "" {
			return c.fail(w, missingKey())
		}
		if key = set.lookup(envKey); key == nil {
			return c.fail(w, refuse(http.StatusUnauthorized, "unknown write key"))
		}
	}
	if origin != "" {
		if !c.keys.originAllowed(key, origin) {
			return c.fail(w, refuse(http.StatusForbidden, "origin %s is not allowed for this write key (COLLECTOR_ALLOWED_ORIGINS or the key's origins)", truncateName(origin)))
		}
		setCORS(w, origin)
	}
	// An event over MAX_EVENT_BYTES refuses the request whole: the client
	// still holds it, and a dead-letter topic is not a store for whatever
	// a public key's holder sends.
	if maxEvent := c.parser.MaxBytes; maxEvent > 0 {
		for i, raw := range raws {
			if len(raw) > maxEvent {
				return c.fail(w, refuse(http.StatusRequestEntityTooLarge, "event %d is %d bytes, limit is %d (MAX_EVENT_BYTES)", i, len(raw), maxEvent))
			}
		}
	}
	var tokens *rate.Reservation
	if n := len(raws); n > 0 {
		cost := min(max(n, (len(buf.text)+tokenBytes-1)/tokenBytes), key.limiter.Burst())
		tokens = key.limiter.ReserveN(received, cost)
		if wait := tokens.DelayFrom(received); !tokens.OK() || wait > 0 {
			tokens.CancelAt(received)
			return c.fail(w, c.rateLimited(key, wait))
		}
	}
	// From here every 503 is for Kafka's sake, not the client's rate: it
	// returns the tokens, so the client's retry is not also rate limited.
	busy := func(ref *refusal) outcome {
		if tokens != nil {
			tokens.CancelAt(received)
		}
		return c.fail(w, ref)
	}
	inflightFull := func() outcome {
		return busy(&refusal{status: http.StatusServiceUnavailable, retryAfter: 1,
			msg: "Kafka is behind: too many bytes await its acks (COLLECTOR_MAX_INFLIGHT_BYTES=" + strconv.Itoa(c.cfg.MaxInflightBytes) + "); retry later"})
	}
	// The body's size is the estimate reserved before the work; once the
	// records are built, what they really hold is counted instead.
	held := int64(len(buf.text))
	if c.inflight.Add(held) > int64(c.cfg.MaxInflightBytes) {
		c.inflight.Add(-held)
		return inflightFull()
	}
	defer func() { // a panic before produce takes the bytes over must not leak them
		if held != 0 {
			c.inflight.Add(-held)
		}
	}()

	recs, results, rejections, size, err := c.records(ctx, r, raws, key, received)
	buf.release() // what is produced is the encoded copy
	buf = nil
	if err != nil {
		c.d.Log.ErrorContext(ctx, "collector: encode", "err", err)
		return busy(&refusal{status: http.StatusServiceUnavailable, retryAfter: 1, msg: "events could not be encoded; retry later"})
	}
	if grow := size - held; grow != 0 {
		total := c.inflight.Add(grow)
		held = size
		if grow > 0 && total > int64(c.cfg.MaxInflightBytes) {
			return inflightFull()
		}
	}
	held = 0 // produce releases them once every record has its outcome
	if err := c.produce(ctx, recs, size); err != nil {
		trace.SpanFromContext(ctx).RecordError(err)
		c.d.Log.WarnContext(ctx, "collector: produce", "err", err)
		return busy(&refusal{status: http.StatusServiceUnavailable, retryAfter: c.retryAfterProduce(),
			msg: "Kafka did not acknowledge the events within COLLECTOR_PRODUCE_TIMEOUT=" + c.cfg.ProduceTimeout.String() +
				" or failed; some may have been written: retry (they are deduplicated by event_id)"})
	}
	for _, rej := range rejections {
		c.d.Metrics.DeadLettered(ctx, c.d.Stage, rej)
	}
	rejected := len(rejections)
	writeResults(w, len(raws)-rejected, rejected, results)
	return outcome{status: http.StatusOK, accepted: len(raws) - rejected, rejected: rejected}
}

func missingKey() *refusal {
	return refuse(http.StatusUnauthorized, "missing write key: send Authorization: Bearer <key>, X-Write-Key, ?write_key= or the envelope's write_key (the envelope is read only from bodies up to 64 KiB; send a larger body's key in a header or the query)")
}

// rateLimited is the 429 of a request over key's limit, which fits its
// bucket after wait.
func (c *Collector) rateLimited(key *writeKey, wait time.Duration) *refusal {
	if wait <= 0 || wait == rate.InfDuration {
		wait = time.Second
	}
	secs := max(1, int(math.Ceil(wait.Seconds())))
	return &refusal{status: http.StatusTooManyRequests, retryAfter: secs,
		msg: "rate limit of source " + key.source + " exceeded (" + strconv.FormatFloat(float64(key.limiter.Limit()), 'f', -1, 64) +
			" events/s, COLLECTOR_RATE_LIMIT or the key's rate_limit); retry after " + strconv.Itoa(secs) + "s"}
}

// retryAfterProduce is the Retry-After of a 503 for Kafka's acks: long
// enough for a slow broker to catch up, short enough for a blip.
func (c *Collector) retryAfterProduce() int { return max(1, int(c.cfg.ProduceTimeout/(2*time.Second))) }
