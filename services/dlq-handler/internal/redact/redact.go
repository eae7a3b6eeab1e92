// Package redact hides personal data in what dlq-handler shows a caller
// without the PII right (the contract's rules): in decoded originals every
// value of a personal field (email, name, phone, address, ...) at any depth,
// and every email-like string anywhere; in free text, email-like substrings.
package redact

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
)

// Mask replaces what is hidden.
const Mask = "[redacted]"

// Segments are the name segments (lower case) that make a field personal
// data: a field is personal when one of the segments of its name (split at
// anything but letters and digits, and between a lower-case letter or digit
// and an upper-case letter: client_ip, billing_email, customer.first_name,
// clientIP, shippingAddress) is one of them.
var Segments = []string{
	"email", "emailaddress", "mail",
	"name", "firstname", "lastname", "fullname", "surname", "username",
	"phone", "telephone", "mobile",
	"address", "street", "city", "postcode", "postal", "postalcode", "zip", "zipcode",
	"ip", "ipv4", "ipv6", "ipaddress",
}

// FieldPattern matches a personal field's name after CamelPattern's
// segments were split with "_" and the name lower-cased. It and the other
// patterns are written so that Go's regexp and PostgreSQL's ~ /
// regexp_replace read them alike for the retention's masking in SQL (the
// q search of callers without the PII right reads message_redacted,
// computed here in Go at ingest: store.SearchMessage).
var FieldPattern = `(^|[^a-z0-9])(` + strings.Join(Segments, "|") + `)([^a-z0-9]|$)`

// CamelPattern finds the segment boundaries inside camelCase names
// (replaced by "${1}_${2}", in SQL '\1_\2').
const CamelPattern = `([a-z0-9])([A-Z])`

// QuotedPattern matches a double-quoted value as fmt's %q writes it (the
// validator quotes the string values it names in its messages).
const QuotedPattern = `"([^"\\]|\\.)*"`

// QuotedMask replaces a quoted value.
const QuotedMask = `"` + Mask + `"`

var (
	fieldRE  = regexp.MustCompile(FieldPattern)
	camelRE  = regexp.MustCompile(CamelPattern)
	quotedRE = regexp.MustCompile(QuotedPattern)
)

// Field reports whether a field named name holds personal data: one of
// its segments is in Segments (case-insensitive). name may be a path
// (customer.email).
func Field(name string) bool {
	return fieldRE.MatchString(strings.ToLower(camelRE.ReplaceAllString(name, "${1}_${2}")))
}

// Message redacts a reason's message for a caller without the PII right:
// the email-like substrings always, and every quoted value when the dead
// letter is pii or the reason's field is personal (the validator writes
// `name "John Smith": want ...`).
func Message(msg, field string, pii bool) string {
	s := Text(msg)
	if pii || Field(field) {
		s = quotedRE.ReplaceAllString(s, QuotedMask)
	}
	return s
}

// Quoted replaces the quoted values of s.
func Quoted(s string) string { return quotedRE.ReplaceAllString(s, QuotedMask) }

// EmailPattern matches email-like strings: a local part, @, a dotted domain.
const EmailPattern = `[A-Za-z0-9.!#$%&'*+/=?^_{|}~-]+@[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)+`

var emailRE = regexp.MustCompile(EmailPattern)

// HasEmail reports whether s holds an email-like string.
func HasEmail(s string) bool { return emailRE.MatchString(s) }

// Text replaces the email-like substrings of s.
func Text(s string) string { return emailRE.ReplaceAllString(s, Mask) }

// Value returns a copy of a decoded JSON value (map[string]any, []any,
// string, numbers, bools, nil: what encoding/json produces) with every
// value of a personal field replaced by Mask, whatever it holds, and every
// email-like substring of the other strings replaced. It reports whether
// anything was replaced.
func Value(v any) (any, bool) { return Walk(v, PersonalValue) }

// PersonalValue is Walk's rule of Value: a non-null value of a personal field.
func PersonalValue(key string, x any) bool { return Field(key) && x != nil }

// SearchText is a Walk rule: a non-empty string under the key "q" (a
// filter's search text), masked whole.
func SearchText(key string, x any) bool {
	q, ok := x.(string)
	return ok && key == "q" && q != ""
}

// Walk returns a copy of a decoded JSON value with every map value whose
// (key, value) whole selects replaced by Mask, and every email-like
// substring of the other strings and of the map keys replaced (keys that
// collide once redacted are numbered, in key order, so the same input
// always gives the same output). It reports whether anything changed.
func Walk(v any, whole func(key string, x any) bool) (any, bool) {
	switch v := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(v))
		changed := false
		for _, k := range slices.Sorted(maps.Keys(v)) {
			x, key := v[k], k
			if t := Text(k); t != k {
				// An email as a map key (an Avro map keyed by address): keep
				// the entries apart.
				key, changed = t, true
				for i := 2; hasKey(out, key); i++ {
					key = fmt.Sprintf("%s#%d", t, i)
				}
			}
			if whole(k, x) {
				out[key], changed = Mask, changed || x != Mask
				continue
			}
			y, c := Walk(x, whole)
			out[key], changed = y, changed || c
		}
		return out, changed
	case []any:
		out := make([]any, len(v))
		changed := false
		for i, x := range v {
			y, c := Walk(x, whole)
			out[i], changed = y, changed || c
		}
		return out, changed
	case string:
		s := Text(v)
		return s, s != v
	}
	return v, false
}

func hasKey(m map[string]any, k string) bool {
	_, ok := m[k]
	return ok
}
