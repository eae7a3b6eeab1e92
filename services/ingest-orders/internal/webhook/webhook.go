package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kotel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/ecomstream/platform/pkg/config"
	"github.com/ecomstream/platform/pkg/deadletter"
	"github.com/ecomstream/platform/pkg/stream"
	"github.com/ecomstream/platform/services/ingest-orders/internal/storefront"
)

// Path is where the receiver is mounted.
const Path = "/v1/webhooks/orders"

// SpanName is the span of a verified delivery.
const SpanName = "POST " + Path

// Origin names webhook input in dead letters (deadletter.OriginHeader, and
// so their ids: deadletter.ContentID(stage, Origin, body)); SourceTopic is
// their source_topic: there is no Kafka topic the body came from.
const (
	Origin      = "webhook"
	SourceTopic = "http:" + Path
)

// Config is the receiver's configuration.
type Config struct {
	Secret         string        `env:"WEBHOOK_SECRET" default:"" secret:"true" usage:"HMAC-SHA256 key the storefront signs webhooks with (inject from a secret); empty = no webhook receiver"`
	ReplayWindow   time.Duration `env:"WEBHOOK_REPLAY_WINDOW" default:"5m" usage:"a delivery whose X-Storefront-Timestamp is further than this from our clock is refused (401)"`
	MaxBodyBytes   int           `env:"WEBHOOK_MAX_BODY_BYTES" default:"262144" usage:"larger bodies are refused with 413 before they are verified"`
	ProduceTimeout time.Duration `env:"WEBHOOK_PRODUCE_TIMEOUT" default:"10s" usage:"how long a delivery waits for Kafka's acknowledgement before it is answered 503 (the storefront retries)"`
}

// Enabled reports whether the receiver is on.
func (c *Config) Enabled() bool { return c.Secret != "" }

// Validate implements config.Validator.
func (c *Config) Validate() error {
	return config.First(
		config.Between("WEBHOOK_REPLAY_WINDOW", c.ReplayWindow, time.Second, 24*time.Hour),
		config.Between("WEBHOOK_MAX_BODY_BYTES", c.MaxBodyBytes, 1<<10, 16<<20),
		config.Positive("WEBHOOK_PRODUCE_TIMEOUT", c.ProduceTimeout),
	)
}

// Deps are the receiver's collaborators.
type Deps struct {
	// Producer is idempotent with acks=all and not transactional: the
	// poller's transactional id belongs to the cursor.
	Producer         *kgo.Client
	Orders           stream.Encoder
	DeadLetters      stream.Encoder
	Topic            string
	Stage            string
	DeadLetterBudget int
	Tracer           trace.Tracer
	Meter            metric.Meter
	Metrics          *stream.Metrics // dead letters; may be nil
	Log              *slog.Logger
}

// Handler is the receiver.
type Handler struct {
	cfg           Config
	d             Deps
	verifications metric.Int64Counter
	orders        metric.Int64Counter
	now           func() time.Time
}

