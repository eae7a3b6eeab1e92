package observability

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// rulesRepoRoot is the repository root (this package is deploy/observability).
func rulesRepoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.work")); err != nil {
		t.Fatalf("repository root %s: %v", root, err)
	}
	return root
}

type ruleRepo struct {
	root, rulesDir, testsDir, runbookDir string
	services                             []string
	alerts                               []AlertRule
}

func loadRuleRepo(t *testing.T) ruleRepo {
	t.Helper()
	root := rulesRepoRoot(t)
	r := ruleRepo{root: root, rulesDir: filepath.Join(root, "deploy", "prometheus", "rules"),
		testsDir: filepath.Join(root, "deploy", "prometheus", "tests"), runbookDir: filepath.Join(root, "docs", "runbooks")}
	var err error
	if r.services, err = RepoServices(root); err != nil {
		t.Fatal(err)
	}
	files, err := LoadRules(r.rulesDir)
	if err != nil {
		t.Fatal(err)
	}
	if r.alerts = Alerts(files); len(r.alerts) == 0 {
		t.Fatalf("no alerting rules in %s", r.rulesDir)
	}
	return r
}

// TestAlertsMetadataAndRunbooks: every alert has a severity, a service, a
// summary, a description and a runbook_url whose file exists and whose
// anchor is a heading of that file, for every service it can fire for.
func TestAlertsMetadataAndRunbooks(t *testing.T) {
	r := loadRuleRepo(t)
	seen := map[string]string{}
	for _, a := range r.alerts {
		t.Run(a.Alert, func(t *testing.T) {
			links, errs := CheckAlert(a, r.services, r.runbookDir)
			for _, err := range errs {
				t.Errorf("%s: %v", a, err)
			}
			for _, l := range links {
				t.Logf("%s -> %s#%s", l.Service, l.File, l.Anchor)
			}
		})
		if f, dup := seen[a.Alert]; dup && f != a.File {
			t.Errorf("alert %s is defined in %s and %s: one name, one file", a.Alert, f, a.File)
		}
		seen[a.Alert] = a.File
	}
}

// TestAlertsHaveFiringAndNotFiringTests: every alert has a promtool test
// case that expects it firing and one that expects it not firing.
func TestAlertsHaveFiringAndNotFiringTests(t *testing.T) {
	r := loadRuleRepo(t)
	tests, err := LoadRuleTests(r.testsDir)
	if err != nil {
		t.Fatal(err)
	}
	for name, f := range tests {
		for _, rf := range f.RuleFiles {
			if _, err := os.Stat(filepath.Join(r.testsDir, rf)); err != nil {
				t.Errorf("%s: rule_files %s: %v", name, rf, err)
			}
		}
	}
	for _, m := range MissingRuleTests(r.alerts, RuleTestCoverage(tests)) {
		t.Error(m)
	}
}

// TestRunbookAlertsTables: each runbook's "## Alerts" table lists exactly
// the alerts whose runbook_url points into it, each linking the section
// the alert names.
func TestRunbookAlertsTables(t *testing.T) {
	r := loadRuleRepo(t)
	want := map[string]map[string]string{} // file -> alert -> anchor
	for _, a := range r.alerts {
		svcs, err := AlertServices(a, r.services)
		if err != nil {
			continue // TestAlertsMetadataAndRunbooks reports it
		}
		links, err := AlertRunbooks(a, svcs)
		if err != nil {
			continue
		}
		for _, l := range links {
			if want[l.File] == nil {
				want[l.File] = map[string]string{}
			}
			want[l.File][a.Alert] = l.Anchor
		}
	}
	for _, s := range r.services {
		file := s + ".md"
		t.Run(file, func(t *testing.T) {
			f, err := os.Open(filepath.Join(r.runbookDir, file))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			rows, ok, err := ReadAlertsTable(f)
			if err != nil {
				t.Fatal(err)
			}
			if !ok {
				t.Fatalf("%s has no \"## Alerts\" section", file)
			}
			got := map[string]string{}
			for _, row := range rows {
				got[row.Alert] = row.Anchor
				anchor, ok := want[file][row.Alert]
				switch {
				case !ok:
					t.Errorf("%s:%d lists %s, whose runbook_url does not point into %s", file, row.Line, row.Alert, file)
				case row.Anchor != anchor:
					t.Errorf("%s:%d: %s links #%s, its runbook_url #%s", file, row.Line, row.Alert, row.Anchor, anchor)
				}
			}
			for alert, anchor := range want[file] {
				if _, ok := got[alert]; !ok {
					t.Errorf("%s: the Alerts table lacks %s (runbook_url #%s)", file, alert, anchor)
				}
			}
		})
	}
}

