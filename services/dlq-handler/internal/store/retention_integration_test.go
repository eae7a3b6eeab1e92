package store

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ecomstream/platform/pkg/events"
	"github.com/ecomstream/platform/services/dlq-handler/internal/redact"
	ddl "github.com/ecomstream/platform/sql"
)

// TestIntegrationPurgeRedactsMessages: past DLQ_RETENTION_PII the pii
// rows' reasons and message lose their quoted values and email-like
// strings (message_tsv follows); non-pii and recent rows keep theirs; audit
// entries and replay jobs older than the retention lose their q and
// email-like strings, also after a line break (\n, \r\n: the JSON stays
// JSON). A second run changes nothing.
func TestIntegrationPurgeRedactsMessages(t *testing.T) {
	s, pool := testStore(t)
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Second)
	old, recent := now.Add(-40*24*time.Hour), now.Add(-time.Hour)
	reasons := `[{"code": "RULE_FAILED", "rule_id": "r.name", "field": "customer_name", "message": "customer_name \"John Smith\": want matches \"^[a-z]\""},
		{"code": "RULE_FAILED", "rule_id": "r.note", "field": "note", "message": "note holds ann@shop.example"}]`
	fixtures := []struct {
		id           string
		failed       time.Time
		pii, purged  bool
		wantRedacted bool
	}{
		{"pii-old", old, true, false, true},
		{"pii-recent", recent, true, false, false},
		{"plain-old", old, false, false, false},
	}
	var rows []Row
	for i, f := range fixtures {
		rows = append(rows, row(f.id, int64(i), func(dl *events.DeadLetter) { dl.FailedAt = f.failed; dl.Entity = ptr("click_event") }))
		rows[i].PII = f.pii
	}
	if _, err := s.Write(ctx, "g", rows, nil); err != nil {
		t.Fatal(err)
	}
	for _, f := range fixtures {
		if _, err := pool.Exec(ctx, `UPDATE dead_letters SET reasons = $2::jsonb,
			message = (SELECT string_agg(r->>'message', E'\n') FROM jsonb_array_elements($2::jsonb) r),
			pii_purged_at = CASE WHEN $3 THEN $4::timestamptz END, original_value = CASE WHEN $3 THEN NULL ELSE original_value END
			WHERE dead_letter_id = $1`, f.id, reasons, f.purged, old); err != nil {
			t.Fatal(err)
		}
	}
	for _, a := range []struct {
		at             time.Time
		target, detail string
	}{
		{old, `{"filter": {"q": "John Smith", "stage": ["validator"]}}`, `{"reason": "asked by ann@shop.example", "discarded": 2}`},
		{recent, `{"filter": {"q": "John Smith"}}`, `{"reason": "asked by ann@shop.example"}`},
		{old, `{"ids": ["a"]}`, `{"reason": "dup"}`},
		{old, `{"ids": ["b"]}`, `{"reason": "Customer request\r\nann@shop.example"}`},
		{old, `{"ids": ["c"]}`, `{"reason": "Customer request\nann@shop.example\r\n"}`},
	} {
		if _, err := pool.Exec(ctx, `INSERT INTO audit_log (at, actor, role, action, target, detail) VALUES ($1, 'op', 'operator', 'discard', $2, $3)`,
			a.at, a.target, a.detail); err != nil {
			t.Fatal(err)
		}
	}
	for _, j := range []struct {
		id     string
		at     time.Time
		filter string
	}{{"job-old", old, `{"q": "John Smith", "entity": ["x\r\nann@shop.example"]}`}, {"job-recent", recent, `{"q": "John Smith"}`}} {
		if _, err := pool.Exec(ctx, `INSERT INTO replay_jobs (job_id, requested_by, requested_at, filter, rate_limit, total, error)
			VALUES ($1, 'op', $2, $3, 10, 1, 'refused dl-ann@shop.example')`, j.id, j.at, j.filter); err != nil {
			t.Fatal(err)
		}
	}

	p := RetentionPolicy{PII: 30 * 24 * time.Hour}
	res, err := s.Purge(ctx, now, p)
	if err != nil {
		t.Fatal(err)
	}
	if res != (RetentionResult{PIIPurged: 1, AuditRedacted: 3, JobsRedacted: 1}) {
		t.Errorf("Purge = %+v, want 1 row purged, 3 audit entries, 1 job", res)
	}
	for _, f := range fixtures {
		var msg string
		var raw []byte
		var johnFound, purged bool
		if err := pool.QueryRow(ctx, `SELECT message, reasons, message_tsv @@ websearch_to_tsquery('simple', 'John'), pii_purged_at IS NOT NULL
			FROM dead_letters WHERE dead_letter_id = $1`, f.id).Scan(&msg, &raw, &johnFound, &purged); err != nil {
			t.Fatal(err)
		}
		var rs []struct{ Message string }
		if err := json.Unmarshal(raw, &rs); err != nil || len(rs) != 2 {
			t.Fatalf("%s: reasons %s: %v", f.id, raw, err)
		}
		all := msg + "\n" + rs[0].Message + "\n" + rs[1].Message
		leaks := strings.Contains(all, "John") || strings.Contains(all, "ann@shop.example") || johnFound
		if leaks == f.wantRedacted || purged != f.pii && f.wantRedacted {
			t.Errorf("%s: message %q, reasons %s, tsv finds John %v, purged %v; want redacted %v", f.id, msg, raw, johnFound, purged, f.wantRedacted)
		}
		if f.wantRedacted && (msg != `customer_name "[redacted]": want matches "[redacted]"`+"\nnote holds [redacted]" ||
			rs[0].Message != `customer_name "[redacted]": want matches "[redacted]"`) {
			t.Errorf("%s: message %q, reasons %s", f.id, msg, raw)
		}
	}
	rowsA, err := pool.Query(ctx, `SELECT at < $1, target::text || detail::text FROM audit_log ORDER BY id`, now.Add(-p.PII))
	if err != nil {
		t.Fatal(err)
	}
	for rowsA.Next() {
		var isOld bool
		var text string
		if err := rowsA.Scan(&isOld, &text); err != nil {
			t.Fatal(err)
		}
		if leaks := strings.Contains(text, "John") || strings.Contains(text, "ann@shop.example"); leaks == isOld && (isOld || strings.Contains(text, "filter")) {
			t.Errorf("audit entry (old %v): %s", isOld, text)
		}
	}
	rowsA.Close()
	var crlf string
	if err := pool.QueryRow(ctx, `SELECT detail->>'reason' FROM audit_log WHERE target = '{"ids": ["b"]}'`).Scan(&crlf); err != nil || crlf != "Customer request\r\n[redacted]" {
		t.Errorf("the \\r\\n reason became %q (%v), want %q", crlf, err, "Customer request\r\n[redacted]")
	}
	var oldJob, recentJob, oldErr string
	if err := pool.QueryRow(ctx, `SELECT (SELECT filter::text || error FROM replay_jobs WHERE job_id = 'job-old'), (SELECT filter::text FROM replay_jobs WHERE job_id = 'job-recent'),
		(SELECT error FROM replay_jobs WHERE job_id = 'job-old')`).Scan(&oldJob, &recentJob, &oldErr); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(oldJob, "John") || strings.Contains(oldJob, "ann@") || !strings.Contains(oldJob, `"q": "[redacted]"`) || oldErr != "refused [redacted]" ||
		!strings.Contains(recentJob, "John Smith") {
		t.Errorf("jobs after Purge: old %s, recent %s", oldJob, recentJob)
	}

	if res, err := s.Purge(ctx, now, p); err != nil || res != (RetentionResult{}) {
		t.Errorf("second Purge = %+v, %v; want nothing", res, err)
	}
}