// New returns the receiver.
func New(cfg Config, d Deps) (*Handler, error) {
	h := &Handler{cfg: cfg, d: d, now: time.Now}
	var err error
	if h.verifications, err = d.Meter.Int64Counter("ecom.orders.webhook_verifications",
		metric.WithDescription("webhook deliveries by signature check result")); err != nil {
		return nil, err
	}
	if h.orders, err = d.Meter.Int64Counter("ecom.orders.produced",
		metric.WithDescription("order versions produced, by source")); err != nil {
		return nil, err
	}
	return h, nil
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	ts, sig := r.Header.Get(HeaderTimestamp), r.Header.Get(HeaderSignature)
	if ts == "" || sig == "" {
		h.refuse(ctx, w, http.StatusUnauthorized, Missing, "X-Storefront-Timestamp and X-Storefront-Signature are required")
		return
	}
	if r.ContentLength > int64(h.cfg.MaxBodyBytes) {
		h.refuse(ctx, w, http.StatusRequestEntityTooLarge, BodyTooLarge, fmt.Sprintf("body larger than %d bytes", h.cfg.MaxBodyBytes))
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, int64(h.cfg.MaxBodyBytes)))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			h.refuse(ctx, w, http.StatusRequestEntityTooLarge, BodyTooLarge, fmt.Sprintf("body larger than %d bytes", h.cfg.MaxBodyBytes))
			return
		}
		h.refuse(ctx, w, http.StatusBadRequest, UnreadableBody, "cannot read the body")
		return
	}
	received := h.now()
	if res := Verify([]byte(h.cfg.Secret), ts, sig, body, received, h.cfg.ReplayWindow); res != Valid {
		// Counted, never stored: an unverified body is anybody's.
		h.refuse(ctx, w, http.StatusUnauthorized, res, "signature or timestamp not accepted: "+string(res))
		return
	}
	h.verifications.Add(ctx, 1, metric.WithAttributes(attribute.String("result", string(Valid))))

	// The trust boundary, as for the HTTP collector: the storefront is
	// outside the platform, so its traceparent (which the signature does
	// not cover) is a link of a new trace, never its parent, and cannot
	// choose our sampling. The records carry this span.
	ctx = propagation.TraceContext{}.Extract(ctx, propagation.HeaderCarrier(r.Header))
	ctx, span := stream.TrustBoundary(h.d.Tracer).Start(ctx, SpanName, trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(attribute.String("http.request.method", r.Method), attribute.String("http.route", Path),
			attribute.String("url.path", Path)))
	defer span.End()
	sw := &statusWriter{ResponseWriter: w}
	w = sw
	defer func() {
		span.SetAttributes(attribute.Int("http.response.status_code", sw.status))
		if sw.status >= 500 {
			span.SetStatus(codes.Error, http.StatusText(sw.status))
		}
	}()
	// Not the request's context: a storefront hanging up must not fail a
	// record already on its way (it retries, and repeats are tolerated).
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), h.cfg.ProduceTimeout)
	defer cancel()

	delivery := r.Header.Get(HeaderDeliveryID)
	o, rej := Parse(body)
	if rej != nil {
		h.deadLetter(ctx, pctx, w, r, body, received, rej)
		return
	}
	var deliveryID *string
	if delivery != "" {
		deliveryID = &delivery
	}
	span.SetAttributes(attribute.String("ecom.order.id", o.ID), attribute.Int64("ecom.order.version", o.Version))
	rec, err := o.Record(ctx, h.d.Orders, h.d.Topic, storefront.SourceWebhook, received, deliveryID)
	if err != nil {
		h.d.Log.ErrorContext(ctx, "encode webhook order", "order_id", o.ID, "err", err)
		writeError(w, http.StatusInternalServerError, "internal", "cannot encode the order")
		return
	}
	if err := produce(pctx, h.d.Producer, rec); err != nil {
		h.d.Log.WarnContext(ctx, "webhook order not produced", "order_id", o.ID, "err", err)
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "unavailable", "the order could not be stored; retry")
		return
	}
	h.orders.Add(ctx, 1, metric.WithAttributes(attribute.String("source", storefront.SourceWebhook)))
	writeJSON(w, http.StatusOK, map[string]any{"status": "accepted", "order_id": o.ID, "order_version": o.Version})
}

