package console

import (
	"context"
	"fmt"
	"html"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ecomstream/platform/services/dlq-handler/internal/api"
	"github.com/ecomstream/platform/services/dlq-handler/internal/fixture"
)

// TestIntegrationConsoleStore: the console over the real store (PGStore on
// PostgreSQL): the overview's counts, keyset pages of the list, and a
// discard by filter whose confirmation counts what the dry run counts and
// whose execution changes exactly those rows, with the audit row.
func TestIntegrationConsoleStore(t *testing.T) {
	pool := fixture.Pool(t)
	now := time.Now().UTC()
	var rows []fixture.Row
	for i := range 55 {
		rule := "r.other"
		if i < 4 {
			rule = "r.target"
		}
		state := "new"
		if i == 3 {
			state = "resolved"
		}
		rows = append(rows, fixture.Row{ID: fmt.Sprintf("dl-%02d", i), Offset: int64(i), FailedAt: now.Add(-time.Duration(i) * time.Minute), State: state,
			Reasons: []fixture.Reason{{Code: "RULE_FAILED", RuleID: fixture.Rule(rule), Message: "failed " + rule}}})
	}
	fixture.Insert(t, pool, rows...)

	e := &env{t: t, tokens: newTokens()}
	e.srv = httptest.NewServer(New(Config{Store: PGStore{Pool: pool}, Tokens: e.tokens, Detail: api.Config{}}))
	t.Cleanup(e.srv.Close)
	b := e.browser()
	b.login(operatorToken)

	_, body := b.get("/console/")
	if !strings.Contains(body, `id="total">55<`) || !strings.Contains(body, `data-state="new">54<`) || !strings.Contains(body, "dl-54") {
		t.Fatalf("overview: want 55 in the period, 54 new, dl-54 the oldest\n%s", body)
	}

	// Keyset pages, newest first.
	idRE := regexp.MustCompile(`data-id="([^"]+)"`)
	nextRE := regexp.MustCompile(`href="([^"]+)" id="next-page"`)
	st, body := b.get("/console/dead-letters?code=RULE_FAILED")
	ids := idRE.FindAllStringSubmatch(body, -1)
	next := nextRE.FindStringSubmatch(body)
	if st != http.StatusOK || len(ids) != 50 || ids[0][1] != "dl-00" || next == nil {
		t.Fatalf("first page: %d, %d rows, next %v", st, len(ids), next)
	}
	_, body = b.get(html.UnescapeString(next[1]))
	ids = idRE.FindAllStringSubmatch(body, -1)
	if len(ids) != 5 || ids[0][1] != "dl-50" || nextRE.MatchString(body) {
		t.Fatalf("second page: %d rows from %v, want dl-50..dl-54 and no next page", len(ids), ids)
	}

	// Discard by filter: 3 new of the rule, the resolved one left alone.
	form := url.Values{"action": {"discard"}, "rule_id": {"r.target"}}
	st, body = b.post("/console/confirm", form)
	if st != http.StatusOK || !strings.Contains(body, `data-matched="3"`) || !strings.Contains(body, `data-skipped="1"`) {
		t.Fatalf("confirmation: %d\n%s", st, body)
	}
	form.Set("reason", "the rule was wrong")
	if st, body = b.post("/console/execute", form); st != http.StatusOK || !strings.Contains(body, `data-done="3"`) {
		t.Fatalf("discard: %d\n%s", st, body)
	}
	var discarded, audits int
	ctx := context.Background()
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM dead_letters WHERE state = 'discarded' AND discarded_by = 'olga' AND discard_reason = 'the rule was wrong'").Scan(&discarded); err != nil {
		t.Fatal(err)
	}
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM audit_log WHERE action = 'discard' AND actor = 'olga'").Scan(&audits); err != nil {
		t.Fatal(err)
	}
	if discarded != 3 || audits != 1 {
		t.Fatalf("%d discarded, %d audit rows; want 3 and 1", discarded, audits)
	}
	form.Del("reason")
	if _, body = b.post("/console/confirm", form); !strings.Contains(body, `data-matched="0"`) || strings.Contains(body, `id="execute-form"`) {
		t.Fatalf("a second confirmation should find nothing to do\n%s", body)
	}
	if st, _ := b.get("/console/dead-letters/dl-00"); st != http.StatusOK {
		t.Fatalf("detail: %d", st)
	}
}
