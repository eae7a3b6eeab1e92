package clickgen_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ecomstream/platform/deploy/local/clickgen"
)

// clock is a fake wall clock that moves forward a little on every reading,
// like the real one under load; last is the latest reading, which the
// checks use as "now".
type clock struct{ last time.Time }

func newClock() *clock {
	// Not UTC on purpose: the generator must convert.
	return &clock{last: time.Date(2026, 11, 25, 22, 0, 0, 123456789, time.FixedZone("CET", 3600))}
}

func (c *clock) now() time.Time {
	c.last = c.last.Add(37*time.Microsecond + 499*time.Nanosecond)
	return c.last
}

func generate(n int, opts ...clickgen.Option) ([]clickgen.Record, *clock) {
	c := newClock()
	g := clickgen.New(append([]clickgen.Option{clickgen.WithClock(c.now)}, opts...)...)
	recs := make([]clickgen.Record, n)
	for i := range recs {
		recs[i] = g.Next()
	}
	return recs, c
}

func TestValidRecordsFollowTheContract(t *testing.T) {
	recs, c := generate(50_000, clickgen.WithSeed(1), clickgen.WithBrokenFraction(0))
	types := map[string]int{}
	for i, r := range recs {
		vs, e := violations(r.Value, c.last)
		if len(vs) > 0 {
			t.Fatalf("record %d: violations %v in valid record %s", i, vs, r.Value)
		}
		if errs := shapeErrors(e); len(errs) > 0 {
			t.Fatalf("record %d: %v in %s", i, errs, r.Value)
		}
		if want := (clickgen.Expectation{Valid: true, Kind: clickgen.KindValid}); r.Expect != want {
			t.Fatalf("record %d: Expect = %+v, want %+v", i, r.Expect, want)
		}
		if r.EventID != *e.EventID || string(r.Key) != *e.SessionID || r.Duplicate {
			t.Fatalf("record %d: EventID %q, Key %q, Duplicate %v do not match %s", i, r.EventID, r.Key, r.Duplicate, r.Value)
		}
		types[*e.EventType]++
	}
	for typ := range eventTypes {
		if types[typ] == 0 {
			t.Errorf("no %s event in %d records", typ, len(recs))
		}
	}
	t.Logf("event types: %v", types)
}

func TestOptionExtremes(t *testing.T) {
	tests := []struct {
		name string
		opts []clickgen.Option
	}{
		{"one visitor, one session", []clickgen.Option{clickgen.WithUsers(1), clickgen.WithConcurrentSessions(1)}},
		{"ignored non-positive sizes", []clickgen.Option{clickgen.WithUsers(0), clickgen.WithConcurrentSessions(-1)}},
		{"nil clock keeps the default", []clickgen.Option{clickgen.WithClock(nil)}},
		{"many visitors", []clickgen.Option{clickgen.WithUsers(200_000)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := clickgen.New(append([]clickgen.Option{clickgen.WithSeed(2), clickgen.WithBrokenFraction(0)}, tt.opts...)...)
			for i := range 2000 {
				r := g.Next()
				if vs, _ := violations(r.Value, time.Now()); len(vs) > 0 {
					t.Fatalf("record %d: %v in %s", i, vs, r.Value)
				}
			}
		})
	}
}

