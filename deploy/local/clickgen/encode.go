package clickgen

import (
	"strconv"
	"time"
)

// event is one raw clickstream event before encoding. Empty strings encode as
// null for the nullable fields, which matches the contract: the generator
// never needs to send an empty-but-present string.
type event struct {
	id          string
	ts          time.Time // UTC, truncated to microseconds
	tsRaw       string    // replaces ts verbatim when set (bad timestamps)
	typ         string
	userID      string
	anonID      string
	sessionID   string
	pageURL     string
	referrer    string
	userAgent   string
	deviceType  string
	os          string
	browser     string
	country     string
	region      string
	city        string
	productID   string
	searchQuery string
	quantity    int   // 0 encodes as null; cart events always have >= 1
	price       int64 // minor units; meaningful only when hasPrice
	hasPrice    bool
	currency    int // index into currencyCodes; meaningful only when hasPrice
	orderID     string
	purchase    *Purchase // the order behind a purchase event; not encoded
}

// patch breaks exactly one top-level field of an otherwise valid event: it is
// left out (omit) or its value is replaced by raw JSON. Broken records carry a
// single defect so that the expected outcome is unambiguous.
type patch struct {
	field string
	raw   string
	omit  bool
}

// timestampLayout is RFC 3339 with exactly six fraction digits; time.RFC3339Nano
// would drop trailing zeros and make the precision vary between events.
const timestampLayout = "2006-01-02T15:04:05.000000Z07:00"

// appendEvent writes e as one JSON object. It is hand-written rather than
// encoding/json because it runs once per generated event and needs to apply
// patches; the output is checked against encoding/json in the tests.
func appendEvent(b []byte, e *event, p patch) []byte {
	w := objWriter{b: append(b, '{'), p: p}
	if w.key("event_id") {
		w.str(e.id)
	}
	if w.key("event_timestamp") {
		if e.tsRaw != "" {
			w.str(e.tsRaw)
		} else {
			w.b = appendTimestamp(w.b, e.ts)
		}
	}
	if w.key("event_type") {
		w.str(e.typ)
	}
	if w.key("user_id") {
		w.nullable(e.userID)
	}
	if w.key("anonymous_id") {
		w.nullable(e.anonID)
	}
	if w.key("session_id") {
		w.str(e.sessionID)
	}
	if w.key("page_url") {
		w.str(e.pageURL)
	}
	if w.key("referrer") {
		w.nullable(e.referrer)
	}
	if w.key("user_agent") {
		w.nullable(e.userAgent)
	}
	if w.key("device") {
		w.b = append(w.b, `{"type":`...)
		w.nullable(e.deviceType)
		w.b = append(w.b, `,"os":`...)
		w.nullable(e.os)
		w.b = append(w.b, `,"browser":`...)
		w.nullable(e.browser)
		w.b = append(w.b, '}')
	}
	if w.key("geo") {
		w.b = append(w.b, `{"country":`...)
		w.nullable(e.country)
		w.b = append(w.b, `,"region":`...)
		w.nullable(e.region)
		w.b = append(w.b, `,"city":`...)
		w.nullable(e.city)
		w.b = append(w.b, '}')
	}
	if w.key("product_id") {
		w.nullable(e.productID)
	}
	if w.key("search_query") {
		w.nullable(e.searchQuery)
	}
	if w.key("quantity") {
		if e.quantity == 0 {
			w.b = append(w.b, "null"...)
		} else {
			w.b = strconv.AppendInt(w.b, int64(e.quantity), 10)
		}
	}
	if w.key("price") {
		if e.hasPrice {
			w.b = appendPrice(w.b, e.price, currencyMinorDigits[e.currency])
		} else {
			w.b = append(w.b, "null"...)
		}
	}
	if w.key("currency") {
		if e.hasPrice {
			w.str(currencyCodes[e.currency])
		} else {
			w.b = append(w.b, "null"...)
		}
	}
	if w.key("order_id") {
		w.nullable(e.orderID)
	}
	return append(w.b, '}')
}

type objWriter struct {
	b      []byte
	p      patch
	fields int
}

