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

// fields are the names (lower case) whose values are personal data.
var fields = map[string]bool{
	"email": true, "name": true, "phone": true, "address": true, "first_name": true, "last_name": true,
	"street": true, "city": true, "postcode": true, "zip": true, "ip": true,
}

// Field reports whether a field named name holds personal data
// (case-insensitive).
func Field(name string) bool { return fields[strings.ToLower(name)] }

// emailRE matches email-like strings: a local part, @, a dotted domain.
var emailRE = regexp.MustCompile(`[A-Za-z0-9.!#$%&'*+/=?^_{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+`)

// HasEmail reports whether s holds an email-like string.
func HasEmail(s string) bool { return emailRE.MatchString(s) }

// Text replaces the email-like substrings of s.
func Text(s string) string { return emailRE.ReplaceAllString(s, Mask) }

// Value returns a copy of a decoded JSON value (map[string]any, []any,
// string, numbers, bools, nil: what encoding/json produces) with every
// value of a personal field replaced by Mask, whatever it holds, and every
// email-like substring of the other strings replaced. It reports whether
// anything was replaced.
func Value(v any) (any, bool) {
	switch v := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(v))
		changed := false
		// In key order, so colliding redacted keys are numbered the same way every time.
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
			if Field(k) && x != nil {
				out[key], changed = Mask, true
				continue
			}
			y, c := Value(x)
			out[key], changed = y, changed || c
		}
		return out, changed
	case []any:
		out := make([]any, len(v))
		changed := false
		for i, x := range v {
			y, c := Value(x)
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
