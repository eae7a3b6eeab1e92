package observability

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/plugins"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
)

const root = "../.."

// realErr: UnmarshalJSONStrict and Validate return a typed-nil cog.BuildErrors on success.
func realErr(err error) error {
	if be, ok := err.(cog.BuildErrors); ok && len(be) == 0 {
		return nil
	}
	return err
}

// TestDashboardsAreGenerated: the committed JSON is the generator's output, file for file.
func TestDashboardsAreGenerated(t *testing.T) {
	ds, err := Dashboards()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, DashboardsDir)
	want := map[string]bool{}
	for _, d := range ds {
		want[d.File] = true
		got, err := os.ReadFile(filepath.Join(dir, d.File))
		if err != nil {
			t.Errorf("%v (run `go run ./cmd/dashgen` in deploy/observability)", err)
			continue
		}
		if !bytes.Equal(got, d.JSON) {
			t.Errorf("%s differs from the generator's output: run `go run ./cmd/dashgen` in deploy/observability and commit the result", d.File)
		}
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	for _, f := range files {
		if !want[filepath.Base(f)] {
			t.Errorf("%s is not generated: delete it, or add it to Dashboards", f)
		}
	}
	if len(ds) != 1+len(Services) {
		t.Errorf("%d dashboards, want the overview and one per service (%d)", len(ds), 1+len(Services))
	}
}

