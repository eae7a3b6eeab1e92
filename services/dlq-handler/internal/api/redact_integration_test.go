package api

import (
	"context"
	"net/url"
	"strings"
	"testing"

	"github.com/ecomstream/platform/services/dlq-handler/internal/fixture"
	"github.com/ecomstream/platform/services/dlq-handler/internal/query"
)

// TestIntegrationMessageRedaction: the validator quotes the values it
// names (`name "John Smith": want ...`); a caller without the PII right
// sees them masked on a pii row and on a reason whose field is personal,
// in the list, the detail, a q search (which must not confirm them) and a
// discard's dry run (whose count must not either, nor may it search an
// email address).
func TestIntegrationMessageRedaction(t *testing.T) {
	it := newITest(t, Config{})
	fixture.Insert(t, it.pool,
		fixture.Row{ID: "dl-order", Entity: "order", PII: true, FailedAt: base,
			Reasons: []fixture.Reason{
				{Code: "RULE_FAILED", RuleID: fixture.Rule("order.name"), Field: fixture.Rule("customer_name"), Message: `customer_name "John Smith": want matches "^[A-Z]"`},
				{Code: "RULE_FAILED", RuleID: fixture.Rule("order.currency"), Field: fixture.Rule("currency"), Message: `currency "Xanadu": want is in [CHF EUR]`},
			}},
		fixture.Row{ID: "dl-click", Entity: "click_event", Stage: "ingest-clickstream", FailedAt: base,
			Reasons: []fixture.Reason{
				{Code: "RULE_FAILED", RuleID: fixture.Rule("click.ip"), Field: fixture.Rule("client_ip"), Message: `client_ip "10.9.8.7": want a public address`},
				{Code: "RULE_FAILED", RuleID: fixture.Rule("click.page"), Field: fixture.Rule("page"), Message: `page "Checkout": want a known page`},
			}},
	)
	leaks := []string{"John", "Smith", "Xanadu", "10.9.8.7"}
	check := func(where, s string) {
		t.Helper()
		for _, l := range leaks {
			if strings.Contains(s, l) {
				t.Errorf("%s shows %q to a viewer without pii: %s", where, l, s)
			}
		}
	}
	var page query.ListResult
	if st := it.call(t, "GET", "/v1/dead-letters", bobTok, nil, &page); st != 200 || len(page.Items) != 2 {
		t.Fatalf("list: %d %+v", st, page.Items)
	}
	for _, d := range page.Items {
		check("list message", d.Message)
		for _, r := range d.Reasons {
			check("list reason", r.Message)
		}
		if d.ID == "dl-click" && !strings.Contains(d.Message, `page "Checkout"`) {
			t.Errorf("a non-personal field of a non-pii row is masked: %q", d.Message)
		}
	}
	for _, id := range []string{"dl-order", "dl-click"} {
		var det Detail
		if st := it.call(t, "GET", "/v1/dead-letters/"+id, bobTok, nil, &det); st != 200 {
			t.Fatalf("detail %s: %d", id, st)
		}
		check("detail message", det.DeadLetter.Message)
		for _, r := range det.DeadLetter.Reasons {
			check("detail reason", r.Message)
		}
	}
	var det Detail
	it.call(t, "GET", "/v1/dead-letters/dl-order", carolTok, nil, &det)
	if !strings.Contains(det.DeadLetter.Message, "John Smith") || !strings.Contains(det.DeadLetter.Reasons[0].Message, "John Smith") {
		t.Errorf("the pii viewer does not see the value: %+v", det.DeadLetter)
	}

	for _, tt := range []struct {
		q        string
		bob, pii int
	}{{"John", 0, 1}, {`"10.9.8.7"`, 0, 1}, {"Xanadu", 0, 1}, {"Checkout", 1, 1}, {"currency", 1, 1}} {
		var p query.ListResult
		it.call(t, "GET", "/v1/dead-letters?q="+url.QueryEscape(tt.q), bobTok, nil, &p)
		var pp query.ListResult
		it.call(t, "GET", "/v1/dead-letters?q="+url.QueryEscape(tt.q), carolTok, nil, &pp)
		if len(p.Items) != tt.bob || len(pp.Items) != tt.pii {
			t.Errorf("q=%s: viewer finds %d, pii viewer %d; want %d, %d", tt.q, len(p.Items), len(pp.Items), tt.bob, tt.pii)
		}
		var st query.Stats
		if code := it.call(t, "GET", "/v1/stats?window=1h&buckets=1&q="+url.QueryEscape(tt.q), bobTok, nil, &st); code != 200 || st.Total != tt.bob {
			t.Errorf("stats q=%s: viewer counts %d, want %d", tt.q, st.Total, tt.bob)
		}
	}

	// The replay planner's statement shape (FOR UPDATE over the filter)
	// takes the redacted search too.
	tx, err := it.pool.Begin(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	cond, args := query.Filter{Q: "Checkout", Redacted: true}.Where([]any{[]string{"new"}})
	var n int
	if err := tx.QueryRow(context.Background(), "SELECT count(*) FROM (SELECT dead_letter_id FROM dead_letters WHERE state = ANY($1) AND "+cond+
		" ORDER BY failed_at, dead_letter_id FOR UPDATE) l", args...).Scan(&n); err != nil || n != 1 {
		t.Errorf("redacted search under FOR UPDATE: %d, %v; want 1", n, err)
	}
	_ = tx.Rollback(context.Background())

	// Discard: a dry run's count is the search's.
	var res DiscardResponse
	if st := it.call(t, "POST", "/v1/dead-letters/discard", opTok, map[string]any{
		"filter": map[string]any{"q": "John"}, "reason": "probe", "dry_run": true}, &res); st != 200 || res.Matched != 0 {
		t.Errorf("dry run q=John by an operator without pii: %d matched %d, want 200 and 0", st, res.Matched)
	}
	var e struct {
		Error struct{ Code, Message string }
	}
	if st := it.call(t, "POST", "/v1/dead-letters/discard", opTok, map[string]any{
		"filter": map[string]any{"q": "john@shop.example"}, "reason": "probe", "dry_run": true}, &e); st != 400 || !strings.Contains(e.Error.Message, "filter.q") {
		t.Errorf("discard searching an email without pii: %d %+v, want 400 naming filter.q", st, e)
	}
}