func TestBrokenKinds(t *testing.T) {
	field := func(v []byte, name string) any {
		var m map[string]any
		if err := json.Unmarshal(v, &m); err != nil {
			return nil
		}
		return m[name]
	}
	tests := []struct {
		kind, stage, code, rule string
		// variant names the form a record took, so the test can check that
		// every documented form is produced.
		variant      func(v []byte) string
		wantVariants []string
	}{
		{
			kind: "malformed_json", stage: "ingest-clickstream", code: "MALFORMED_JSON",
			variant: func(v []byte) string {
				switch {
				case bytes.HasPrefix(v, []byte(`{"event_id":`)):
					return "truncated"
				case bytes.HasPrefix(v, []byte(`{'`)):
					return "python repr"
				}
				return "not json"
			},
			wantVariants: []string{"truncated", "python repr", "not json"},
		},
		{
			kind: "wrong_type", stage: "ingest-clickstream", code: "WRONG_TYPE",
			variant: func(v []byte) string {
				for _, f := range []string{"quantity", "session_id", "event_timestamp"} {
					if x := field(v, f); x != nil {
						if _, isStr := x.(string); (f == "quantity") == isStr {
							return f
						}
					}
				}
				return "?"
			},
			wantVariants: []string{"quantity", "session_id", "event_timestamp"},
		},
		{
			kind: "missing_field", stage: "ingest-clickstream", code: "MISSING_FIELD",
			variant: func(v []byte) string {
				var m map[string]json.RawMessage
				_ = json.Unmarshal(v, &m)
				for _, f := range []string{"event_id", "event_timestamp", "event_type", "session_id", "page_url"} {
					if _, ok := m[f]; !ok {
						return f
					}
				}
				return "?"
			},
			wantVariants: []string{"event_id", "event_timestamp", "event_type", "session_id", "page_url"},
		},
		{
			kind: "unknown_event_type", stage: "ingest-clickstream", code: "UNKNOWN_EVENT_TYPE",
			variant:      func(v []byte) string { return fmt.Sprint(field(v, "event_type")) },
			wantVariants: []string{"hover", "scroll", "share", "video_play"},
		},
		{
			kind: "oversized", stage: "ingest-clickstream", code: "OVERSIZED",
			variant:      func(v []byte) string { return "oversized" },
			wantVariants: []string{"oversized"},
		},
		{
			kind: "bad_timestamp", stage: "ingest-clickstream", code: "INVALID_VALUE",
			variant: func(v []byte) string {
				if ts := fmt.Sprint(field(v, "event_timestamp")); ts != "yesterday" {
					return ts[4:10] // "-13-45"
				}
				return "yesterday"
			},
			wantVariants: []string{"yesterday", "-13-45"},
		},
		{
			kind: "future_timestamp", stage: "validator", code: "RULE_FAILED", rule: "click.timestamp_not_future",
			variant:      func(v []byte) string { return "future" },
			wantVariants: []string{"future"},
		},
		{
			kind: "stale_timestamp", stage: "validator", code: "RULE_FAILED", rule: "click.timestamp_within_window",
			variant:      func(v []byte) string { return "stale" },
			wantVariants: []string{"stale"},
		},
		{
			kind: "bad_url", stage: "validator", code: "RULE_FAILED", rule: "click.page_url_valid",
			variant:      func(v []byte) string { return fmt.Sprint(field(v, "page_url")) },
			wantVariants: []string{"not a url", "ftp//x"},
		},
		{
			kind: "missing_identity", stage: "validator", code: "RULE_FAILED", rule: "click.required_fields",
			variant:      func(v []byte) string { return "no identity" },
			wantVariants: []string{"no identity"},
		},
	}
	if got, want := len(tests), len(clickgen.BrokenKinds()); got != want {
		t.Fatalf("test covers %d kinds, BrokenKinds has %d", got, want)
	}
	for _, tt := range tests {
		t.Run(tt.kind, func(t *testing.T) {
			want := clickgen.Expectation{Kind: tt.kind, Stage: tt.stage, Code: tt.code, RuleID: tt.rule}
			if got, ok := clickgen.ExpectationFor(tt.kind); !ok || got != want {
				t.Fatalf("ExpectationFor(%q) = %+v, %v; want %+v", tt.kind, got, ok, want)
			}
			recs, c := generate(400, clickgen.WithSeed(7), clickgen.WithBrokenFraction(1), clickgen.WithBrokenKinds(tt.kind))
			variants := map[string]bool{}
			for i, r := range recs {
				if r.Expect != want {
					t.Fatalf("record %d: Expect = %+v, want %+v", i, r.Expect, want)
				}
				vs, e := violations(r.Value, c.last)
				if !slices.Equal(vs, []string{tt.kind}) {
					t.Fatalf("record %d: violations %v, want exactly [%s]; value %.300s", i, vs, tt.kind, r.Value)
				}
				if tt.kind != "oversized" && len(r.Value) > clickgen.MaxValueBytes {
					t.Fatalf("record %d: %d bytes, over the size limit", i, len(r.Value))
				}
				wantID := ""
				if e != nil && e.EventID != nil {
					wantID = *e.EventID
				}
				if tt.kind == "oversized" || tt.kind == "wrong_type" { // parseable, but not into rawEvent
					var m struct {
						EventID string `json:"event_id"`
					}
					_ = json.Unmarshal(r.Value, &m)
					wantID = m.EventID
				}
				if r.EventID != wantID {
					t.Fatalf("record %d: EventID %q, want %q", i, r.EventID, wantID)
				}
				if tt.kind != "malformed_json" && tt.kind != "missing_field" && r.EventID == "" {
					t.Fatalf("record %d: parseable %s record without event id", i, tt.kind)
				}
				if len(r.Key) == 0 {
					t.Fatalf("record %d: empty key", i)
				}
				variants[tt.variant(r.Value)] = true
			}
			if got := slices.Sorted(maps.Keys(variants)); !slices.Equal(got, slices.Sorted(slices.Values(tt.wantVariants))) {
				t.Errorf("variants %v, want %v", got, tt.wantVariants)
			}
		})
	}
}

