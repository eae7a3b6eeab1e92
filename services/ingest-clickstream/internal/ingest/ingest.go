// Package ingest is ingest-clickstream's record handler: raw JSON in, Avro
// ClickEvent out, keyed by session so a session's events stay in order.
package ingest

import (
	"context"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ecomstream/platform/pkg/stream"
	"github.com/ecomstream/platform/services/ingest-clickstream/internal/clickparse"
)

// maxTimestampSkew is how far ahead of this process's clock a raw record's
// Kafka timestamp may be and still be taken as the time the platform received
// the event. A producer that sets CreateTime from a wrong clock gets the
// handling time instead.
const maxTimestampSkew = time.Minute

// Handler returns the stream.Handler that normalises raw events onto out.
//
// received_at is the raw record's Kafka timestamp (the broker's append time on
// a LogAppendTime topic, the producer's create time otherwise), not the time
// this process handles it. So the same record gets the same received_at
// whenever it is handled: a retry, a restart or a catch-up after an outage
// yields identical output, and the validator's time rules, which judge
// event_timestamp against received_at, give the same verdict. now is only the
// fallback for a record without a usable timestamp.
func Handler(p *clickparse.Parser, enc stream.Encoder, out string, now func() time.Time) stream.Handler {
	return func(_ context.Context, rec *kgo.Record) ([]*kgo.Record, error) {
		ev, err := p.Parse(rec.Value, receivedAt(rec, now()))
		if err != nil {
			return nil, err
		}
		b, err := enc.Encode(&ev)
		if err != nil {
			return nil, err
		}
		// The output's timestamp is received_at, so the two agree by construction (the validator
		// judges received_at against it), even when received_at fell back to the handling time.
		return []*kgo.Record{{Topic: out, Key: []byte(ev.SessionID), Value: b, Timestamp: ev.ReceivedAt}}, nil
	}
}

// receivedAt is when the platform received rec: its Kafka timestamp, unless
// that is unset (before 1970-01-02, as Kafka's -1 "no timestamp" decodes) or
// more than MaxTimestampSkew ahead of now, in which case it is now.
func receivedAt(rec *kgo.Record, now time.Time) time.Time {
	ts := rec.Timestamp
	if ts.Before(time.Unix(86400, 0)) || ts.After(now.Add(maxTimestampSkew)) {
		return now
	}
	return ts
}
