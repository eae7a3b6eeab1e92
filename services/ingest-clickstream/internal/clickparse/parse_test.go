package clickparse

import (
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/ecomstream/platform/pkg/deadletter"
)

var received = time.Date(2026, 11, 25, 21, 0, 1, 0, time.UTC)

func TestParseFullEvent(t *testing.T) {
	b, err := os.ReadFile("testdata/add_to_cart.json")
	if err != nil {
		t.Fatal(err)
	}
	p := &Parser{MaxBytes: 64 << 10, Source: "kafka"}
	ev, err := p.Parse(b, received)
	if err != nil {
		t.Fatal(err)
	}
	wantTS := time.Date(2026, 11, 25, 21, 0, 0, 123456000, time.UTC)
	checks := []struct {
		name      string
		got, want any
	}{
		{"event_id", ev.EventID, "9b2f6a4e-1c1d-4d4c-8f64-0f1f7b0e2a11"},
		{"event_timestamp", ev.EventTimestamp, wantTS},
		{"received_at", ev.ReceivedAt, received},
		{"event_type", ev.EventType, "add_to_cart"},
		{"user_id", *ev.UserID, "u-000123"},
		{"device_type", *ev.DeviceType, "desktop"},
		{"browser", *ev.Browser, "Firefox"},
		{"country", *ev.Country, "DE"},
		{"city", *ev.City, "Berlin"},
		{"quantity", *ev.Quantity, 2},
		{"price_minor", *ev.PriceMinor, int64(1999)},
		{"currency", *ev.Currency, "EUR"},
		{"source", ev.Source, "kafka"},
		{"no search_query", ev.SearchQuery == nil, true},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

func TestParseRejections(t *testing.T) {
	const ok = `"event_id":"e1","event_timestamp":"2026-11-25T21:00:00Z","event_type":"page_view","session_id":"s1","page_url":"https://x.example/"`
	tests := []struct {
		name      string
		give      string
		wantCode  deadletter.Code
		wantField string
		wantN     int // number of reasons, 0 = don't care
	}{
		{name: "truncated", give: `{` + ok, wantCode: deadletter.MalformedJSON},
		{name: "not json", give: `hello`, wantCode: deadletter.MalformedJSON},
		{name: "array", give: `[1,2]`, wantCode: deadletter.MalformedJSON},
		{name: "empty", give: ``, wantCode: deadletter.MalformedJSON},
		{name: "bad utf8", give: "{" + ok + `,"city":"` + "\xff" + `"}`, wantCode: deadletter.MalformedJSON},
		{name: "quantity string", give: `{` + ok + `,"quantity":"two"}`, wantCode: deadletter.WrongType, wantField: "quantity"},
		{name: "session number", give: `{"event_id":"e1","event_timestamp":"2026-11-25T21:00:00Z","event_type":"page_view","session_id":42,"page_url":"https://x/"}`, wantCode: deadletter.WrongType, wantField: "session_id"},
		{name: "timestamp number", give: `{"event_id":"e1","event_timestamp":1764104400,"event_type":"page_view","session_id":"s","page_url":"https://x/"}`, wantCode: deadletter.WrongType, wantField: "event_timestamp"},
		{name: "device string", give: `{` + ok + `,"device":"iphone"}`, wantCode: deadletter.WrongType, wantField: "device"},
		{name: "quantity overflow", give: `{` + ok + `,"quantity":9999999999}`, wantCode: deadletter.WrongType, wantField: "quantity"},
		{name: "price bool", give: `{` + ok + `,"price":true,"currency":"USD"}`, wantCode: deadletter.WrongType, wantField: "price"},
		{name: "missing two", give: `{"event_id":"e1","event_type":"page_view","session_id":"s1"}`, wantCode: deadletter.MissingField, wantField: "event_timestamp", wantN: 2},
		{name: "null required", give: `{"event_id":null,"event_timestamp":"2026-11-25T21:00:00Z","event_type":"page_view","session_id":"s1","page_url":"https://x/"}`, wantCode: deadletter.MissingField, wantField: "event_id"},
		{name: "unknown type", give: `{"event_id":"e1","event_timestamp":"2026-11-25T21:00:00Z","event_type":"hover","session_id":"s1","page_url":"https://x/"}`, wantCode: deadletter.UnknownEventType, wantField: "event_type"},
		{name: "bad timestamp", give: `{"event_id":"e1","event_timestamp":"yesterday","event_type":"page_view","session_id":"s1","page_url":"https://x/"}`, wantCode: deadletter.InvalidValue, wantField: "event_timestamp"},
		{name: "impossible date", give: `{"event_id":"e1","event_timestamp":"2026-13-45T00:00:00Z","event_type":"page_view","session_id":"s1","page_url":"https://x/"}`, wantCode: deadletter.InvalidValue, wantField: "event_timestamp"},
		{name: "no zone", give: `{"event_id":"e1","event_timestamp":"2026-11-25T21:00:00","event_type":"page_view","session_id":"s1","page_url":"https://x/"}`, wantCode: deadletter.InvalidValue, wantField: "event_timestamp"},
		{name: "price too precise", give: `{` + ok + `,"price":"1.999","currency":"USD"}`, wantCode: deadletter.InvalidValue, wantField: "price"},
		{name: "price without currency", give: `{` + ok + `,"price":1.5}`, wantCode: deadletter.InvalidValue, wantField: "currency"},
		{name: "bad currency", give: `{` + ok + `,"price":1.5,"currency":"usd"}`, wantCode: deadletter.InvalidValue, wantField: "currency"},
		{name: "long id", give: `{"event_id":"` + strings.Repeat("x", 200) + `","event_timestamp":"2026-11-25T21:00:00Z","event_type":"page_view","session_id":"s1","page_url":"https://x/"}`, wantCode: deadletter.InvalidValue, wantField: "event_id"},
		{name: "oversized", give: `{` + ok + `,"user_agent":"` + strings.Repeat("a", 70<<10) + `"}`, wantCode: deadletter.Oversized},
	}
	p := &Parser{MaxBytes: 64 << 10, Source: "kafka"}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := p.Parse([]byte(tt.give), received)
			rej, isRej := deadletter.AsRejection(err)
			if !isRej {
				t.Fatalf("err = %v, want a rejection", err)
			}
			r := rej.Reasons[0]
			if r.Code != tt.wantCode || r.Field != tt.wantField {
				t.Errorf("first reason = %v, want %s on %q", r, tt.wantCode, tt.wantField)
			}
			if tt.wantN > 0 && len(rej.Reasons) != tt.wantN {
				t.Errorf("got %d reasons, want %d: %v", len(rej.Reasons), tt.wantN, rej)
			}
			if rej.Entity != Entity || r.Message == "" {
				t.Errorf("rejection lacks entity or message: %+v", rej)
			}
		})
	}
}

