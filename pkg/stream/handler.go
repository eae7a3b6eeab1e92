package stream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kotel"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/ecomstream/platform/pkg/config"
	"github.com/ecomstream/platform/pkg/deadletter"
)

// Handler processes one consumed record and returns the records to produce
// (possibly none). A *deadletter.Rejection error means the record can never be
// accepted; any other error is transient.
type Handler func(ctx context.Context, rec *kgo.Record) ([]*kgo.Record, error)

// Middleware wraps a Handler.
type Middleware func(Handler) Handler

// Chain applies mws so that the first is the outermost.
func Chain(h Handler, mws ...Middleware) Handler {
	for i := len(mws) - 1; i >= 0; i-- {
		h = mws[i](h)
	}
	return h
}

// ReplayAttemptHeader is set by the dead-letter handler on replayed records;
// a record rejected again is dead-lettered with attempt = value + 1.
const ReplayAttemptHeader = deadletter.ReplayAttemptHeader

// ReplayOfHeader is set by the dead-letter handler on replayed records: the
// replayed dead_letter_id. A dead letter whose original carries it rejects
// that replay again (the replayed one becomes failed_again).
const ReplayOfHeader = deadletter.ReplayOfHeader

// DQWarningsHeader is set by the validator on a valid record that failed
// warn-severity rules: their ids, comma-separated. bq-writer stores it in
// fact_events.dq_warnings.
const DQWarningsHeader = "ecom-dq-warnings"

// PanicAttempts is how many times Recover lets one record panic, with no
// transient cause, before it dead-letters the record.
const PanicAttempts = 3

// Recover turns a handler's panic into an error, so one poisonous record
// neither crash-loops the service nor stalls its partition. What is decidable
// from the panic:
//   - a panic whose value is or wraps a *deadletter.Rejection is that
//     rejection (permanent);
//   - a panic whose value is or wraps a transient error (a context's end, a
//     network or I/O timeout, a closed or reset connection), or that happens
//     while ctx is done, is that transient error: it is retried like any
//     transient error, without a bound, because its cause is outside the
//     record;
//   - anything else (a runtime error, a string) may come from the record or
//     from the process, which cannot be told apart: it is retried as a
//     transient error, and once the same record has panicked PanicAttempts
//     times it is dead-lettered as INTERNAL. A record that panics every time
//     ends as a dead letter after bounded retries.
//
// Code that decodes only the record's bytes knows its panics are the
// record's: it should say so with deadletter.Pure, which turns them into a
// rejection at once.
func Recover(log *slog.Logger) Middleware {
	var (
		mu      sync.Mutex
		panics  = map[recordPos]int{} // records that panicked and have not ended yet
		tracked atomic.Int64          // len(panics), read without the lock on the hot path
	)
	const maxTracked = 4096 // bounded memory: forgetting only grants more retries
	return func(next Handler) Handler {
		return func(ctx context.Context, rec *kgo.Record) (outs []*kgo.Record, err error) {
			defer func() {
				r := recover()
				if r == nil {
					if tracked.Load() > 0 {
						mu.Lock()
						delete(panics, recordPos{rec.Topic, rec.Partition, rec.Offset})
						tracked.Store(int64(len(panics)))
						mu.Unlock()
					}
					return
				}
				outs = nil
				perr, _ := r.(error)
				if rej, ok := deadletter.AsRejection(perr); ok {
					err = rej
					return
				}
				if IsTransient(perr) || ctx.Err() != nil {
					log.WarnContext(ctx, "handler panic with a transient cause; retrying", "panic", fmt.Sprint(r),
						"topic", rec.Topic, "partition", rec.Partition, "offset", rec.Offset)
					err = fmt.Errorf("handler panic: %w", errors.Join(perr, ctx.Err()))
					return
				}
				pos := recordPos{rec.Topic, rec.Partition, rec.Offset}
				mu.Lock()
				if len(panics) >= maxTracked {
					clear(panics)
				}
				panics[pos]++
				n := panics[pos]
				if n >= PanicAttempts {
					delete(panics, pos)
				}
				tracked.Store(int64(len(panics)))
				mu.Unlock()
				log.ErrorContext(ctx, "handler panic", "panic", fmt.Sprint(r), "attempt", n, "max_attempts", PanicAttempts, "topic", rec.Topic,
					"partition", rec.Partition, "offset", rec.Offset, "stack", string(debug.Stack()))
				if n < PanicAttempts {
					err = fmt.Errorf("handler panic (attempt %d of %d): %v", n, PanicAttempts, r)
					return
				}
				err = deadletter.Rejectf(deadletter.Internal, "", "panic on each of %d attempts: %v", n, r)
			}()
			return next(ctx, rec)
		}
	}
}