// deadLetter stores a well-signed body that is not a usable order, with its
// raw bytes and delivery headers, and answers 400 once it is durable (503
// if it is not: the storefront retries, and the same bytes make the same
// dead letter id).
func (h *Handler) deadLetter(ctx, pctx context.Context, w http.ResponseWriter, r *http.Request, body []byte, received time.Time, rej *deadletter.Rejection) {
	rej.Entity = "order"
	headers := []kgo.RecordHeader{{Key: deadletter.OriginHeader, Value: []byte(Origin)}}
	for _, k := range []string{HeaderDeliveryID, HeaderEvent, HeaderTimestamp, HeaderSignature} {
		if v := r.Header.Get(k); v != "" {
			headers = append(headers, kgo.RecordHeader{Key: k, Value: []byte(v)})
		}
	}
	orig := &kgo.Record{Topic: SourceTopic, Partition: -1, Offset: -1, Value: bytes.Clone(body), Timestamp: received, Headers: headers}
	traceID := ""
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		traceID = sc.TraceID().String()
	}
	dl, err := stream.DeadLetterRecord(orig, h.d.Stage, rej, traceID, h.d.DeadLetters, h.d.DeadLetterBudget)
	if err != nil {
		h.d.Log.ErrorContext(ctx, "build webhook dead letter", "err", err)
		writeError(w, http.StatusInternalServerError, "internal", "cannot build the dead letter")
		return
	}
	propagation.TraceContext{}.Inject(ctx, kotel.NewRecordCarrier(dl))
	trace.SpanFromContext(ctx).SetAttributes(attribute.Bool("ecom.dead_lettered", true))
	stream.DeadLetterContext(pctx, dl)
	err = produce(pctx, h.d.Producer, dl)
	if stream.IsTooLarge(err) {
		if m, ok := stream.MinimalDeadLetter(dl); ok {
			err = produce(pctx, h.d.Producer, m)
		}
	}
	if err != nil {
		h.d.Log.WarnContext(ctx, "webhook dead letter not produced", "err", err)
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "unavailable", "the delivery could not be stored; retry")
		return
	}
	if h.d.Metrics != nil {
		h.d.Metrics.DeadLettered(ctx, h.d.Stage, rej)
	}
	writeJSON(w, http.StatusBadRequest, map[string]any{"error": rej.Error(), "code": "malformed_order",
		"dead_letter_id": deadletter.ContentID(h.d.Stage, Origin, body)})
}

// produce waits for rec's acknowledgement until ctx ends. An idempotent
// producer cannot fail a record already sent, so at the deadline the caller
// answers without it while it may still land (its delivery timeout bounds
// that): the storefront's retry then makes a repeat, which is tolerated.
func produce(ctx context.Context, cl *kgo.Client, rec *kgo.Record) error {
	done := make(chan error, 1)
	cl.Produce(ctx, rec, func(_ *kgo.Record, err error) { done <- err })
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("waiting for the acknowledgement: %w", ctx.Err())
	}
}

func (h *Handler) refuse(ctx context.Context, w http.ResponseWriter, status int, res Result, msg string) {
	h.verifications.Add(ctx, 1, metric.WithAttributes(attribute.String("result", string(res))))
	writeError(w, status, string(res), msg)
}

// Parse decodes a webhook body into an order, or says why it is not one: a
// rejection for what can never become an Order record (bad JSON, wrong
// types, no id, version, customer, status, currency or timestamps). Whether
// the order is well formed (totals, transitions) is the validator's to judge.
func Parse(body []byte) (*storefront.Order, *deadletter.Rejection) {
	var o storefront.Order
	if err := json.Unmarshal(body, &o); err != nil {
		var te *json.UnmarshalTypeError
		var se *json.SyntaxError
		switch {
		case errors.As(err, &te):
			return nil, deadletter.Rejectf(deadletter.WrongType, te.Field, "%s must be %s, got %s", te.Field, te.Type, te.Value)
		case errors.As(err, &se):
			return nil, deadletter.Rejectf(deadletter.MalformedJSON, "", "%v", err)
		default: // a timestamp that is not RFC 3339, or not an object at all
			return nil, deadletter.Rejectf(deadletter.InvalidValue, "", "%v", err)
		}
	}
	var reasons []deadletter.Reason
	missing := func(field string, absent bool) {
		if absent {
			reasons = append(reasons, deadletter.Reason{Code: deadletter.MissingField, Field: field, Message: field + " is required"})
		}
	}
	missing("id", o.ID == "")
	missing("version", o.Version == 0)
	missing("customer_id", o.CustomerID == "")
	missing("status", o.Status == "")
	missing("currency", o.Currency == "")
	missing("created_at", o.CreatedAt.IsZero())
	missing("updated_at", o.UpdatedAt.IsZero())
	if o.Version < 0 {
		reasons = append(reasons, deadletter.Reason{Code: deadletter.InvalidValue, Field: "version", Message: "version must be at least 1"})
	}
	if len(reasons) > 0 {
		return nil, deadletter.Reject(reasons...)
	}
	return &o, nil
}

// statusWriter remembers the answer's status for the span.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]string{"error": msg, "code": code})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}