func TestMinorUnits(t *testing.T) {
	tests := []struct {
		give, cur string
		want      int64
		wantErr   bool
	}{
		{"19.99", "USD", 1999, false},
		{"19.9", "USD", 1990, false},
		{"19", "USD", 1900, false},
		{"19.990", "USD", 1999, false},
		{"0.01", "EUR", 1, false},
		{"-5.25", "GBP", -525, false},
		{"1500", "JPY", 1500, false},
		{"1500.5", "JPY", 0, true},
		{"1.234", "KWD", 1234, false},
		{"1e3", "USD", 100000, false},
		{"1.5e2", "USD", 15000, false},
		{"1999E-2", "USD", 1999, false},
		{"1.5e-1", "USD", 15, false},
		{"1.5e-3", "USD", 0, true},
		{"0e999999999999", "USD", 0, false},
		{"1e999999999999", "USD", 0, true},
		{"1e-999999999999", "USD", 0, true},
		{"-0", "USD", 0, false},
		{"92233720368547758.07", "USD", 1<<63 - 1, false},
		{"-92233720368547758.08", "USD", -1 << 63, false},
		{"92233720368547758.08", "USD", 0, true},
		{"01.5", "USD", 0, true},
		{"00", "USD", 0, true},
		{"1.5.", "USD", 0, true},
		{"1.", "USD", 0, true},
		{".5", "USD", 0, true},
		{"abc", "USD", 0, true},
		{"99999999999999999999", "USD", 0, true},
		{"--5", "USD", 0, true},
		{"-", "USD", 0, true},
		{"+5", "USD", 0, true},
		{"1.-5", "USD", 0, true},
		{" 2.50 ", "USD", 0, true},
		{"", "USD", 0, true},
	}
	for _, tt := range tests {
		got, err := MinorUnits(tt.give, tt.cur)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("MinorUnits(%q, %s) = %d, %v; want %d, err %v", tt.give, tt.cur, got, err, tt.want, tt.wantErr)
		}
	}
}

