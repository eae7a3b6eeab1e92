package rules

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/vm"
	"go.yaml.in/yaml/v3"
)

// Params are the values a rule file may reference as ${NAME} in place of a
// parameter (e.g. MAX_FUTURE_SKEW), so the documented environment variables
// keep overriding them. A reference to a name not in Params is a load error.
type Params map[string]string

// Sets are the loaded rule sets by entity name.
type Sets map[string]*Set

// Load reads every *.yaml file of fsys (one entity per file) and compiles it.
// dir only names the files in errors (e.g. the RULES_DIR value). The first
// invalid file stops loading with an error "<file>:<line>: rule <id>: ...".
func Load(fsys fs.FS, dir string, params Params) (Sets, error) {
	names, err := fs.Glob(fsys, "*.yaml")
	if err != nil {
		return nil, err
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("%s: no *.yaml rule files", dir)
	}
	sort.Strings(names)
	sets := Sets{}
	for _, name := range names {
		b, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, err
		}
		file := name
		if dir != "" {
			file = path.Join(dir, name)
		}
		s, err := Parse(file, b, params)
		if err != nil {
			return nil, err
		}
		if prev, ok := sets[s.Entity.Name]; ok {
			return nil, fmt.Errorf("%s: entity %s already has rules in %s", file, s.Entity.Name, prev.File)
		}
		sets[s.Entity.Name] = s
	}
	return sets, nil
}

// loadError is an error at a line of a file, in a rule when id is set.
type loadError struct {
	file string
	line int
	id   string
	msg  string
}

func (e *loadError) Error() string {
	if e.id != "" {
		return fmt.Sprintf("%s:%d: rule %s: %s", e.file, e.line, e.id, e.msg)
	}
	return fmt.Sprintf("%s:%d: %s", e.file, e.line, e.msg)
}

type parser struct {
	file   string
	params Params
	entity Entity
	names  map[string]string // avro name -> Go name, for expressions
	id     string            // the rule being parsed
}

func (p *parser) errf(n *yaml.Node, format string, args ...any) error {
	line := 0
	if n != nil {
		line = n.Line
	}
	return &loadError{file: p.file, line: line, id: p.id, msg: fmt.Sprintf(format, args...)}
}

// Parse compiles one rule file's content; file names it in errors.
func Parse(file string, content []byte, params Params) (*Set, error) {
	p := &parser{file: file, params: params}
	var doc yaml.Node
	if err := yaml.Unmarshal(content, &doc); err != nil {
		// yaml's messages start with "yaml: line N: ...".
		msg := strings.TrimPrefix(err.Error(), "yaml: ")
		if rest, ok := strings.CutPrefix(msg, "line "); ok {
			if n, after, ok := strings.Cut(rest, ": "); ok {
				if line, err := strconv.Atoi(n); err == nil {
					if id := lastID(content, line); id != "" {
						after += " (after rule " + id + ")"
					}
					return nil, &loadError{file: file, line: line, msg: after}
				}
			}
		}
		return nil, &loadError{file: file, line: 1, msg: msg}
	}
	if len(doc.Content) == 0 {
		return nil, &loadError{file: file, line: 1, msg: "empty file"}
	}
	top, err := p.mapping(doc.Content[0], "entity", "version", "description", "rules")
	if err != nil {
		return nil, err
	}
	en := top["entity"]
	if en == nil {
		return nil, p.errf(doc.Content[0], "missing entity (one of %s)", entityNames())
	}
	var ok bool
	if p.entity, ok = entityNamed(en.Value); !ok {
		return nil, p.errf(en, "unknown entity %q (known: %s)", en.Value, entityNames())
	}
	if p.names, err = goNames(p.entity.Type); err != nil {
		return nil, p.errf(en, "%v", err)
	}
	ver := top["version"]
	if ver == nil || ver.Kind != yaml.ScalarNode || ver.Value == "" {
		return nil, p.errf(doc.Content[0], "missing version")
	}
	sum := sha256.Sum256(content)
	s := &Set{Entity: p.entity, File: file, Version: ver.Value, Hash: hex.EncodeToString(sum[:])[:12],
		ptr: reflect.PointerTo(p.entity.Type)}
	s.tag = " [rules " + s.Label() + "]"
	rs := top["rules"]
	if rs == nil || rs.Kind != yaml.SequenceNode || len(rs.Content) == 0 {
		return nil, p.errf(doc.Content[0], "rules must be a non-empty list")
	}
	seen := map[string]int{}
	for _, rn := range rs.Content {
		p.id = ""
		r, err := p.rule(rn)
		if err != nil {
			return nil, err
		}
		if line, dup := seen[r.ID]; dup {
			return nil, p.errf(rn, "duplicate rule id (first at line %d)", line)
		}
		seen[r.ID] = rn.Line
		s.rules = append(s.rules, r)
	}
	return s, nil
}

