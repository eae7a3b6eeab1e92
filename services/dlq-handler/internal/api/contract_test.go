package api

import (
	"net/http"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"

	"github.com/ecomstream/platform/services/dlq-handler/internal/query"
	"github.com/ecomstream/platform/services/dlq-handler/internal/replay"
)

// TestOpenAPIMatches keeps proto/openapi/dlq.v1.yaml and the code in step:
// the routes, the required fields of the answers (the JSON keys without
// omitempty) and the states. A plain text check like the storefront's: the
// lines it reads are one-line flow lists on purpose.
func TestOpenAPIMatches(t *testing.T) {
	b, err := os.ReadFile("../../../../proto/openapi/dlq.v1.yaml")
	if err != nil {
		t.Fatal(err)
	}
	spec := string(b)
	list := func(after, prefix string) []string {
		t.Helper()
		i := strings.Index(spec, after)
		if i < 0 {
			t.Fatalf("%q not in the spec", after)
		}
		m := regexp.MustCompile(regexp.QuoteMeta(prefix) + `\[([^\]]*)\]`).FindStringSubmatch(spec[i:])
		if m == nil {
			t.Fatalf("no %s list after %q", prefix, after)
		}
		var out []string
		for _, s := range strings.Split(m[1], ",") {
			out = append(out, strings.TrimSpace(s))
		}
		return out
	}
	tests := []struct {
		name      string
		spec, got []string
	}{
		{"DeadLetter", list("\n    DeadLetter:\n", "required: "), requiredKeys(query.DeadLetter{})},
		{"Reason", list("\n    Reason:\n", "required: "), requiredKeys(query.Reason{})},
		{"Detail", list("\n    Detail:\n", "required: "), requiredKeys(Detail{})},
		{"Original", list("\n    Original:\n", "required: "), requiredKeys(Original{})},
		{"Bytes", list("\n    Bytes:\n", "required: "), requiredKeys(Bytes{})},
		{"DiscardResponse", list("\n    DiscardResponse:\n", "required: "), requiredKeys(DiscardResponse{})},
		{"Stats", list("\n    Stats:\n", "required: "), requiredKeys(query.Stats{})},
		{"Series", list("\n    Series:\n", "required: "), requiredKeys(query.Series{})},
		{"Oldest", list("\n            - {type: object, required: [dead_letter_id", "required: "), requiredKeys(query.Oldest{})},
		{"AuditEntry", list("\n    AuditEntry:\n", "required: "), requiredKeys(query.AuditEntry{})},
		{"AuditPage", list("\n    AuditPage:\n", "required: "), requiredKeys(query.AuditResult{})},
		{"DeadLetterPage", list("\n    DeadLetterPage:\n", "required: "), requiredKeys(query.ListResult{})},
		{"RetentionResponse", list("\n    RetentionResponse:\n", "required: "), requiredKeys(RetentionResponse{})},
		{"Filter", propertyKeys(t, spec, "\n    Filter:\n"), allKeys(query.Filter{})},
		{"DiscardRequest", propertyKeys(t, spec, "\n    DiscardRequest:\n"), allKeys(DiscardRequest{})},
		{"ReplayRequest", propertyKeys(t, spec, "\n    ReplayRequest:\n"), allKeys(replay.Request{})},
		{"ReplayResult", list("\n    ReplayResult:\n", "required: "), requiredKeys(replay.Result{})},
		{"ReplayResult properties", propertyKeys(t, spec, "\n    ReplayResult:\n"), allKeys(replay.Result{})},
		{"ReplayJob", list("\n    ReplayJob:\n", "required: "), requiredKeys(replay.Job{})},
		{"ReplayJob properties", propertyKeys(t, spec, "\n    ReplayJob:\n"), allKeys(replay.Job{})},
		{"ReplayJobList", list("\n    ReplayJobList:\n", "required: "), requiredKeys(JobList{})},
		{"State", list("\n    State:\n", "enum: "), query.States},
	}
	for _, tt := range tests {
		spec, got := slices.Sorted(slices.Values(tt.spec)), slices.Sorted(slices.Values(tt.got))
		if !slices.Equal(spec, got) {
			t.Errorf("%s: spec %v, code %v", tt.name, spec, got)
		}
	}

	// The routes: every "METHOD /path" of the spec is served and every route is in the spec.
	paths := spec[strings.Index(spec, "\npaths:\n"):strings.Index(spec, "\ncomponents:\n")]
	var specRoutes []string
	path := ""
	for _, line := range strings.Split(paths, "\n") {
		if m := regexp.MustCompile(`^  (/\S*):$`).FindStringSubmatch(line); m != nil {
			path = m[1]
		} else if m := regexp.MustCompile(`^    (get|post|put|patch|delete):$`).FindStringSubmatch(line); m != nil && path != "" {
			specRoutes = append(specRoutes, strings.ToUpper(m[1])+" "+path)
		}
	}
	var routes []string
	h := unitServer(t, Config{})
	err = chi.Walk(h.(chi.Routes), func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		routes = append(routes, method+" "+route)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(specRoutes)
	slices.Sort(routes)
	if !slices.Equal(specRoutes, routes) {
		t.Errorf("routes: spec %v, code %v", specRoutes, routes)
	}
}

// requiredKeys are the JSON keys of v's struct that are always present.
func requiredKeys(v any) []string {
	var out []string
	walkKeys(reflect.TypeOf(v), func(name string, omit bool) {
		if !omit {
			out = append(out, name)
		}
	})
	return out
}

// allKeys are all JSON keys of v's struct.
func allKeys(v any) []string {
	var out []string
	walkKeys(reflect.TypeOf(v), func(name string, _ bool) { out = append(out, name) })
	return out
}

func walkKeys(t reflect.Type, f func(name string, omit bool)) {
	for i := range t.NumField() {
		sf := t.Field(i)
		tag := sf.Tag.Get("json")
		if sf.Anonymous && tag == "" {
			walkKeys(sf.Type, f)
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" || !sf.IsExported() {
			continue
		}
		if name == "" {
			name = sf.Name
		}
		f(name, strings.Contains(opts, "omitempty"))
	}
}

// propertyKeys are the names under "properties:" of the schema after marker
// (one per line, indented by 8).
func propertyKeys(t *testing.T, spec, marker string) []string {
	t.Helper()
	i := strings.Index(spec, marker)
	if i < 0 {
		t.Fatalf("%q not in the spec", marker)
	}
	rest := spec[i+len(marker):]
	j := strings.Index(rest, "      properties:\n")
	if j < 0 {
		t.Fatalf("no properties after %q", marker)
	}
	var out []string
	for _, line := range strings.Split(rest[j+len("      properties:\n"):], "\n") {
		m := regexp.MustCompile(`^        ([a-z_]+):`).FindStringSubmatch(line)
		if m == nil {
			break
		}
		out = append(out, m[1])
	}
	return out
}