// TestFunnels replays every session like the shop would have to for the
// events to make sense: same visitor throughout, one page after another, a
// cart that never goes negative, and purchases only after checkout.
func TestFunnels(t *testing.T) {
	n := 100_000
	if testing.Short() {
		n = 20_000
	}
	recs, c := generate(n, clickgen.WithSeed(3), clickgen.WithBrokenFraction(0))
	prices := map[string]map[string]int64{}
	for _, p := range clickgen.Catalog() {
		prices[p.ID] = p.PriceMinor
	}
	type state struct {
		visitor   string
		prev      *rawEvent
		prevTS    string
		cart      map[string]int32
		checkout  bool
		currency  string
		events    int
		added     bool
		purchased bool
	}
	sessions := map[string]*state{}
	orders := map[string]bool{}
	for i, r := range recs {
		vs, e := violations(r.Value, c.last)
		if e == nil {
			t.Fatalf("record %d: %v", i, vs)
		}
		fail := func(format string, args ...any) {
			t.Helper()
			t.Fatalf("record %d (%s in session %s): %s", i, *e.EventType, *e.SessionID, fmt.Sprintf(format, args...))
		}
		visitor := strings.Join([]string{deref(e.AnonymousID), deref(e.UserAgent),
			deref(e.Device.Type), deref(e.Geo.Country), deref(e.Geo.City)}, "|")
		s := sessions[*e.SessionID]
		if s == nil {
			if *e.EventType != "page_view" {
				fail("session starts with %s", *e.EventType)
			}
			if e.Referrer != nil && strings.HasPrefix(*e.Referrer, "https://shop.ecomstream.dev/") {
				fail("landing page has an internal referrer %s", *e.Referrer)
			}
			s = &state{visitor: visitor, cart: map[string]int32{}}
			sessions[*e.SessionID] = s
		} else {
			if visitor != s.visitor {
				fail("visitor changed from %s to %s", s.visitor, visitor)
			}
			navigated := deref(e.Referrer) == *s.prev.PageURL
			samePage := *e.PageURL == *s.prev.PageURL && deref(e.Referrer) == deref(s.prev.Referrer)
			if !navigated && !samePage {
				fail("page %s (referrer %s) does not follow %s", *e.PageURL, deref(e.Referrer), *s.prev.PageURL)
			}
			if *e.EventTimestamp < s.prevTS {
				fail("timestamp %s before %s", *e.EventTimestamp, s.prevTS)
			}
			// The user_id stays once there, and appears mid-session only
			// at begin_checkout: a login (or sign-up) to check out.
			switch prev, now := s.prev.UserID, e.UserID; {
			case prev != nil && (now == nil || *now != *prev):
				fail("user_id changed from %s to %s", *prev, deref(now))
			case prev == nil && now != nil && *e.EventType != "begin_checkout":
				fail("user_id %s appears at %s, not at checkout", *now, *e.EventType)
			}
		}
		if e.Price != nil {
			if s.currency == "" {
				s.currency = *e.Currency
			}
			if *e.Currency != s.currency {
				fail("currency changed from %s to %s", s.currency, *e.Currency)
			}
			if got, want := minorUnits(t, string(*e.Price)), prices[*e.ProductID][*e.Currency]; got != want {
				fail("price %s %s for %s, catalog has %d minor units", *e.Price, *e.Currency, *e.ProductID, want)
			}
		}
		switch *e.EventType {
		case "add_to_cart":
			s.cart[*e.ProductID] += *e.Quantity
			s.added = true
		case "remove_from_cart":
			if s.cart[*e.ProductID] < *e.Quantity {
				fail("removes %d of %s, cart has %d", *e.Quantity, *e.ProductID, s.cart[*e.ProductID])
			}
			s.cart[*e.ProductID] -= *e.Quantity
			if s.cart[*e.ProductID] == 0 {
				delete(s.cart, *e.ProductID)
			}
		case "begin_checkout":
			if len(s.cart) == 0 {
				fail("checkout with an empty cart")
			}
			s.checkout = true
		case "purchase":
			if e.UserID == nil {
				fail("purchase without a user_id")
			}
			if !s.checkout || len(s.cart) == 0 {
				fail("purchase without checkout (%v) or with an empty cart (%v)", s.checkout, s.cart)
			}
			if orders[*e.OrderID] {
				fail("order id %s reused", *e.OrderID)
			}
			if !strings.Contains(*e.PageURL, *e.OrderID) {
				fail("confirmation page %s does not name order %s", *e.PageURL, *e.OrderID)
			}
			orders[*e.OrderID] = true
			s.cart, s.checkout, s.purchased = map[string]int32{}, false, true
		}
		s.prev, s.prevTS = e, *e.EventTimestamp
		s.events++
	}

	var bounced, added, purchased int
	for _, s := range sessions {
		if s.events == 1 {
			bounced++
		}
		if s.added {
			added++
		}
		if s.purchased {
			purchased++
		}
	}
	ns := float64(len(sessions))
	rates := []struct {
		name     string
		got      float64
		min, max float64
	}{
		{"bounce", float64(bounced) / ns, 0.20, 0.50},
		{"add to cart", float64(added) / ns, 0.04, 0.20},
		{"conversion", float64(purchased) / ns, 0.01, 0.06},
	}
	for _, r := range rates {
		if r.got < r.min || r.got > r.max {
			t.Errorf("%s rate %.3f outside [%.2f, %.2f]", r.name, r.got, r.min, r.max)
		}
	}
	t.Logf("%d sessions, %.1f events/session, bounce %.1f%%, add to cart %.1f%%, conversion %.1f%%",
		len(sessions), float64(len(recs))/ns, 100*rates[0].got, 100*rates[1].got, 100*rates[2].got)
}

