package stream

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kotel"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

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
const ReplayAttemptHeader = "ecom-replay-attempt"

// Recover turns a panic into a permanent INTERNAL rejection, so one poisonous
// record is dead-lettered instead of crash-looping the service.
func Recover(log *slog.Logger) Middleware {
	return func(next Handler) Handler {
		return func(ctx context.Context, rec *kgo.Record) (outs []*kgo.Record, err error) {
			defer func() {
				if r := recover(); r != nil {
					log.ErrorContext(ctx, "handler panic", "panic", fmt.Sprint(r), "topic", rec.Topic,
						"partition", rec.Partition, "offset", rec.Offset, "stack", string(debug.Stack()))
					outs, err = nil, deadletter.Rejectf(deadletter.Internal, "", "panic: %v", r)
				}
			}()
			return next(ctx, rec)
		}
	}
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
// maxOriginal caps the original bytes kept in the envelope so the dead letter
// itself always fits the producer's record limit: a dead letter that cannot be
// produced would abort every retry of its batch and stall the partition.
func DeadLetter(stage string, enc Encoder, maxOriginal int, m *Metrics) Middleware {
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
			dl, err := DeadLetterRecord(rec, stage, rej, traceID, enc, maxOriginal)
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
// stage: keyed like rec, its attempt one more than a replay's
// ReplayAttemptHeader, its original bytes capped at maxOriginal.
func DeadLetterRecord(rec *kgo.Record, stage string, rej *deadletter.Rejection, traceID string, enc Encoder, maxOriginal int) (*kgo.Record, error) {
	attempt := 1
	if v, ok := header(rec, ReplayAttemptHeader); ok {
		if n, err := strconv.Atoi(v); err == nil && n >= 0 {
			attempt = n + 1
		}
	}
	dl := deadletter.Envelope(rec, stage, rej, traceID, attempt, time.Now(), maxOriginal)
	b, err := enc.Encode(&dl)
	if err != nil {
		return nil, fmt.Errorf("encode dead letter: %w", err)
	}
	return &kgo.Record{Topic: deadletter.Topic, Key: rec.Key, Value: b}, nil
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

// attrKey is up to three label pairs; an array so a lookup allocates nothing.
type attrKey [6]string

// NewMetrics creates the runtime's instruments on meter.
func NewMetrics(meter metric.Meter) (*Metrics, error) {
	m := &Metrics{attrs: map[attrKey]metric.MeasurementOption{}}
	var err error
	if m.processed, err = meter.Int64Counter("ecom.records.processed", metric.WithDescription("Records handled, by stage, input topic and outcome (ok or dead_lettered).")); err != nil {
		return nil, err
	}
	if m.deadLetters, err = meter.Int64Counter("ecom.dead_letters", metric.WithDescription("Dead letters written, by stage, reason code and rule id.")); err != nil {
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

// set returns the cached attribute set of the label pairs kv (at most three).
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

// DeadLettered counts a dead letter by its reasons.
func (m *Metrics) DeadLettered(ctx context.Context, stage string, rej *deadletter.Rejection) {
	for _, r := range rej.Reasons {
		m.deadLetters.Add(ctx, 1, m.set("stage", stage, "code", string(r.Code), "rule_id", r.RuleID))
	}
}

// Measure records per-record outcome metrics (place it outside DeadLetter).
func Measure(stage string, m *Metrics) Middleware {
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
func Standard(stage, group string, tracer trace.Tracer, dlq Encoder, maxOriginal int, m *Metrics, log *slog.Logger) []Middleware {
	return []Middleware{Trace(tracer, group), Measure(stage, m), DeadLetter(stage, dlq, maxOriginal, m), Recover(log)}
}

// DeadLetterLimit is the most original bytes a dead letter keeps under cfg:
// the producer's record limit less room for the envelope's other fields.
func DeadLetterLimit(cfg Config) int {
	return max(cfg.ProducerMaxRecord-64<<10, 1<<10)
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
