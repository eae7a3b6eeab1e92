package rules

import (
	"strings"
	"testing"
	"time"

	"github.com/ecomstream/platform/pkg/events"
)

// oneRule compiles a file of entity holding the one rule body (YAML lines
// after "- id: t.rule").
func oneRule(t *testing.T, entity, body string) *Set {
	t.Helper()
	src := "entity: " + entity + "\nversion: 1\nrules:\n  - id: t.rule\n    description: test\n    severity: error\n" + indent(body)
	s, err := Parse("t.yaml", []byte(src), Params{"SKEW": "5m", "TYPES": "page_view,purchase"})
	if err != nil {
		t.Fatalf("%v\n%s", err, src)
	}
	return s
}

func indent(body string) string {
	var b strings.Builder
	for _, l := range strings.Split(strings.TrimSpace(body), "\n") {
		b.WriteString("    " + strings.TrimSpace(l) + "\n")
	}
	return b.String()
}

func order() events.Order {
	return events.Order{OrderID: "o1", UserID: "u1", Status: "paid", OrderTimestamp: now.Add(-time.Hour), UpdatedAt: now,
		Currency: "EUR", SubtotalMinor: 1000, TaxMinor: 200, ShippingMinor: 300, TotalMinor: 1500,
		Items:  []events.OrderItem{{ProductID: "p1", Quantity: 2, UnitPriceMinor: 300}, {ProductID: "p2", Quantity: 1, UnitPriceMinor: 400}},
		Source: "api"}
}