func TestDeterminism(t *testing.T) {
	tests := []struct {
		name         string
		seedA, seedB uint64
		wantSame     bool
	}{
		{"same seed", 42, 42, true},
		{"different seeds", 42, 43, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := []clickgen.Option{clickgen.WithBrokenFraction(0.1), clickgen.WithDuplicateFraction(0.05)}
			a, _ := generate(5000, append(opts, clickgen.WithSeed(tt.seedA))...)
			b, _ := generate(5000, append(opts, clickgen.WithSeed(tt.seedB))...)
			if same := reflect.DeepEqual(a, b); same != tt.wantSame {
				t.Errorf("records identical = %v, want %v", same, tt.wantSame)
			}
		})
	}
}

func TestFractions(t *testing.T) {
	const n = 100_000
	tests := []struct {
		name        string
		opts        []clickgen.Option
		broken, dup float64
	}{
		{"defaults", nil, 0.01, 0},
		{"no broken", []clickgen.Option{clickgen.WithBrokenFraction(0)}, 0, 0},
		{"broken and duplicates", []clickgen.Option{clickgen.WithBrokenFraction(0.05), clickgen.WithDuplicateFraction(0.02)}, 0.05, 0.02},
		{"all broken", []clickgen.Option{clickgen.WithBrokenFraction(1)}, 1, 0},
		{"clamped", []clickgen.Option{clickgen.WithBrokenFraction(-3), clickgen.WithDuplicateFraction(math.NaN())}, 0, 0},
		{"unknown kinds only", []clickgen.Option{clickgen.WithBrokenFraction(0.5), clickgen.WithBrokenKinds("hover", "valid")}, 0, 0},
	}
	// within reports whether a binomial count is within 5 standard deviations
	// of its mean: loose enough never to flake with a fixed seed anyway, tight
	// enough to catch a fraction that is off by a factor.
	within := func(got int, p float64, n int) bool {
		mean := p * float64(n)
		return math.Abs(float64(got)-mean) <= 5*math.Sqrt(mean*(1-p))+1
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			recs, _ := generate(n, append([]clickgen.Option{clickgen.WithSeed(11)}, tt.opts...)...)
			var broken, dup int
			byKind := map[string]int{}
			for _, r := range recs {
				switch {
				case r.Duplicate:
					dup++
				case !r.Expect.Valid:
					broken++
					byKind[r.Expect.Kind]++
				}
			}
			if !within(broken, tt.broken, n) {
				t.Errorf("%d broken records, want about %.0f", broken, tt.broken*n)
			}
			if !within(dup, tt.dup, n) {
				t.Errorf("%d duplicates, want about %.0f", dup, tt.dup*n)
			}
			if broken > 0 {
				perKind := 1 / float64(len(clickgen.BrokenKinds()))
				for _, k := range clickgen.BrokenKinds() {
					if !within(byKind[k], perKind, broken) {
						t.Errorf("%d %s records of %d broken, want about %.0f", byKind[k], k, broken, perKind*float64(broken))
					}
				}
			}
		})
	}
}

