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

// Handler returns the stream.Handler that normalises raw events onto out.
func Handler(p *clickparse.Parser, enc stream.Encoder, out string, now func() time.Time) stream.Handler {
	return func(_ context.Context, rec *kgo.Record) ([]*kgo.Record, error) {
		ev, err := p.Parse(rec.Value, now())
		if err != nil {
			return nil, err
		}
		b, err := enc.Encode(&ev)
		if err != nil {
			return nil, err
		}
		return []*kgo.Record{{Topic: out, Key: []byte(ev.SessionID), Value: b}}, nil
	}
}
