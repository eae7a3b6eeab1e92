package ingest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ecomstream/platform/pkg/deadletter"
	"github.com/ecomstream/platform/services/ingest-clickstream/internal/clickparse"
)

type recordingEncoder struct {
	err error
	n   int
}

func (e *recordingEncoder) Encode(any) ([]byte, error) {
	e.n++
	return []byte("avro"), e.err
}

func TestHandler(t *testing.T) {
	now := func() time.Time { return time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC) }
	p := &clickparse.Parser{MaxBytes: 1 << 10, Source: "kafka"}
	good := `{"event_id":"e","event_timestamp":"2026-11-25T00:00:00Z","event_type":"page_view","session_id":"sess-1","page_url":"https://x/"}`
	tests := []struct {
		name      string
		value     string
		encErr    error
		wantKey   string
		wantPerm  bool
		wantError bool
	}{
		{name: "good", value: good, wantKey: "sess-1"},
		{name: "bad is permanent", value: `{"x":`, wantPerm: true, wantError: true},
		{name: "encoder failure is transient", value: good, encErr: errors.New("registry down"), wantError: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			enc := &recordingEncoder{err: tt.encErr}
			outs, err := Handler(p, enc, "out", now)(context.Background(), &kgo.Record{Value: []byte(tt.value)})
			if (err != nil) != tt.wantError || deadletter.IsPermanent(err) != tt.wantPerm {
				t.Fatalf("err = %v", err)
			}
			if !tt.wantError && (len(outs) != 1 || outs[0].Topic != "out" || string(outs[0].Key) != tt.wantKey) {
				t.Errorf("outs = %+v", outs)
			}
		})
	}
}
