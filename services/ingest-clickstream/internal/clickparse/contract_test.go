package clickparse

import (
	"bytes"
	"encoding/json"
	"errors"
	"math/big"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/ecomstream/platform/pkg/deadletter"
	"github.com/ecomstream/platform/pkg/events"
)

// The oracle of these tests is the contract itself, read by a JSON Schema
// validator with format assertions on (date-time), not a second reading of it
// written here.
const contractPath = "../../../../proto/json/clickstream-raw.schema.json"

var contract = sync.OnceValues(func() (*jsonschema.Schema, error) {
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	return c.Compile(contractPath)
})

// contractVerdict is nil when in is valid against the contract.
func contractVerdict(t testing.TB, in []byte) (map[string]any, error) {
	t.Helper()
	sch, err := contract()
	if err != nil {
		t.Fatalf("compile the contract: %v", err)
	}
	if !utf8.Valid(in) {
		return nil, errors.New("not UTF-8 (RFC 8259 section 8.1)")
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(in))
	if err != nil {
		return nil, err
	}
	if err := sch.Validate(inst); err != nil {
		return nil, err
	}
	obj, _ := inst.(map[string]any)
	return obj, nil
}

var parserCodes = map[deadletter.Code]bool{
	deadletter.MalformedJSON: true, deadletter.WrongType: true, deadletter.MissingField: true,
	deadletter.Oversized: true, deadletter.UnknownEventType: true, deadletter.InvalidValue: true,
}

