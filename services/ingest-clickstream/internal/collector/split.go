package collector

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// bodyFormat is how a body is to be split.
type bodyFormat uint8

const (
	formatJSON   bodyFormat = iota // application/json: an array, an envelope or one object
	formatSniff                    // text/plain (sendBeacon): as JSON, or NDJSON when more follows the first object
	formatNDJSON                   // application/x-ndjson: one event per line
)

// maxNesting bounds the structural scanner's stack, like the parser's.
const maxNesting = 10000

// splitError is a body that cannot be split into events: the request is
// refused whole (400), or has more events than allowed (413).
type splitError struct {
	tooMany bool
	msg     string
}

func (e *splitError) Error() string { return e.msg }

func malformed(format string, args ...any) error {
	return &splitError{msg: fmt.Sprintf(format, args...)}
}

// split cuts body into the raw bytes of its events, without decoding them:
// a structural scan finds where each event begins and ends (strings,
// escapes and nesting), and the strict per-event judgement is left to
// clickparse, which reads each event once. It returns the envelope's
// write_key if there was one. At most maxEvents events are taken; more is a
// splitError with tooMany set.
//
// Shapes: a JSON array of events; an envelope {"write_key": "...",
// "events": [...]} (write_key optional, nothing else); a single event
// object; NDJSON, one event per line. An array element that is not a
// well-formed event is still an element (the parser rejects it); only a
// body whose structure hides where events begin and end is malformed.
func split(body []byte, f bodyFormat, maxEvents int) (writeKey string, events [][]byte, err error) {
	body = bytes.TrimPrefix(body, utf8BOM) // a text editor's, or a Blob's
	s := scanner{b: body, max: maxEvents}
	if f == formatNDJSON {
		return ndjson(body, maxEvents)
	}
	s.ws()
	switch s.peek() {
	case '[':
		if err := s.array(); err != nil {
			return "", nil, err
		}
	case '{':
		start := s.i
		key, isEnvelope, err := s.object()
		if err != nil {
			return "", nil, err
		}
		end := s.i
		s.ws()
		if s.i < len(s.b) {
			// text/plain is NDJSON only if it reads as NDJSON: a first
			// object that parses, on its own first line, and more after it.
			// Anything else (a broken or pretty-printed first object) is
			// malformed, not a heap of garbage events.
			if f == formatSniff && !isEnvelope && bytes.IndexByte(body[start:end], '\n') < 0 && bytes.IndexByte(body[end:s.i], '\n') >= 0 {
				return ndjson(body, maxEvents)
			}
			return "", nil, malformed("data after the JSON value at byte %d", s.i)
		}
		if !isEnvelope {
			if err := s.add(body[start:end]); err != nil {
				return "", nil, err
			}
		}
		writeKey = key
	case 0:
		return "", nil, malformed("the body is empty")
	default:
		return "", nil, malformed("the body is not a JSON array, an envelope object, an event object or NDJSON (found %q at byte %d)", s.b[s.i], s.i)
	}
	s.ws()
	if s.i < len(s.b) {
		return "", nil, malformed("data after the JSON value at byte %d", s.i)
	}
	return writeKey, s.events, nil
}

var utf8BOM = []byte("\xef\xbb\xbf")

func ndjson(body []byte, maxEvents int) (string, [][]byte, error) {
	s := scanner{b: body, max: maxEvents}
	if err := s.lines(); err != nil {
		return "", nil, err
	}
	return "", s.events, nil
}

type scanner struct {
	b      []byte
	i      int
	max    int
	events [][]byte
	stack  []byte // closing brackets of value's open ones, reused
}

