package rules

import (
	"fmt"
	"regexp"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

func needFields(p *parser, at *yaml.Node, fields []*field, kinds ...kind) error {
	if len(fields) == 0 {
		return p.errf(at, "check %s %v", at.Value, errNoFields)
	}
	if len(kinds) == 0 {
		return nil
	}
	for _, f := range fields {
		ok := false
		for _, k := range kinds {
			ok = ok || f.kind == k
		}
		if !ok {
			names := make([]string, len(kinds))
			for i, k := range kinds {
				names[i] = k.String()
			}
			return p.errf(at, "check %s needs a %s field; %s is %s", at.Value, strings.Join(names, " or "), f.name, f.kind)
		}
	}
	return nil
}

func buildPresence(blank bool) builder {
	return func(p *parser, at *yaml.Node, fields []*field, ps *paramSet) (checker, error) {
		c := &presence{fields: fields, blank: blank}
		if n := ps.get("any_of"); n != nil {
			var err error
			if c.anyOf, err = p.fieldList(n); err != nil {
				return nil, err
			}
		}
		if len(c.fields) == 0 && len(c.anyOf) == 0 {
			return nil, p.errf(at, "check %s needs fields or params.any_of", at.Value)
		}
		return c, nil
	}
}

func buildInSet(p *parser, at *yaml.Node, fields []*field, ps *paramSet) (checker, error) {
	if err := needFields(p, at, fields, kString); err != nil {
		return nil, err
	}
	n := ps.get("values")
	if n == nil {
		return nil, p.errf(at, "check in_set needs params.values")
	}
	vals, err := p.strings(n)
	if err != nil {
		return nil, err
	}
	return &perField{fields: fields, test: inSet(toSet(vals)), want: fmt.Sprintf("one of %v", vals)}, nil
}

// bounds reads params min and max (at least one) as numbers.
func bounds(p *parser, at *yaml.Node, ps *paramSet) (hasMin, hasMax bool, lo, hi float64, err error) {
	if n := ps.get("min"); n != nil {
		if lo, err = p.number(n); err != nil {
			return
		}
		hasMin = true
	}
	if n := ps.get("max"); n != nil {
		if hi, err = p.number(n); err != nil {
			return
		}
		hasMax = true
	}
	if !hasMin && !hasMax {
		err = p.errf(at, "check %s needs params.min or params.max", at.Value)
	} else if hasMin && hasMax && lo > hi {
		err = p.errf(at, "check %s: min %v is more than max %v", at.Value, lo, hi)
	}
	return
}

func describe(hasMin, hasMax bool, lo, hi any) string {
	switch {
	case hasMin && hasMax:
		return fmt.Sprintf("between %v and %v", lo, hi)
	case hasMin:
		return fmt.Sprintf("at least %v", lo)
	}
	return fmt.Sprintf("at most %v", hi)
}

// buildBetween: numbers between min and max; a timestamp between min and
// max (durations) from params.reference, another timestamp of the record.
func buildBetween(p *parser, at *yaml.Node, fields []*field, ps *paramSet) (checker, error) {
	if err := needFields(p, at, fields, kInt, kFloat, kTime); err != nil {
		return nil, err
	}
	if fields[0].kind == kTime {
		if err := needFields(p, at, fields, kTime); err != nil {
			return nil, err
		}
		c := &offset{fields: fields}
		rn := ps.get("reference")
		if rn == nil {
			return nil, p.errf(at, "check between on a timestamp needs params.reference (a timestamp field, or %s): rules never read the clock", RecordTimestamp)
		}
		var err error
		if c.ref, err = p.timeField(rn); err != nil {
			return nil, err
		}
		if n := ps.get("min"); n != nil {
			if c.min, err = p.duration(n); err != nil {
				return nil, err
			}
			c.hasMin = true
		}
		if n := ps.get("max"); n != nil {
			if c.max, err = p.duration(n); err != nil {
				return nil, err
			}
			c.hasMax = true
		}
		if !c.hasMin && !c.hasMax {
			return nil, p.errf(at, "check between needs params.min or params.max")
		}
		return c, nil
	}
	if err := needFields(p, at, fields, kInt, kFloat); err != nil {
		return nil, err
	}
	hasMin, hasMax, lo, hi, err := bounds(p, at, ps)
	if err != nil {
		return nil, err
	}
	return &perField{fields: fields, test: between(hasMin, hasMax, lo, hi), want: describe(hasMin, hasMax, lo, hi)}, nil
}

func (p *parser) timeField(n *yaml.Node) (*field, error) {
	f, err := p.field(n)
	if err != nil {
		return nil, err
	}
	if f.kind != kTime {
		return nil, p.errf(n, "%s is %s, not a timestamp", f.name, f.kind)
	}
	return f, nil
}

// buildFreshness: a timestamp at most max_ahead after and max_age before
// params.reference (default received_at).
func buildFreshness(p *parser, at *yaml.Node, fields []*field, ps *paramSet) (checker, error) {
	if err := needFields(p, at, fields, kTime); err != nil {
		return nil, err
	}
	c := &offset{fields: fields}
	var err error
	if rn := ps.get("reference"); rn != nil {
		c.ref, err = p.timeField(rn)
	} else {
		c.ref, err = p.timeField(&yaml.Node{Kind: yaml.ScalarNode, Value: "received_at", Line: at.Line})
	}
	if err != nil {
		return nil, err
	}
	if n := ps.get("max_ahead"); n != nil {
		if c.max, err = p.duration(n); err != nil {
			return nil, err
		}
		c.hasMax = true
	}
	if n := ps.get("max_age"); n != nil {
		var age time.Duration
		if age, err = p.duration(n); err != nil {
			return nil, err
		}
		c.min, c.hasMin = -age, true
	}
	if !c.hasMin && !c.hasMax {
		return nil, p.errf(at, "check freshness needs params.max_ahead or params.max_age")
	}
	return c, nil
}

func buildLength(p *parser, at *yaml.Node, fields []*field, ps *paramSet) (checker, error) {
	if err := needFields(p, at, fields, kString, kSlice); err != nil {
		return nil, err
	}
	hasMin, hasMax, lo, hi, err := bounds(p, at, ps)
	if err != nil {
		return nil, err
	}
	return &perField{fields: fields, test: between(hasMin, hasMax, lo, hi), want: "length " + describe(hasMin, hasMax, lo, hi)}, nil
}

func buildRegex(p *parser, at *yaml.Node, fields []*field, ps *paramSet) (checker, error) {
	if err := needFields(p, at, fields, kString); err != nil {
		return nil, err
	}
	n := ps.get("pattern")
	if n == nil {
		return nil, p.errf(at, "check regex needs params.pattern")
	}
	src, err := p.scalar(n)
	if err != nil {
		return nil, err
	}
	re, err := regexp.Compile(src)
	if err != nil {
		return nil, p.errf(n, "pattern %q: %v", src, err)
	}
	return &perField{fields: fields, test: matches(re), want: "a match of " + src}, nil
}

func buildURL(p *parser, at *yaml.Node, fields []*field, ps *paramSet) (checker, error) {
	if err := needFields(p, at, fields, kString); err != nil {
		return nil, err
	}
	schemes := []string{"http", "https"}
	if n := ps.get("schemes"); n != nil {
		var err error
		if schemes, err = p.strings(n); err != nil {
			return nil, err
		}
	}
	host := true
	if n := ps.get("require_host"); n != nil {
		s, err := p.scalar(n)
		if err != nil {
			return nil, err
		}
		if s != "true" && s != "false" {
			return nil, p.errf(n, "require_host: want true or false")
		}
		host = s == "true"
	}
	want := "an absolute " + strings.Join(schemes, "/") + " URL"
	if host {
		want += " with a host"
	}
	return &perField{fields: fields, test: isURL(toSet(schemes), host), want: want}, nil
}

func buildString(want string, test func(*field, value) bool) builder {
	return func(p *parser, at *yaml.Node, fields []*field, _ *paramSet) (checker, error) {
		if err := needFields(p, at, fields, kString); err != nil {
			return nil, err
		}
		return &perField{fields: fields, test: test, want: want}, nil
	}
}

// buildEmail is the email check: its failure message never shows the
// address (personal data).
func buildEmail(p *parser, at *yaml.Node, fields []*field, ps *paramSet) (checker, error) {
	c, err := buildString("an email address", isEmail)(p, at, fields, ps)
	if err != nil {
		return nil, err
	}
	c.(*perField).redact = true
	return c, nil
}

func buildType(p *parser, at *yaml.Node, fields []*field, ps *paramSet) (checker, error) {
	if err := needFields(p, at, fields, kString); err != nil {
		return nil, err
	}
	n := ps.get("is")
	if n == nil {
		return nil, p.errf(at, "check type needs params.is (one of %s)", strings.Join(sortedKeys(typeTests), ", "))
	}
	t, ok := typeTests[n.Value]
	if !ok {
		return nil, p.errf(n, "type %q: want one of %s", n.Value, strings.Join(sortedKeys(typeTests), ", "))
	}
	return &perField{fields: fields, test: func(_ *field, v value) bool { return t(v.s) }, want: "a string holding a " + n.Value}, nil
}

func buildExpr(p *parser, at *yaml.Node, fields []*field, ps *paramSet) (checker, error) {
	if len(fields) > 0 {
		return nil, p.errf(at, "check expr names its fields in params.expression, not in field/fields")
	}
	n := ps.get("expression")
	if n == nil {
		return nil, p.errf(at, "check expr needs params.expression")
	}
	return p.expr(n)
}