// TestIntegrationPurgeWatermarks: a retention run reads only what earlier
// runs did not handle: the pii purge takes its rows through the
// dead_letters_pii partial index (pii rows not purged yet), the audit log
// and replay jobs through their redacted_at watermarks, and a second run
// writes no row at all (a running job is masked but stays unmarked, and an
// unchanged one is not rewritten).
func TestIntegrationPurgeWatermarks(t *testing.T) {
	s, pool := testStore(t)
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Second)
	old := now.Add(-40 * 24 * time.Hour)
	var rows []Row
	for i := range 3 {
		rows = append(rows, row(fmt.Sprintf("dl-%d", i), int64(i), func(dl *events.DeadLetter) { dl.FailedAt = old; dl.Entity = ptr("order") }))
	}
	if _, err := s.Write(ctx, "g", rows, nil); err != nil {
		t.Fatal(err)
	}
	for _, detail := range []string{`{"reason": "asked by ann@shop.example"}`, `{"reason": "dup"}`} {
		if _, err := pool.Exec(ctx, `INSERT INTO audit_log (at, actor, role, action, detail) VALUES ($1, 'op', 'operator', 'discard', $2)`, old, detail); err != nil {
			t.Fatal(err)
		}
	}
	for _, j := range []struct{ id, state, filter string }{
		{"job-done", "failed", `{"q": "John"}`}, {"job-running", "running", `{"q": "Ann"}`}, {"job-plain", "succeeded", `{"stage": ["validator"]}`},
	} {
		if _, err := pool.Exec(ctx, `INSERT INTO replay_jobs (job_id, requested_by, requested_at, filter, rate_limit, total, state)
			VALUES ($1, 'op', $2, $3, 10, 1, $4)`, j.id, old, j.filter, j.state); err != nil {
			t.Fatal(err)
		}
	}
	p := RetentionPolicy{PII: 30 * 24 * time.Hour}
	if res, err := s.Purge(ctx, now, p); err != nil || res != (RetentionResult{PIIPurged: 3, AuditRedacted: 1, JobsRedacted: 2}) {
		t.Fatalf("first Purge = %+v, %v; want 3 purged, 1 audit entry, 2 jobs", res, err)
	}
	if n := count(t, pool, `SELECT count(*) FROM audit_log WHERE redacted_at IS NULL`); n != 0 {
		t.Errorf("%d old audit entries not marked masked", n)
	}
	if n := count(t, pool, `SELECT count(*) FROM replay_jobs WHERE redacted_at IS NULL`); n != 1 {
		t.Errorf("%d jobs unmarked, want 1 (the running one)", n)
	}

	// Every row version before the second run: a run that writes a row changes its xmin.
	const versions = `SELECT string_agg(x, ',' ORDER BY x) FROM (
		SELECT 'd' || dead_letter_id || ':' || xmin::text AS x FROM dead_letters
		UNION ALL SELECT 'a' || id || ':' || xmin::text FROM audit_log
		UNION ALL SELECT 'j' || job_id || ':' || xmin::text FROM replay_jobs) v`
	var before, after string
	if err := pool.QueryRow(ctx, versions).Scan(&before); err != nil {
		t.Fatal(err)
	}
	if res, err := s.Purge(ctx, now, p); err != nil || res != (RetentionResult{}) {
		t.Errorf("second Purge = %+v, %v; want nothing", res, err)
	}
	if err := pool.QueryRow(ctx, versions).Scan(&after); err != nil {
		t.Fatal(err)
	}
	if before != after {
		t.Errorf("the second run wrote rows:\n before %s\n after  %s", before, after)
	}

	// How the statements find their rows: through the partial indexes, not
	// by reading everything older than the retention (sequential scans off,
	// so that a tiny table's plan shows what a large one's would use).
	cut := now.Add(-p.PII)
	for _, tt := range []struct {
		name, stmt, index string
		args              []any
	}{
		{"pii purge", purgePII, "dead_letters_pii",
			[]any{cut, now, purgeChunk, redact.QuotedPattern, redact.QuotedMask, redact.EmailPattern, redact.Mask}},
		{"audit", pickAudit, "audit_log_unredacted", []any{cut, purgeChunk}},
		{"jobs", pickJobs, "replay_jobs_unredacted", []any{cut, purgeChunk, time.Time{}, ""}},
	} {
		var plan []string
		err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, "SET LOCAL enable_seqscan = off"); err != nil {
				return err
			}
			rows, err := tx.Query(ctx, "EXPLAIN "+tt.stmt, tt.args...)
			if err != nil {
				return err
			}
			plan, err = pgx.CollectRows(rows, pgx.RowTo[string])
			return err
		})
		if err != nil {
			t.Fatalf("%s: EXPLAIN: %v", tt.name, err)
		}
		if text := strings.Join(plan, "\n"); !strings.Contains(text, tt.index) {
			t.Errorf("%s: the plan does not use %s:\n%s", tt.name, tt.index, text)
		}
	}
}

