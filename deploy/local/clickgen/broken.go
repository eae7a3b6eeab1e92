package clickgen

import (
	"encoding/base64"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// nextBroken returns a record with exactly one defect of a randomly chosen
// kind. It is built from a realistic event of a throwaway session that is
// never continued: the valid sessions' funnels stay complete, so funnel
// checks on the warehouse are not disturbed by records that were meant to be
// rejected. The fresh session id also makes every broken value unique, which
// the tests rely on to match dead letters without an event id.
func (g *Generator) nextBroken() Record {
	kind := g.kinds[g.rng.IntN(len(g.kinds))]
	exp, _ := ExpectationFor(kind)

	var s session
	g.startSession(&s)
	var e event
	g.emit(&s, actLanding, &e)
	// wrong_type breaks quantity on a cart event half the time; other kinds
	// use whichever event the visitor happens to produce.
	wrongQuantity := kind == KindWrongType && g.rng.IntN(2) == 0
	switch {
	case wrongQuantity:
		g.emit(&s, actProduct, &e)
		g.emit(&s, actAddToCart, &e)
	default:
		switch x := g.rng.IntN(10); {
		case x < 3:
			g.emit(&s, actProduct, &e)
		case x < 5:
			g.emit(&s, actSearch, &e)
		case x < 6:
			g.emit(&s, actProduct, &e)
			g.emit(&s, actAddToCart, &e)
		}
	}

	var p patch
	switch kind {
	case KindMalformedJSON:
		return g.malformed(&e, exp)
	case KindWrongType:
		switch {
		case wrongQuantity:
			p = patch{field: "quantity", raw: `"two"`}
		case g.rng.IntN(2) == 0:
			p = patch{field: "session_id", raw: strconv.FormatUint(g.rng.Uint64N(1e9), 10)}
		default:
			p = patch{field: "event_timestamp", raw: strconv.FormatInt(e.ts.UnixMilli(), 10)}
		}
	case KindMissingField:
		required := [...]string{"event_id", "event_timestamp", "event_type", "session_id", "page_url"}
		p = patch{field: required[g.rng.IntN(len(required))], omit: true}
	case KindUnknownEventType:
		unknown := [...]string{"hover", "scroll", "share", "video_play"}
		e.typ = unknown[g.rng.IntN(len(unknown))]
	case KindOversized:
		e.userAgent = oversizedUserAgent(e.userAgent, MaxValueBytes+512+g.rng.IntN(4096))
	case KindBadTimestamp:
		if g.rng.IntN(2) == 0 {
			e.tsRaw = "yesterday"
		} else {
			// Month 13, day 45: shaped like RFC 3339, so only a real parse
			// (not a regexp) rejects it.
			e.tsRaw = fmt.Sprintf("%04d-13-45T%02d:%02d:%02d.%06dZ",
				e.ts.Year(), e.ts.Hour(), e.ts.Minute(), e.ts.Second(), e.ts.Nanosecond()/1000)
		}
	case KindFutureTimestamp:
		e.ts = e.ts.Add(2 * time.Hour)
	case KindStaleTimestamp:
		e.ts = e.ts.Add(-30 * 24 * time.Hour)
	case KindBadURL:
		if g.rng.IntN(2) == 0 {
			e.pageURL = "not a url"
		} else {
			e.pageURL = "ftp//x"
		}
	case KindMissingIdentity:
		e.userID, e.anonID = "", ""
	}
	return g.record(&e, p, exp)
}

// malformed returns a value that is not a JSON object: a valid event cut
// short (a producer that died mid-write), a Python dict repr, or a
// form-encoded body posted to the wrong place. None has a usable event id.
func (g *Generator) malformed(e *event, exp Expectation) Record {
	g.buf = appendEvent(g.buf[:0], e, patch{})
	var v []byte
	switch g.rng.IntN(4) {
	case 0, 1:
		// Cut after the event id (so the bytes stay unique) and before the
		// closing brace (so it can never be valid JSON).
		minCut := len(`{"event_id":"`) + len(e.id) + 1
		cut := minCut + g.rng.IntN(len(g.buf)-1-minCut)
		v = append([]byte(nil), g.buf[:cut]...)
	case 2:
		v = fmt.Appendf(nil, "{'event_id': '%s', 'event_type': '%s', 'session_id': '%s', 'page_url': '%s', 'user_id': None}",
			e.id, e.typ, e.sessionID, e.pageURL)
	default:
		form := url.Values{
			"event_id":   {e.id},
			"event_type": {e.typ},
			"session_id": {e.sessionID},
			"page_url":   {e.pageURL},
		}
		v = []byte(form.Encode())
	}
	return Record{Key: []byte(e.sessionID), Value: v, Expect: exp}
}

// oversizedUserAgent pads a real user agent to n bytes, the way a broken SDK
// that appends its whole state to the user agent does.
func oversizedUserAgent(ua string, n int) string {
	var b strings.Builder
	b.Grow(n)
	b.WriteString(ua)
	b.WriteString(" state/")
	chunk := base64.RawURLEncoding.EncodeToString([]byte(ua))
	for b.Len() < n {
		b.WriteString(chunk[:min(len(chunk), n-b.Len())])
	}
	return b.String()
}
