package storefront_test

import (
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/ecomstream/platform/deploy/local/storefront"
)

// TestOpenAPIMatches keeps the contract in proto/openapi and the code in
// step: the order's fields, the statuses, the fault and broken kinds, the
// routes and the signature example. (A plain text check: this module has no YAML parser,
// and the lines it reads are one-line flow lists on purpose.)
func TestOpenAPIMatches(t *testing.T) {
	b, err := os.ReadFile("../../../proto/openapi/storefront-orders.v1.yaml")
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
	keys, lineKeys, statsKeys := jsonKeys(storefront.Order{}), jsonKeys(storefront.Line{}), jsonKeys(storefront.Stats{})
	tests := []struct {
		name      string
		spec, got []string
	}{
		{"Order fields", list("\n    Order:\n", "required: "), keys},
		{"Line fields", list("\n    Line:\n", "required: "), lineKeys},
		{"Stats fields", list("\n    Stats:\n", "required: "), statsKeys},
		{"statuses", list("\n    Status:\n", "enum: "), storefront.Statuses()},
		{"fault kinds", list("\n    FaultKind:\n", "enum: "), storefront.FaultKinds()},
		{"broken kinds", list("\n        broken:\n", "enum: "), storefront.BrokenKinds()},
	}
	for _, tt := range tests {
		slices.Sort(tt.spec)
		slices.Sort(tt.got)
		if !slices.Equal(tt.spec, tt.got) {
			t.Errorf("%s: spec %v, code %v", tt.name, tt.spec, tt.got)
		}
	}
	// The paths: every "METHOD /path" of the spec's paths section is a route
	// of the API and every route is in the spec.
	paths := spec[strings.Index(spec, "\npaths:\n"):]
	if i := strings.Index(paths, "\nwebhooks:\n"); i > 0 {
		paths = paths[:i]
	}
	var specRoutes []string
	path := ""
	for _, line := range strings.Split(paths, "\n") {
		if m := regexp.MustCompile(`^  (/\S*):$`).FindStringSubmatch(line); m != nil {
			path = m[1]
		} else if m := regexp.MustCompile(`^    (get|post|put|patch|delete):$`).FindStringSubmatch(line); m != nil && path != "" {
			specRoutes = append(specRoutes, strings.ToUpper(m[1])+" "+path)
		}
	}
	api, err := storefront.NewAPI(storefront.NewSimulator(storefront.SimConfig{}), storefront.APIConfig{Token: "t"})
	if err != nil {
		t.Fatal(err)
	}
	routes := api.Routes()
	slices.Sort(specRoutes)
	slices.Sort(routes)
	if !slices.Equal(specRoutes, routes) || !slices.Contains(routes, "GET /readyz") {
		t.Errorf("routes: spec %v, code %v", specRoutes, routes)
	}
	example := storefront.Sign([]byte("whsec_test"), "1700000000", []byte(`{"id":"o-1","version":1}`))
	if !strings.Contains(spec, example) {
		t.Errorf("the spec's signature example is not %s", example)
	}
}

// jsonKeys lists the JSON object keys v marshals to (omitempty fields of a
// zero value are absent, as they are optional in the spec).
func jsonKeys(v any) []string {
	b, _ := json.Marshal(v)
	var fields map[string]any
	_ = json.Unmarshal(b, &fields)
	var keys []string
	for k := range fields {
		keys = append(keys, k)
	}
	return keys
}
