package clickgen

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestAppendString(t *testing.T) {
	tests := []struct {
		name string
		give string
	}{
		{"empty", ""},
		{"plain", "wireless headphones"},
		{"quote and backslash", `say "hi" \ bye`},
		{"control characters", "a\nb\rc\td\x00e\x1f\x7f"},
		{"utf-8", "München, São Paulo, 東京, 🛒"},
		{"html is not escaped but still valid", "<a href='x'>&amp;</a>"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := appendString([]byte("prefix"), tt.give)
			if !strings.HasPrefix(string(b), "prefix") {
				t.Fatalf("prefix lost: %s", b)
			}
			var got string
			if err := json.Unmarshal(b[len("prefix"):], &got); err != nil {
				t.Fatalf("not a JSON string: %s: %v", b, err)
			}
			if got != tt.give {
				t.Errorf("round trip = %q, want %q", got, tt.give)
			}
		})
	}
}

func TestAppendPrice(t *testing.T) {
	tests := []struct {
		minor  int64
		digits int
		want   string
	}{
		{1999, 2, "19.99"},
		{5, 2, "0.05"},
		{100, 2, "1.00"},
		{0, 2, "0.00"},
		{123456799, 2, "1234567.99"},
		{2480, 0, "2480"},
	}
	for _, tt := range tests {
		if got := string(appendPrice(nil, tt.minor, tt.digits)); got != tt.want {
			t.Errorf("appendPrice(%d, %d) = %s, want %s", tt.minor, tt.digits, got, tt.want)
		}
	}
}

func TestAppendEvent(t *testing.T) {
	full := event{
		id:          "e-1",
		ts:          time.Date(2026, 11, 25, 21, 0, 0, 123456000, time.UTC),
		typ:         "add_to_cart",
		userID:      "u-000123",
		anonID:      "a-1",
		sessionID:   "s-1",
		pageURL:     "https://shop.ecomstream.dev/en-us/p/p-00042/x",
		referrer:    "https://www.google.com/",
		userAgent:   `UA "quoted"`,
		deviceType:  "mobile",
		os:          "iOS",
		browser:     "Safari",
		country:     "DE",
		region:      "Bavaria",
		city:        "München",
		productID:   "p-00042",
		searchQuery: "",
		quantity:    2,
		price:       1999,
		hasPrice:    true,
		currency:    curEUR,
		orderID:     "",
	}
	const fullJSON = `{"event_id":"e-1","event_timestamp":"2026-11-25T21:00:00.123456Z","event_type":"add_to_cart",` +
		`"user_id":"u-000123","anonymous_id":"a-1","session_id":"s-1","page_url":"https://shop.ecomstream.dev/en-us/p/p-00042/x",` +
		`"referrer":"https://www.google.com/","user_agent":"UA \"quoted\"","device":{"type":"mobile","os":"iOS","browser":"Safari"},` +
		`"geo":{"country":"DE","region":"Bavaria","city":"München"},"product_id":"p-00042","search_query":null,` +
		`"quantity":2,"price":19.99,"currency":"EUR","order_id":null}`
	jpy := full
	jpy.currency, jpy.price = curJPY, 2480
	minimal := event{id: "e-2", ts: full.ts, typ: "page_view", sessionID: "s-2", pageURL: "https://x/"}
	tests := []struct {
		name string
		give event
		p    patch
		want string
	}{
		{"full", full, patch{}, fullJSON},
		{"jpy has no fraction", jpy, patch{}, strings.Replace(strings.Replace(fullJSON, `"price":19.99`, `"price":2480`, 1), `"EUR"`, `"JPY"`, 1)},
		{"nulls", minimal, patch{},
			`{"event_id":"e-2","event_timestamp":"2026-11-25T21:00:00.123456Z","event_type":"page_view","user_id":null,` +
				`"anonymous_id":null,"session_id":"s-2","page_url":"https://x/","referrer":null,"user_agent":null,` +
				`"device":{"type":null,"os":null,"browser":null},"geo":{"country":null,"region":null,"city":null},` +
				`"product_id":null,"search_query":null,"quantity":null,"price":null,"currency":null,"order_id":null}`},
		{"omit first field", full, patch{field: "event_id", omit: true},
			strings.Replace(fullJSON, `"event_id":"e-1",`, "", 1)},
		{"omit middle field", full, patch{field: "page_url", omit: true},
			strings.Replace(fullJSON, `"page_url":"https://shop.ecomstream.dev/en-us/p/p-00042/x",`, "", 1)},
		{"replace value", full, patch{field: "quantity", raw: `"two"`},
			strings.Replace(fullJSON, `"quantity":2`, `"quantity":"two"`, 1)},
		{"raw timestamp", func() event { e := full; e.tsRaw = "yesterday"; return e }(), patch{},
			strings.Replace(fullJSON, "2026-11-25T21:00:00.123456Z", "yesterday", 1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := string(appendEvent(nil, &tt.give, tt.p))
			if got != tt.want {
				t.Errorf("got\n%s\nwant\n%s", got, tt.want)
			}
			if !json.Valid([]byte(got)) {
				t.Errorf("not valid JSON: %s", got)
			}
		})
	}
}