// strictRFC3339 is RFC 3339's date-time grammar (section 5.6); the validator
// library's date-time check is laxer in places (it takes "T+1:00:00Z").
var strictRFC3339 = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$`)

// beyondContract reports whether r is one of the parser's rules that the JSON
// Schema cannot express (the service README, "Rejections"), so that a record valid
// against the schema may still fail it.
func beyondContract(r deadletter.Reason, obj map[string]any) bool {
	switch {
	case r.Code == deadletter.Oversized:
		return true
	case r.Code == deadletter.InvalidValue && (r.Field == "price" || r.Field == "currency"):
		return true // decimals per currency, int64 range, currency required with a price
	case r.Code == deadletter.InvalidValue && r.Field == "event_timestamp":
		ts, _ := obj["event_timestamp"].(string)
		return !strictRFC3339.MatchString(ts) || ts[17:19] == "60" // library laxness; leap seconds
	}
	return false
}

// checkVerdict is the property: an accepted record is valid against the
// contract and says what the record says; a rejection is typed, and only
// rules beyond the contract reject a record the contract accepts.
func checkVerdict(t *testing.T, p *Parser, in []byte) (events.ClickEvent, error) {
	t.Helper()
	ev, err := p.Parse(in, received)
	obj, verr := contractVerdict(t, in)
	if err == nil {
		if verr != nil {
			t.Fatalf("accepted a record the contract rejects: %#v\ninput: %q", verr, in)
		}
		checkSameAs(t, ev, obj)
		return ev, nil
	}
	var rej *deadletter.Rejection
	if !errors.As(err, &rej) || err != error(rej) {
		t.Fatalf("rejection is %T %v, want a *deadletter.Rejection", err, err)
	}
	if rej.Entity != Entity || len(rej.Reasons) == 0 {
		t.Fatalf("rejection without entity or reasons: %+v", rej)
	}
	for _, r := range rej.Reasons {
		if !parserCodes[r.Code] || r.Message == "" || !utf8.ValidString(r.Message) {
			t.Fatalf("untyped or unreadable reason %+v", r)
		}
		if r.Field == "" && r.Code != deadletter.MalformedJSON && r.Code != deadletter.Oversized {
			t.Fatalf("reason %s names no field: %+v", r.Code, r)
		}
		if verr == nil && !beyondContract(r, obj) {
			t.Fatalf("rejected a record the contract accepts: %v\ninput: %q", r, in)
		}
	}
	return ev, err
}

// checkSameAs compares an accepted event with the record as the validator
// library decoded it (encoding/json, numbers as text).
func checkSameAs(t *testing.T, ev events.ClickEvent, obj map[string]any) {
	t.Helper()
	sub := func(name string) map[string]any { m, _ := obj[name].(map[string]any); return m }
	device, geo := sub("device"), sub("geo")
	strs := []struct {
		name string
		in   map[string]any
		key  string
		got  *string
	}{
		{"event_id", obj, "event_id", &ev.EventID}, {"event_type", obj, "event_type", &ev.EventType},
		{"session_id", obj, "session_id", &ev.SessionID}, {"page_url", obj, "page_url", &ev.PageURL},
		{"user_id", obj, "user_id", ev.UserID}, {"anonymous_id", obj, "anonymous_id", ev.AnonymousID},
		{"referrer", obj, "referrer", ev.Referrer}, {"user_agent", obj, "user_agent", ev.UserAgent},
		{"product_id", obj, "product_id", ev.ProductID}, {"search_query", obj, "search_query", ev.SearchQuery},
		{"currency", obj, "currency", ev.Currency}, {"order_id", obj, "order_id", ev.OrderID},
		{"device.type", device, "type", ev.DeviceType}, {"device.os", device, "os", ev.Os}, {"device.browser", device, "browser", ev.Browser},
		{"geo.country", geo, "country", ev.Country}, {"geo.region", geo, "region", ev.Region}, {"geo.city", geo, "city", ev.City},
	}
	for _, s := range strs {
		want, _ := s.in[s.key].(string)
		present := s.in[s.key] != nil
		if present != (s.got != nil) || (s.got != nil && *s.got != want) {
			t.Fatalf("%s = %v, the record says %q", s.name, s.got, s.in[s.key])
		}
	}
	ts := obj["event_timestamp"].(string)
	if want, err := time.Parse(time.RFC3339Nano, strings.ToUpper(ts)); err == nil && !ev.EventTimestamp.Equal(want.UTC().Truncate(time.Microsecond)) {
		t.Fatalf("event_timestamp = %v, the record says %s", ev.EventTimestamp, ts)
	}
	rat := func(v any) *big.Rat {
		var s string
		switch v := v.(type) {
		case json.Number:
			s = string(v)
		case string:
			s = v
		default:
			return nil
		}
		// big.Rat would compute 10^exponent: a number with a huge exponent
		// can only have been accepted if it is zero.
		mant, exp, _ := strings.Cut(strings.ToLower(s), "e")
		if n, err := strconv.Atoi(exp); exp != "" && (err != nil || n > 1000 || n < -1000) {
			s = mant + "e-1000"
		}
		r, ok := new(big.Rat).SetString(s)
		if !ok {
			t.Fatalf("%q is not a number", s)
		}
		if s != mant+"e-1000" || r.Sign() == 0 {
			return r
		}
		t.Fatalf("accepted %q, which is no number an event can hold", v)
		return nil
	}
	if q := rat(obj["quantity"]); (q == nil) != (ev.Quantity == nil) || (q != nil && q.Cmp(big.NewRat(int64(*ev.Quantity), 1)) != 0) {
		t.Fatalf("quantity = %v, the record says %v", ev.Quantity, obj["quantity"])
	}
	if p := rat(obj["price"]); (p == nil) != (ev.PriceMinor == nil) {
		t.Fatalf("price_minor = %v, the record says %v", ev.PriceMinor, obj["price"])
	} else if p != nil {
		digits := int64(2)
		switch cur := *ev.Currency; {
		case zeroDecimal[cur]:
			digits = 0
		case threeDecimal[cur]:
			digits = 3
		}
		want := p.Mul(p, new(big.Rat).SetInt(new(big.Int).Exp(big.NewInt(10), big.NewInt(digits), nil)))
		if !want.IsInt() || want.Num().Cmp(big.NewInt(*ev.PriceMinor)) != 0 {
			t.Fatalf("price_minor = %d, the record says %v %s", *ev.PriceMinor, obj["price"], *ev.Currency)
		}
	}
}

var okMembers = []string{`"event_id":"e1"`, `"event_timestamp":"2026-11-25T21:00:00Z"`, `"event_type":"page_view"`,
	`"session_id":"s1"`, `"page_url":"https://x.example/"`}

// event is a valid record with members replaced (the first of a name
// replaces the valid one) or added (later ones, as duplicates).
func event(members ...string) string {
	out := slices.Clone(okMembers)
	replaced := make([]bool, len(okMembers))
	for _, m := range members {
		name, _, _ := strings.Cut(m, ":")
		i := slices.IndexFunc(okMembers, func(o string) bool { return strings.HasPrefix(o, name+":") })
		if i >= 0 && !replaced[i] {
			out[i], replaced[i] = m, true
		} else {
			out = append(out, m)
		}
	}
	return "{" + strings.Join(out, ",") + "}"
}

// contractCases are the gaps between the parser and the contract that the
// review and the fuzzer found; each must be decided as the contract says.
var contractCases = []struct {
	name      string
	give      string
	wantCode  deadletter.Code // "": accepted
	wantField string
}{
	{name: "raw control character", give: event(`"session_id":"s` + "\x01" + `"`), wantCode: deadletter.MalformedJSON},
	{name: "raw newline in a string", give: event(`"page_url":"https://x.example/` + "\n" + `"`), wantCode: deadletter.MalformedJSON},
	{name: "empty event_id", give: event(`"event_id":""`), wantCode: deadletter.InvalidValue, wantField: "event_id"},
	{name: "empty session_id", give: event(`"session_id":""`), wantCode: deadletter.InvalidValue, wantField: "session_id"},
	{name: "empty page_url", give: event(`"page_url":""`), wantCode: deadletter.InvalidValue, wantField: "page_url"},
	{name: "one-digit hour", give: event(`"event_timestamp":"0000-01-01T0:00:00Z"`), wantCode: deadletter.InvalidValue, wantField: "event_timestamp"},
	{name: "year 0000 is RFC 3339", give: event(`"event_timestamp":"0000-01-01T00:00:00Z"`)},
	{name: "lower-case t and z", give: event(`"event_timestamp":"2026-11-25t21:00:00.5z"`)},
	{name: "offset", give: event(`"event_timestamp":"2026-11-25T23:00:00+02:00"`)},
	{name: "offset hour out of range", give: event(`"event_timestamp":"2026-11-25T21:00:00+24:00"`), wantCode: deadletter.InvalidValue, wantField: "event_timestamp"},
	{name: "february 29 of a common year", give: event(`"event_timestamp":"2026-02-29T21:00:00Z"`), wantCode: deadletter.InvalidValue, wantField: "event_timestamp"},
	{name: "comma before the fraction", give: event(`"event_timestamp":"2026-11-25T21:00:00,5Z"`), wantCode: deadletter.InvalidValue, wantField: "event_timestamp"},
	{name: "fraction without digits", give: event(`"event_timestamp":"2026-11-25T21:00:00.Z"`), wantCode: deadletter.InvalidValue, wantField: "event_timestamp"},
	{name: "leading-zero price is not JSON", give: event(`"price":01.5`, `"currency":"USD"`), wantCode: deadletter.MalformedJSON},
	{name: "leading-zero price string", give: event(`"price":"01.5"`, `"currency":"USD"`), wantCode: deadletter.InvalidValue, wantField: "price"},
	{name: "price string with spaces", give: event(`"price":" 1.5"`, `"currency":"USD"`), wantCode: deadletter.InvalidValue, wantField: "price"},
	{name: "price with exponent", give: event(`"price":1.5e2`, `"currency":"USD"`)},
	{name: "price string with exponent", give: event(`"price":"1999E-2"`, `"currency":"USD"`)},
	{name: "price too precise", give: event(`"price":1.5e-3`, `"currency":"USD"`), wantCode: deadletter.InvalidValue, wantField: "price"},
	{name: "price beyond int64", give: event(`"price":1e300`, `"currency":"USD"`), wantCode: deadletter.InvalidValue, wantField: "price"},
	{name: "member names are case-sensitive", give: strings.Replace(event(), `"event_id"`, `"EVENT_ID"`, 1), wantCode: deadletter.MissingField, wantField: "event_id"},
	{name: "case-variant duplicate is another member", give: event(`"Event_ID":""`)},
	{name: "last duplicate wins", give: event(`"event_id":5`, `"event_id":"e2"`)},
	{name: "last duplicate wins when empty", give: event(`"event_id":""`, `"event_id":"e2"`)},
	{name: "escaped member name", give: strings.Replace(event(), `"event_id"`, `"event\u005fid"`, 1)},
	{name: "128 characters of 2 bytes", give: event(`"event_id":"` + strings.Repeat("é", 128) + `"`)},
	{name: "129 characters", give: event(`"event_id":"` + strings.Repeat("é", 129) + `"`), wantCode: deadletter.InvalidValue, wantField: "event_id"},
	{name: "escaped characters count once", give: event(`"session_id":"` + strings.Repeat(`\u00e9`, 128) + `"`)},
	{name: "surrogate pair", give: event(`"geo":{"city":"\ud83d\ude00"}`)},
	{name: "lone surrogate", give: event(`"geo":{"city":"\ud83d"}`)},
	{name: "quantity 2.0 is an integer", give: event(`"quantity":2.0`)},
	{name: "quantity 25e-1 is not", give: event(`"quantity":25e-1`), wantCode: deadletter.WrongType, wantField: "quantity"},
	{name: "quantity above int32", give: event(`"quantity":2147483648`), wantCode: deadletter.WrongType, wantField: "quantity"},
	{name: "device member too long", give: event(`"device":{"os":"` + strings.Repeat("x", 129) + `"}`), wantCode: deadletter.InvalidValue, wantField: "device.os"},
	{name: "device replaced by null", give: event(`"device":{"os":5}`, `"device":null`)},
	{name: "event_type not a string", give: event(`"event_type":7`), wantCode: deadletter.WrongType, wantField: "event_type"},
	{name: "unknown members are ignored", give: event(`"extra":{"a":[1,2,{"b":null}]}`)},
	{name: "data after the object", give: event() + ` {}`, wantCode: deadletter.MalformedJSON},
	{name: "form feed is not JSON whitespace", give: "\f" + event(), wantCode: deadletter.MalformedJSON},
	{name: "byte order mark", give: "\ufeff" + event(), wantCode: deadletter.MalformedJSON},
	{name: "nesting at the limit", give: event(`"x":` + strings.Repeat("[", 9999) + strings.Repeat("]", 9999))},
	{name: "deep nesting", give: event(`"x":` + strings.Repeat("[", 10001) + strings.Repeat("]", 10001)), wantCode: deadletter.MalformedJSON},
	{name: "invalid escape", give: event(`"session_id":"\x"`), wantCode: deadletter.MalformedJSON},
}

// TestParseContract decides each case as wanted and as the contract does.
// On 79700c6 the first six cases and "leading-zero price ..." are accepted.
func TestParseContract(t *testing.T) {
	p := &Parser{MaxBytes: 64 << 10, Source: "kafka"}
	for _, tt := range contractCases {
		t.Run(tt.name, func(t *testing.T) {
			_, err := checkVerdict(t, p, []byte(tt.give))
			if tt.wantCode == "" {
				if err != nil {
					t.Fatalf("rejected: %v\ninput: %s", err, tt.give)
				}
				return
			}
			rej, ok := deadletter.AsRejection(err)
			if !ok {
				t.Fatalf("accepted, want %s on %q\ninput: %q", tt.wantCode, tt.wantField, tt.give)
			}
			if r := rej.Reasons[0]; r.Code != tt.wantCode || r.Field != tt.wantField {
				t.Fatalf("first reason = %v, want %s on %q", r, tt.wantCode, tt.wantField)
			}
		})
	}
}

// FuzzParse checks the property of checkVerdict on any input. Its seeds (the
// cases above, testdata/, and testdata/fuzz/FuzzParse: inputs the fuzzer
// found) run under plain go test; fuzz with
// go test -run='^$' -fuzz=FuzzParse -fuzztime=3m.
func FuzzParse(f *testing.F) {
	b, err := os.ReadFile("testdata/add_to_cart.json")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	for _, c := range contractCases {
		f.Add([]byte(c.give))
	}
	for _, s := range []string{`{"event_id":1}`, `{"price":"1.2.3","currency":"USD"}`, event(`"price":"19.99"`, `"currency":"JPY"`),
		event(`"price":-0.5`, `"currency":"KWD"`), event(`"referrer":null`, `"device":{"type":"mobile"}`, `"geo":null`),
		event(`"event_timestamp":"2026-12-31T23:59:60Z"`), event(`"event_timestamp":"2026-11-25T21:00:00.1234567891+05:30"`)} {
		f.Add([]byte(s))
	}
	p := &Parser{MaxBytes: 64 << 10, Source: "kafka"}
	f.Fuzz(func(t *testing.T, in []byte) {
		checkVerdict(t, p, in)
	})
}
