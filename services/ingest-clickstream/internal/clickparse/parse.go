// Package clickparse turns one raw clickstream JSON object (the contract in
// proto/json/clickstream-raw.schema.json) into an Avro ClickEvent, or into a
// *deadletter.Rejection that says precisely what is wrong with it.
//
// The contract is ingest's promise: every record Parse accepts is valid
// against the JSON Schema (FuzzParse checks that with a JSON Schema validator).
// Parse is stricter than the schema in a few places the schema cannot say;
// the service README lists them (under "Rejections").
package clickparse

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/ecomstream/platform/pkg/deadletter"
	"github.com/ecomstream/platform/pkg/events"
)

// Entity is the dead-letter entity name of click events.
const Entity = "click_event"

// EventTypes are the event types the ClickEvent contract knows.
var EventTypes = []string{"page_view", "product_view", "search", "add_to_cart", "remove_from_cart", "begin_checkout", "purchase"}

var knownTypes = func() map[string]bool {
	m := map[string]bool{}
	for _, t := range EventTypes {
		m[t] = true
	}
	return m
}()

// Field length limits, from the JSON contract, in characters (Unicode code
// points, as JSON Schema's maxLength counts).
const (
	maxIDLen     = 128
	maxURLLen    = 2048
	maxUALen     = 1024
	maxQueryLen  = 1024
	maxShortText = 128
)

// Parser parses raw events.
type Parser struct {
	MaxBytes int    // records larger than this are OVERSIZED
	Source   string // kafka or http
}

// Parse parses b, read at receivedAt. A rejection (a *deadletter.Rejection)
// comes with an event that holds only the event_id, when b had a usable one,
// so the HTTP collector can name the event it rejects.
func (p *Parser) Parse(b []byte, receivedAt time.Time) (events.ClickEvent, error) {
	if p.MaxBytes > 0 && len(b) > p.MaxBytes {
		return events.ClickEvent{}, reject(deadletter.Reason{Code: deadletter.Oversized,
			Message: fmt.Sprintf("record is %d bytes, limit is %d", len(b), p.MaxBytes)})
	}
	if !utf8.Valid(b) {
		return events.ClickEvent{}, reject(deadletter.Reason{Code: deadletter.MalformedJSON, Message: "not valid UTF-8"})
	}
	d := new(doc) // the event's strings point into it: one allocation for all
	if err := d.decode(b); err != nil {
		return events.ClickEvent{}, reject(deadletter.Reason{Code: deadletter.MalformedJSON, Message: err.Error()})
	}

	c := checker{}
	// Checked in the contract's order, which is the order of the reasons.
	ev := events.ClickEvent{
		EventID:    c.required(&d.top[fEventID], "event_id", 1, maxIDLen),
		ReceivedAt: receivedAt.UTC().Truncate(time.Microsecond),
		Source:     p.Source,
	}
	if ts := c.required(&d.top[fEventTimestamp], "event_timestamp", 0, -1); c.ok(fEventTimestamp) {
		t, err := parseTimestamp(ts)
		if err != nil {
			c.invalid("event_timestamp", "not an RFC 3339 date-time (%v): %q", err, truncate(ts, 64))
		}
		ev.EventTimestamp = t.UTC().Truncate(time.Microsecond)
	}
	if et := c.required(&d.top[fEventType], "event_type", 0, -1); c.ok(fEventType) {
		if !knownTypes[et] {
			c.add(deadletter.Reason{Code: deadletter.UnknownEventType, Field: "event_type",
				Message: fmt.Sprintf("unknown event_type %q", truncate(et, 64))})
		}
		ev.EventType = et
	}
	ev.UserID = c.optional(&d.top[fUserID], "user_id", maxIDLen)
	ev.AnonymousID = c.optional(&d.top[fAnonymousID], "anonymous_id", maxIDLen)
	ev.SessionID = c.required(&d.top[fSessionID], "session_id", 1, maxIDLen)
	ev.PageURL = c.required(&d.top[fPageURL], "page_url", 1, maxURLLen)
	ev.Referrer = c.optional(&d.top[fReferrer], "referrer", maxURLLen)
	ev.UserAgent = c.optional(&d.top[fUserAgent], "user_agent", maxUALen)
	if c.object(&d.top[fDevice], "device") {
		ev.DeviceType = c.optional(&d.device[0], "device.type", maxShortText)
		ev.Os = c.optional(&d.device[1], "device.os", maxShortText)
		ev.Browser = c.optional(&d.device[2], "device.browser", maxShortText)
	}
	if c.object(&d.top[fGeo], "geo") {
		ev.Country = c.optional(&d.geo[0], "geo.country", maxShortText)
		ev.Region = c.optional(&d.geo[1], "geo.region", maxShortText)
		ev.City = c.optional(&d.geo[2], "geo.city", maxShortText)
	}
	ev.ProductID = c.optional(&d.top[fProductID], "product_id", maxIDLen)
	ev.SearchQuery = c.optional(&d.top[fSearchQuery], "search_query", maxQueryLen)
	switch q := d.top[fQuantity]; q.kind {
	case absent, kindNull:
	case kindNumber:
		if n, err := scale(q.text, 0); err == nil && n >= -1<<31 && n < 1<<31 {
			qi := int(n)
			ev.Quantity = &qi
			break
		}
		c.wrongType("quantity", "an integer from -2147483648 to 2147483647", q)
	default:
		c.wrongType("quantity", "an integer", q)
	}
	ev.Currency = c.optional(&d.top[fCurrency], "currency", -1)
	if ev.Currency != nil && !isCurrencyCode(*ev.Currency) {
		c.invalid("currency", "not an ISO 4217 code: %q", truncate(*ev.Currency, 16))
	}
	switch pr := d.top[fPrice]; pr.kind {
	case absent, kindNull:
	case kindNumber, kindString:
		switch {
		case !c.ok(fCurrency):
		case ev.Currency == nil:
			c.invalid("currency", "currency is required when price is set")
		default:
			if minor, err := MinorUnits(pr.text, *ev.Currency); err != nil {
				c.invalid("price", "%v", err)
			} else {
				ev.PriceMinor = &minor
			}
		}
	default:
		c.wrongType("price", "a decimal number or a string holding one", pr)
	}
	ev.OrderID = c.optional(&d.top[fOrderID], "order_id", maxIDLen)
	if len(c.reasons) > 0 {
		id := ""
		if c.ok(fEventID) {
			id = ev.EventID
		}
		return events.ClickEvent{EventID: id}, reject(c.reasons...)
	}
	return ev, nil
}