func TestOversizedUserAgent(t *testing.T) {
	for _, n := range []int{MaxValueBytes + 1, MaxValueBytes + 4096} {
		ua := oversizedUserAgent("Mozilla/5.0 (X11)", n)
		if len(ua) != n || !strings.HasPrefix(ua, "Mozilla/5.0 (X11) state/") {
			t.Errorf("n=%d: got %d bytes starting %.30q", n, len(ua), ua)
		}
	}
}

// BenchmarkEncode compares the hand-written encoder with encoding/json on an
// equivalent struct, the alternative the hot path was measured against.
func BenchmarkEncode(b *testing.B) {
	e := event{
		id: "dbb0fa0a-2b9a-42b9-b41c-22c7eec2dafb", ts: time.Now().UTC(), typ: "add_to_cart",
		anonID: "34c1f97a-af44-440a-8f66-a7f2db0574fd", sessionID: "52592267-adb5-4057-8f88-f023b9149afe",
		pageURL: "https://shop.ecomstream.dev/en-us/p/p-00042/northpeak-trail-runner-pro", referrer: "https://www.google.com/",
		userAgent: clients[0].userAgent, deviceType: "desktop", os: "Windows", browser: "Chrome",
		country: "US", region: "CA", city: "San Francisco", productID: "p-00042", quantity: 1, price: 1999, hasPrice: true,
	}
	b.Run("hand-written", func(b *testing.B) {
		var buf []byte
		b.ReportAllocs()
		for b.Loop() {
			buf = appendEvent(buf[:0], &e, patch{})
		}
	})
	b.Run("encoding/json", func(b *testing.B) {
		type device struct {
			Type    *string `json:"type"`
			OS      *string `json:"os"`
			Browser *string `json:"browser"`
		}
		type geo struct {
			Country *string `json:"country"`
			Region  *string `json:"region"`
			City    *string `json:"city"`
		}
		type wire struct {
			EventID        string      `json:"event_id"`
			EventTimestamp string      `json:"event_timestamp"`
			EventType      string      `json:"event_type"`
			UserID         *string     `json:"user_id"`
			AnonymousID    *string     `json:"anonymous_id"`
			SessionID      string      `json:"session_id"`
			PageURL        string      `json:"page_url"`
			Referrer       *string     `json:"referrer"`
			UserAgent      *string     `json:"user_agent"`
			Device         *device     `json:"device"`
			Geo            *geo        `json:"geo"`
			ProductID      *string     `json:"product_id"`
			SearchQuery    *string     `json:"search_query"`
			Quantity       *int        `json:"quantity"`
			Price          json.Number `json:"price"`
			Currency       *string     `json:"currency"`
			OrderID        *string     `json:"order_id"`
		}
		ptr := func(s string) *string {
			if s == "" {
				return nil
			}
			return &s
		}
		b.ReportAllocs()
		for b.Loop() {
			w := wire{
				EventID: e.id, EventTimestamp: e.ts.Format(timestampLayout), EventType: e.typ,
				UserID: ptr(e.userID), AnonymousID: ptr(e.anonID), SessionID: e.sessionID, PageURL: e.pageURL,
				Referrer: ptr(e.referrer), UserAgent: ptr(e.userAgent),
				Device:    &device{ptr(e.deviceType), ptr(e.os), ptr(e.browser)},
				Geo:       &geo{ptr(e.country), ptr(e.region), ptr(e.city)},
				ProductID: ptr(e.productID), SearchQuery: ptr(e.searchQuery), Quantity: &e.quantity,
				Price: json.Number(appendPrice(nil, e.price, 2)), Currency: ptr(currencyCodes[e.currency]), OrderID: ptr(e.orderID),
			}
			if _, err := json.Marshal(&w); err != nil {
				b.Fatal(err)
			}
		}
	})
}