// TestIntegrationPurgePersonalClickEvent: a click_event (not in
// DLQ_PII_ENTITIES) rejected for its client_ip is pii from ingest on, so
// the retention purges its original and masks the IP in its messages.
func TestIntegrationPurgePersonalClickEvent(t *testing.T) {
	s, pool := testStore(t)
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Second)
	r := row("click-ip", 1, func(dl *events.DeadLetter) {
		dl.Entity, dl.FailedAt = ptr("click_event"), now.Add(-40*24*time.Hour)
		dl.Reasons = []events.Reason{{Code: "RULE_FAILED", RuleID: ptr("click.ip"), Field: ptr("client_ip"), Message: `client_ip "10.9.8.7": want a public address`}}
	})
	if !r.PII {
		t.Fatal("a click_event rejected for its client_ip is not pii")
	}
	if _, err := s.Write(ctx, "g", []Row{r}, nil); err != nil {
		t.Fatal(err)
	}
	if res, err := s.Purge(ctx, now, RetentionPolicy{PII: 30 * 24 * time.Hour}); err != nil || res.PIIPurged != 1 {
		t.Fatalf("Purge = %+v, %v; want 1 purged", res, err)
	}
	var msg, reasons string
	var gone bool
	if err := pool.QueryRow(ctx, `SELECT message, reasons::text, original_value IS NULL AND pii_purged_at IS NOT NULL FROM dead_letters WHERE dead_letter_id = 'click-ip'`).
		Scan(&msg, &reasons, &gone); err != nil {
		t.Fatal(err)
	}
	if !gone || msg != `client_ip "[redacted]": want a public address` || strings.Contains(reasons, "10.9.8.7") {
		t.Errorf("after Purge: purged %v, message %q, reasons %s", gone, msg, reasons)
	}
}

