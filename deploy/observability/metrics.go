package observability

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

// RulesGlob is where the Prometheus rule files live, relative to the repository root.
const RulesGlob = "deploy/prometheus/rules/*.yml"

// Query is one PromQL expression and where it is.
type Query struct {
	Where string // file, and panel or rule
	Expr  string
}

// Reference is a metric a query selects.
type Reference struct {
	Metric string
	Where  []string // the queries' places
}

// grafanaVar matches Grafana's template variables: $name, ${name} and ${name:format}.
var grafanaVar = regexp.MustCompile(`\$\{([A-Za-z0-9_]+)(?::[A-Za-z]+)?\}|\$([A-Za-z0-9_]+)`)

// Substitute replaces Grafana's variables with values PromQL parses: the interval and range
// variables ($__rate_interval, $__interval, $__range, ...) with a duration, any other with "x"
// (they appear in label values: "$service").
func Substitute(expr string) string {
	return grafanaVar.ReplaceAllStringFunc(expr, func(v string) string {
		name := strings.Trim(v, "${}")
		name, _, _ = strings.Cut(name, ":")
		switch name {
		case "__rate_interval", "__interval", "__range", "__auto":
			return "5m"
		case "__interval_ms", "__range_ms", "__range_s":
			return "300"
		}
		return "x"
	})
}

// ParsePromQL parses a query after Substitute.
func ParsePromQL(expr string) (parser.Expr, error) {
	return parser.NewParser(parser.Options{}).ParseExpr(Substitute(expr))
}

// SelectedMetrics returns the metric names an expression's vector selectors select, sorted.
func SelectedMetrics(e parser.Expr) []string {
	seen := map[string]bool{}
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		vs, ok := n.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		if vs.Name != "" {
			seen[vs.Name] = true
			return nil
		}
		for _, m := range vs.LabelMatchers {
			if m.Name == labels.MetricName && m.Type == labels.MatchEqual {
				seen[m.Value] = true
			}
		}
		return nil
	})
	out := make([]string, 0, len(seen))
	for m := range seen {
		out = append(out, m)
	}
	sort.Strings(out)
	return out
}

// DashboardQueries returns every "expr" of the dashboard JSON files in dir (panels and rows at
// any depth, variables' queries too).
func DashboardQueries(dir string) ([]Query, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, err
	}
	var out []Query
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		var doc any
		if err := json.Unmarshal(b, &doc); err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		walkExprs(doc, filepath.Base(f), func(where, expr string) { out = append(out, Query{Where: where, Expr: expr}) })
	}
	return out, nil
}

func walkExprs(v any, where string, fn func(where, expr string)) {
	switch x := v.(type) {
	case map[string]any:
		if t, ok := x["title"].(string); ok {
			where = strings.SplitN(where, " / ", 2)[0] + " / " + t
		}
		for _, k := range slices.Sorted(mapsKeys(x)) {
			if s, ok := x[k].(string); ok && k == "expr" {
				fn(where, s)
				continue
			}
			walkExprs(x[k], where, fn)
		}
	case []any:
		for _, e := range x {
			walkExprs(e, where, fn)
		}
	}
}

func mapsKeys(m map[string]any) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// RuleQueries returns the expressions of the rule files matching glob (read
// with LoadRules: strictly, in file order) and the names the recording rules
// define.
func RuleQueries(glob string) (queries []Query, recorded map[string]bool, err error) {
	files, err := LoadRules(filepath.Dir(glob))
	if err != nil {
		return nil, nil, err
	}
	recorded = map[string]bool{}
	for _, name := range slices.Sorted(maps.Keys(files)) {
		if ok, _ := filepath.Match(filepath.Base(glob), name); !ok {
			continue
		}
		for _, g := range files[name].Groups {
			for _, r := range g.Rules {
				what := r.Alert
				if r.Record != "" {
					what = r.Record
					recorded[r.Record] = true
				}
				queries = append(queries, Query{Where: name + " / " + g.Name + " / " + what, Expr: r.Expr})
			}
		}
	}
	return queries, recorded, nil
}

// recordingRuleName is a recording rule's name, level:metric:operations.
var recordingRuleName = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*:[a-zA-Z0-9_:]+$`)

// IsRecordingRuleName reports whether a metric name has the level:metric:op form.
func IsRecordingRuleName(name string) bool { return recordingRuleName.MatchString(name) }

// Prometheus's own series, not any service's.
var synthetic = map[string]bool{"up": true, "scrape_duration_seconds": true, "scrape_samples_scraped": true, "ALERTS": true, "ALERTS_FOR_STATE": true}

// ReferencedMetrics returns the metrics the dashboards (DashboardsDir) and the rules
// (RulesGlob) under the repository root select that a service must export: without the
// recording rules' own names and Prometheus's synthetic series (up, ALERTS, ...). A query that
// does not parse, or a level:metric:op name no rule records, is an error.
func ReferencedMetrics(root string) ([]Reference, error) {
	dq, err := DashboardQueries(filepath.Join(root, DashboardsDir))
	if err != nil {
		return nil, err
	}
	rq, recorded, err := RuleQueries(filepath.Join(root, RulesGlob))
	if err != nil {
		return nil, err
	}
	where := map[string][]string{}
	var errs []string
	for _, q := range append(dq, rq...) {
		e, err := ParsePromQL(q.Expr)
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: %q: %v", q.Where, q.Expr, err))
			continue
		}
		for _, m := range SelectedMetrics(e) {
			switch {
			case recorded[m], synthetic[m]:
			case IsRecordingRuleName(m):
				errs = append(errs, fmt.Sprintf("%s: %s is a recording rule's name that no rule in %s records", q.Where, m, RulesGlob))
			default:
				where[m] = append(where[m], q.Where)
			}
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%s", strings.Join(errs, "\n"))
	}
	out := make([]Reference, 0, len(where))
	for _, m := range slices.Sorted(func(yield func(string) bool) {
		for m := range where {
			if !yield(m) {
				return
			}
		}
	}) {
		out = append(out, Reference{Metric: m, Where: where[m]})
	}
	return out, nil
}