var idLine = regexp.MustCompile(`^\s*-?\s*id:\s*([A-Za-z0-9_.-]+)\s*$`)

// lastID is the id of the last rule that starts before line, to place a
// syntax error the YAML parser reports by line only.
func lastID(content []byte, line int) string {
	id := ""
	for i, l := range strings.Split(string(content), "\n") {
		if i+1 >= line {
			break
		}
		if m := idLine.FindStringSubmatch(l); m != nil {
			id = m[1]
		}
	}
	return id
}

// mapping checks n is a mapping with only the allowed keys and returns it.
func (p *parser) mapping(n *yaml.Node, allowed ...string) (map[string]*yaml.Node, error) {
	if n.Kind != yaml.MappingNode {
		return nil, p.errf(n, "want a mapping")
	}
	out := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		if !slices.Contains(allowed, k.Value) {
			return nil, p.errf(k, "unknown key %q (allowed: %s)", k.Value, strings.Join(allowed, ", "))
		}
		if _, dup := out[k.Value]; dup {
			return nil, p.errf(k, "key %q given twice", k.Value)
		}
		out[k.Value] = n.Content[i+1]
	}
	return out, nil
}

var clauseKeys = []string{"check", "field", "fields", "params", "when", "severity"}

func (p *parser) rule(n *yaml.Node) (Rule, error) {
	if n.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == "id" {
				p.id = n.Content[i+1].Value
			}
		}
	}
	m, err := p.mapping(n, append([]string{"id", "entity", "description", "all"}, clauseKeys...)...)
	if err != nil {
		return Rule{}, err
	}
	if p.id == "" {
		return Rule{}, p.errf(n, "missing id")
	}
	r := Rule{ID: p.id, Line: n.Line}
	if e := m["entity"]; e != nil && e.Value != p.entity.Name {
		return Rule{}, p.errf(e, "entity %q in a file of entity %s", e.Value, p.entity.Name)
	}
	if d := m["description"]; d != nil {
		r.Description = d.Value
	}
	if r.Description == "" {
		return Rule{}, p.errf(n, "missing description")
	}
	sev := m["severity"]
	if sev == nil {
		return Rule{}, p.errf(n, "missing severity (error or warn)")
	}
	if r.Severity, err = p.severity(sev); err != nil {
		return Rule{}, err
	}
	if all := m["all"]; all != nil {
		if m["check"] != nil {
			return Rule{}, p.errf(all, "a rule has either a check or all (a list of clauses), not both")
		}
		if all.Kind != yaml.SequenceNode || len(all.Content) == 0 {
			return Rule{}, p.errf(all, "all must be a non-empty list of clauses")
		}
		for _, k := range []string{"field", "fields", "params"} {
			if n := m[k]; n != nil {
				return Rule{}, p.errf(n, "%s belongs in a clause of all, not beside it", k)
			}
		}
		// A when beside all restricts every clause.
		var when []condition
		if w := m["when"]; w != nil {
			if when, err = p.when(w); err != nil {
				return Rule{}, err
			}
		}
		for _, cn := range all.Content {
			cm, err := p.mapping(cn, clauseKeys...)
			if err != nil {
				return Rule{}, err
			}
			cl, err := p.clause(cn, cm, r.Severity)
			if err != nil {
				return Rule{}, err
			}
			cl.when = append(slices.Clip(when), cl.when...)
			r.clauses = append(r.clauses, cl)
		}
		return r, nil
	}
	cl, err := p.clause(n, m, r.Severity)
	if err != nil {
		return Rule{}, err
	}
	r.clauses = []clause{cl}
	return r, nil
}

func (p *parser) severity(n *yaml.Node) (Severity, error) {
	switch n.Value {
	case "error":
		return Error, nil
	case "warn":
		return Warn, nil
	}
	return 0, p.errf(n, "severity %q: want error or warn", n.Value)
}