// IsTransient reports an error whose cause is outside the record: a
// context's end, a network error or timeout, a closed or reset connection,
// a retriable Kafka error. net.Error covers most of these: context and os
// deadline errors, net.ErrClosed and every syscall.Errno (so an I/O errno such
// as ENOSPC counts too) implement it. (Any error that is not a
// *deadletter.Rejection is retried; this is the set Recover trusts in a
// panic value.)
func IsTransient(err error) bool {
	if err == nil {
		return false
	}
	var ne net.Error
	return errors.Is(err, context.Canceled) || errors.Is(err, io.ErrClosedPipe) ||
		errors.As(err, &ne) || kerr.IsRetriable(err)
}

// Trace continues the trace carried in the record's headers (W3C
// traceparent), runs the handler in a consumer "process" span, and injects
// that span into the headers of every output record, so one event is one
// trace across services.
func Trace(tracer trace.Tracer, group string) Middleware {
	prop := otel.GetTextMapPropagator()
	return func(next Handler) Handler {
		return func(ctx context.Context, rec *kgo.Record) ([]*kgo.Record, error) {
			ctx = prop.Extract(ctx, kotel.NewRecordCarrier(rec))
			ctx, span := tracer.Start(ctx, "process "+rec.Topic,
				trace.WithSpanKind(trace.SpanKindConsumer),
				trace.WithAttributes(
					attribute.String("messaging.system", "kafka"),
					attribute.String("messaging.operation.type", "process"),
					attribute.String("messaging.destination.name", rec.Topic),
					attribute.String("messaging.destination.partition.id", strconv.Itoa(int(rec.Partition))),
					attribute.Int64("messaging.kafka.offset", rec.Offset),
					attribute.String("messaging.consumer.group.name", group),
				))
			defer span.End()
			outs, err := next(ctx, rec)
			if err != nil {
				span.RecordError(err)
				span.SetStatus(codes.Error, err.Error())
			}
			for _, o := range outs {
				setHeader(o, "traceparent", "")
				prop.Inject(ctx, kotel.NewRecordCarrier(o))
				if o.Topic == deadletter.Topic {
					span.SetAttributes(attribute.Bool("ecom.dead_lettered", true))
				}
			}
			return outs, err
		}
	}
}

// Encoder encodes a value for a topic; *avroserde.Codec implements it.
type Encoder interface {
	Encode(v any) ([]byte, error)
}

// DeadLetter turns a permanent error into a DeadLetter record on
// deadletter.Topic, keyed like the input and carrying its original bytes.
// Transient errors pass through to be retried.
//
// budget (see DeadLetterLimit) caps the encoded envelope, so the dead letter
// itself fits the producer's record limit: a dead letter that cannot be
// produced would abort every retry of its batch and stall the stage.
func DeadLetter(stage string, enc Encoder, budget int, m *Metrics) Middleware {
	return func(next Handler) Handler {
		return func(ctx context.Context, rec *kgo.Record) ([]*kgo.Record, error) {
			outs, err := next(ctx, rec)
			if err == nil {
				return outs, nil
			}
			rej, ok := deadletter.AsRejection(err)
			if !ok {
				return nil, err
			}
			traceID := ""
			if sc := trace.SpanContextFromContext(ctx); sc.HasTraceID() {
				traceID = sc.TraceID().String()
			}
			dl, err := DeadLetterRecord(rec, stage, rej, traceID, enc, budget)
			if err != nil {
				// Not dead-lettering would lose the record; retrying keeps it.
				return nil, err
			}
			m.DeadLettered(ctx, stage, rej)
			return []*kgo.Record{dl}, nil
		}
	}
}

