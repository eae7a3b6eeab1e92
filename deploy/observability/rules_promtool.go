package observability

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
)

// RuleTestFile is a promtool rule test file (promtool test rules).
type RuleTestFile struct {
	RuleFiles          []string    `yaml:"rule_files"`
	EvaluationInterval string      `yaml:"evaluation_interval,omitempty"`
	GroupEvalOrder     []string    `yaml:"group_eval_order,omitempty"`
	Tests              []RuleTests `yaml:"tests"`
}

// RuleTests is one test group: input series and the expectations on them.
type RuleTests struct {
	Name           string            `yaml:"name,omitempty"`
	Interval       string            `yaml:"interval,omitempty"`
	InputSeries    []any             `yaml:"input_series"`
	PromQLExprTest []any             `yaml:"promql_expr_test,omitempty"`
	AlertRuleTest  []AlertRuleTest   `yaml:"alert_rule_test,omitempty"`
	ExternalLabels map[string]string `yaml:"external_labels,omitempty"`
	ExternalURL    string            `yaml:"external_url,omitempty"`
}

// AlertRuleTest expects the alerts of one name at one time; no ExpAlerts
// means the alert must not be firing then.
type AlertRuleTest struct {
	EvalTime  string `yaml:"eval_time"`
	AlertName string `yaml:"alertname"`
	ExpAlerts []any  `yaml:"exp_alerts"`
}

// LoadRuleTests reads every *.yml file of dir as a promtool test file,
// refusing unknown fields (an "exp_alert:" typo would turn a firing case
// into a not-firing one).
func LoadRuleTests(dir string) (map[string]RuleTestFile, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.yml"))
	if err != nil {
		return nil, err
	}
	if len(paths) == 0 {
		return nil, fmt.Errorf("no rule test files (*.yml) in %s", dir)
	}
	out := map[string]RuleTestFile{}
	for _, p := range paths {
		var f RuleTestFile
		if err := decodeStrict(p, &f); err != nil {
			return nil, err
		}
		out[filepath.Base(p)] = f
	}
	return out, nil
}

// TestCoverage says, per alert name, whether some test case expects it
// firing and some expects it not firing.
type TestCoverage struct {
	Firing, NotFiring int // test cases
}

// RuleTestCoverage counts the alert_rule_test cases of tests by alert name.
func RuleTestCoverage(tests map[string]RuleTestFile) map[string]TestCoverage {
	out := map[string]TestCoverage{}
	for _, f := range tests {
		for _, g := range f.Tests {
			for _, c := range g.AlertRuleTest {
				cv := out[c.AlertName]
				if len(c.ExpAlerts) > 0 {
					cv.Firing++
				} else {
					cv.NotFiring++
				}
				out[c.AlertName] = cv
			}
		}
	}
	return out
}

// MissingRuleTests lists, for alerts, what the tests lack: "<alert>: no
// test case expects it firing" (or not firing), and test cases of alert
// names no rule defines.
func MissingRuleTests(alerts []AlertRule, cov map[string]TestCoverage) []string {
	var out []string
	defined := map[string]bool{}
	for _, a := range alerts {
		if defined[a.Alert] {
			continue
		}
		defined[a.Alert] = true
		c := cov[a.Alert]
		if c.Firing == 0 {
			out = append(out, a.String()+": no promtool test case expects it firing (alert_rule_test with exp_alerts)")
		}
		if c.NotFiring == 0 {
			out = append(out, a.String()+": no promtool test case expects it not firing (alert_rule_test with exp_alerts: [])")
		}
	}
	for name := range cov {
		if !defined[name] {
			out = append(out, name+": tested, but no rule file defines this alert")
		}
	}
	slices.Sort(out)
	return out
}

// FetchScript is the script that installs Prometheus and promtool and
// prints their directory, relative to the repository root.
const FetchScript = "deploy/local/stack/prometheus-fetch.sh"

// PrometheusDir runs FetchScript of the repository at root and returns the
// directory it prints last (holding prometheus and promtool).
func PrometheusDir(ctx context.Context, root string) (string, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(root, FetchScript))
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%s: %w\n%s", FetchScript, err, strings.TrimSpace(stderr.String()))
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	dir := strings.TrimSpace(lines[len(lines)-1])
	if dir == "" {
		return "", fmt.Errorf("%s printed no directory\n%s", FetchScript, strings.TrimSpace(stderr.String()))
	}
	return dir, nil
}

// Promtool runs promtool from dir with args in workdir and returns its
// combined output.
func Promtool(ctx context.Context, dir, workdir string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(dir, "promtool"), args...)
	cmd.Dir = workdir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("promtool %s: %w", strings.Join(args, " "), err)
	}
	return string(out), nil
}