// checker collects the reasons of a rejection, and which top-level members
// had one (a later check that depends on such a member is skipped).
type checker struct {
	reasons []deadletter.Reason
	bad     [nFields]bool
}

func (c *checker) ok(idx int) bool { return !c.bad[idx] }

func (c *checker) add(r deadletter.Reason) {
	c.reasons = append(c.reasons, r)
	if idx, ok := topIndex[r.Field]; ok {
		c.bad[idx] = true
	}
}

func (c *checker) invalid(field, format string, args ...any) {
	c.add(deadletter.Reason{Code: deadletter.InvalidValue, Field: field, Message: fmt.Sprintf(format, args...)})
}

func (c *checker) wrongType(field, want string, v value) {
	c.add(deadletter.Reason{Code: deadletter.WrongType, Field: field, Message: fmt.Sprintf("%s must be %s, got %s", field, want, v.kind)})
}

// required returns the string member field, which must be present and
// between minLen and maxLen (-1: no limit) characters long.
func (c *checker) required(v *value, field string, minLen, maxLen int) string {
	if v.kind == absent || v.kind == kindNull {
		c.add(deadletter.Reason{Code: deadletter.MissingField, Field: field, Message: field + " is required"})
		return ""
	}
	s := c.optional(v, field, maxLen)
	if s == nil {
		return ""
	}
	if minLen > 0 && utf8.RuneCountInString(*s) < minLen {
		c.invalid(field, "%s must not be empty", field)
	}
	return *s
}

// optional returns the string member field, or nil if it is absent or null.
func (c *checker) optional(v *value, field string, maxLen int) *string {
	switch v.kind {
	case absent, kindNull:
		return nil
	case kindString:
	default:
		c.wrongType(field, "a string", *v)
		return nil
	}
	// A string is never shorter in bytes than in characters.
	if maxLen >= 0 && len(v.text) > maxLen && utf8.RuneCountInString(v.text) > maxLen {
		c.invalid(field, "%s is longer than %d characters", field, maxLen)
	}
	return &v.text
}

// object reports whether member field is an object (absent and null are
// fine too; anything else is a wrong type).
func (c *checker) object(v *value, field string) bool {
	switch v.kind {
	case kindObject:
		return true
	case absent, kindNull:
	default:
		c.wrongType(field, "an object", *v)
	}
	return false
}

func reject(reasons ...deadletter.Reason) *deadletter.Rejection {
	return &deadletter.Rejection{Entity: Entity, Reasons: reasons}
}

func isCurrencyCode(s string) bool {
	if len(s) != 3 {
		return false
	}
	for i := 0; i < 3; i++ {
		if s[i] < 'A' || s[i] > 'Z' {
			return false
		}
	}
	return true
}

// zeroDecimal and threeDecimal list ISO 4217 currencies whose minor unit is
// not the usual hundredth.
var (
	zeroDecimal  = map[string]bool{"JPY": true, "KRW": true, "VND": true, "CLP": true, "ISK": true, "UGX": true, "XAF": true, "XOF": true}
	threeDecimal = map[string]bool{"BHD": true, "KWD": true, "OMR": true, "JOD": true, "TND": true, "IQD": true, "LYD": true}
)

