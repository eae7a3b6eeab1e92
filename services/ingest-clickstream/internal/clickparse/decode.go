package clickparse

import (
	"fmt"
	"unicode/utf16"
	"unicode/utf8"
)

// The reader below is the parser's only judge of JSON: one strict pass over
// the record (RFC 8259) that keeps the members the contract names and checks
// the rest without keeping them. A general-purpose library cannot be the judge
// here: encoding/json matches member names case-insensitively (so "EVENT_ID"
// would fill event_id, which the contract does not), and the faster libraries
// accept what is not JSON (raw control characters in strings, numbers with
// leading zeros). Where JSON leaves a choice open, it decides as encoding/json
// does, which is also what the contract's validators do: the last of duplicate
// member names wins, a lone UTF-16 surrogate escape reads as U+FFFD, nesting
// deeper than 10000 levels is refused.

// kind is the JSON type of a member's value.
type kind uint8

const (
	absent kind = iota
	kindNull
	kindBool
	kindNumber
	kindString
	kindObject
	kindArray
)

func (k kind) String() string {
	return [...]string{"nothing", "null", "a boolean", "a number", "a string", "an object", "an array"}[k]
}

// value is the last value a known member had: the decoded text of a string,
// the literal text of a number.
type value struct {
	kind kind
	text string
}

// Members of the top-level object the parser keeps, in the contract's order
// (which is also the order of the reasons of a rejection).
const (
	fEventID = iota
	fEventTimestamp
	fEventType
	fUserID
	fAnonymousID
	fSessionID
	fPageURL
	fReferrer
	fUserAgent
	fDevice
	fGeo
	fProductID
	fSearchQuery
	fQuantity
	fPrice
	fCurrency
	fOrderID
	nFields
)

var fieldNames = [nFields]string{"event_id", "event_timestamp", "event_type", "user_id", "anonymous_id", "session_id",
	"page_url", "referrer", "user_agent", "device", "geo", "product_id", "search_query", "quantity", "price", "currency", "order_id"}

var (
	deviceNames = [3]string{"type", "os", "browser"}
	geoNames    = [3]string{"country", "region", "city"}
)

func index(names []string) map[string]int {
	m := make(map[string]int, len(names))
	for i, n := range names {
		m[n] = i
	}
	return m
}

var (
	topIndex    = index(fieldNames[:])
	deviceIndex = index(deviceNames[:])
	geoIndex    = index(geoNames[:])
)

// maxDepth is encoding/json's nesting limit.
const maxDepth = 10000

type shape uint8

const (
	skipShape shape = iota // check the members, keep none
	topShape
	deviceShape
	geoShape
)

// doc is one decoded record: the known members' last values.
type doc struct {
	top    [nFields]value
	device [3]value
	geo    [3]value

	b     []byte
	src   string // b as a string: the strings kept are slices of it, no copy each
	i     int
	depth int
}

// syntaxError is where and why a record is not JSON.
type syntaxError struct {
	off int
	msg string
}

func (e *syntaxError) Error() string { return fmt.Sprintf("%s at byte %d", e.msg, e.off) }

func (d *doc) fail(msg string) error {
	if d.i >= len(d.b) {
		return &syntaxError{off: len(d.b), msg: "unexpected end of JSON input"}
	}
	return &syntaxError{off: d.i, msg: fmt.Sprintf("%s: found %q", msg, d.b[d.i])}
}

// decode reads b, which must hold exactly one JSON object.
func (d *doc) decode(b []byte) error {
	d.b, d.src, d.i = b, string(b), 0
	d.ws()
	if d.peek() != '{' {
		return &syntaxError{off: d.i, msg: "not a JSON object"}
	}
	if err := d.object(topShape); err != nil {
		return err
	}
	d.ws()
	if d.i != len(d.b) {
		return d.fail("data after the JSON object")
	}
	return nil
}

func (d *doc) peek() byte {
	if d.i < len(d.b) {
		return d.b[d.i]
	}
	return 0
}