// checkDashboard strict-unmarshals and validates one dashboard with the SDK and checks that
// every panel and query reads the ${datasource} variable.
func checkDashboard(b []byte) []string {
	plugins.RegisterDefaultPlugins()
	var problems []string
	var d dashboard.Dashboard
	if err := realErr(d.UnmarshalJSONStrict(b)); err != nil {
		return []string{"strict unmarshal: " + err.Error()}
	}
	if err := realErr(d.Validate()); err != nil {
		problems = append(problems, "validate: "+err.Error())
	}
	hasVar := false
	if d.Templating.List != nil {
		for _, v := range d.Templating.List {
			if v.Name == "datasource" && v.Type == "datasource" {
				hasVar = true
			}
		}
	}
	if !hasVar {
		problems = append(problems, "no datasource variable named datasource")
	}
	// The SDK's strict unmarshal reports a bad panel, but keeps no panel in d (its union
	// type returns the typed-nil success error before storing the panel): d.Validate cannot see
	// them. So each panel is unmarshalled and validated on its own, and the ids and data
	// sources are read from the JSON.
	var doc struct {
		Panels []json.RawMessage `json:"panels"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return append(problems, err.Error())
	}
	ids := map[float64]bool{}
	for i, raw := range doc.Panels {
		var head struct {
			Type string   `json:"type"`
			ID   *float64 `json:"id"`
		}
		_ = json.Unmarshal(raw, &head)
		var err error
		if head.Type == "row" {
			var r dashboard.RowPanel
			if err = realErr(r.UnmarshalJSONStrict(raw)); err == nil {
				err = realErr(r.Validate())
			}
		} else {
			var p dashboard.Panel
			if err = realErr(p.UnmarshalJSONStrict(raw)); err == nil {
				err = realErr(p.Validate())
			}
		}
		if err != nil {
			problems = append(problems, fmt.Sprintf("panels[%d]: %v", i, err))
		}
		if head.ID == nil || *head.ID == 0 || ids[*head.ID] {
			problems = append(problems, fmt.Sprintf("panels[%d]: id missing or not unique", i))
		} else {
			ids[*head.ID] = true
		}
	}
	if len(doc.Panels) == 0 {
		problems = append(problems, "no panels")
	}
	var all any
	_ = json.Unmarshal(b, &all)
	walkDatasources(all, "", func(where, uid string) {
		if uid != "${datasource}" {
			problems = append(problems, where+": datasource uid "+uid+", want ${datasource}")
		}
	})
	return problems
}

func walkDatasources(v any, where string, fn func(where, uid string)) {
	switch x := v.(type) {
	case map[string]any:
		if t, ok := x["title"].(string); ok {
			where = t
		}
		if dsv, ok := x["datasource"].(map[string]any); ok {
			uid, _ := dsv["uid"].(string)
			fn(where, uid)
		}
		for k, e := range x {
			if k != "datasource" {
				walkDatasources(e, where, fn)
			}
		}
	case []any:
		for _, e := range x {
			walkDatasources(e, where, fn)
		}
	}
}

// TestDashboardsValidate checks every committed dashboard with the SDK.
func TestDashboardsValidate(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(root, DashboardsDir, "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no dashboards in %s (%v)", DashboardsDir, err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range checkDashboard(b) {
				t.Error(p)
			}
		})
	}
}

// TestCheckDashboardCatches: the checks refuse what they are for.
func TestCheckDashboardCatches(t *testing.T) {
	ds, err := Dashboards()
	if err != nil {
		t.Fatal(err)
	}
	good := ds[0].JSON
	mutate := func(f func(m map[string]any)) []byte {
		var m map[string]any
		if err := json.Unmarshal(good, &m); err != nil {
			t.Fatal(err)
		}
		f(m)
		b, _ := json.Marshal(m)
		return b
	}
	tests := []struct {
		name string
		give []byte
		want string // in a problem; "" = none
	}{
		{name: "generated", give: good},
		{name: "unknown field", give: mutate(func(m map[string]any) { m["panelz"] = 1 }), want: "strict unmarshal"},
		{name: "wrong type", give: mutate(func(m map[string]any) { m["schemaVersion"] = "forty" }), want: "strict unmarshal"},
		{name: "fixed datasource", give: []byte(strings.Replace(string(good), `"uid": "${datasource}"`, `"uid": "P1809F7CD0C75ACF3"`, 1)), want: "want ${datasource}"},
		{name: "no datasource variable", give: mutate(func(m map[string]any) { m["templating"] = map[string]any{"list": []any{}} }), want: "no datasource variable"},
		{name: "unknown field in a query", give: []byte(strings.Replace(string(good), `"expr":`, `"exprz":`, 1)), want: "unexpected field 'exprz'"},
		{name: "unknown panel option", give: []byte(strings.Replace(string(good), `"reduceOptions":`, `"reduceOptionz":`, 1)), want: "unexpected field 'reduceOptionz'"},
		{name: "duplicate panel id", give: mutate(func(m map[string]any) { m["panels"].([]any)[2].(map[string]any)["id"] = 1 }), want: "not unique"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := checkDashboard(tt.give)
			if tt.want == "" {
				if len(got) > 0 {
					t.Fatalf("problems %v, want none", got)
				}
				return
			}
			if !strings.Contains(strings.Join(got, "\n"), tt.want) {
				t.Fatalf("problems %v, want one with %q", got, tt.want)
			}
		})
	}
}

// TestQueriesParseAndSelectExportedMetrics: every query of the dashboards and rules parses,
// names only recording rules that are defined, and selects only metrics the services export.
func TestQueriesParseAndSelectExportedMetrics(t *testing.T) {
	refs, err := ReferencedMetrics(root)
	if err != nil {
		t.Fatal(err)
	}
	var unknown []string
	for _, r := range refs {
		if !IsExported(r.Metric) {
			unknown = append(unknown, r.Metric+" ("+r.Where[0]+")")
		}
	}
	sort.Strings(unknown)
	if len(unknown) > 0 {
		t.Errorf("queries select metrics no service exports (Exported):\n  %s", strings.Join(unknown, "\n  "))
	}
	if len(refs) < 40 {
		t.Errorf("only %d metrics referenced: the dashboards were not read", len(refs))
	}
	t.Logf("%d metrics referenced", len(refs))
}

// TestOverviewCovers: the overview has what the issue asks of it.
func TestOverviewCovers(t *testing.T) {
	qs, err := DashboardQueries(filepath.Join(root, DashboardsDir))
	if err != nil {
		t.Fatal(err)
	}
	var all []string
	for _, q := range qs {
		if strings.HasPrefix(q.Where, "ecom-pipeline.json") {
			all = append(all, q.Expr)
		}
	}
	joined := strings.Join(all, "\n")
	for what, needle := range map[string]string{
		"events per source":  "ecom_orders_produced_total",
		"end-to-end latency": "histogram_quantile(0.99, sum by (le) (rate(ecom_event_latency_seconds_bucket",
		"lag per group":      "max by (group, topic, partition) (ecom_consumer_lag)",
		// A rule failing every record has no pass series: "or 0 * all" keeps
		// it on the panel at 0 instead of dropping the worst rule.
		"DQ pass rate per rule": `(sum by (rule_id) (rate(ecom_dq_rule_evaluations_total{result="pass"}[$__rate_interval])) or 0 * sum by (rule_id) (rate(ecom_dq_rule_evaluations_total[$__rate_interval])))`,
		"dead-letter rate":      "rate(ecom_dead_letters_total",
		"error rate":            "rate(ecom_transient_errors_total",
		"cost per day":          "(sum(increase(ecom_warehouse_cost_usd_total[24h])) or vector(0)) + (sum(ecom_warehouse_storage_cost_usd_per_day) or vector(0))",
	} {
		if !strings.Contains(joined, needle) {
			t.Errorf("overview lacks %s (%s)", what, needle)
		}
	}
}

func TestSubstituteAndParse(t *testing.T) {
	tests := []struct {
		give    string
		want    []string
		wantErr bool
	}{
		{give: `sum(rate(a_total{job="$service"}[$__rate_interval]))`, want: []string{"a_total"}},
		{give: `increase(b_total[${__range}]) / on() c`, want: []string{"b_total", "c"}},
		{give: `{__name__="d_bucket", le="1"}`, want: []string{"d_bucket"}},
		{give: `level:e:rate5m > 0 and f{instance=~"${instance:regex}"}`, want: []string{"f", "level:e:rate5m"}},
		{give: `sum(rate(a_total[5m])`, wantErr: true},
		{give: `rate(a_total)`, wantErr: true},
	}
	for _, tt := range tests {
		e, err := ParsePromQL(tt.give)
		if tt.wantErr {
			if err == nil {
				t.Errorf("%s parsed", tt.give)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tt.give, err)
			continue
		}
		if got := SelectedMetrics(e); strings.Join(got, ",") != strings.Join(tt.want, ",") {
			t.Errorf("%s selects %v, want %v", tt.give, got, tt.want)
		}
	}
}

// TestReferencedMetricsRules: recording rules' names count only when a rule records them, and
// a broken query anywhere is an error naming its place.
func TestReferencedMetricsRules(t *testing.T) {
	write := func(t *testing.T, rules string) string {
		dir := t.TempDir()
		for _, d := range []string{DashboardsDir, filepath.Dir(RulesGlob)} {
			if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		dash := `{"panels":[{"title":"p","targets":[{"expr":"job:ecom_records_processed:rate5m + ecom_consumer_lag"}]}]}`
		if err := os.WriteFile(filepath.Join(dir, DashboardsDir, "d.json"), []byte(dash), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Dir(RulesGlob), "r.yml"), []byte(rules), 0o644); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	tests := []struct {
		name    string
		rules   string
		want    string
		wantErr string
	}{
		{name: "recorded", rules: "groups:\n- name: g\n  rules:\n  - record: job:ecom_records_processed:rate5m\n    expr: sum by (job) (rate(ecom_records_processed_total[5m]))\n  - alert: Down\n    expr: up == 0\n",
			want: "ecom_consumer_lag,ecom_records_processed_total"},
		{name: "not recorded", rules: "groups: []\n", wantErr: "no rule in"},
		{name: "rule does not parse", rules: "groups:\n- name: g\n  rules:\n  - record: job:ecom_records_processed:rate5m\n    expr: sum(\n  - alert: Broken\n    expr: rate(x[5m]\n", wantErr: "r.yml / g / Broken"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			refs, err := ReferencedMetrics(write(t, tt.rules))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, r := range refs {
				names = append(names, r.Metric)
			}
			if got := strings.Join(names, ","); got != tt.want {
				t.Fatalf("referenced %s, want %s", got, tt.want)
			}
		})
	}
}