// runbookLink matches a Markdown link to a section: (#anchor) or
// (file.md#anchor) beside the runbook.
var runbookLink = regexp.MustCompile(`\]\(([a-z0-9_-]+\.md)?#([^)\s]+)\)`)

// TestRunbookLinks: the section links inside docs/runbooks land on a
// heading (the Alerts tables and the new sections link to each other).
func TestRunbookLinks(t *testing.T) {
	r := loadRuleRepo(t)
	paths, err := filepath.Glob(filepath.Join(r.runbookDir, "*.md"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("runbooks in %s: %v", r.runbookDir, err)
	}
	anchors := map[string]map[string]Heading{}
	for _, p := range paths {
		hs, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		all, err := ReadHeadings(strings.NewReader(string(hs)))
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]Heading{}
		for _, h := range all {
			m[h.Anchor] = h
		}
		anchors[filepath.Base(p)] = m
	}
	for _, p := range paths {
		b, _ := os.ReadFile(p)
		for n, line := range strings.Split(string(b), "\n") {
			for _, m := range runbookLink.FindAllStringSubmatch(line, -1) {
				file := m[1]
				if file == "" {
					file = filepath.Base(p)
				}
				as, ok := anchors[file]
				if !ok {
					continue // a file elsewhere (../design.md is the lead's)
				}
				if _, ok := as[m[2]]; !ok {
					t.Errorf("%s:%d: link to %s#%s: no such heading", filepath.Base(p), n+1, file, m[2])
				}
			}
		}
	}
}

