package query

import (
	"context"
	"strings"
	"testing"

	"github.com/ecomstream/platform/services/dlq-handler/internal/fixture"
)

// TestIntegrationRedactedSearch: a caller without the PII right searches
// message_redacted through its GIN index (no per-row regexps over the
// table), and a hit cannot confirm part of a hidden email address (q=ann
// against ann+tag@x.com) or a quoted value of a personal field.
func TestIntegrationRedactedSearch(t *testing.T) {
	pool := fixture.Pool(t)
	ctx := context.Background()
	fixture.Insert(t, pool,
		fixture.Row{ID: "dl-mail", Entity: "click_event", FailedAt: base,
			Reasons: []fixture.Reason{{Code: "INVALID_VALUE", Field: fixture.Rule("note"), Message: "notify ann+tag@x.com failed"}}},
		fixture.Row{ID: "dl-ip", Entity: "click_event", FailedAt: base,
			Reasons: []fixture.Reason{{Code: "RULE_FAILED", Field: fixture.Rule("client_ip"), Message: `client_ip "10.9.8.7": want public`}}},
	)
	for _, tt := range []struct {
		q             string
		redacted, all int
	}{{"ann", 0, 1}, {"tag@x.com", 0, 1}, {"10.9.8.7", 0, 1}, {"notify", 1, 1}, {"public -notify", 1, 1}, {"redacted", 2, 0}} {
		for _, red := range []bool{true, false} {
			res, err := List(ctx, pool, Filter{Q: tt.q, Redacted: red}, Page{Limit: 10})
			if err != nil {
				t.Fatal(err)
			}
			if want := map[bool]int{true: tt.redacted, false: tt.all}[red]; len(res.Items) != want {
				t.Errorf("q=%s redacted=%v: %d found, want %d", tt.q, red, len(res.Items), want)
			}
		}
	}

	// The plan: the redacted search is an index scan of
	// dead_letters_message_redacted (seq scans off, as on a large table).
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if _, err := tx.Exec(ctx, "SET LOCAL enable_seqscan = off"); err != nil {
		t.Fatal(err)
	}
	cond, args := Filter{Q: "notify", Redacted: true}.Where(nil)
	rows, err := tx.Query(ctx, "EXPLAIN SELECT dead_letter_id FROM dead_letters WHERE "+cond, args...)
	if err != nil {
		t.Fatal(err)
	}
	var plan []string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, line)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if p := strings.Join(plan, "\n"); !strings.Contains(p, "dead_letters_message_redacted") || strings.Contains(p, "regexp") {
		t.Errorf("the redacted search does not use its index:\n%s", p)
	}
}