// TestIntegrationMigration0002: the one-off backfill masks the messages of
// rows an older dlq-handler purged without masking them (the retention no
// longer takes purged rows again) and flags pii the rows whose reasons
// name a personal field; run again, it changes nothing.
func TestIntegrationMigration0002(t *testing.T) {
	s, pool := testStore(t)
	ctx := context.Background()
	old := time.Now().UTC().Add(-40 * 24 * time.Hour)
	ip := func(field string) func(*events.DeadLetter) {
		return func(dl *events.DeadLetter) {
			dl.Entity, dl.FailedAt = ptr("click_event"), old
			dl.Reasons = []events.Reason{{Code: "RULE_FAILED", Field: ptr(field), Message: field + ` "10.9.8.7": bad`}}
		}
	}
	rows := []Row{row("purged-before", 0, nil), row("click-ip", 1, ip("clientIP")), row("click-plain", 2, ip("page_url"))}
	if _, err := s.Write(ctx, "g", rows, nil); err != nil {
		t.Fatal(err)
	}
	// As version 1 left them: the purged row's messages whole, no pii from reasons.
	if _, err := pool.Exec(ctx, `UPDATE dead_letters SET pii = (dead_letter_id = 'purged-before'),
		reasons = '[{"code": "RULE_FAILED", "field": "note", "message": "note \"John\" of ann@shop.example"}]',
		message = 'note "John" of ann@shop.example' WHERE dead_letter_id = 'purged-before'`); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `UPDATE dead_letters SET pii = false WHERE dead_letter_id <> 'purged-before'`); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `UPDATE dead_letters SET pii_purged_at = $1, original_value = NULL WHERE dead_letter_id = 'purged-before'`, old); err != nil {
		t.Fatal(err)
	}
	ms, err := ddl.DLQMigrations()
	if err != nil {
		t.Fatal(err)
	}
	var m0002 string
	for _, m := range ms {
		if m.Version == 2 {
			m0002 = m.SQL
		}
	}
	for run := 1; run <= 2; run++ {
		if _, err := pool.Exec(ctx, m0002); err != nil {
			t.Fatalf("0002, run %d: %v", run, err)
		}
		var msg, reasons string
		if err := pool.QueryRow(ctx, `SELECT message, reasons->0->>'message' FROM dead_letters WHERE dead_letter_id = 'purged-before'`).Scan(&msg, &reasons); err != nil {
			t.Fatal(err)
		}
		if want := `note "[redacted]" of [redacted]`; msg != want || reasons != want {
			t.Errorf("run %d: purged row's message %q, reason %q; want %q", run, msg, reasons, want)
		}
		if n := count(t, pool, `SELECT count(*) FROM dead_letters WHERE pii`); n != 2 ||
			count(t, pool, `SELECT count(*) FROM dead_letters WHERE pii AND dead_letter_id = 'click-ip'`) != 1 {
			t.Errorf("run %d: %d pii rows, want purged-before and click-ip", run, n)
		}
	}
	if res, err := s.Purge(ctx, time.Now(), RetentionPolicy{PII: 30 * 24 * time.Hour}); err != nil || res.PIIPurged != 1 {
		t.Errorf("Purge after 0002 = %+v, %v; want the flagged click-ip purged", res, err)
	}
}