func BenchmarkParse(b *testing.B) {
	raw, err := os.ReadFile("testdata/add_to_cart.json")
	if err != nil {
		b.Fatal(err)
	}
	p := &Parser{MaxBytes: 64 << 10, Source: "kafka"}
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.Parse(raw, received); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseRejected(b *testing.B) {
	raw := []byte(`{"event_id":"e1","event_timestamp":"2026-11-25T21:00:00Z","event_type":"page_view","session_id":42,"page_url":"https://x.example/","quantity":"two"}`)
	p := &Parser{MaxBytes: 64 << 10, Source: "kafka"}
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.Parse(raw, received); err == nil {
			b.Fatal("accepted")
		}
	}
}

// manyEscapedStrings is a ~60 KB record whose unknown member holds thousands of short strings
// with an escape each: any producer can send it.
func manyEscapedStrings() []byte {
	var b strings.Builder
	b.WriteString(`{"event_id":"e1","event_timestamp":"2026-11-25T21:00:00Z","event_type":"page_view","session_id":"s","page_url":"https://x.example/","extra":[`)
	for i := range 10000 {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`"a\n"`)
	}
	b.WriteString(`]}`)
	return []byte(b.String())
}

// A string with an escape costs memory in proportion to itself, not to the rest of the record:
// a record of many escaped strings allocated its size squared (323 MB for 60 KB) and stalled the
// stage. Allocated bytes are counted, not timed.
func TestEscapedStringsCostTheirOwnSize(t *testing.T) {
	raw := manyEscapedStrings()
	p := &Parser{MaxBytes: 64 << 10, Source: "kafka"}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	if _, err := p.Parse(raw, received); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	if got, limit := after.TotalAlloc-before.TotalAlloc, uint64(50*len(raw)); got > limit {
		t.Errorf("parsing a %d-byte record allocated %d bytes, want at most %d", len(raw), got, limit)
	}
}

func BenchmarkParseManyEscapedStrings(b *testing.B) {
	raw := manyEscapedStrings()
	p := &Parser{MaxBytes: 64 << 10, Source: "kafka"}
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.Parse(raw, received); err != nil {
			b.Fatal(err)
		}
	}
}

// TestRejectionKeepsTheEventID: a rejected event still names itself when its
// event_id is usable (the HTTP collector's answer lists it), and not when
// the event_id is the problem or the record is not JSON.
func TestRejectionKeepsTheEventID(t *testing.T) {
	tests := []struct {
		name string
		give string
		want string
	}{
		{"missing session", `{"event_id":"e1","event_timestamp":"2026-11-25T21:00:00Z","event_type":"page_view","page_url":"https://x.example/"}`, "e1"},
		{"unknown type", `{"event_id":"e2","event_timestamp":"2026-11-25T21:00:00Z","event_type":"nope","session_id":"s","page_url":"https://x.example/"}`, "e2"},
		{"event_id too long", `{"event_id":"` + strings.Repeat("x", 129) + `","event_type":"page_view"}`, ""},
		{"event_id not a string", `{"event_id":7,"event_type":"page_view"}`, ""},
		{"not JSON", `{"event_id":"e3",`, ""},
	}
	p := &Parser{MaxBytes: 64 << 10, Source: "http"}
	for _, tt := range tests {
		ev, err := p.Parse([]byte(tt.give), received)
		if !deadletter.IsPermanent(err) || ev.EventID != tt.want {
			t.Errorf("%s: event_id %q, err %v; want %q and a rejection", tt.name, ev.EventID, err, tt.want)
		}
	}
}
