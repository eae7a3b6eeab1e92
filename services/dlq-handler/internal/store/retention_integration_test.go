package store

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/ecomstream/platform/pkg/events"
)

// TestIntegrationPurgeRedactsMessages: past DLQ_RETENTION_PII the pii
// rows' reasons and message lose their quoted values and email-like
// strings (message_tsv follows), also of a row whose originals an older
// run purged; non-pii and recent rows keep theirs; audit entries and replay
// jobs older than the retention lose their q and email-like strings. A
// second run changes nothing.
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
		{"pii-old-purged-before", old, true, true, true},
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
	}{{"job-old", old, `{"q": "John Smith", "entity": ["ann@shop.example"]}`}, {"job-recent", recent, `{"q": "John Smith"}`}} {
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
	if res != (RetentionResult{PIIPurged: 2, AuditRedacted: 1, JobsRedacted: 1}) {
		t.Errorf("Purge = %+v, want 2 rows purged, 1 audit entry, 1 job", res)
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
	var purgedAt time.Time
	if err := pool.QueryRow(ctx, `SELECT pii_purged_at FROM dead_letters WHERE dead_letter_id = 'pii-old-purged-before'`).Scan(&purgedAt); err != nil || !purgedAt.Equal(old) {
		t.Errorf("an earlier purge's time became %v (%v), want %v kept", purgedAt, err, old)
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