func (d *doc) ws() {
	for d.i < len(d.b) {
		switch d.b[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

func (d *doc) enter() error {
	if d.depth++; d.depth > maxDepth {
		return &syntaxError{off: d.i, msg: "nested deeper than 10000 levels"}
	}
	return nil
}

// object reads the object at d.i, keeping the members that sh knows.
func (d *doc) object(sh shape) error {
	if err := d.enter(); err != nil {
		return err
	}
	d.i++ // '{'
	d.ws()
	if d.peek() == '}' {
		d.i++
		d.depth--
		return nil
	}
	for {
		if d.peek() != '"' {
			return d.fail("expected a member name")
		}
		name, _, err := d.str()
		if err != nil {
			return err
		}
		d.ws()
		if d.peek() != ':' {
			return d.fail("expected ':' after a member name")
		}
		d.i++
		d.ws()
		if err := d.member(sh, name); err != nil {
			return err
		}
		d.ws()
		switch d.peek() {
		case ',':
			d.i++
			d.ws()
		case '}':
			d.i++
			d.depth--
			return nil
		default:
			return d.fail("expected ',' or '}' after a member")
		}
	}
}

// member reads the value of member name of an object of shape sh.
func (d *doc) member(sh shape, name []byte) error {
	var (
		idx int
		ok  bool
	)
	switch sh {
	case topShape:
		if idx, ok = topIndex[string(name)]; !ok {
			return d.skip()
		}
		if idx == fDevice || idx == fGeo {
			// A repeated device or geo replaces the earlier one whole.
			sub, subShape := &d.device, deviceShape
			if idx == fGeo {
				sub, subShape = &d.geo, geoShape
			}
			*sub = [3]value{}
			if d.peek() == '{' {
				d.top[idx] = value{kind: kindObject}
				return d.object(subShape)
			}
		}
		return d.scalar(&d.top[idx])
	case deviceShape:
		if idx, ok = deviceIndex[string(name)]; ok {
			return d.scalar(&d.device[idx])
		}
	case geoShape:
		if idx, ok = geoIndex[string(name)]; ok {
			return d.scalar(&d.geo[idx])
		}
	}
	return d.skip()
}

// scalar reads the value at d.i into v: strings decoded, numbers as written,
// objects and arrays checked but only their kind kept.
func (d *doc) scalar(v *value) error {
	switch c := d.peek(); {
	case c == '"':
		start := d.i + 1
		s, escaped, err := d.str()
		if err != nil {
			return err
		}
		text := d.src[start : start+len(s)]
		if escaped {
			text = string(s)
		}
		*v = value{kind: kindString, text: text}
	case c == '-' || (c >= '0' && c <= '9'):
		start := d.i
		if err := d.number(); err != nil {
			return err
		}
		*v = value{kind: kindNumber, text: d.src[start:d.i]}
	case c == '{' || c == '[':
		k := kindObject
		if c == '[' {
			k = kindArray
		}
		if err := d.skip(); err != nil {
			return err
		}
		*v = value{kind: k}
	default:
		k, err := d.literal()
		if err != nil {
			return err
		}
		*v = value{kind: k}
	}
	return nil
}

// skip checks the value at d.i and keeps nothing of it.
func (d *doc) skip() error {
	switch c := d.peek(); {
	case c == '"':
		_, _, err := d.str()
		return err
	case c == '-' || (c >= '0' && c <= '9'):
		return d.number()
	case c == '{':
		return d.object(skipShape)
	case c == '[':
		return d.array()
	default:
		_, err := d.literal()
		return err
	}
}

func (d *doc) array() error {
	if err := d.enter(); err != nil {
		return err
	}
	d.i++ // '['
	d.ws()
	if d.peek() == ']' {
		d.i++
		d.depth--
		return nil
	}
	for {
		if err := d.skip(); err != nil {
			return err
		}
		d.ws()
		switch d.peek() {
		case ',':
			d.i++
			d.ws()
		case ']':
			d.i++
			d.depth--
			return nil
		default:
			return d.fail("expected ',' or ']' after an array element")
		}
	}
}

func (d *doc) literal() (kind, error) {
	for _, l := range [...]struct {
		text string
		kind kind
	}{{"null", kindNull}, {"true", kindBool}, {"false", kindBool}} {
		if len(d.b)-d.i >= len(l.text) && string(d.b[d.i:d.i+len(l.text)]) == l.text {
			d.i += len(l.text)
			return l.kind, nil
		}
	}
	return 0, d.fail("expected a JSON value")
}

// number reads a number with RFC 8259's grammar:
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (d *doc) number() error {
	n, ok := numberLen(d.b[d.i:])
	if !ok {
		d.i += n
		return d.fail("invalid number")
	}
	d.i += n
	return nil
}

// numberLen returns the length of the JSON number at the start of b, and
// false (with the offset of the fault) if b does not start with one.
func numberLen(b []byte) (int, bool) {
	i := 0
	digits := func() bool {
		start := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		return i > start
	}
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case !digits():
		return i, false
	}
	if i < len(b) && b[i] == '.' {
		i++
		if !digits() {
			return i, false
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if !digits() {
			return i, false
		}
	}
	return i, true
}

// isNumber reports whether s is exactly one JSON number.
func isNumber(s string) bool {
	n, ok := numberLen([]byte(s))
	return ok && n == len(s)
}

// str reads the string at d.i (its opening quote) and returns its decoded
// text: without escapes, a slice of the record (no copy).
func (d *doc) str() (text []byte, escaped bool, err error) {
	start := d.i + 1
	for j := start; j < len(d.b); j++ {
		switch c := d.b[j]; {
		case c == '"':
			d.i = j + 1
			return d.b[start:j], false, nil
		case c == '\\':
			text, err := d.escaped(start, j)
			return text, true, err
		case c < 0x20:
			d.i = j
			return nil, false, d.fail("control character in a string")
		}
	}
	d.i = len(d.b)
	return nil, false, d.fail("unterminated string")
}

// escaped decodes a string with escapes from j on (d.b[start:j] has none).
func (d *doc) escaped(start, j int) ([]byte, error) {
	// Room for about as much again as came before the first escape; append grows it. Sizing it
	// to the rest of the record made every escaped string cost the record's remaining length, so
	// a record of many short escaped strings allocated its size squared.
	buf := make([]byte, j-start, 2*(j-start)+16)
	copy(buf, d.b[start:j])
	for j < len(d.b) {
		c := d.b[j]
		switch {
		case c == '"':
			d.i = j + 1
			return buf, nil
		case c < 0x20:
			d.i = j
			return nil, d.fail("control character in a string")
		case c != '\\':
			buf = append(buf, c)
			j++
			continue
		}
		if j+1 >= len(d.b) {
			break
		}
		switch e := d.b[j+1]; e {
		case '"', '\\', '/':
			buf = append(buf, e)
		case 'b':
			buf = append(buf, '\b')
		case 'f':
			buf = append(buf, '\f')
		case 'n':
			buf = append(buf, '\n')
		case 'r':
			buf = append(buf, '\r')
		case 't':
			buf = append(buf, '\t')
		case 'u':
			r := hex4(d.b[j+2:])
			if r < 0 {
				d.i = j
				return nil, d.fail(`invalid \u escape`)
			}
			j += 6
			if utf16.IsSurrogate(r) {
				// A pair is one character; anything else is U+FFFD, and
				// what follows is read on its own (encoding/json's rule).
				r2 := rune(-1)
				if len(d.b)-j >= 2 && d.b[j] == '\\' && d.b[j+1] == 'u' {
					r2 = hex4(d.b[j+2:])
				}
				if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
					r = dec
					j += 6
				} else {
					r = utf8.RuneError
				}
			}
			buf = utf8.AppendRune(buf, r)
			continue
		default:
			d.i = j
			return nil, d.fail("invalid escape")
		}
		j += 2
	}
	d.i = len(d.b)
	return nil, d.fail("unterminated string")
}

// hex4 reads four hex digits, or returns -1.
func hex4(b []byte) rune {
	if len(b) < 4 {
		return -1
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		case c >= 'A' && c <= 'F':
			c -= 'A' - 10
		default:
			return -1
		}
		r = r<<4 | rune(c)
	}
	return r
}