func (s *scanner) peek() byte {
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

func (s *scanner) add(ev []byte) error {
	if len(s.events) >= s.max {
		return &splitError{tooMany: true, msg: fmt.Sprintf("more than %d events in the request (COLLECTOR_MAX_EVENTS=%d)", s.max, s.max)}
	}
	if s.events == nil {
		s.events = make([][]byte, 0, min(s.max, 64))
	}
	s.events = append(s.events, ev)
	return nil
}

// lines splits NDJSON: every non-blank line is an event.
func (s *scanner) lines() error {
	s.events = nil
	rest := s.b
	for len(rest) > 0 {
		line := rest
		if i := bytes.IndexByte(rest, '\n'); i >= 0 {
			line, rest = rest[:i], rest[i+1:]
		} else {
			rest = nil
		}
		if line = bytes.TrimSpace(line); len(line) == 0 {
			continue
		}
		if err := s.add(line); err != nil {
			return err
		}
	}
	if len(s.events) == 0 {
		return malformed("the body is empty")
	}
	return nil
}

// array takes each element of the array at s.i as an event.
func (s *scanner) array() error {
	s.i++ // '['
	s.ws()
	if s.peek() == ']' {
		s.i++
		return nil
	}
	for {
		start := s.i
		if err := s.value(); err != nil {
			return err
		}
		if err := s.add(s.b[start:s.i]); err != nil {
			return err
		}
		s.ws()
		switch s.peek() {
		case ',':
			s.i++
			s.ws()
		case ']':
			s.i++
			return nil
		case 0:
			return malformed("unterminated array: the body ends at byte %d", s.i)
		default:
			return malformed("expected ',' or ']' after an event at byte %d, found %q", s.i, s.b[s.i])
		}
	}
}

// object reads the object at s.i. If it is an envelope (it has an "events"
// member), its events are taken and its write_key returned; otherwise the
// caller takes the whole object as one event.
func (s *scanner) object() (writeKey string, isEnvelope bool, err error) {
	s.i++ // '{'
	var hasEvents, hasKey bool
	var other string
	s.ws()
	if s.peek() == '}' {
		s.i++
		return "", false, nil
	}
	for {
		if s.peek() != '"' {
			return "", hasEvents, malformed("expected a member name at byte %d", s.i)
		}
		nameStart := s.i
		if err := s.str(); err != nil {
			return "", hasEvents, err
		}
		name := memberName(s.b[nameStart:s.i])
		s.ws()
		if s.peek() != ':' {
			return "", hasEvents, malformed("expected ':' after a member name at byte %d", s.i)
		}
		s.i++
		s.ws()
		valStart := s.i
		switch string(name) { // no allocation: the compiler compares the bytes
		case "events":
			if hasEvents {
				return "", true, malformed("the envelope has two events members")
			}
			hasEvents = true
			if s.peek() != '[' {
				return "", true, malformed("the envelope's events must be an array (at byte %d)", s.i)
			}
			if err := s.array(); err != nil {
				return "", true, err
			}
		case "write_key":
			if hasKey {
				return "", hasEvents, malformed("the envelope has two write_key members")
			}
			hasKey = true
			if err := s.value(); err != nil {
				return "", hasEvents, err
			}
			if err := json.Unmarshal(s.b[valStart:s.i], &writeKey); err != nil {
				return "", true, malformed("the envelope's write_key must be a string")
			}
		default:
			if other == "" {
				other = string(name)
			}
			if err := s.value(); err != nil {
				return "", hasEvents, err
			}
		}
		s.ws()
		switch s.peek() {
		case ',':
			s.i++
			s.ws()
		case '}':
			s.i++
			switch {
			case hasEvents && other != "":
				return "", true, malformed("the envelope has a member %q: only write_key and events are allowed", truncateName(other))
			case hasKey && !hasEvents:
				return "", true, malformed("an envelope with write_key needs events")
			}
			return writeKey, hasEvents, nil
		case 0:
			return "", hasEvents, malformed("unterminated object: the body ends at byte %d", s.i)
		default:
			return "", hasEvents, malformed("expected ',' or '}' after a member at byte %d, found %q", s.i, s.b[s.i])
		}
	}
}

// value moves past one JSON value, checking only the structure: strings
// end, brackets match. What a scalar holds is the parser's to judge.
func (s *scanner) value() error {
	stack := s.stack[:0]
	defer func() { s.stack = stack[:0] }()
	for {
		s.ws()
		switch c := s.peek(); c {
		case 0:
			return malformed("unexpected end of the body at byte %d", s.i)
		case '"':
			if err := s.str(); err != nil {
				return err
			}
		case '{', '[':
			if len(stack) >= maxNesting {
				return malformed("nested deeper than %d levels at byte %d", maxNesting, s.i)
			}
			close := byte('}')
			if c == '[' {
				close = ']'
			}
			stack = append(stack, close)
			s.i++
			continue
		case '}', ']':
			if len(stack) == 0 || stack[len(stack)-1] != c {
				return malformed("unexpected %q at byte %d", c, s.i)
			}
			stack = stack[:len(stack)-1]
			s.i++
		case ',', ':':
			if len(stack) == 0 {
				return malformed("expected a value at byte %d, found %q", s.i, c)
			}
			s.i++
			continue
		default:
			start := s.i
			for s.i < len(s.b) && !isDelim(s.b[s.i]) {
				s.i++
			}
			if s.i == start {
				return malformed("unexpected %q at byte %d", c, s.i)
			}
		}
		if len(stack) == 0 {
			return nil
		}
	}
}

func isDelim(c byte) bool {
	switch c {
	case ',', ':', '[', ']', '{', '}', '"', ' ', '\t', '\n', '\r':
		return true
	}
	return false
}

// str moves past the string at s.i.
func (s *scanner) str() error {
	for j := s.i + 1; j < len(s.b); j++ {
		switch s.b[j] {
		case '\\':
			j++
		case '"':
			s.i = j + 1
			return nil
		}
	}
	return malformed("unterminated string at byte %d", s.i)
}

// memberName is the text of the member name raw (quotes included): a slice
// of the body, or decoded when it has escapes, so "ev\u0065nts" is events as
// for any JSON reader.
func memberName(raw []byte) []byte {
	inner := raw[1 : len(raw)-1]
	if bytes.IndexByte(inner, '\\') < 0 {
		return inner
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return inner
	}
	return []byte(s)
}

func truncateName(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