// DeadLetterRecord builds the record on deadletter.Topic for rec rejected by
// stage: keyed like rec (a long key by its hash, deadletter.Key), its attempt
// one more than a replay's ReplayAttemptHeader, its envelope at most budget
// bytes (deadletter.Envelope; 0 = no limit). The record carries its minimal
// envelope as a fallback (MinimalDeadLetter) for a broker that still refuses
// it as too large.
func DeadLetterRecord(rec *kgo.Record, stage string, rej *deadletter.Rejection, traceID string, enc Encoder, budget int) (*kgo.Record, error) {
	attempt := 1
	if v, ok := header(rec, ReplayAttemptHeader); ok {
		if n, err := strconv.Atoi(v); err == nil && n >= 0 {
			attempt = n + 1
		}
	}
	now := time.Now()
	key := deadletter.Key(rec.Key)
	minimal := func(full *kgo.Record) (*kgo.Record, error) {
		dl := deadletter.Minimal(rec, stage, rej, traceID, attempt, now)
		b, err := enc.Encode(&dl)
		if err != nil {
			return nil, fmt.Errorf("encode dead letter: %w", err)
		}
		m := &kgo.Record{Topic: deadletter.Topic, Key: key, Value: b}
		if full != nil {
			if tp, ok := header(full, "traceparent"); ok {
				setHeader(m, "traceparent", tp)
			}
		}
		return m, nil
	}
	dl := deadletter.Envelope(rec, stage, rej, traceID, attempt, now, budget)
	b, err := enc.Encode(&dl)
	if err != nil {
		return nil, fmt.Errorf("encode dead letter: %w", err)
	}
	if budget > 0 && len(b) > budget {
		return minimal(nil) // Envelope's bound is an upper bound: not expected
	}
	return &kgo.Record{Topic: deadletter.Topic, Key: key, Value: b,
		Context: context.WithValue(context.Background(), minimalKey{}, minimal)}, nil
}

type minimalKey struct{}

// DeadLetterContext makes ctx the context dl is produced under (kgo fails a
// buffered record once its context ends), keeping its minimal-envelope
// fallback. DeadLetterRecord cannot know the producer's deadline: a caller
// with one (the HTTP collector's produce timeout) sets it here.
func DeadLetterContext(ctx context.Context, dl *kgo.Record) {
	var fn any
	if dl.Context != nil {
		fn = dl.Context.Value(minimalKey{})
	}
	if fn == nil {
		dl.Context = ctx
		return
	}
	dl.Context = context.WithValue(ctx, minimalKey{}, fn)
}

// MinimalDeadLetter returns the minimal envelope (deadletter.Minimal) of a
// dead letter built by DeadLetterRecord, keeping its traceparent header.
func MinimalDeadLetter(dl *kgo.Record) (*kgo.Record, bool) {
	if dl.Context == nil {
		return nil, false
	}
	fn, ok := dl.Context.Value(minimalKey{}).(func(*kgo.Record) (*kgo.Record, error))
	if !ok {
		return nil, false
	}
	m, err := fn(dl)
	return m, err == nil
}

