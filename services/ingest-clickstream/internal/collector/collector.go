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
	slots    chan struct{} // requests being handled
	inflight atomic.Int64  // request bytes whose records await acks
	pending  sync.WaitGroup
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
		tracer: stream.TrustBoundary(d.Tracer), slots: make(chan struct{}, cfg.MaxConcurrent)}
	c.parser.Source = Source
	if c.m, err = newMetrics(d.Meter, c.inflight.Load); err != nil {
		return nil, err
	}
	return c, nil
}

// Wait blocks until every record produced for a request answered early
// (503 after COLLECTOR_PRODUCE_TIMEOUT) has its outcome, or ctx ends.
func (c *Collector) Wait(ctx context.Context) error {
	done := make(chan struct{})
	go func() { c.pending.Wait(); close(done) }()
	select {
	case <-done:
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
	res := c.post(ctx, w, r, received)
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

// post handles POST /v1/events.
func (c *Collector) post(ctx context.Context, w http.ResponseWriter, r *http.Request, received time.Time) outcome {
	select {
	case c.slots <- struct{}{}:
		defer func() { <-c.slots }()
	default:
		return c.fail(w, &refusal{status: http.StatusServiceUnavailable, retryAfter: 1,
			msg: "too many requests at once (COLLECTOR_MAX_CONCURRENT_REQUESTS=" + strconv.Itoa(c.cfg.MaxConcurrent) + "); retry later"})
	}
	origin := r.Header.Get("Origin")
	w.Header().Add("Vary", "Origin")
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
	format, ref := formatOf(r.Header.Get("Content-Type"))
	if ref != nil {
		return c.fail(w, ref)
	}
	buf := getBody()
	defer func() {
		if buf != nil {
			buf.release()
		}
	}()
	if ref := readBody(w, r, buf, c.cfg.MaxBodyBytes, c.cfg.MaxDecompressedBytes); ref != nil {
		return c.fail(w, ref)
	}
	envKey, raws, err := split(buf.text, format, c.cfg.MaxEvents)
	if err != nil {
		var se *splitError
		if errors.As(err, &se) && se.tooMany {
			return c.fail(w, refuse(http.StatusRequestEntityTooLarge, "%s", se.msg))
		}
		return c.fail(w, refuse(http.StatusBadRequest, "malformed body: %v", err))
	}
	if key == nil {
		if envKey == "" {
			return c.fail(w, refuse(http.StatusUnauthorized, "missing write key: send Authorization: Bearer <key>, X-Write-Key, ?write_key= or the envelope's write_key"))
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
	var tokens *rate.Reservation
	if n := len(raws); n > 0 {
		tokens = key.limiter.ReserveN(received, n)
		if wait := tokens.DelayFrom(received); !tokens.OK() || wait > 0 {
			tokens.CancelAt(received)
			return c.fail(w, c.rateLimited(key, wait))
		}
	}
	size := int64(len(buf.text))
	if c.inflight.Add(size) > int64(c.cfg.MaxInflightBytes) {
		c.inflight.Add(-size)
		if tokens != nil {
			tokens.CancelAt(received) // refused for Kafka's sake, not the client's rate
		}
		return c.fail(w, &refusal{status: http.StatusServiceUnavailable, retryAfter: 1,
			msg: "Kafka is behind: too many bytes await its acks (COLLECTOR_MAX_INFLIGHT_BYTES=" + strconv.Itoa(c.cfg.MaxInflightBytes) + "); retry later"})
	}

	recs, results, rejections, err := c.records(ctx, r, raws, key, received)
	buf.release() // what is produced is the encoded copy
	buf = nil
	if err != nil {
		c.inflight.Add(-size)
		c.d.Log.ErrorContext(ctx, "collector: encode", "err", err)
		return c.fail(w, &refusal{status: http.StatusServiceUnavailable, retryAfter: 1, msg: "events could not be encoded; retry later"})
	}
	if err := c.produce(ctx, recs, size); err != nil {
		trace.SpanFromContext(ctx).RecordError(err)
		return c.fail(w, &refusal{status: http.StatusServiceUnavailable, retryAfter: c.retryAfterProduce(),
			msg: "Kafka did not acknowledge the events within COLLECTOR_PRODUCE_TIMEOUT=" + c.cfg.ProduceTimeout.String() + " or failed; retry (events already written are deduplicated by event_id)"})
	}
	for _, rej := range rejections {
		c.d.Metrics.DeadLettered(ctx, c.d.Stage, rej)
	}
	rejected := len(rejections)
	writeResults(w, len(raws)-rejected, rejected, results)
	return outcome{status: http.StatusOK, accepted: len(raws) - rejected, rejected: rejected}
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