func TestChecks(t *testing.T) {
	tests := []struct {
		name   string
		entity string // default click_event
		rule   string
		click  func(*events.ClickEvent)
		order  func(*events.Order)
		want   Outcome
	}{
		{name: "required passes", rule: "check: required\nfields: [event_id, session_id]", want: Pass},
		{name: "required blank", rule: "check: required\nfield: session_id", click: func(e *events.ClickEvent) { e.SessionID = " " }, want: Fail},
		{name: "required null", rule: "check: required\nfield: product_id", want: Fail},
		{name: "required any_of", rule: "check: required\nparams: {any_of: [user_id, anonymous_id]}", click: func(e *events.ClickEvent) { e.AnonymousID = nil }, want: Fail},
		{name: "not_null accepts blank", rule: "check: not_null\nfield: anonymous_id", click: func(e *events.ClickEvent) { e.AnonymousID = ptr("") }, want: Pass},
		{name: "not_null null", rule: "check: not_null\nfield: referrer", want: Fail},
		{name: "required empty array", entity: "order", rule: "check: required\nfield: items", order: func(o *events.Order) { o.Items = []events.OrderItem{} }, want: Fail},
		{name: "in_set", rule: "check: in_set\nfield: event_type\nparams: {values: [page_view]}", want: Pass},
		{name: "in_set fails", rule: "check: in_set\nfield: event_type\nparams: {values: [search]}", want: Fail},
		{name: "in_set from a parameter", rule: "check: in_set\nfield: event_type\nparams: {values: '${TYPES}'}", click: func(e *events.ClickEvent) { e.EventType = "purchase" }, want: Pass},
		{name: "in_set ignores null", rule: "check: in_set\nfield: device_type\nparams: {values: [mobile]}", want: Pass},
		{name: "between int", rule: "check: between\nfield: quantity\nparams: {min: 1, max: 10}", click: func(e *events.ClickEvent) { e.Quantity = ptr(11) }, want: Fail},
		{name: "between int ok", rule: "check: between\nfield: quantity\nparams: {min: 1, max: 10}", click: func(e *events.ClickEvent) { e.Quantity = ptr(10) }, want: Pass},
		{name: "between int64 min", rule: "check: between\nfield: price_minor\nparams: {min: 0}", click: func(e *events.ClickEvent) { e.PriceMinor = ptr(int64(-1)) }, want: Fail},
		{name: "between durations", rule: "check: between\nfield: event_timestamp\nparams: {reference: received_at, min: -1h, max: '${SKEW}'}", click: func(e *events.ClickEvent) { e.EventTimestamp = now.Add(-2 * time.Hour) }, want: Fail},
		{name: "between durations ok", rule: "check: between\nfield: event_timestamp\nparams: {reference: received_at, min: -1h, max: 5m}", want: Pass},
		{name: "freshness ahead", rule: "check: freshness\nfield: event_timestamp\nparams: {max_ahead: 5m}", click: func(e *events.ClickEvent) { e.EventTimestamp = now.Add(6 * time.Minute) }, want: Fail},
		{name: "freshness age", rule: "check: freshness\nfield: event_timestamp\nparams: {max_age: 1h}", click: func(e *events.ClickEvent) { e.EventTimestamp = now.Add(-61 * time.Minute) }, want: Fail},
		{name: "freshness against the record", rule: "check: freshness\nfield: received_at\nparams: {reference: record.timestamp, max_ahead: 1m}", click: func(e *events.ClickEvent) { e.ReceivedAt = now.Add(2 * time.Minute) }, want: Fail},
		{name: "freshness order", entity: "order", rule: "check: freshness\nfield: order_timestamp\nparams: {reference: updated_at, max_ahead: 0s}", order: func(o *events.Order) { o.OrderTimestamp = now.Add(time.Second) }, want: Fail},
		{name: "regex", rule: "check: regex\nfield: session_id\nparams: {pattern: '^s[0-9]+$'}", want: Pass},
		{name: "regex fails", rule: "check: regex\nfield: event_id\nparams: {pattern: '^[0-9a-f-]{36}$'}", want: Fail},
		{name: "length", rule: "check: length\nfield: session_id\nparams: {min: 1, max: 2}", want: Pass},
		{name: "length runes", rule: "check: length\nfield: session_id\nparams: {max: 2}", click: func(e *events.ClickEvent) { e.SessionID = "ééé" }, want: Fail},
		{name: "length array", entity: "order", rule: "check: length\nfield: items\nparams: {min: 3}", want: Fail},
		{name: "url", rule: "check: url\nfield: page_url", want: Pass},
		{name: "url upper-case scheme", rule: "check: url\nfield: page_url", click: func(e *events.ClickEvent) { e.PageURL = "HTTPS://shop.example.com/a%20b" }, want: Pass},
		{name: "url with port", rule: "check: url\nfield: page_url", click: func(e *events.ClickEvent) { e.PageURL = "http://localhost:8080/x" }, want: Pass},
		{name: "url bad host", rule: "check: url\nfield: page_url", click: func(e *events.ClickEvent) { e.PageURL = "https://exa mple.com/" }, want: Fail},
		{name: "url scheme", rule: "check: url\nfield: page_url\nparams: {schemes: [https]}", click: func(e *events.ClickEvent) { e.PageURL = "http://x.example/" }, want: Fail},
		{name: "url no host", rule: "check: url\nfield: page_url", click: func(e *events.ClickEvent) { e.PageURL = "https:///p" }, want: Fail},
		{name: "email", rule: "check: email\nfield: search_query", click: func(e *events.ClickEvent) { e.SearchQuery = ptr("ann@example.com") }, want: Pass},
		{name: "email fails", rule: "check: email\nfield: search_query", click: func(e *events.ClickEvent) { e.SearchQuery = ptr("ann@example") }, want: Fail},
		{name: "email two ats", rule: "check: email\nfield: search_query", click: func(e *events.ClickEvent) { e.SearchQuery = ptr("a@b@example.com") }, want: Fail},
		{name: "currency", rule: "check: currency_iso4217\nfield: currency", click: func(e *events.ClickEvent) { e.Currency = ptr("JPY") }, want: Pass},
		{name: "currency lower-case", rule: "check: currency_iso4217\nfield: currency", click: func(e *events.ClickEvent) { e.Currency = ptr("usd") }, want: Fail},
		{name: "currency order", entity: "order", rule: "check: currency_iso4217\nfield: currency", order: func(o *events.Order) { o.Currency = "EUX" }, want: Fail},
		{name: "country", rule: "check: country_iso3166\nfield: country", click: func(e *events.ClickEvent) { e.Country = ptr("DE") }, want: Pass},
		{name: "country fails", rule: "check: country_iso3166\nfield: country", click: func(e *events.ClickEvent) { e.Country = ptr("UK") }, want: Fail},
		{name: "type uuid", rule: "check: type\nfield: event_id\nparams: {is: uuid}", click: func(e *events.ClickEvent) { e.EventID = "0b6c2d6e-9d7e-4c1a-8f55-3f1f1d2a9b10" }, want: Pass},
		{name: "type integer fails", rule: "check: type\nfield: event_id\nparams: {is: integer}", want: Fail},
		{name: "expr total = sum of parts", entity: "order", rule: "check: expr\nparams: {expression: 'total_minor == subtotal_minor + tax_minor + shipping_minor'}", want: Pass},
		{name: "expr total wrong", entity: "order", rule: "check: expr\nparams: {expression: 'total_minor == subtotal_minor + tax_minor + shipping_minor'}", order: func(o *events.Order) { o.TotalMinor++ }, want: Fail},
		{name: "expr lines sum to subtotal", entity: "order", rule: "check: expr\nparams: {expression: 'sum(items, .quantity * .unit_price_minor) == subtotal_minor'}", want: Pass},
		{name: "expr lines wrong", entity: "order", rule: "check: expr\nparams: {expression: 'sum(items, .quantity * .unit_price_minor) == subtotal_minor'}", order: func(o *events.Order) { o.Items[0].Quantity = 3 }, want: Fail},
		{name: "expr on pointers", rule: "check: expr\nparams: {expression: 'price_minor == nil || currency != nil'}", click: func(e *events.ClickEvent) { e.PriceMinor = ptr(int64(5)) }, want: Fail},
		{name: "when skips", rule: "when: {event_type: [purchase]}\ncheck: required\nfield: order_id", want: Pass},
		{name: "when applies", rule: "when: {event_type: [page_view]}\ncheck: required\nfield: order_id", want: Fail},
		{name: "when present", rule: "when: {price_minor: present}\ncheck: required\nfield: currency", click: func(e *events.ClickEvent) { e.PriceMinor = ptr(int64(1)) }, want: Fail},
		{name: "when absent", rule: "when: {price_minor: absent}\ncheck: required\nfield: currency", want: Fail},
		{name: "when expression", entity: "order", rule: "when: status == 'paid'\ncheck: length\nfield: items\nparams: {min: 1}", order: func(o *events.Order) { o.Items = nil }, want: Pass},
		{name: "warn clause", rule: "all:\n- {check: required, field: order_id, severity: warn}", want: Warned},
		{name: "error beats warn", rule: "all:\n- {check: required, field: order_id, severity: warn}\n- {check: required, field: referrer}", want: Fail},
		// A when beside all restricts every clause (it was ignored).
		{name: "when beside all skips", rule: "when: {event_type: [purchase]}\nall:\n- {check: required, field: order_id}", want: Pass},
		{name: "when beside all applies", rule: "when: {event_type: [page_view]}\nall:\n- {check: required, field: order_id}", want: Fail},
		{name: "when beside and in all", rule: "when: {event_type: [page_view]}\nall:\n- {when: {price_minor: present}, check: required, field: order_id}\n- {check: required, field: referrer, severity: warn}", want: Warned},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			entity := tt.entity
			if entity == "" {
				entity = "click_event"
			}
			s := oneRule(t, entity, tt.rule)
			var rec any
			if entity == "order" {
				o := order()
				if tt.order != nil {
					tt.order(&o)
				}
				rec = &o
			} else {
				e := valid()
				e.SessionID = "s1"
				if tt.click != nil {
					tt.click(&e)
				}
				rec = &e
			}
			results, reasons := s.Evaluate(rec, now, nil)
			if len(results) != 1 || results[0].Outcome != tt.want {
				t.Fatalf("results %+v reasons %+v, want %s", results, reasons, tt.want)
			}
			if (tt.want == Fail) != (len(reasons) == 1) {
				t.Fatalf("reasons %+v for %s", reasons, tt.want)
			}
			if len(reasons) == 1 && (reasons[0].RuleID != "t.rule" || !strings.Contains(reasons[0].Message, "[rules t.yaml v1 sha256:"+s.Hash+"]")) {
				t.Errorf("reason %+v does not name the rule and the rule set", reasons[0])
			}
		})
	}
}