// TestIdentity checks what the end-to-end tests match on: event ids and
// values are unique except for duplicates, which repeat an earlier valid
// record exactly.
func TestIdentity(t *testing.T) {
	recs, _ := generate(100_000, clickgen.WithSeed(5), clickgen.WithBrokenFraction(0.05), clickgen.WithDuplicateFraction(0.02))
	ids := map[string]int{}
	values := map[string]int{}
	for i, r := range recs {
		if r.Duplicate {
			j, ok := values[string(r.Value)]
			switch {
			case !ok:
				t.Fatalf("duplicate %d repeats no earlier record", i)
			case !recs[j].Expect.Valid || recs[j].Duplicate:
				t.Fatalf("duplicate %d repeats record %d, which is not an original valid record", i, j)
			case r.EventID != recs[j].EventID || !bytes.Equal(r.Key, recs[j].Key) || r.Expect != recs[j].Expect:
				t.Fatalf("duplicate %d differs from record %d: %+v vs %+v", i, j, r, recs[j])
			case &r.Value[0] == &recs[j].Value[0]:
				t.Fatalf("duplicate %d shares its value's memory with record %d", i, j)
			}
			continue
		}
		if j, ok := values[string(r.Value)]; ok {
			t.Fatalf("records %d and %d have the same value", j, i)
		}
		values[string(r.Value)] = i
		if r.EventID == "" {
			continue
		}
		if j, ok := ids[r.EventID]; ok {
			t.Fatalf("records %d and %d share event id %s", j, i, r.EventID)
		}
		ids[r.EventID] = i
	}
}

func TestCatalog(t *testing.T) {
	ps := clickgen.Catalog()
	if len(ps) != clickgen.DefaultProducts {
		t.Fatalf("%d products, want %d", len(ps), clickgen.DefaultProducts)
	}
	if !reflect.DeepEqual(ps, clickgen.Catalog()) {
		t.Fatal("Catalog differs between calls")
	}
	for i, p := range ps {
		if want := fmt.Sprintf("p-%05d", i+1); p.ID != want {
			t.Errorf("product %d id %q, want %q", i, p.ID, want)
		}
		if p.Name == "" || p.Category == "" || p.Brand == "" {
			t.Errorf("%s: incomplete %+v", p.ID, p)
		}
		for cur, ok := range map[string]func(int64) bool{
			"USD": func(m int64) bool { return m%100 == 99 },
			"EUR": func(m int64) bool { return m%100 == 99 },
			"GBP": func(m int64) bool { return m%100 == 99 },
			"JPY": func(m int64) bool { return m > 0 && m%10 == 0 },
		} {
			if m, found := p.PriceMinor[cur]; !found || !ok(m) {
				t.Errorf("%s: %s price %d (found %v) is not a shop price", p.ID, cur, m, found)
			}
		}
	}
}

func BenchmarkNext(b *testing.B) {
	tests := []struct {
		name string
		opts []clickgen.Option
	}{
		{"defaults", nil},
		{"valid only", []clickgen.Option{clickgen.WithBrokenFraction(0)}},
	}
	for _, tt := range tests {
		b.Run(tt.name, func(b *testing.B) {
			g := clickgen.New(append([]clickgen.Option{clickgen.WithSeed(1)}, tt.opts...)...)
			var bytes int
			b.ReportAllocs()
			for b.Loop() {
				bytes += len(g.Next().Value)
			}
			b.ReportMetric(float64(bytes)/float64(b.N), "B/record")
		})
	}
}

func deref(s *string) string {
	if s == nil {
		return "<nil>"
	}
	return *s
}

func minorUnits(t *testing.T, price string) int64 {
	t.Helper()
	m, err := strconv.ParseInt(strings.Replace(price, ".", "", 1), 10, 64)
	if err != nil {
		t.Fatalf("price %q: %v", price, err)
	}
	return m
}