func (p *parser) clause(n *yaml.Node, m map[string]*yaml.Node, sev Severity) (clause, error) {
	cl := clause{severity: sev}
	var err error
	if s := m["severity"]; s != nil {
		if cl.severity, err = p.severity(s); err != nil {
			return cl, err
		}
	}
	if w := m["when"]; w != nil {
		if cl.when, err = p.when(w); err != nil {
			return cl, err
		}
	}
	cn := m["check"]
	if cn == nil {
		return cl, p.errf(n, "missing check (one of %s)", strings.Join(sortedKeys(checkBuilders), ", "))
	}
	build, ok := checkBuilders[cn.Value]
	if !ok {
		return cl, p.errf(cn, "unknown check %q (known: %s)", cn.Value, strings.Join(sortedKeys(checkBuilders), ", "))
	}
	var fields []*field
	if f := m["field"]; f != nil {
		if m["fields"] != nil {
			return cl, p.errf(f, "field and fields both given")
		}
		ff, err := p.field(f)
		if err != nil {
			return cl, err
		}
		fields = []*field{ff}
	}
	if f := m["fields"]; f != nil {
		if fields, err = p.fieldList(f); err != nil {
			return cl, err
		}
	}
	pm := &paramSet{p: p, at: cn, nodes: map[string]*yaml.Node{}}
	if pn := m["params"]; pn != nil {
		if pn.Kind != yaml.MappingNode {
			return cl, p.errf(pn, "params must be a mapping")
		}
		for i := 0; i+1 < len(pn.Content); i += 2 {
			pm.nodes[pn.Content[i].Value] = pn.Content[i+1]
			pm.keys = append(pm.keys, pn.Content[i])
		}
	}
	if cl.check, err = build(p, cn, fields, pm); err != nil {
		return cl, err
	}
	if err := pm.unused(); err != nil {
		return cl, err
	}
	return cl, nil
}

func (p *parser) field(n *yaml.Node) (*field, error) {
	if n.Kind != yaml.ScalarNode {
		return nil, p.errf(n, "want a field name")
	}
	f, err := resolve(p.entity, n.Value)
	if err != nil {
		return nil, p.errf(n, "%v", err)
	}
	return f, nil
}

func (p *parser) fieldList(n *yaml.Node) ([]*field, error) {
	if n.Kind != yaml.SequenceNode || len(n.Content) == 0 {
		return nil, p.errf(n, "want a non-empty list of field names")
	}
	var out []*field
	for _, c := range n.Content {
		f, err := p.field(c)
		if err != nil {
			return nil, err
		}
		out = append(out, f)
	}
	return out, nil
}

// when is either an expression (a string), or a mapping of field to a list
// of values (the field is one of them) or to present / absent.
func (p *parser) when(n *yaml.Node) ([]condition, error) {
	if n.Kind == yaml.ScalarNode {
		e, err := p.expr(n)
		if err != nil {
			return nil, err
		}
		return []condition{{expr: e}}, nil
	}
	if n.Kind != yaml.MappingNode {
		return nil, p.errf(n, "when must be an expression or a mapping of field to values, present or absent")
	}
	var out []condition
	for i := 0; i+1 < len(n.Content); i += 2 {
		f, err := p.field(n.Content[i])
		if err != nil {
			return nil, err
		}
		c := condition{f: f}
		v := n.Content[i+1]
		switch {
		case v.Kind == yaml.ScalarNode && v.Value == "present":
			c.present = true
		case v.Kind == yaml.ScalarNode && v.Value == "absent":
			c.absent = true
		default:
			if f.kind != kString {
				return nil, p.errf(v, "when %s: a list of values needs a string field (%s is %s)", f.name, f.name, f.kind)
			}
			vals, err := p.strings(v)
			if err != nil {
				return nil, err
			}
			c.set = toSet(vals)
		}
		out = append(out, c)
	}
	return out, nil
}

// subst resolves a ${NAME} scalar to its Params value.
func (p *parser) subst(n *yaml.Node) (string, bool, error) {
	if n.Kind != yaml.ScalarNode {
		return "", false, nil
	}
	name, ok := strings.CutPrefix(n.Value, "${")
	if !ok {
		return n.Value, false, nil
	}
	name, ok = strings.CutSuffix(name, "}")
	v, known := p.params[name]
	if !ok || !known {
		return "", false, p.errf(n, "%s: unknown parameter reference (known: %s)", n.Value, strings.Join(sortedKeys(p.params), ", "))
	}
	return v, true, nil
}

func (p *parser) scalar(n *yaml.Node) (string, error) {
	if n.Kind != yaml.ScalarNode {
		return "", p.errf(n, "want a single value")
	}
	v, _, err := p.subst(n)
	return v, err
}