// TestPromtoolRules runs promtool check rules and promtool test rules on
// deploy/prometheus, with promtool from prometheus-fetch.sh. promtool is a
// tool, not a server: it runs under -short as well.
func TestPromtoolRules(t *testing.T) {
	r := loadRuleRepo(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir, err := PrometheusDir(ctx, r.root)
	if err != nil {
		t.Fatalf("promtool not available: %v\n(run %s by hand to see why; it needs apt-get and, on a machine without package lists, root for apt-get update)", err, FetchScript)
	}
	rules, _ := filepath.Glob(filepath.Join(r.rulesDir, "*.yml"))
	tests, _ := filepath.Glob(filepath.Join(r.testsDir, "*.yml"))
	for _, c := range []struct {
		name string
		args []string
		want *regexp.Regexp
	}{
		{"check rules", append([]string{"check", "rules"}, rules...), regexp.MustCompile(`SUCCESS: \d+ rules found`)},
		{"test rules", append([]string{"test", "rules"}, tests...), regexp.MustCompile(`SUCCESS`)},
	} {
		t.Run(c.name, func(t *testing.T) {
			out, err := Promtool(ctx, dir, r.testsDir, c.args...)
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			if !c.want.MatchString(out) {
				t.Fatalf("promtool %s: no %q in its output:\n%s", c.name, c.want, out)
			}
			t.Logf("promtool %s:\n%s", c.name, out)
		})
	}
}

func TestExprJobs(t *testing.T) {
	tests := []struct {
		give    string
		want    []string
		wantErr string
	}{
		{give: `up == 0`, want: nil},
		{give: `up{job="validator"} == 0`, want: []string{"validator"}},
		{give: `x{job=~"validator|bq-writer"} > 0 and on (job) y{job="validator"}`, want: []string{"bq-writer", "validator"}},
		{give: `absent(up{job="a"}) or absent(up{job="b"})`, want: []string{"a", "b"}},
		{give: `rate(x{job="a"}[5m]) > 0`, want: []string{"a"}},
		{give: `up{job!="a"} == 0`, wantErr: "only job="},
		{give: `up{job=~"ingest-.*"} == 0`, wantErr: "only job="},
		{give: `up{`, wantErr: "parse expr"},
	}
	for _, tt := range tests {
		t.Run(tt.give, func(t *testing.T) {
			got, err := ExprJobs(tt.give)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || !slices.Equal(got, tt.want) {
				t.Fatalf("ExprJobs = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

// fakeRunbooks writes runbooks for services a and b into a temporary
// folder: a.md has "Service down" and "Not ready", b.md only "Service down".
func fakeRunbooks(t *testing.T) string {
	dir := t.TempDir()
	for name, body := range map[string]string{
		"a.md": "# Runbook: a\n## Service down\n### Not ready\n```\n## Fenced\n```\n",
		"b.md": "# Runbook: b\n## Service down\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestCheckAlert(t *testing.T) {
	services := []string{"a", "b", "c"}
	dir := fakeRunbooks(t)
	good := func(mod func(*AlertRule)) AlertRule {
		a := AlertRule{File: "x.yml", Rule: Rule{Alert: "X", Expr: `up{job=~"a|b"} == 0`,
			Labels: map[string]string{"severity": "page", "service": JobTemplate},
			Annotations: map[string]string{"summary": "s", "description": "d",
				"runbook_url": RunbookBase + JobTemplate + ".md#service-down"}}}
		if mod != nil {
			mod(&a)
		}
		return a
	}
	tests := []struct {
		name      string
		give      AlertRule
		wantLinks []string
		wantErrs  []string
	}{
		{name: "templated, every service's runbook has the section", give: good(nil),
			wantLinks: []string{"a.md#service-down", "b.md#service-down"}},
		{name: "one service, a ### heading", give: good(func(a *AlertRule) {
			a.Expr, a.Labels["service"], a.Annotations["runbook_url"] = `ecom_ready == 0`, "a", RunbookBase+"a.md#not-ready"
		}), wantLinks: []string{"a.md#not-ready"}},
		{name: "a section one of the services lacks", give: good(func(a *AlertRule) {
			a.Annotations["runbook_url"] = RunbookBase + JobTemplate + ".md#not-ready"
		}), wantErrs: []string{"b.md has no ##/### heading with anchor #not-ready"}},
		{name: "a heading inside a code block is no section", give: good(func(a *AlertRule) {
			a.Annotations["runbook_url"] = RunbookBase + JobTemplate + ".md#fenced"
		}), wantErrs: []string{"a.md has no ##/### heading with anchor #fenced", "b.md has no ##/### heading with anchor #fenced"}},
		{name: "a runbook file that does not exist", give: good(func(a *AlertRule) {
			a.Expr = `up{job="c"} == 0`
		}), wantErrs: []string{"runbook of c: open"}},
		{name: "no severity, summary or description", give: good(func(a *AlertRule) {
			delete(a.Labels, "severity")
			a.Annotations["summary"], a.Annotations["description"] = "", " "
		}), wantErrs: []string{`severity label ""`, "no summary annotation", "no description annotation"}},
		{name: "a severity that is neither page nor ticket", give: good(func(a *AlertRule) { a.Labels["severity"] = "critical" }),
			wantErrs: []string{`severity label "critical"`}},
		{name: "no service", give: good(func(a *AlertRule) { delete(a.Labels, "service") }), wantErrs: []string{"no service label"}},
		{name: "templated service without a job matcher", give: good(func(a *AlertRule) { a.Expr = `up == 0` }),
			wantErrs: []string{"needs a job matcher"}},
		{name: "service label and expr disagree", give: good(func(a *AlertRule) { a.Labels["service"] = "a" }),
			wantErrs: []string{`service label "a" but expr selects jobs a, b`}},
		{name: "unknown service", give: good(func(a *AlertRule) { a.Labels["service"], a.Expr = "z", "up == 0" }),
			wantErrs: []string{`service label "z" is no service`}},
		{name: "expr selects a job that is no service", give: good(func(a *AlertRule) { a.Expr = `up{job="prometheus"} == 0` }),
			wantErrs: []string{`expr selects job "prometheus", which is no service`}},
		{name: "no runbook_url", give: good(func(a *AlertRule) { delete(a.Annotations, "runbook_url") }),
			wantErrs: []string{"no runbook_url annotation"}},
		{name: "runbook_url elsewhere", give: good(func(a *AlertRule) { a.Annotations["runbook_url"] = "https://wiki/x#y" }),
			wantErrs: []string{"is not under " + RunbookBase}},
		{name: "runbook_url without an anchor", give: good(func(a *AlertRule) { a.Annotations["runbook_url"] = RunbookBase + JobTemplate + ".md" }),
			wantErrs: []string{"names no section"}},
		{name: "another service's runbook", give: good(func(a *AlertRule) { a.Annotations["runbook_url"] = RunbookBase + "a.md#service-down" }),
			wantErrs: []string{"an alert of b links b.md"}},
		{name: "another template", give: good(func(a *AlertRule) {
			a.Annotations["runbook_url"] = RunbookBase + "{{ $labels.instance }}.md#service-down"
		}), wantErrs: []string{"the only template allowed"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			links, errs := CheckAlert(tt.give, services, dir)
			var got []string
			for _, l := range links {
				got = append(got, l.File+"#"+l.Anchor)
			}
			if len(tt.wantErrs) == 0 && !slices.Equal(got, tt.wantLinks) {
				t.Errorf("links = %q, want %q", got, tt.wantLinks)
			}
			if len(errs) != len(tt.wantErrs) {
				t.Fatalf("errors = %v, want %d: %q", errs, len(tt.wantErrs), tt.wantErrs)
			}
			for i, want := range tt.wantErrs {
				if !strings.Contains(errs[i].Error(), want) {
					t.Errorf("error %d = %v, want one containing %q", i, errs[i], want)
				}
			}
		})
	}
}

func TestMissingRuleTests(t *testing.T) {
	alerts := []AlertRule{
		{File: "f.yml", Rule: Rule{Alert: "Both"}},
		{File: "f.yml", Rule: Rule{Alert: "OnlyFiring"}},
		{File: "f.yml", Rule: Rule{Alert: "OnlyQuiet"}},
		{File: "f.yml", Rule: Rule{Alert: "Untested"}},
	}
	firing, quiet := []any{map[string]any{"exp_labels": map[string]any{"severity": "page"}}}, []any(nil)
	tests := map[string]RuleTestFile{"f_test.yml": {Tests: []RuleTests{
		{AlertRuleTest: []AlertRuleTest{
			{AlertName: "Both", ExpAlerts: firing}, {AlertName: "Both", ExpAlerts: quiet},
			{AlertName: "OnlyFiring", ExpAlerts: firing},
		}},
		{AlertRuleTest: []AlertRuleTest{{AlertName: "OnlyQuiet", ExpAlerts: quiet}, {AlertName: "Gone", ExpAlerts: firing}}},
	}}}
	got := MissingRuleTests(alerts, RuleTestCoverage(tests))
	want := []string{
		"Gone: tested, but no rule file defines this alert",
		"f.yml: OnlyFiring: no promtool test case expects it not firing (alert_rule_test with exp_alerts: [])",
		"f.yml: OnlyQuiet: no promtool test case expects it firing (alert_rule_test with exp_alerts)",
		"f.yml: Untested: no promtool test case expects it firing (alert_rule_test with exp_alerts)",
		"f.yml: Untested: no promtool test case expects it not firing (alert_rule_test with exp_alerts: [])",
	}
	if !slices.Equal(got, want) {
		t.Errorf("MissingRuleTests =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestLoadRulesRefusesUnknownFields(t *testing.T) {
	dir := t.TempDir()
	body := "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up == 0\n        annotation: {summary: s}\n"
	if err := os.WriteFile(filepath.Join(dir, "a.yml"), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadRules(dir); err == nil || !strings.Contains(err.Error(), "annotation") {
		t.Fatalf("LoadRules = %v, want an error naming the field", err)
	}
	if _, err := LoadRules(t.TempDir()); err == nil {
		t.Fatal("LoadRules of an empty folder: no error")
	}
}
