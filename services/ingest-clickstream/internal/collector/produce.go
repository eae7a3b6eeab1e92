package collector

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/ecomstream/platform/pkg/deadletter"
	"github.com/ecomstream/platform/pkg/stream"
)

// errAckTimeout: Kafka did not acknowledge a request's records within
// COLLECTOR_PRODUCE_TIMEOUT.
var errAckTimeout = errors.New("kafka did not acknowledge in time")

// records parses raws and builds what a request produces: a ClickEvent per
// accepted event, a dead letter per rejected one, every record carrying the
// request span's traceparent. It returns each event's result and the
// rejections, which are counted once the dead letters are acknowledged, and
// size, the bytes the records hold until their outcome: each record's key,
// value and headers, and for a dead letter also the copy of the original
// its minimal-envelope fallback keeps.
func (c *Collector) records(ctx context.Context, r *http.Request, raws [][]byte, key *writeKey, received time.Time) (
	recs []*kgo.Record, results []eventResult, rejections []*deadletter.Rejection, size int64, err error) {
	var tp []byte
	carrier := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(ctx, carrier)
	if v := carrier["traceparent"]; v != "" {
		tp = []byte(v)
	}
	headers := func(hs ...kgo.RecordHeader) []kgo.RecordHeader {
		if tp != nil {
			hs = append(hs, kgo.RecordHeader{Key: "traceparent", Value: tp})
		}
		return hs
	}
	traceID := ""
	if sc := trace.SpanContextFromContext(ctx); sc.HasTraceID() {
		traceID = sc.TraceID().String()
	}
	var clientIP *string
	if c.cfg.ClientIP == "truncated" {
		if s := truncateIP(c.ips.of(r)); s != "" {
			clientIP = &s
		}
	}
	source := key.source

	recs = make([]*kgo.Record, 0, len(raws))
	results = make([]eventResult, len(raws))
	for i, raw := range raws {
		ev, perr := c.parser.Parse(raw, received)
		if perr == nil {
			ev.ClientIP, ev.CollectorSource = clientIP, &source
			b, err := c.d.Events.Encode(&ev)
			if err != nil {
				return nil, nil, nil, 0, err
			}
			// The record's timestamp is received_at, as on the Kafka path: the
			// validator judges received_at against it.
			recs = append(recs, &kgo.Record{Topic: c.d.OutputTopic, Key: []byte(ev.SessionID), Value: b,
				Timestamp: ev.ReceivedAt, Headers: headers()})
			size += int64(stream.RecordBytes(recs[len(recs)-1]))
			results[i] = eventResult{Index: i, EventID: ev.EventID, Status: "accepted"}
			continue
		}
		rej, ok := deadletter.AsRejection(perr)
		if !ok {
			return nil, nil, nil, 0, perr
		}
		// The original as the dead letter's source: the raw topic (where a
		// replay sends it), no position, the origin in its headers (which
		// also names the dead letter's id). Its bytes are copied: raw points
		// into a pooled buffer, and the minimal fallback reads them later.
		orig := &kgo.Record{Topic: c.d.InputTopic, Partition: -1, Offset: -1, Value: bytes.Clone(raw), Timestamp: received,
			Headers: []kgo.RecordHeader{{Key: OriginHeader, Value: []byte(Source)}, {Key: CollectorSourceHeader, Value: []byte(source)}}}
		dl, err := stream.DeadLetterRecord(orig, c.d.Stage, rej, traceID, c.d.DeadLetters, c.d.DeadLetterBudget)
		if err != nil {
			return nil, nil, nil, 0, err
		}
		dl.Headers = headers(dl.Headers...)
		recs = append(recs, dl)
		size += int64(stream.RecordBytes(dl) + len(orig.Value))
		rejections = append(rejections, rej)
		res := eventResult{Index: i, EventID: ev.EventID, Status: "rejected", Reasons: make([]reasonJSON, len(rej.Reasons))}
		for j, rs := range rej.Reasons {
			res.Reasons[j] = reasonJSON{Code: string(rs.Code), RuleID: rs.RuleID, Field: rs.Field, Message: rs.Message}
		}
		results[i] = res
	}
	return recs, results, rejections, size, nil
}

// flight is one request's records on their way to Kafka.
type flight struct {
	mu   sync.Mutex
	left int
	err  error
	done chan struct{}
}

// produce writes recs and waits for Kafka's acks, at most
// COLLECTOR_PRODUCE_TIMEOUT from the first Produce: a Produce blocked on a
// full buffer spends the same deadline, and the dead letters carry it too.
// size bytes of the in-flight budget are held until every record has its
// outcome, even after the request has been answered 503, so a slow Kafka
// cannot be flooded (the producer's record delivery timeout bounds how long
// that is). A dead letter refused as too large is replaced by its minimal
// envelope, as stream.ProduceDeadLetters does.
func (c *Collector) produce(ctx context.Context, recs []*kgo.Record, size int64) error {
	if len(recs) == 0 {
		c.inflight.Add(-size)
		return nil
	}
	// Not the request's context: a client hanging up must not fail records
	// already on their way. Records not sent by the deadline fail with it.
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.ProduceTimeout)
	f := &flight{left: len(recs), done: make(chan struct{})}
	c.pending.add()
	var promise func(*kgo.Record, error)
	promise = func(r *kgo.Record, err error) {
		if err != nil && r.Topic == deadletter.Topic && stream.IsTooLarge(err) {
			if m, ok := stream.MinimalDeadLetter(r); ok {
				// Not from inside the promise: Produce may block on a full buffer.
				go c.d.Producer.Produce(pctx, m, promise)
				return
			}
		}
		f.mu.Lock()
		if err != nil && f.err == nil {
			f.err = err
		}
		f.left--
		last := f.left == 0
		f.mu.Unlock()
		if last {
			c.inflight.Add(-size)
			close(f.done) // before cancel: the waiter prefers done to pctx's end
			cancel()
			c.pending.done()
		}
	}
	for _, r := range recs {
		if r.Topic == deadletter.Topic {
			stream.DeadLetterContext(pctx, r)
		}
		c.d.Producer.Produce(pctx, r, promise)
	}
	select {
	case <-f.done:
	case <-pctx.Done():
		select {
		case <-f.done:
		default:
			return errAckTimeout
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}
