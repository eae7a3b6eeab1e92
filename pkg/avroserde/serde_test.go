package avroserde

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/ecomstream/platform/pkg/deadletter"
	"github.com/ecomstream/platform/pkg/events"
	protoavro "github.com/ecomstream/platform/proto/avro"
)

// olderClickEvent is a plausible earlier ClickEvent: fewer fields. The
// current schema must read it, filling the new fields with their defaults.
const olderClickEvent = `{"type":"record","name":"ClickEvent","namespace":"ecom.events","fields":[
 {"name":"event_id","type":"string"},
 {"name":"event_timestamp","type":{"type":"long","logicalType":"timestamp-micros"}},
 {"name":"received_at","type":{"type":"long","logicalType":"timestamp-micros"}},
 {"name":"event_type","type":"string"},
 {"name":"session_id","type":"string"},
 {"name":"page_url","type":"string"}]}`

type olderEvent struct {
	EventID        string    `avro:"event_id"`
	EventTimestamp time.Time `avro:"event_timestamp"`
	ReceivedAt     time.Time `avro:"received_at"`
	EventType      string    `avro:"event_type"`
	SessionID      string    `avro:"session_id"`
	PageURL        string    `avro:"page_url"`
}

func newCodec(t *testing.T, reg *srfake.Registry) *Codec {
	t.Helper()
	r, err := New(Config{URL: reg.URL(), AutoRegister: true, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	c, err := r.Codec(context.Background(), SubjectFor("ecom.events.v1"), protoavro.ClickEvent)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func frame(id int, body []byte) []byte {
	var h sr.ConfluentHeader
	b, _ := h.AppendEncode(nil, id, nil)
	return append(b, body...)
}

func TestRoundTrip(t *testing.T) {
	reg := srfake.New()
	defer reg.Close()
	c := newCodec(t, reg)
	uid := "u-1"
	qty := 2
	in := events.ClickEvent{
		EventID: "e1", EventTimestamp: time.Date(2026, 11, 25, 10, 0, 0, 123456000, time.UTC),
		ReceivedAt: time.Date(2026, 11, 25, 10, 0, 1, 0, time.UTC), EventType: "add_to_cart",
		UserID: &uid, SessionID: "s1", PageURL: "https://shop.example/p/1", Quantity: &qty, Source: "kafka",
	}
	b, err := c.Encode(&in)
	if err != nil {
		t.Fatal(err)
	}
	if b[0] != 0 {
		t.Fatalf("magic byte = %d", b[0])
	}
	var out events.ClickEvent
	id, err := c.Decode(context.Background(), b, &out)
	if err != nil {
		t.Fatal(err)
	}
	if id != c.ID() || out.EventID != "e1" || *out.UserID != "u-1" || *out.Quantity != 2 || !out.EventTimestamp.Equal(in.EventTimestamp) {
		t.Errorf("round trip mismatch: id %d, %+v", id, out)
	}
}

func TestDecodeOlderWriterVersion(t *testing.T) {
	reg := srfake.New()
	defer reg.Close()
	c := newCodec(t, reg)
	oldID, _, err := reg.RegisterSchema("legacy-value", sr.Schema{Schema: olderClickEvent, Type: sr.TypeAvro})
	if err != nil {
		t.Fatal(err)
	}
	body, err := avro.Marshal(avro.MustParse(olderClickEvent), olderEvent{
		EventID: "old", EventTimestamp: time.Unix(1, 0).UTC(), ReceivedAt: time.Unix(2, 0).UTC(),
		EventType: "page_view", SessionID: "s", PageURL: "https://x",
	})
	if err != nil {
		t.Fatal(err)
	}
	var out events.ClickEvent
	id, err := c.Decode(context.Background(), frame(oldID, body), &out)
	if err != nil {
		t.Fatal(err)
	}
	if id != oldID || out.EventID != "old" || out.UserID != nil || out.Source != "kafka" {
		t.Errorf("got id %d %+v; want old record with defaults", id, out)
	}
}

func TestDecodeRejections(t *testing.T) {
	reg := srfake.New()
	defer reg.Close()
	c := newCodec(t, reg)
	otherID, _, err := reg.RegisterSchema("other-value", sr.Schema{Type: sr.TypeAvro,
		Schema: `{"type":"record","name":"Other","fields":[{"name":"a","type":"string"}]}`})
	if err != nil {
		t.Fatal(err)
	}
	incompatID, _, err := reg.RegisterSchema("incompat-value", sr.Schema{Type: sr.TypeAvro,
		Schema: `{"type":"record","name":"ClickEvent","namespace":"ecom.events","fields":[{"name":"event_id","type":"long"}]}`})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		give []byte
		want deadletter.Code
	}{
		{name: "json not avro", give: []byte(`{"event_id":"x"}`), want: deadletter.Undecodable},
		{name: "too short", give: []byte{0, 0}, want: deadletter.Undecodable},
		{name: "unknown schema id", give: frame(9999, []byte{2, 'a'}), want: deadletter.SchemaMismatch},
		{name: "another record type", give: frame(otherID, []byte{2, 'a'}), want: deadletter.SchemaMismatch},
		{name: "incompatible writer", give: frame(incompatID, []byte{2}), want: deadletter.SchemaMismatch},
		{name: "corrupt body", give: frame(c.ID(), []byte{0x06, 'a'}), want: deadletter.Undecodable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out events.ClickEvent
			_, err := c.Decode(context.Background(), tt.give, &out)
			rej, ok := deadletter.AsRejection(err)
			if !ok {
				t.Fatalf("err = %v, want a rejection", err)
			}
			if rej.Reasons[0].Code != tt.want || rej.Entity != protoavro.ClickEvent {
				t.Errorf("got %v (entity %q), want %s", rej, rej.Entity, tt.want)
			}
		})
	}
}

func TestRegistryDownIsTransient(t *testing.T) {
	reg := srfake.New()
	c := newCodec(t, reg)
	reg.Close()
	var out events.ClickEvent
	_, err := c.Decode(context.Background(), frame(c.ID()+1, []byte{2, 'a'}), &out)
	if err == nil || deadletter.IsPermanent(err) {
		t.Fatalf("err = %v, want a transient error", err)
	}
	// The codec's own id needs no registry.
	b, _ := c.Encode(&events.ClickEvent{EventID: "e", EventType: "page_view", SessionID: "s", PageURL: "https://x", Source: "kafka"})
	if _, err := c.Decode(context.Background(), b, &out); err != nil {
		t.Errorf("decoding the current id needed the registry: %v", err)
	}
}

func TestLookupOnlyNeedsRegisteredSchema(t *testing.T) {
	reg := srfake.New()
	defer reg.Close()
	r, err := New(Config{URL: reg.URL(), AutoRegister: false, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	_, err = r.Codec(context.Background(), "x-value", protoavro.ClickEvent)
	if err == nil {
		t.Fatal("lookup of an unregistered schema succeeded")
	}
	var re *sr.ResponseError
	if !errors.As(err, &re) {
		t.Errorf("err = %v, want the registry's response error", err)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		give Config
		ok   bool
	}{
		{"ok", Config{URL: "http://r:8081", Timeout: time.Second}, true},
		{"bad url", Config{URL: "r:8081", Timeout: time.Second}, false},
		{"user without password", Config{URL: "http://r", Username: "u", Timeout: time.Second}, false},
	}
	for _, tt := range tests {
		if err := tt.give.Validate(); (err == nil) != tt.ok {
			t.Errorf("%s: %v", tt.name, err)
		}
	}
}

// TestUnknownIDIsLookedUpOnce: an unknown or unreadable writer id is answered
// from a short negative cache, not asked of the registry for every record;
// a registry outage is never cached, and the cache expires.
func TestUnknownIDIsLookedUpOnce(t *testing.T) {
	reg := srfake.New()
	defer reg.Close()
	c := newCodec(t, reg)
	var lookups atomic.Int64
	var down atomic.Bool
	reg.Intercept(func(w http.ResponseWriter, r *http.Request) bool {
		if !strings.HasPrefix(r.URL.Path, "/schemas/ids/") {
			return false
		}
		lookups.Add(1)
		if down.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return true
		}
		return false
	})
	now := time.Now()
	c.now = func() time.Time { return now }
	decode := func(id int) error {
		var out events.ClickEvent
		_, err := c.Decode(context.Background(), frame(id, []byte{2, 'a'}), &out)
		return err
	}
	tests := []struct {
		name        string
		id          int
		down        bool
		advance     time.Duration
		wantPerm    bool
		wantLookups int64 // cumulative
	}{
		{name: "unknown id asks the registry", id: 999, wantPerm: true, wantLookups: 1},
		{name: "again: from the negative cache", id: 999, wantPerm: true, wantLookups: 1},
		{name: "and again", id: 999, wantPerm: true, wantLookups: 1},
		{name: "the cache expires", id: 999, advance: negativeTTL + time.Second, wantPerm: true, wantLookups: 2},
		{name: "an outage is transient", id: 555, down: true, wantPerm: false, wantLookups: 3},
		{name: "and not cached", id: 555, down: true, wantPerm: false, wantLookups: 4},
		{name: "after the outage the id is asked again", id: 555, wantPerm: true, wantLookups: 5},
	}
	for _, tt := range tests {
		now = now.Add(tt.advance)
		down.Store(tt.down)
		err := decode(tt.id)
		if err == nil || deadletter.IsPermanent(err) != tt.wantPerm {
			t.Errorf("%s: err = %v, want permanent %v", tt.name, err, tt.wantPerm)
		}
		if got := lookups.Load(); got != tt.wantLookups {
			t.Errorf("%s: %d registry lookups, want %d", tt.name, got, tt.wantLookups)
		}
	}
}
