package observability

import (
	"bytes"
	"errors"
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
	"go.yaml.in/yaml/v3"
)

// RunbookBase is where every alert's runbook_url points: a runbook per
// service, docs/runbooks/<service>.md, on the main branch (the contract).
const RunbookBase = "https://github.com/ecomstream/platform/blob/main/docs/runbooks/"

// JobTemplate is the one template an alert's service label and runbook_url
// may hold: the alerting series' job, which is the service's name.
const JobTemplate = "{{ $labels.job }}"

// Severities an alert may have: page wakes someone, ticket waits for
// working hours.
var Severities = []string{"page", "ticket"}

// RuleFile is a Prometheus rule file (the format promtool check rules reads).
type RuleFile struct {
	Groups []RuleGroup `yaml:"groups"`
}

// RuleGroup is a group of rules evaluated together.
type RuleGroup struct {
	Name     string `yaml:"name"`
	Interval string `yaml:"interval,omitempty"`
	Limit    int    `yaml:"limit,omitempty"`
	Rules    []Rule `yaml:"rules"`
}

// Rule is a recording rule (Record set) or an alerting rule (Alert set).
type Rule struct {
	Record        string            `yaml:"record,omitempty"`
	Alert         string            `yaml:"alert,omitempty"`
	Expr          string            `yaml:"expr"`
	For           string            `yaml:"for,omitempty"`
	KeepFiringFor string            `yaml:"keep_firing_for,omitempty"`
	Labels        map[string]string `yaml:"labels,omitempty"`
	Annotations   map[string]string `yaml:"annotations,omitempty"`
}

// AlertRule is an alerting rule with the file and group it is in.
type AlertRule struct {
	Rule
	File  string // base name, e.g. availability.yml
	Group string
}

func (a AlertRule) String() string { return a.File + ": " + a.Alert }

// LoadRules reads every *.yml file of dir as a rule file. Unknown fields
// are errors: a misspelt "annotation:" would otherwise drop the runbook
// silently.
func LoadRules(dir string) (map[string]RuleFile, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.yml"))
	if err != nil {
		return nil, err
	}
	if len(paths) == 0 {
		return nil, fmt.Errorf("no rule files (*.yml) in %s", dir)
	}
	out := map[string]RuleFile{}
	for _, p := range paths {
		var f RuleFile
		if err := decodeStrict(p, &f); err != nil {
			return nil, err
		}
		out[filepath.Base(p)] = f
	}
	return out, nil
}

// decodeStrict decodes the YAML file at path into v, refusing unknown
// fields.
func decodeStrict(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// Alerts returns the alerting rules of files, ordered by file and position.
func Alerts(files map[string]RuleFile) []AlertRule {
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	var out []AlertRule
	for _, n := range names {
		for _, g := range files[n].Groups {
			for _, r := range g.Rules {
				if r.Alert != "" {
					out = append(out, AlertRule{Rule: r, File: n, Group: g.Name})
				}
			}
		}
	}
	return out
}

// literalAlternatives matches a regexp that is only alternatives of plain
// job names ("validator|bq-writer").
var literalAlternatives = regexp.MustCompile(`^[a-z0-9_-]+(\|[a-z0-9_-]+)*$`)

// ExprJobs returns the jobs an expression can select: the values of every
// job="..." matcher and the alternatives of every job=~"a|b" matcher of its
// selectors, sorted and without repeats. It is empty when no selector names a
// job; a job matcher it cannot enumerate (!=, !~, a real pattern) is an
// error, because the alert's services could then not be checked.
func ExprJobs(expr string) ([]string, error) {
	e, err := parser.NewParser(parser.Options{}).ParseExpr(expr)
	if err != nil {
		return nil, fmt.Errorf("parse expr: %w", err)
	}
	var jobs []string
	var bad error
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		vs, ok := n.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		for _, m := range vs.LabelMatchers {
			if m.Name != "job" {
				continue
			}
			switch {
			case m.Type == labels.MatchEqual:
				jobs = append(jobs, m.Value)
			case m.Type == labels.MatchRegexp && literalAlternatives.MatchString(m.Value):
				jobs = append(jobs, strings.Split(m.Value, "|")...)
			default:
				bad = fmt.Errorf("job matcher %s: only job=\"x\" and job=~\"x|y\" say which services an alert covers", m)
			}
		}
		return nil
	})
	if bad != nil {
		return nil, bad
	}
	slices.Sort(jobs)
	return slices.Compact(jobs), nil
}