// strings reads a list of strings, or a ${NAME} whose value is a
// comma-separated list.
func (p *parser) strings(n *yaml.Node) ([]string, error) {
	if v, ok, err := p.subst(n); err != nil {
		return nil, err
	} else if ok {
		var out []string
		for s := range strings.SplitSeq(v, ",") {
			if s = strings.TrimSpace(s); s != "" {
				out = append(out, s)
			}
		}
		if len(out) == 0 {
			return nil, p.errf(n, "%s is empty", n.Value)
		}
		return out, nil
	}
	if n.Kind != yaml.SequenceNode || len(n.Content) == 0 {
		return nil, p.errf(n, "want a non-empty list")
	}
	var out []string
	for _, c := range n.Content {
		s, err := p.scalar(c)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

func (p *parser) duration(n *yaml.Node) (time.Duration, error) {
	s, err := p.scalar(n)
	if err != nil {
		return 0, err
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, p.errf(n, "%q is not a duration (use e.g. 5m, 168h, -1h)", s)
	}
	return d, nil
}

func (p *parser) number(n *yaml.Node) (float64, error) {
	s, err := p.scalar(n)
	if err != nil {
		return 0, err
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, p.errf(n, "%q is not a number", s)
	}
	return f, nil
}

// renamer rewrites the Avro names of an expression to the Go field names
// expr resolves, before expr type-checks it.
type renamer map[string]string

func (r renamer) Visit(node *ast.Node) {
	switch n := (*node).(type) {
	case *ast.IdentifierNode:
		if g, ok := r[n.Value]; ok {
			n.Value = g
		}
	case *ast.MemberNode:
		if s, ok := n.Property.(*ast.StringNode); ok {
			if g, ok := r[s.Value]; ok {
				s.Value = g
			}
		}
	}
}

func (p *parser) expr(n *yaml.Node) (*exprCheck, error) {
	src, err := p.scalar(n)
	if err != nil {
		return nil, err
	}
	prog, err := expr.Compile(src, expr.Env(reflect.New(p.entity.Type).Elem().Interface()), expr.AsBool(), expr.Patch(renamer(p.names)))
	if err != nil {
		// expr's messages quote Go names: say them in Avro names.
		msg := err.Error()
		for avro, g := range p.names {
			msg = strings.ReplaceAll(msg, " "+g+" ", " "+avro+" ")
		}
		return nil, p.errf(n, "expression %q: %s", src, firstLine(msg))
	}
	c := &exprCheck{src: src, prog: prog}
	c.vms.New = func() any { return &vm.VM{} }
	return c, nil
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// strSet is a set of strings: a slice scanned in order while small (faster
// than hashing for the few event types a rule names), a map when large.
type strSet struct {
	few  []string
	many map[string]struct{}
}

const fewStrings = 8

func (s strSet) has(v string) bool {
	if s.many != nil {
		_, ok := s.many[v]
		return ok
	}
	for _, x := range s.few {
		if x == v {
			return true
		}
	}
	return false
}

func toSet(vals []string) strSet {
	if len(vals) <= fewStrings {
		return strSet{few: slices.Clone(vals)}
	}
	set := make(map[string]struct{}, len(vals))
	for _, v := range vals {
		set[v] = struct{}{}
	}
	return strSet{many: set}
}

// paramSet is a clause's params; a param no check reads is a load error.
type paramSet struct {
	p     *parser
	at    *yaml.Node
	nodes map[string]*yaml.Node
	keys  []*yaml.Node
	used  []string
}

func (ps *paramSet) get(name string) *yaml.Node {
	ps.used = append(ps.used, name)
	return ps.nodes[name]
}

func (ps *paramSet) unused() error {
	for _, k := range ps.keys {
		if !slices.Contains(ps.used, k.Value) {
			return ps.p.errf(k, "check %s has no parameter %q", ps.at.Value, k.Value)
		}
	}
	return nil
}

var errNoFields = errors.New("needs field or fields")

type builder func(p *parser, at *yaml.Node, fields []*field, ps *paramSet) (checker, error)

// checkBuilders is the table of checks a rule may name.
var checkBuilders = map[string]builder{
	"required":         buildPresence(true),
	"not_null":         buildPresence(false),
	"in_set":           buildInSet,
	"between":          buildBetween,
	"length":           buildLength,
	"regex":            buildRegex,
	"url":              buildURL,
	"email":            buildEmail,
	"currency_iso4217": buildString("is an ISO 4217 currency code", func(_ *field, v value) bool { _, ok := iso4217[v.s]; return ok }),
	"country_iso3166":  buildString("is an ISO 3166-1 alpha-2 country code", func(_ *field, v value) bool { _, ok := iso3166[v.s]; return ok }),
	"type":             buildType,
	"freshness":        buildFreshness,
	"expr":             buildExpr,
}
