package rules

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ecomstream/platform/pkg/events"
)

var defaults = Config{
	AllowedEventTypes: strings.Split("page_view,product_view,search,add_to_cart,remove_from_cart,begin_checkout,purchase", ","),
	MaxFutureSkew:     5 * time.Minute, MaxEventAge: 168 * time.Hour,
	OrderMaxAhead: 5 * time.Minute, OrderMaxLag: time.Hour, ProductMaxPriceMinor: 10_000_000,
}

// seed is an event with only the fields of the course's example event.
func seed(typ string) events.ClickEvent {
	return events.ClickEvent{EventID: "e1", EventTimestamp: now.Add(-time.Second), ReceivedAt: now, EventType: typ,
		UserID: ptr("u1"), SessionID: "s1", PageURL: "https://shop.example.com/p/1", ProductID: ptr("p1"), Source: "kafka"}
}

// TestSeedShapedEvents: seed-shaped add_to_cart and purchase events, all
// dead-lettered by the Go rules, now pass flagged with click.commerce_fields.
func TestSeedShapedEvents(t *testing.T) {
	set := clickSet(t, defaults)
	for _, typ := range []string{"page_view", "product_view", "add_to_cart", "remove_from_cart", "purchase"} {
		ev := seed(typ)
		results, reasons := set.Evaluate(&ev, now, nil)
		if len(reasons) != 0 {
			t.Errorf("%s dead-lettered: %v", typ, reasons)
		}
		var warned []string
		for _, r := range results {
			if r.Outcome == Warned {
				warned = append(warned, r.RuleID)
			}
		}
		want := []string{CommerceFieldsValid}
		if typ == "page_view" || typ == "product_view" {
			want = nil
		}
		if !slices.Equal(warned, want) {
			t.Errorf("%s warned %v, want %v", typ, warned, want)
		}
	}
}

// TestOverrides: the environment's values reach the file's ${NAME}s.
func TestOverrides(t *testing.T) {
	ev := seed("search")
	ev.EventTimestamp = now.Add(-2 * time.Hour)
	failed := func(cfg Config) []string {
		_, reasons := clickSet(t, cfg).Evaluate(&ev, now, nil)
		var ids []string
		for _, r := range reasons {
			ids = append(ids, r.RuleID)
		}
		return ids
	}
	if got := failed(defaults); got != nil {
		t.Errorf("defaults: failed %v", got)
	}
	narrow := defaults
	narrow.AllowedEventTypes, narrow.MaxEventAge = []string{"page_view"}, time.Hour
	if got := failed(narrow); !slices.Equal(got, []string{EventTypeAllowed, TimestampWithinWin}) {
		t.Errorf("narrowed: failed %v", got)
	}
}

func TestLoadDir(t *testing.T) {
	dir := t.TempDir()
	click, err := os.ReadFile("../../rules/click_event.yaml")
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, s string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("click_event.yaml", string(click))
	write("order.yaml", "entity: order\nversion: 1\nrules:\n  - id: order.total\n    description: d\n    severity: error\n    check: expr\n    params: {expression: 'total_minor >= 0'}\n")
	sets, err := Load(os.DirFS(dir), dir, defaults.Params())
	if err != nil || len(sets) != 2 || sets["order"] == nil || len(sets["click_event"].Rules()) != 7 {
		t.Fatalf("sets %v err %v", sets, err)
	}
	if s := sets["click_event"]; s.Version == "" || len(s.Hash) != 12 || !strings.HasPrefix(s.Label(), filepath.Join(dir, "click_event.yaml")+" v") {
		t.Errorf("label %q", s.Label())
	}
	write("order_again.yaml", "entity: order\nversion: 1\nrules:\n  - id: order.x\n    description: d\n    severity: warn\n    check: required\n    field: order_id\n")
	if _, err := Load(os.DirFS(dir), dir, defaults.Params()); err == nil || !strings.Contains(err.Error(), "order_again.yaml: entity order already has rules in") {
		t.Errorf("err = %v", err)
	}
	write("order_again.yaml", "entity: order\nversion: 1\nrules:\n  - id: order.x\n    description: d\n    severity: warn\n    check: required\n    field: orderid\n")
	if _, err := Load(os.DirFS(dir), dir, defaults.Params()); err == nil || !strings.HasPrefix(err.Error(), filepath.Join(dir, "order_again.yaml")+":8: rule order.x:") {
		t.Errorf("err = %v", err)
	}
	if _, err := Load(os.DirFS(t.TempDir()), "empty", nil); err == nil {
		t.Error("an empty directory loaded")
	}
}

func BenchmarkEvaluateSeedWarn(b *testing.B) {
	set := clickSet(b, defaults)
	ev := seed("add_to_cart")
	var results []Result
	b.ReportAllocs()
	for b.Loop() {
		results, _ = set.Evaluate(&ev, now, results)
	}
}

func BenchmarkEvaluateOrderExpr(b *testing.B) {
	s, err := Parse("o.yaml", []byte(`entity: order
version: 1
rules:
  - id: order.total
    description: d
    severity: error
    check: expr
    params: {expression: 'total_minor == subtotal_minor + tax_minor + shipping_minor'}
  - id: order.lines
    description: d
    severity: error
    check: expr
    params: {expression: 'sum(items, .quantity * .unit_price_minor) == subtotal_minor'}
`), nil)
	if err != nil {
		b.Fatal(err)
	}
	o := order()
	var results []Result
	b.ReportAllocs()
	for b.Loop() {
		results, _ = s.Evaluate(&o, now, results)
	}
}

// TestVersionsRecorded: every change to an embedded rule file bumps its
// version (dead letters and ecom_dq_ruleset_info name rule sets by version
// and hash; one version must mean one content). testdata/versions.txt
// records "<file> <version> <hash>" for every version released.
func TestVersionsRecorded(t *testing.T) {
	b, err := os.ReadFile("testdata/versions.txt")
	if err != nil {
		t.Fatal(err)
	}
	recorded := map[string]string{} // file version -> hash
	for line := range strings.SplitSeq(strings.TrimSpace(string(b)), "\n") {
		if f := strings.Fields(line); len(f) == 3 && !strings.HasPrefix(line, "#") {
			recorded[f[0]+" "+f[1]] = f[2]
		}
	}
	sets, err := Embedded(defaults.Params())
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range sets {
		key := s.File + " " + s.Version
		switch h, ok := recorded[key]; {
		case !ok:
			t.Errorf("%s version %s is not in testdata/versions.txt: add the line %q", s.File, s.Version, key+" "+s.Hash)
		case h != s.Hash:
			t.Errorf("%s changed (sha256 %s, recorded %s for version %s): bump its version and record the new line", s.File, s.Hash, h, s.Version)
		}
	}
}