// ProduceDeadLetters produces dls outside a transaction (bq-writer's sink)
// and waits for them. A dead letter refused as too large is replaced, in dls,
// by its minimal envelope and produced again, so a dead letter never stalls
// its partition; any other error is returned for the caller to retry (a
// repeat carries the same dead_letter_id).
func ProduceDeadLetters(ctx context.Context, cl *kgo.Client, dls []*kgo.Record) error {
	var (
		again   []*kgo.Record
		errs    []error
		indexOf = make(map[*kgo.Record]int, len(dls))
	)
	for i, d := range dls {
		indexOf[d] = i
	}
	for _, r := range cl.ProduceSync(ctx, dls...) {
		if r.Err == nil {
			continue
		}
		if IsTooLarge(r.Err) {
			if m, ok := MinimalDeadLetter(r.Record); ok {
				dls[indexOf[r.Record]] = m
				again = append(again, m)
				continue
			}
		}
		errs = append(errs, r.Err)
	}
	if len(again) > 0 {
		if err := cl.ProduceSync(ctx, again...).FirstErr(); err != nil {
			errs = append(errs, fmt.Errorf("minimal dead letter: %w", err))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("produce dead letters: %w", errors.Join(errs...))
	}
	return nil
}

// IsTooLarge reports a produce refused for its size, by the client (the
// record exceeds KAFKA_PRODUCER_MAX_RECORD_BYTES) or by the broker (the
// topic's max.message.bytes).
func IsTooLarge(err error) bool {
	return errors.Is(err, kerr.MessageTooLarge) || errors.Is(err, kerr.RecordListTooLarge)
}

// RecordBytes is the size of r as the producer counts it: key, value and
// headers.
func RecordBytes(r *kgo.Record) int {
	n := len(r.Key) + len(r.Value)
	for _, h := range r.Headers {
		n += len(h.Key) + len(h.Value)
	}
	return n
}

// recordOverhead bounds a record's framing in a batch of its own: the batch
// header (61 bytes) and the record's varints.
const recordOverhead = 128

// FitsRecordLimit reports whether r, alone in a batch, fits limit bytes.
func FitsRecordLimit(r *kgo.Record, limit int) bool {
	return RecordBytes(r)+recordOverhead+10*len(r.Headers) <= limit
}

// Metrics are the runtime's instruments.
type Metrics struct {
	processed   metric.Int64Counter
	deadLetters metric.Int64Counter
	transient   metric.Int64Counter
	duration    metric.Float64Histogram
	txns        metric.Int64Counter
	txnDuration metric.Float64Histogram
	batchSize   metric.Int64Histogram

	mu    sync.RWMutex
	attrs map[attrKey]metric.MeasurementOption
}

// attrKey is up to four label pairs; an array so a lookup allocates nothing.
type attrKey [8]string

// NewMetrics creates the runtime's instruments on meter.
func NewMetrics(meter metric.Meter) (*Metrics, error) {
	m := &Metrics{attrs: map[attrKey]metric.MeasurementOption{}}
	var err error
	if m.processed, err = meter.Int64Counter("ecom.records.processed", metric.WithDescription("Records handled, by stage, input topic and outcome (ok or dead_lettered).")); err != nil {
		return nil, err
	}
	if m.deadLetters, err = meter.Int64Counter("ecom.dead_letters", metric.WithDescription("Dead letters written, by stage, entity, reason code and rule id.")); err != nil {
		return nil, err
	}
	if m.transient, err = meter.Int64Counter("ecom.transient_errors", metric.WithDescription("Transient errors that caused a retry, by stage.")); err != nil {
		return nil, err
	}
	if m.duration, err = meter.Float64Histogram("ecom.record.process.duration", metric.WithUnit("s"),
		metric.WithDescription("Time to handle one record."),
		metric.WithExplicitBucketBoundaries(0.00001, 0.00005, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 1)); err != nil {
		return nil, err
	}
	if m.txns, err = meter.Int64Counter("ecom.transactions", metric.WithDescription("Batches ended, by stage and result (committed, aborted).")); err != nil {
		return nil, err
	}
	if m.txnDuration, err = meter.Float64Histogram("ecom.transaction.duration", metric.WithUnit("s"),
		metric.WithDescription("Time from a batch's poll to its commit."),
		metric.WithExplicitBucketBoundaries(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)); err != nil {
		return nil, err
	}
	if m.batchSize, err = meter.Int64Histogram("ecom.batch.records", metric.WithDescription("Records per batch (transaction or warehouse write)."),
		metric.WithExplicitBucketBoundaries(1, 10, 100, 500, 1000, 2500, 5000, 10000, 50000)); err != nil {
		return nil, err
	}
	return m, nil
}

// set returns the cached attribute set of the label pairs kv (at most four).
// It runs for every record, so the common case is a read-locked map hit.
func (m *Metrics) set(kv ...string) metric.MeasurementOption {
	var key attrKey
	copy(key[:], kv)
	m.mu.RLock()
	o, ok := m.attrs[key]
	m.mu.RUnlock()
	if ok {
		return o
	}
	as := make([]attribute.KeyValue, 0, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		as = append(as, attribute.String(kv[i], kv[i+1]))
	}
	o = metric.WithAttributeSet(attribute.NewSet(as...))
	m.mu.Lock()
	m.attrs[key] = o
	m.mu.Unlock()
	return o
}

// UnknownEntity is the dead-letter counter's entity label of a rejection that
// names none: a handler's panic (Recover) or a record no entity of the stage
// reads, where the record's entity is not known.
const UnknownEntity = "unknown"

// DeadLettered counts a dead letter by its reasons, labelled with the
// rejection's entity (click_event, order, …; UnknownEntity when it has none),
// so a stage that handles several entities tells their dead letters apart.
func (m *Metrics) DeadLettered(ctx context.Context, stage string, rej *deadletter.Rejection) {
	entity := rej.Entity
	if entity == "" {
		entity = UnknownEntity
	}
	for _, r := range rej.Reasons {
		m.deadLetters.Add(ctx, 1, m.set("stage", stage, "entity", entity, "code", string(r.Code), "rule_id", r.RuleID))
	}
}

// DeclareStage exports the stage's error counters at 0 before their first
// error, so an alert or dashboard that rates them (WarehouseWritesRetrying)
// sees a series from the start, not only after the first retry.
func (m *Metrics) DeclareStage(ctx context.Context, stage string) {
	m.transient.Add(ctx, 0, m.set("stage", stage))
}

// Measure records per-record outcome metrics (place it outside DeadLetter).
func Measure(stage string, m *Metrics) Middleware {
	m.DeclareStage(context.Background(), stage)
	return func(next Handler) Handler {
		return func(ctx context.Context, rec *kgo.Record) ([]*kgo.Record, error) {
			start := time.Now()
			outs, err := next(ctx, rec)
			m.duration.Record(ctx, time.Since(start).Seconds(), m.set("stage", stage))
			switch {
			case err != nil:
				m.transient.Add(ctx, 1, m.set("stage", stage))
			case len(outs) == 1 && outs[0].Topic == deadletter.Topic:
				m.processed.Add(ctx, 1, m.set("stage", stage, "topic", rec.Topic, "outcome", "dead_lettered"))
			default:
				m.processed.Add(ctx, 1, m.set("stage", stage, "topic", rec.Topic, "outcome", "ok"))
			}
			return outs, err
		}
	}
}

// Batch records a finished batch.
func (m *Metrics) Batch(ctx context.Context, stage string, records int, committed bool, took time.Duration) {
	result := "committed"
	if !committed {
		result = "aborted"
	}
	m.txns.Add(ctx, 1, m.set("stage", stage, "result", result))
	m.txnDuration.Record(ctx, took.Seconds(), m.set("stage", stage))
	m.batchSize.Record(ctx, int64(records), m.set("stage", stage))
}

// Transient counts a transient error outside a handler (e.g. a warehouse write).
func (m *Metrics) Transient(ctx context.Context, stage string) {
	m.transient.Add(ctx, 1, m.set("stage", stage))
}

// Standard is the middleware stack of a stage, outermost first: tracing,
// metrics, dead-lettering, panic recovery.
func Standard(stage, group string, tracer trace.Tracer, dlq Encoder, budget int, m *Metrics, log *slog.Logger) []Middleware {
	return []Middleware{Trace(tracer, group), Measure(stage, m), DeadLetter(stage, dlq, budget, m), Recover(log)}
}

// DeadLetterLimit is the most bytes a dead letter's envelope may take under
// cfg: the producer's record limit less room for what the record adds around
// the envelope (its Kafka key, at most 256 bytes or a hash; the trace headers
// the Trace middleware injects, a W3C tracestate and baggage included; the
// batch framing).
func DeadLetterLimit(cfg Config) int {
	return cfg.ProducerMaxRecord - deadLetterReserve
}

// deadLetterReserve: key 256 + traceparent 55 + tracestate (32 members of at
// most 513 bytes) + baggage (8192) + framing, rounded up.
const deadLetterReserve = 32 << 10

// MaxWholeOriginal is the largest original value a dead letter under cfg is
// sure to keep whole (half its budget; see deadletter.Envelope): a service's
// input size limit must not exceed it.
func MaxWholeOriginal(cfg Config) int { return DeadLetterLimit(cfg) / 2 }

// CheckInputLimit fails, naming name, when an input limit exceeds
// MaxWholeOriginal(cfg): an input accepted under it could otherwise yield an
// output or a dead letter too large to produce.
func CheckInputLimit(name string, limit int, cfg Config) error {
	if limit > MaxWholeOriginal(cfg) {
		return config.Errorf(name, "%d is more than KAFKA_PRODUCER_MAX_RECORD_BYTES=%d allows (at most %d, so an input and its dead letter fit a record)",
			limit, cfg.ProducerMaxRecord, MaxWholeOriginal(cfg))
	}
	return nil
}

func header(rec *kgo.Record, key string) (string, bool) {
	for _, h := range rec.Headers {
		if h.Key == key {
			return string(h.Value), true
		}
	}
	return "", false
}

// setHeader replaces (or with an empty value, removes) header key.
func setHeader(rec *kgo.Record, key, value string) {
	hs := rec.Headers[:0]
	for _, h := range rec.Headers {
		if h.Key != key {
			hs = append(hs, h)
		}
	}
	rec.Headers = hs
	if value != "" {
		rec.Headers = append(rec.Headers, kgo.RecordHeader{Key: key, Value: []byte(value)})
	}
}