// MinorUnits converts a price in major units of currency, written as a JSON
// number (the contract's form for a number and for a string holding one, e.g.
// 19.99, 1999e-2), to integer minor units exactly: no floats. More fraction
// digits than the currency has is an error rather than a silent rounding, and
// so is any other form (01.5, +1, .5, 1., " 1").
func MinorUnits(s, currency string) (int64, error) {
	exp := 2
	switch {
	case zeroDecimal[currency]:
		exp = 0
	case threeDecimal[currency]:
		exp = 3
	}
	if !isNumber(s) {
		return 0, fmt.Errorf("not a decimal number: %q", truncate(s, 32))
	}
	n, err := scale(s, exp)
	switch {
	case errors.Is(err, errFraction):
		return 0, fmt.Errorf("%q has more than %d decimals for %s", truncate(s, 32), exp, currency)
	case err != nil:
		return 0, fmt.Errorf("%q is out of range", truncate(s, 32))
	}
	return n, nil
}

var (
	errFraction = errors.New("not a whole number")
	errRange    = errors.New("out of range")
)

// scale returns the JSON number num times 10^exp exactly: errFraction if that
// is not a whole number, errRange if it does not fit an int64.
func scale(num string, exp int) (int64, error) {
	neg := strings.HasPrefix(num, "-")
	num = strings.TrimPrefix(num, "-")
	mant, e, hasE := strings.Cut(strings.ToLower(num), "e")
	intPart, frac, _ := strings.Cut(mant, ".")
	// value = 0.digits * 10^point
	digits, point := intPart+frac, len(intPart)+exp
	if hasE {
		n, err := strconv.Atoi(e)
		if err != nil || n > 1<<20 || n < -1<<20 {
			// Only a zero survives such an exponent.
			if strings.Trim(digits, "0") == "" {
				return 0, nil
			}
			if strings.HasPrefix(e, "-") {
				return 0, errFraction
			}
			return 0, errRange
		}
		point += n
	}
	trimmed := strings.TrimLeft(digits, "0")
	point -= len(digits) - len(trimmed)
	digits = strings.TrimRight(trimmed, "0")
	switch {
	case digits == "":
		return 0, nil
	case point < len(digits):
		return 0, errFraction
	case point > 19:
		return 0, errRange
	}
	u, err := strconv.ParseUint(digits+strings.Repeat("0", point-len(digits)), 10, 64)
	switch {
	case err != nil, !neg && u > 1<<63-1, neg && u > 1<<63:
		return 0, errRange
	case neg:
		return -int64(u), nil
	}
	return int64(u), nil
}

// parseTimestamp parses an RFC 3339 date-time (section 5.6) strictly:
// YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM), T and Z in either case,
// every field in range. Go's time.Parse is laxer (it takes "T0:00:00Z").
// Leap seconds (:60) are refused: Go's time cannot hold them.
func parseTimestamp(s string) (time.Time, error) {
	num := func(i, n int) int {
		if i+n > len(s) {
			return -1
		}
		v := 0
		for _, c := range []byte(s[i : i+n]) {
			if c < '0' || c > '9' {
				return -1
			}
			v = v*10 + int(c-'0')
		}
		return v
	}
	at := func(i int, cs string) bool { return i < len(s) && strings.IndexByte(cs, s[i]) >= 0 }
	year, month, day, hour, minute, sec := num(0, 4), num(5, 2), num(8, 2), num(11, 2), num(14, 2), num(17, 2)
	if year < 0 || month < 0 || day < 0 || hour < 0 || minute < 0 || sec < 0 ||
		!at(4, "-") || !at(7, "-") || !at(10, "Tt") || !at(13, ":") || !at(16, ":") {
		return time.Time{}, errors.New("layout")
	}
	i, nanos := 19, 0
	if at(i, ".") {
		i++
		start := i
		for at(i, "0123456789") {
			if i-start < 9 {
				nanos = nanos*10 + int(s[i]-'0')
			}
			i++
		}
		if i == start {
			return time.Time{}, errors.New("fraction without digits")
		}
		for n := i - start; n < 9; n++ {
			nanos *= 10
		}
	}
	offset := 0
	switch rest := s[i:]; {
	case rest == "Z" || rest == "z":
	case len(rest) == 6 && at(i, "+-") && rest[3] == ':':
		zh, zm := num(i+1, 2), num(i+4, 2)
		if zh < 0 || zm < 0 || zh > 23 || zm > 59 {
			return time.Time{}, errors.New("offset out of range")
		}
		if offset = (zh*60 + zm) * 60; rest[0] == '-' {
			offset = -offset
		}
	default:
		return time.Time{}, errors.New("zone")
	}
	switch {
	case month < 1 || month > 12 || day < 1 || day > daysIn(year, month):
		return time.Time{}, errors.New("no such date")
	case sec == 60:
		return time.Time{}, errors.New("leap seconds are not supported")
	case hour > 23 || minute > 59 || sec > 59:
		return time.Time{}, errors.New("no such time")
	}
	return time.Date(year, time.Month(month), day, hour, minute, sec, nanos, time.FixedZone("", offset)), nil
}

func daysIn(year, month int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// truncate shortens s to at most n bytes for a message, on a character
// boundary (a message must stay valid UTF-8).
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
