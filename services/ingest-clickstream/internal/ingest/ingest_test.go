package ingest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ecomstream/platform/pkg/deadletter"
	"github.com/ecomstream/platform/pkg/events"
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

// A record handled late (a backlog after an outage, a retry, a restart) keeps
// the received_at of its Kafka timestamp; only a missing or implausible
// timestamp falls back to the handling time.
func TestHandlerReceivedAtIsTheRecordTimestamp(t *testing.T) {
	handled := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	now := func() time.Time { return handled }
	p := &clickparse.Parser{MaxBytes: 1 << 10, Source: "kafka"}
	value := []byte(`{"event_id":"e","event_timestamp":"2026-11-25T09:59:00Z","event_type":"page_view","session_id":"s","page_url":"https://x/"}`)
	tests := []struct {
		name string
		give time.Time
		want time.Time
	}{
		{name: "two hours of backlog", give: handled.Add(-2 * time.Hour), want: handled.Add(-2 * time.Hour)},
		{name: "slightly ahead", give: handled.Add(30 * time.Second), want: handled.Add(30 * time.Second)},
		{name: "no timestamp", give: time.UnixMilli(-1), want: handled},
		{name: "zero value", give: time.Time{}, want: handled},
		{name: "far future", give: handled.Add(time.Hour), want: handled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got time.Time
			enc := encodeFunc(func(v any) ([]byte, error) {
				got = v.(*events.ClickEvent).ReceivedAt
				return []byte("avro"), nil
			})
			if _, err := Handler(p, enc, "out", now)(context.Background(), &kgo.Record{Value: value, Timestamp: tt.give}); err != nil {
				t.Fatal(err)
			}
			if !got.Equal(tt.want) {
				t.Errorf("received_at = %v, want %v", got, tt.want)
			}
		})
	}
}

type encodeFunc func(any) ([]byte, error)

func (f encodeFunc) Encode(v any) ([]byte, error) { return f(v) }

// The output record's timestamp is received_at, also when received_at fell back to the handling
// time (a raw record stamped 0): the validator judges received_at against that timestamp, and a
// record carrying 0 onward would be dead-lettered as implausible.
func TestHandlerOutputTimestampIsReceivedAt(t *testing.T) {
	handled := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	p := &clickparse.Parser{MaxBytes: 1 << 10, Source: "kafka"}
	value := []byte(`{"event_id":"e","event_timestamp":"2026-11-25T11:59:00Z","event_type":"page_view","session_id":"s","page_url":"https://x/"}`)
	for _, give := range []time.Time{time.UnixMilli(0), handled.Add(-time.Hour)} {
		var received time.Time
		enc := encodeFunc(func(v any) ([]byte, error) {
			received = v.(*events.ClickEvent).ReceivedAt
			return []byte("avro"), nil
		})
		outs, err := Handler(p, enc, "out", func() time.Time { return handled })(context.Background(), &kgo.Record{Value: value, Timestamp: give})
		if err != nil {
			t.Fatal(err)
		}
		if !outs[0].Timestamp.Equal(received) {
			t.Errorf("raw timestamp %v: output timestamp %v, want received_at %v", give, outs[0].Timestamp, received)
		}
	}
}
