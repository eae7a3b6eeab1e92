package rules

import (
	"fmt"
	"net/url"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/expr-lang/expr/vm"
)

// A checker judges one record. ok is on the hot path and must not allocate
// when the record passes; explain, called only for a failed record, says
// which field failed and why.
type checker interface {
	ok(rec reflect.Value, m Meta) bool
	explain(rec reflect.Value, m Meta) (field, msg string)
}

// perField applies a per-value test to each field in turn; a null value is
// not judged (missing values are the job of required / not_null).
type perField struct {
	fields []*field
	test   func(f *field, v value) bool
	want   string // what a passing value is, for messages: "is in [a b]"
	// redact keeps the value out of the message (an email address): the
	// reason travels in the dead letter, its metrics and traces, which must
	// not carry personal data beyond the original bytes.
	redact bool
}

func (c *perField) ok(rec reflect.Value, m Meta) bool {
	for _, f := range c.fields {
		if v := f.get(rec, m); !v.null && !c.test(f, v) {
			return false
		}
	}
	return true
}

func (c *perField) explain(rec reflect.Value, m Meta) (string, string) {
	for _, f := range c.fields {
		if v := f.get(rec, m); !v.null && !c.test(f, v) {
			if c.redact {
				return f.name, fmt.Sprintf("%s (%d characters, not shown: personal data): want %s", f.name, utf8.RuneCountInString(v.s), c.want)
			}
			return f.name, fmt.Sprintf("%s %s: want %s", f.name, f.show(v), c.want)
		}
	}
	return "", ""
}

// presence is required (non-null, and a string not blank, an array not
// empty) or not_null (non-null only), of all fields, and of at least one of
// anyOf.
type presence struct {
	fields, anyOf []*field
	blank         bool // required: blank strings and empty arrays count as missing
}

func (c *presence) missing(f *field, rec reflect.Value, m Meta) bool {
	return f.missing(rec, m, c.blank)
}

func (c *presence) ok(rec reflect.Value, m Meta) bool {
	for _, f := range c.fields {
		if c.missing(f, rec, m) {
			return false
		}
	}
	if len(c.anyOf) == 0 {
		return true
	}
	for _, f := range c.anyOf {
		if !c.missing(f, rec, m) {
			return true
		}
	}
	return false
}

func (c *presence) explain(rec reflect.Value, m Meta) (string, string) {
	what := "null"
	if c.blank {
		what = "missing or blank"
	}
	for _, f := range c.fields {
		if c.missing(f, rec, m) {
			return f.name, f.name + " is " + what
		}
	}
	names := make([]string, len(c.anyOf))
	for i, f := range c.anyOf {
		names[i] = f.name
	}
	return c.anyOf[0].name, "none of " + strings.Join(names, ", ") + " is set"
}

// offset judges a timestamp against a reference timestamp of the same
// record (received_at, or the Kafka record's timestamp), never against the
// clock: field - reference must lie in [min, max]. A null reference is not
// judged.
type offset struct {
	fields         []*field
	ref            *field
	min, max       time.Duration
	hasMin, hasMax bool
}

func (c *offset) bad(f *field, rec reflect.Value, m Meta) bool {
	t, ok := f.time(rec, m)
	if !ok {
		return false
	}
	r, ok := c.ref.time(rec, m)
	if !ok {
		return false
	}
	d := t.Sub(r)
	return (c.hasMax && d > c.max) || (c.hasMin && d < c.min)
}

func (c *offset) ok(rec reflect.Value, m Meta) bool {
	for _, f := range c.fields {
		if c.bad(f, rec, m) {
			return false
		}
	}
	return true
}

func (c *offset) explain(rec reflect.Value, m Meta) (string, string) {
	for _, f := range c.fields {
		if !c.bad(f, rec, m) {
			continue
		}
		v, r := f.get(rec, m), c.ref.get(rec, m)
		d := v.t.Sub(r.t)
		if c.hasMax && d > c.max {
			return f.name, fmt.Sprintf("%s %s is %s after %s %s (limit %s)", f.name, f.show(v), d.Round(time.Second), c.ref.name, c.ref.show(r), c.max)
		}
		return f.name, fmt.Sprintf("%s %s is %s before %s %s (limit %s)", f.name, f.show(v), (-d).Round(time.Second), c.ref.name, c.ref.show(r), -c.min)
	}
	return "", ""
}