func TestLoadErrors(t *testing.T) {
	const head = "entity: click_event\nversion: 1\nrules:\n"
	rule := func(id, body string) string {
		return "  - id: " + id + "\n    description: d\n    severity: error\n" + indent(body)
	}
	ok := rule("c.ok", "check: required\nfield: event_id")
	tests := []struct {
		name, src, want string
	}{
		{name: "bad yaml", src: head + ok + "  - id: [\n", want: "t.yaml:9: did not find expected node content (after rule c.ok)"},
		{name: "unknown field", src: head + ok + rule("c.typo", "check: required\nfield: evnt_id"), want: `t.yaml:13: rule c.typo: click_event has no field "evnt_id"`},
		{name: "unknown check", src: head + rule("c.chk", "check: is_nice\nfield: event_id"), want: `t.yaml:7: rule c.chk: unknown check "is_nice"`},
		{name: "bad regex", src: head + rule("c.re", "check: regex\nfield: event_id\nparams: {pattern: '(['}"), want: `t.yaml:9: rule c.re: pattern "(["`},
		{name: "bad expression", src: head + rule("c.ex", "check: expr\nparams: {expression: 'event_id + 1 == 2'}"), want: "t.yaml:8: rule c.ex: expression"},
		{name: "unknown field in expression", src: head + rule("c.ex2", "check: expr\nparams: {expression: 'totl > 0'}"), want: "t.yaml:8: rule c.ex2: expression"},
		{name: "duplicate id", src: head + ok + ok, want: "t.yaml:9: rule c.ok: duplicate rule id (first at line 4)"},
		{name: "unknown parameter", src: head + rule("c.p", "check: required\nfield: event_id\nparams: {mode: strict}"), want: `t.yaml:9: rule c.p: check required has no parameter "mode"`},
		{name: "unknown reference", src: head + rule("c.ref", "check: in_set\nfield: event_type\nparams: {values: '${NOPE}'}"), want: "t.yaml:9: rule c.ref: ${NOPE}: unknown parameter reference"},
		{name: "wrong field type", src: head + rule("c.t", "check: between\nfield: event_id\nparams: {min: 1}"), want: "t.yaml:7: rule c.t: check between needs a integer or number or timestamp field; event_id is string"},
		{name: "clock-relative time", src: head + rule("c.clk", "check: between\nfield: event_timestamp\nparams: {max: 1h}"), want: "rules never read the clock"},
		{name: "bad duration", src: head + rule("c.d", "check: freshness\nfield: event_timestamp\nparams: {max_age: 7d}"), want: `t.yaml:9: rule c.d: "7d" is not a duration`},
		{name: "bad severity", src: head + "  - id: c.s\n    description: d\n    severity: fatal\n    check: required\n    field: event_id\n", want: `t.yaml:6: rule c.s: severity "fatal"`},
		{name: "missing id", src: head + "  - description: d\n    severity: error\n    check: required\n    field: event_id\n", want: "t.yaml:4: missing id"},
		{name: "unknown key", src: head + rule("c.k", "check: required\nfeild: event_id"), want: `t.yaml:8: rule c.k: unknown key "feild"`},
		{name: "unknown entity", src: "entity: invoice\nversion: 1\nrules: []\n", want: `t.yaml:1: unknown entity "invoice"`},
		{name: "missing version", src: "entity: click_event\nrules:\n" + ok, want: "t.yaml:1: missing version"},
		{name: "field beside all", src: head + rule("c.a", "field: event_id\nall:\n- {check: required, field: session_id}"), want: "t.yaml:7: rule c.a: field belongs in a clause of all, not beside it"},
		{name: "params beside all", src: head + rule("c.a", "params: {min: 1}\nall:\n- {check: required, field: session_id}"), want: "t.yaml:7: rule c.a: params belongs in a clause of all, not beside it"},
		{name: "bad when beside all", src: head + rule("c.a", "when: {evnt: [x]}\nall:\n- {check: required, field: session_id}"), want: `rule c.a: click_event has no field "evnt"`},
		{name: "entity mismatch", src: head + rule("c.e", "entity: order\ncheck: required\nfield: event_id"), want: `t.yaml:7: rule c.e: entity "order" in a file of entity click_event`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("t.yaml", []byte(tt.src), Params{"SKEW": "5m"})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to contain %q\n%s", err, tt.want, tt.src)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
		})
	}
}

// TestEmailNotShown: a failed email check names the field and the length,
// never the address (personal data), in the reason's message.
func TestEmailNotShown(t *testing.T) {
	s := oneRule(t, "click_event", "check: email\nfield: search_query")
	e := valid()
	e.SearchQuery = ptr("ann.smith.42@example")
	_, reasons := s.Evaluate(&e, now, nil)
	if len(reasons) != 1 {
		t.Fatalf("reasons %+v", reasons)
	}
	r := reasons[0]
	if r.Field != "search_query" || strings.Contains(r.Message, "ann") || strings.Contains(r.Message, "example") ||
		!strings.HasPrefix(r.Message, "search_query (20 characters, not shown: personal data): want an email address") {
		t.Errorf("reason %+v", r)
	}
}
