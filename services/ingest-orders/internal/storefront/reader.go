package storefront

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/http"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Page span attributes (the messaging and HTTP ones are the OpenTelemetry
// conventions'; the rest are ours).
const (
	AttrSince    = "ecom.orders.page.since"    // updated_since of the listing ("" = the beginning)
	AttrLimit    = "ecom.orders.page.limit"    // the requested page size
	AttrOrders   = "ecom.orders.page.orders"   // orders in the page
	AttrHasMore  = "ecom.orders.page.has_more" // the API's has_more
	AttrAttempts = "ecom.orders.page.attempts" // requests until the page came (retries + 1)
	AttrCursor   = "ecom.orders.cursor"        // the cursor committed with the page (poller)
	AttrStatus   = "http.response.status_code" // of the last request
	AttrProduced = "messaging.batch.message_count"
)

// Reader pages through the listing, retrying what can succeed later: 429 and
// 503 after their Retry-After, other 5xx, transport errors and cut-off
// bodies with capped, jittered exponential backoff. The poller and backfill
// both read with it.
type Reader struct {
	API        *Client
	Limit      int
	BackoffMin time.Duration
	BackoffMax time.Duration
	// OnError sees every failed request (metrics); may be nil.
	OnError func(ctx context.Context, err error)
	// Tracer starts one span named Span per page (nil: no spans), with
	// SpanAttrs and the Attr* attributes. It covers the page's requests,
	// retries included (each failed one a "retry" event), and fn, so the
	// records fn builds under its context carry the page's trace. Each page
	// is a trace of its own: a trace holds at most Limit orders however long
	// a round or a backfill runs.
	Tracer    trace.Tracer
	Span      string
	SpanAttrs []attribute.KeyValue
	// Sleep and Jitter are replaced by tests; nil means real time and
	// uniform jitter in [d/2, d].
	Sleep  func(ctx context.Context, d time.Duration) error
	Jitter func(d time.Duration) time.Duration
}

// Each reads the listing from since (zero = the beginning) page by page and
// calls fn with each, under the page span's context; it stops when fn
// returns false or an error, or after the last page. A failed request is
// repeated (same since and token) until it succeeds, ctx ends, or the error
// is one retrying cannot fix (a 4xx, which includes ErrBadPageToken), which
// is returned.
func (r *Reader) Each(ctx context.Context, since time.Time, fn func(context.Context, *Page) (bool, error)) error {
	token := ""
	b := r.Backoff()
	for {
		more, next, err := r.page(ctx, since, token, b, fn)
		if err != nil || !more {
			return err
		}
		token = next
	}
}

// page gets one page (retrying) and hands it to fn, in one span; more is
// whether there is a next page to read, at token next.
func (r *Reader) page(ctx context.Context, since time.Time, token string, b *Backoff,
	fn func(context.Context, *Page) (bool, error)) (more bool, next string, err error) {
	tracer := r.Tracer
	if tracer == nil {
		tracer = noop.NewTracerProvider().Tracer("")
	}
	sinceAttr := ""
	if !since.IsZero() {
		sinceAttr = since.UTC().Format(time.RFC3339Nano)
	}
	ctx, span := tracer.Start(ctx, r.Span, trace.WithNewRoot(), trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(r.SpanAttrs...),
		trace.WithAttributes(attribute.String(AttrSince, sinceAttr), attribute.Int(AttrLimit, r.Limit)))
	defer span.End()
	fail := func(err error) (bool, string, error) {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
		return false, "", err
	}
	for attempt := 1; ; attempt++ {
		span.SetAttributes(attribute.Int(AttrAttempts, attempt))
		page, err := r.API.List(ctx, since, token, r.Limit)
		if err == nil {
			b.Reset()
			span.SetAttributes(attribute.Int(AttrStatus, http.StatusOK), attribute.Int(AttrOrders, len(page.Orders)),
				attribute.Bool(AttrHasMore, page.HasMore))
			more, err := fn(ctx, page)
			if err != nil {
				return fail(err)
			}
			return more && page.HasMore && page.NextPageToken != "" && len(page.Orders) > 0, page.NextPageToken, nil
		}
		if r.OnError != nil {
			r.OnError(ctx, err)
		}
		ev := []attribute.KeyValue{attribute.String("error.message", err.Error())}
		var se *StatusError
		if errors.As(err, &se) {
			span.SetAttributes(attribute.Int(AttrStatus, se.Status))
			ev = append(ev, attribute.Int(AttrStatus, se.Status))
			if !se.Retryable() {
				return fail(err)
			}
		}
		wait := b.Next(err)
		span.AddEvent("retry", trace.WithAttributes(append(ev, attribute.Int64("ecom.retry.wait_ms", wait.Milliseconds()))...))
		if werr := r.sleep(ctx, wait); werr != nil {
			return fail(werr)
		}
	}
}

func (r *Reader) sleep(ctx context.Context, d time.Duration) error {
	if r.Sleep != nil {
		return r.Sleep(ctx, d)
	}
	return Sleep(ctx, d)
}

// Backoff returns a fresh backoff of r's bounds.
func (r *Reader) Backoff() *Backoff {
	j := r.Jitter
	if j == nil {
		j = func(d time.Duration) time.Duration { return d/2 + rand.N(d/2+1) }
	}
	return &Backoff{min: r.BackoffMin, max: r.BackoffMax, cur: r.BackoffMin, jitter: j}
}

// Backoff is capped exponential backoff with jitter that honours a
// Retry-After.
type Backoff struct {
	min, max, cur time.Duration
	jitter        func(time.Duration) time.Duration
}

// Reset starts over after a success.
func (b *Backoff) Reset() { b.cur = b.min }

// Next is the wait before retrying after err: the jittered backoff, or the
// answer's Retry-After when that is longer (the server said when: earlier is
// pointless). A Retry-After above the cap is honoured too.
func (b *Backoff) Next(err error) time.Duration {
	d := b.jitter(b.cur)
	b.cur = min(b.cur*2, b.max)
	var se *StatusError
	if errors.As(err, &se) && se.RetryAfter > d {
		return se.RetryAfter
	}
	return d
}

// Sleep waits d or until ctx ends.
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