// AlertServices returns the services an alert can fire for: its service
// label when that is a name, or, when the label is JobTemplate, the jobs its
// expression selects (which must then name some). Every job must be a known
// service.
func AlertServices(a AlertRule, services []string) ([]string, error) {
	jobs, err := ExprJobs(a.Expr)
	if err != nil {
		return nil, err
	}
	for _, j := range jobs {
		if !slices.Contains(services, j) {
			return nil, fmt.Errorf("expr selects job %q, which is no service (services: %s)", j, strings.Join(services, ", "))
		}
	}
	svc := a.Labels["service"]
	switch {
	case svc == "":
		return nil, errors.New("no service label")
	case svc == JobTemplate:
		if len(jobs) == 0 {
			return nil, fmt.Errorf("service label %s needs a job matcher in expr that lists the services", JobTemplate)
		}
		return jobs, nil
	case strings.Contains(svc, "{{"):
		return nil, fmt.Errorf("service label %q: the only template allowed is %s", svc, JobTemplate)
	case !slices.Contains(services, svc):
		return nil, fmt.Errorf("service label %q is no service (services: %s)", svc, strings.Join(services, ", "))
	case len(jobs) > 0 && !slices.Equal(jobs, []string{svc}):
		return nil, fmt.Errorf("service label %q but expr selects jobs %s", svc, strings.Join(jobs, ", "))
	}
	return []string{svc}, nil
}

// RunbookLink is an alert's runbook_url for one service, split into the
// runbook file (relative to docs/runbooks) and the section anchor.
type RunbookLink struct {
	Service string
	File    string // e.g. validator.md
	Anchor  string // e.g. consumer-lag-growing
}

// AlertRunbooks resolves an alert's runbook_url for each of its services
// (JobTemplate in the URL becomes the service's name). The URL must be under
// RunbookBase, name the service's own runbook and end in an anchor.
func AlertRunbooks(a AlertRule, services []string) ([]RunbookLink, error) {
	u := a.Annotations["runbook_url"]
	if u == "" {
		return nil, errors.New("no runbook_url annotation")
	}
	var out []RunbookLink
	for _, s := range services {
		x := strings.ReplaceAll(u, JobTemplate, s)
		if strings.Contains(x, "{{") {
			return nil, fmt.Errorf("runbook_url %q: the only template allowed is %s", u, JobTemplate)
		}
		rest, ok := strings.CutPrefix(x, RunbookBase)
		if !ok {
			return nil, fmt.Errorf("runbook_url %q is not under %s", x, RunbookBase)
		}
		file, anchor, ok := strings.Cut(rest, "#")
		if !ok || anchor == "" {
			return nil, fmt.Errorf("runbook_url %q names no section (#anchor)", x)
		}
		if file != s+".md" {
			return nil, fmt.Errorf("runbook_url %q: an alert of %s links %s.md, its service's runbook", x, s, s)
		}
		out = append(out, RunbookLink{Service: s, File: file, Anchor: anchor})
	}
	return out, nil
}

// CheckAlert returns what is wrong with an alert: its severity, service,
// summary and description, and for each of its services that the runbook
// file exists in runbookDir and has a "##"/"###" heading whose slug is the
// runbook_url's anchor. It returns the links it checked.
func CheckAlert(a AlertRule, services []string, runbookDir string) ([]RunbookLink, []error) {
	var errs []error
	if sev := a.Labels["severity"]; !slices.Contains(Severities, sev) {
		errs = append(errs, fmt.Errorf("severity label %q: want one of %s", sev, strings.Join(Severities, ", ")))
	}
	for _, k := range []string{"summary", "description"} {
		if strings.TrimSpace(a.Annotations[k]) == "" {
			errs = append(errs, fmt.Errorf("no %s annotation", k))
		}
	}
	svcs, err := AlertServices(a, services)
	if err != nil {
		return nil, append(errs, err)
	}
	links, err := AlertRunbooks(a, svcs)
	if err != nil {
		return nil, append(errs, err)
	}
	for _, l := range links {
		path := filepath.Join(runbookDir, l.File)
		anchors, err := RunbookAnchors(path)
		if err != nil {
			errs = append(errs, fmt.Errorf("runbook of %s: %w", l.Service, err))
			continue
		}
		if _, ok := anchors[l.Anchor]; !ok {
			errs = append(errs, fmt.Errorf("%s has no ##/### heading with anchor #%s (its anchors: %s)", path, l.Anchor, strings.Join(slices.Sorted(maps.Keys(anchors)), " ")))
		}
	}
	return links, errs
}

// RepoServices lists the services of the repository at root: the folders
// services/<name> that hold a Go module. Each is a Prometheus job of the
// same name (the contract), so the list is not kept by hand here.
func RepoServices(root string) ([]string, error) {
	mods, err := filepath.Glob(filepath.Join(root, "services", "*", "go.mod"))
	if err != nil {
		return nil, err
	}
	if len(mods) == 0 {
		return nil, fmt.Errorf("no services/*/go.mod under %s", root)
	}
	out := make([]string, 0, len(mods))
	for _, m := range mods {
		out = append(out, filepath.Base(filepath.Dir(m)))
	}
	slices.Sort(out)
	return out, nil
}