// exprCheck is a boolean expression over the record, compiled at load and
// typed against the entity's Go struct.
type exprCheck struct {
	src  string
	prog *vm.Program
	vms  sync.Pool
}

func (c *exprCheck) run(rec reflect.Value) (bool, error) {
	machine := c.vms.Get().(*vm.VM)
	defer c.vms.Put(machine)
	out, err := machine.Run(c.prog, rec.Addr().Interface())
	if err != nil {
		return false, err
	}
	b, _ := out.(bool)
	return b, nil
}

func (c *exprCheck) ok(rec reflect.Value, _ Meta) bool {
	b, err := c.run(rec)
	return err == nil && b
}

func (c *exprCheck) explain(rec reflect.Value, _ Meta) (string, string) {
	if _, err := c.run(rec); err != nil {
		return "", fmt.Sprintf("%s: %v", c.src, err)
	}
	return "", c.src + " is false"
}

// Per-value tests.

func inSet(set strSet) func(*field, value) bool {
	return func(_ *field, v value) bool { return set.has(v.s) }
}

func between(hasMin, hasMax bool, lo, hi float64) func(*field, value) bool {
	return func(f *field, v value) bool {
		x := v.f
		switch f.kind {
		case kInt:
			x = float64(v.i)
		case kString:
			x = float64(utf8.RuneCountInString(v.s))
		case kSlice:
			x = float64(v.n)
		}
		return (!hasMin || x >= lo) && (!hasMax || x <= hi)
	}
}

func matches(re *regexp.Regexp) func(*field, value) bool {
	return func(_ *field, v value) bool { return re.MatchString(v.s) }
}

func isURL(schemes strSet, host bool) func(*field, value) bool {
	return func(_ *field, v value) bool {
		if ok, sure := fastURL(v.s, schemes, host); sure {
			return ok
		}
		u, err := url.Parse(v.s)
		if err != nil {
			return false
		}
		if !schemes.has(u.Scheme) {
			return false
		}
		return !host || u.Host != ""
	}
}

// fastURL decides, without allocating, the common case of a plain
// lower-case http(s) URL of printable ASCII with no escapes or user info,
// which url.Parse is known to accept. sure is false for anything else, left
// to url.Parse.
func fastURL(s string, schemes strSet, needHost bool) (ok, sure bool) {
	scheme, rest, found := strings.Cut(s, "://")
	if !found || (scheme != "http" && scheme != "https") {
		return false, false
	}
	if !schemes.has(scheme) {
		return false, true
	}
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	host := rest[:end]
	for i := range len(host) {
		c := host[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-') {
			return false, false // ports, IPv6, user info: url.Parse decides
		}
	}
	for i := end; i < len(rest); i++ {
		if c := rest[i]; c <= ' ' || c >= 0x7f || c == '%' {
			return false, false
		}
	}
	return host != "" || !needHost, true
}

// isEmail is a syntactic check: one @, a local part, and a domain of at
// least two dot-separated labels, no spaces.
func isEmail(_ *field, v value) bool {
	local, domain, ok := strings.Cut(v.s, "@")
	if !ok || local == "" || len(v.s) > 254 || strings.ContainsAny(v.s, " \t\r\n<>()[],;:\"") || strings.Contains(domain, "@") {
		return false
	}
	labels := 0
	for label := range strings.SplitSeq(domain, ".") {
		if label == "" || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		labels++
	}
	return labels >= 2
}

// typeTests: the `type` check on string fields.
var typeTests = map[string]func(string) bool{
	"integer":   func(s string) bool { _, err := parseInt(s); return err == nil },
	"number":    func(s string) bool { _, err := parseFloat(s); return err == nil },
	"boolean":   func(s string) bool { return s == "true" || s == "false" },
	"uuid":      isUUID,
	"date":      func(s string) bool { _, err := time.Parse(time.DateOnly, s); return err == nil },
	"timestamp": func(s string) bool { _, err := time.Parse(time.RFC3339Nano, s); return err == nil },
}

func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := range len(s) {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
				return false
			}
		}
	}
	return true
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