// key writes the separator and the field name, and reports whether the caller
// should write the value (false when the patch omitted or replaced it).
func (w *objWriter) key(name string) bool {
	patched := w.p.field == name
	if patched && w.p.omit {
		return false
	}
	if w.fields > 0 {
		w.b = append(w.b, ',')
	}
	w.fields++
	w.b = append(w.b, '"')
	w.b = append(w.b, name...)
	w.b = append(w.b, '"', ':')
	if patched {
		w.b = append(w.b, w.p.raw...)
		return false
	}
	return true
}

func (w *objWriter) str(s string) { w.b = appendString(w.b, s) }

func (w *objWriter) nullable(s string) {
	if s == "" {
		w.b = append(w.b, "null"...)
		return
	}
	w.b = appendString(w.b, s)
}

// appendString writes s as a JSON string. Inputs are valid UTF-8, so only the
// characters JSON requires to be escaped are escaped. Strings are checked
// eight bytes at a time because almost none needs escaping and this loop is
// most of the encoder's time.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start, i := 0, 0
	for ; i+8 <= len(s); i += 8 {
		if needsEscape8(load64(s, i)) {
			b, start = appendEscaped(b, s, start, i, i+8)
		}
	}
	b, start = appendEscaped(b, s, start, i, len(s))
	b = append(b, s[start:]...)
	return append(b, '"')
}

// load64 reads s[i:i+8] as a little-endian word; the compiler turns the
// shifts into a single load.
func load64(s string, i int) uint64 {
	_ = s[i+7]
	return uint64(s[i]) | uint64(s[i+1])<<8 | uint64(s[i+2])<<16 | uint64(s[i+3])<<24 |
		uint64(s[i+4])<<32 | uint64(s[i+5])<<40 | uint64(s[i+6])<<48 | uint64(s[i+7])<<56
}

// needsEscape8 reports whether any of the eight bytes in x is a control
// character, '"' or '\\' (the classic "has zero byte" and "has byte less
// than" bit tricks).
func needsEscape8(x uint64) bool {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	hasZero := func(v uint64) uint64 { return (v - ones) &^ v & highs }
	less20 := (x - 0x20*ones) &^ x & highs
	return less20|hasZero(x^('"'*ones))|hasZero(x^('\\'*ones)) != 0
}

// appendEscaped escapes the bytes of s[from:to] that need it, flushing the
// plain run s[start:i] before each escape, and returns the new start of the
// pending plain run.
func appendEscaped(b []byte, s string, start, from, to int) ([]byte, int) {
	const hex = "0123456789abcdef"
	for i := from; i < to; i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		}
		start = i + 1
	}
	return b, start
}

// appendTimestamp writes t (UTC) as a quoted timestampLayout string. It is
// time.AppendFormat unrolled for the one layout, at a fraction of the cost.
func appendTimestamp(b []byte, t time.Time) []byte {
	y, mo, d := t.Date()
	h, mi, s := t.Clock()
	us := t.Nanosecond() / 1000
	b = append(b, '"')
	b = appendDigits(b, y, 4)
	b = append(b, '-')
	b = appendDigits(b, int(mo), 2)
	b = append(b, '-')
	b = appendDigits(b, d, 2)
	b = append(b, 'T')
	b = appendDigits(b, h, 2)
	b = append(b, ':')
	b = appendDigits(b, mi, 2)
	b = append(b, ':')
	b = appendDigits(b, s, 2)
	b = append(b, '.')
	b = appendDigits(b, us, 6)
	return append(b, 'Z', '"')
}

// appendDigits writes v zero-padded to n digits (v must fit).
func appendDigits(b []byte, v, n int) []byte {
	b = append(b, "000000"[:n]...)
	for i := len(b) - 1; n > 0; i, n = i-1, n-1 {
		b[i] = byte('0' + v%10)
		v /= 10
	}
	return b
}

// appendPrice writes minor units as a decimal number in major units with
// exactly the currency's fraction digits (19.99, 2480), never through a float.
func appendPrice(b []byte, minor int64, digits int) []byte {
	if digits == 0 {
		return strconv.AppendInt(b, minor, 10)
	}
	// Only 0 and 2 digits occur (see currencyMinorDigits).
	b = strconv.AppendInt(b, minor/100, 10)
	frac := minor % 100
	return append(b, '.', byte('0'+frac/10), byte('0'+frac%10))
}
