package query

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ecomstream/platform/services/dlq-handler/internal/fixture"
)

var base = time.Date(2026, 3, 4, 10, 0, 0, 0, time.UTC)

// fixtures: 30 rows, newest first by (failed_at, id) in the order of
// their index where failed_at ties (three rows per minute).
func fixtures() []fixture.Row {
	var rows []fixture.Row
	stages := []string{"validator", "bq-writer", "ingest-clickstream"}
	states := []string{"new", "replayed", "discarded", "resolved", "failed_again"}
	for i := range 30 {
		r := fixture.Row{
			ID:       fmt.Sprintf("dl-%02d", i),
			Stage:    stages[i%3],
			Entity:   []string{"click_event", "order", ""}[i%3],
			Offset:   int64(i),
			FailedAt: base.Add(-time.Duration(i/3) * time.Minute),
			State:    states[i%5],
			Reasons:  []fixture.Reason{{Code: "INVALID_VALUE", Message: fmt.Sprintf("value %d out of range", i)}},
		}
		if i%4 == 0 {
			r.Reasons = append(r.Reasons, fixture.Reason{Code: "RULE_FAILED", RuleID: fixture.Rule(fmt.Sprintf("rule-%d", i%8)),
				Message: "price must be positive"})
		}
		rows = append(rows, r)
	}
	return rows
}

// wantOrder is the list order of rows: failed_at desc, id desc.
func wantOrder(rows []fixture.Row, keep func(fixture.Row) bool) []string {
	var kept []fixture.Row
	for _, r := range rows {
		if keep(r) {
			kept = append(kept, r)
		}
	}
	slices.SortFunc(kept, func(a, b fixture.Row) int {
		if c := b.FailedAt.Compare(a.FailedAt); c != 0 {
			return c
		}
		switch {
		case a.ID > b.ID:
			return -1
		case a.ID < b.ID:
			return 1
		}
		return 0
	})
	ids := []string{}
	for _, r := range kept {
		ids = append(ids, r.ID)
	}
	return ids
}

func ids(ds []DeadLetter) []string {
	out := []string{}
	for _, d := range ds {
		out = append(out, d.ID)
	}
	return out
}

func TestIntegrationList(t *testing.T) {
	pool := fixture.Pool(t)
	rows := fixtures()
	fixture.Insert(t, pool, rows...)
	ctx := context.Background()
	hasCode := func(r fixture.Row, c string) bool {
		return slices.ContainsFunc(r.Reasons, func(x fixture.Reason) bool { return x.Code == c })
	}
	hasRule := func(r fixture.Row, id string) bool {
		return slices.ContainsFunc(r.Reasons, func(x fixture.Reason) bool { return x.RuleID != nil && *x.RuleID == id })
	}
	tests := []struct {
		name string
		f    Filter
		keep func(fixture.Row) bool
	}{
		{"all", Filter{}, func(fixture.Row) bool { return true }},
		{"stage", Filter{Stage: []string{"validator"}}, func(r fixture.Row) bool { return r.Stage == "validator" }},
		{"stages", Filter{Stage: []string{"validator", "bq-writer"}}, func(r fixture.Row) bool { return r.Stage != "ingest-clickstream" }},
		{"entity", Filter{Entity: []string{"order"}}, func(r fixture.Row) bool { return r.Entity == "order" }},
		{"code", Filter{Code: []string{"RULE_FAILED"}}, func(r fixture.Row) bool { return hasCode(r, "RULE_FAILED") }},
		{"rule", Filter{RuleID: []string{"rule-4"}}, func(r fixture.Row) bool { return hasRule(r, "rule-4") }},
		{"rules", Filter{RuleID: []string{"rule-0", "rule-4"}}, func(r fixture.Row) bool { return hasRule(r, "rule-0") || hasRule(r, "rule-4") }},
		{"state", Filter{State: []string{"new", "failed_again"}}, func(r fixture.Row) bool { return r.State == "new" || r.State == "failed_again" }},
		{"from", Filter{From: ptr(base.Add(-3 * time.Minute))}, func(r fixture.Row) bool { return !r.FailedAt.Before(base.Add(-3 * time.Minute)) }},
		{"to", Filter{To: ptr(base.Add(-3 * time.Minute))}, func(r fixture.Row) bool { return r.FailedAt.Before(base.Add(-3 * time.Minute)) }},
		{"q word", Filter{Q: "positive"}, func(r fixture.Row) bool { return hasCode(r, "RULE_FAILED") }},
		{"q phrase", Filter{Q: `"value 7"`}, func(r fixture.Row) bool { return r.ID == "dl-07" }},
		{"q not", Filter{Q: "range -positive"}, func(r fixture.Row) bool { return !hasCode(r, "RULE_FAILED") }},
		{"combined", Filter{Stage: []string{"validator"}, Code: []string{"RULE_FAILED"}, State: []string{"new"}},
			func(r fixture.Row) bool {
				return r.Stage == "validator" && hasCode(r, "RULE_FAILED") && r.State == "new"
			}},
		{"nothing", Filter{Stage: []string{"nobody"}}, func(fixture.Row) bool { return false }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := wantOrder(rows, tt.keep)
			got, err := List(ctx, pool, tt.f, Page{Limit: MaxLimit})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(ids(got.Items), want) || got.NextCursor != "" {
				t.Errorf("got %v (next %q)\nwant %v", ids(got.Items), got.NextCursor, want)
			}
			// Every page size walks the same rows, without gaps or repeats.
			for _, size := range []int{1, 2, 4, 7} {
				var walked []string
				p := Page{Limit: size}
				for pages := 0; ; pages++ {
					if pages > len(rows)+1 {
						t.Fatalf("limit %d: more pages than rows", size)
					}
					res, err := List(ctx, pool, tt.f, p)
					if err != nil {
						t.Fatal(err)
					}
					if len(res.Items) > size {
						t.Fatalf("limit %d: a page of %d", size, len(res.Items))
					}
					walked = append(walked, ids(res.Items)...)
					if res.NextCursor == "" {
						break
					}
					p.Cursor = res.NextCursor
				}
				if !slices.Equal(walked, want) {
					t.Errorf("limit %d walked %v\nwant %v", size, walked, want)
				}
			}
		})
	}

	// A row inserted newer than the first page does not shift the pages after it.
	first, err := List(ctx, pool, Filter{}, Page{Limit: 5})
	if err != nil {
		t.Fatal(err)
	}
	fixture.Insert(t, pool, fixture.Row{ID: "dl-late", FailedAt: base.Add(time.Hour)})
	second, err := List(ctx, pool, Filter{}, Page{Limit: 5, Cursor: first.NextCursor})
	if err != nil {
		t.Fatal(err)
	}
	all := wantOrder(rows, func(fixture.Row) bool { return true })
	if !slices.Equal(ids(second.Items), all[5:10]) {
		t.Errorf("second page after an insert = %v, want %v", ids(second.Items), all[5:10])
	}
	// A cursor of another filter is refused.
	var qe *Error
	if _, err := List(ctx, pool, Filter{Stage: []string{"validator"}}, Page{Limit: 5, Cursor: first.NextCursor}); !errors.As(err, &qe) {
		t.Errorf("cursor of another filter: %v, want a query error", err)
	}
}

func ptr[T any](v T) *T { return &v }

func TestIntegrationGet(t *testing.T) {
	pool := fixture.Pool(t)
	ctx := context.Background()
	row := fixture.Row{ID: "dl-get", Stage: "validator", Entity: "customer_change", Key: []byte("c-1"), Value: []byte(`{"email":"a@b.example"}`),
		Headers:  []fixture.Header{{Key: "traceparent", Value: []byte("00-abc-def-01")}, {Key: "bin", Value: []byte{0, 1, 2}}},
		SchemaID: ptr(int32(7)), TraceID: "abc", PII: true, State: "discarded", DiscardReason: "noise", DiscardedBy: "alice",
		FailedAt: base, Reasons: []fixture.Reason{{Code: "RULE_FAILED", RuleID: fixture.Rule("r1"), Field: fixture.Rule("email"), Message: "bad email a@b.example"}}}
	fixture.Insert(t, pool, row, fixture.Row{ID: "dl-purged", PII: true, Purged: true})
	got, err := Get(ctx, pool, "dl-get")
	if err != nil {
		t.Fatal(err)
	}
	if got.Stage != "validator" || *got.Entity != "customer_change" || string(got.Key) != "c-1" || string(got.Value) != string(row.Value) ||
		*got.SchemaID != 7 || *got.TraceID != "abc" || !got.PII || got.State != "discarded" || *got.DiscardReason != "noise" ||
		!got.FailedAt.Equal(base) || got.FailedAt.Location() != time.UTC {
		t.Errorf("got %+v", got)
	}
	if len(got.Headers) != 2 || got.Headers[0].Key != "traceparent" || string(got.Headers[1].Value) != "\x00\x01\x02" {
		t.Errorf("headers %+v", got.Headers)
	}
	if len(got.Reasons) != 1 || *got.Reasons[0].RuleID != "r1" || *got.Reasons[0].Field != "email" ||
		!slices.Equal(got.Codes, []string{"RULE_FAILED"}) || !slices.Equal(got.RuleIDs, []string{"r1"}) {
		t.Errorf("reasons %+v codes %v rules %v", got.Reasons, got.Codes, got.RuleIDs)
	}
	purged, err := Get(ctx, pool, "dl-purged")
	if err != nil || purged.Value != nil || purged.PIIPurgedAt == nil || purged.Entity != nil {
		t.Errorf("purged = %+v, %v", purged, err)
	}
	if _, err := Get(ctx, pool, "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get(nope) = %v, want ErrNotFound", err)
	}
}

func TestIntegrationStats(t *testing.T) {
	pool := fixture.Pool(t)
	ctx := context.Background()
	rows := fixtures()
	// One row outside the windows and the oldest unresolved one.
	rows = append(rows, fixture.Row{ID: "dl-old", Stage: "validator", FailedAt: base.Add(-48 * time.Hour), State: "new"})
	fixture.Insert(t, pool, rows...)
	now := base.Add(30 * time.Second)
	tx, err := pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	// Windows of 5 minutes: [09:25, 10:05) in 8 buckets; the fixtures span 09:51..10:00.
	s, err := GetStats(ctx, tx, StatsRequest{Window: 5 * time.Minute, Buckets: 8}, now)
	if err != nil {
		t.Fatal(err)
	}
	if !s.From.Equal(base.Add(-35*time.Minute)) || !s.To.Equal(base.Add(5*time.Minute)) || len(s.BucketStarts) != 8 {
		t.Fatalf("range %s..%s, %d buckets", s.From, s.To, len(s.BucketStarts))
	}
	if s.Total != 30 {
		t.Errorf("total %d, want 30 (dl-old is outside)", s.Total)
	}
	// Per stage: rows i%3; failed_at minute -(i/3). Bucket 7 = [10:00, 10:05) holds minute 0
	// (i 0..2); bucket 6 = [09:55, 10:00) minutes -1..-5 (i 3..17); bucket 5 minutes -6..-9 (i 18..29).
	wantStage := map[string][]int{
		"validator":          {0, 0, 0, 0, 0, 4, 5, 1},
		"bq-writer":          {0, 0, 0, 0, 0, 4, 5, 1},
		"ingest-clickstream": {0, 0, 0, 0, 0, 4, 5, 1},
	}
	if len(s.ByStage) != 3 {
		t.Fatalf("by stage %+v", s.ByStage)
	}
	for _, x := range s.ByStage {
		if !slices.Equal(x.Counts, wantStage[x.Key]) || x.Total != 10 {
			t.Errorf("stage %s: %v (total %d), want %v", x.Key, x.Counts, x.Total, wantStage[x.Key])
		}
	}
	codes := map[string]int{}
	for _, x := range s.ByCode {
		codes[x.Key] = x.Total
	}
	if codes["INVALID_VALUE"] != 30 || codes["RULE_FAILED"] != 8 || len(codes) != 2 {
		t.Errorf("by code %v", codes)
	}
	if s.ByCode[0].Key != "INVALID_VALUE" {
		t.Errorf("by code not largest first: %+v", s.ByCode)
	}
	rules := map[string]int{}
	for _, x := range s.ByRule {
		rules[x.Key] = x.Total
	}
	if rules["rule-0"] != 4 || rules["rule-4"] != 4 || len(rules) != 2 {
		t.Errorf("by rule %v", rules)
	}
	if s.ByState["new"] != 7 || s.ByState["replayed"] != 6 || s.ByState["discarded"] != 6 ||
		s.ByState["resolved"] != 6 || s.ByState["failed_again"] != 6 {
		t.Errorf("by state %v", s.ByState)
	}
	if s.Oldest == nil || s.Oldest.ID != "dl-old" || s.Oldest.AgeSeconds != (48*time.Hour+30*time.Second).Seconds() {
		t.Errorf("oldest %+v", s.Oldest)
	}

	// A filter narrows everything, including the oldest unresolved.
	s, err = GetStats(ctx, tx, StatsRequest{Window: time.Hour, Buckets: 2, Filter: Filter{Stage: []string{"bq-writer"}}}, now)
	if err != nil {
		t.Fatal(err)
	}
	if s.Total != 10 || len(s.ByStage) != 1 || s.ByState["new"] != 2 || s.Oldest == nil || s.Oldest.ID != "dl-25" { // bq-writer: i%3 == 1; unresolved: i%5 in {0, 1, 4}
		t.Errorf("filtered: total %d, stages %+v, states %v, oldest %+v", s.Total, s.ByStage, s.ByState, s.Oldest)
	}
}

func TestIntegrationAudit(t *testing.T) {
	pool := fixture.Pool(t)
	ctx := context.Background()
	for i := range 12 {
		actor := []string{"alice", "bob", "carol"}[i%3]
		action := []string{"discard", "retention"}[i%2]
		at := base.Add(time.Duration(i/2) * time.Minute) // ties in at, broken by id
		if _, err := pool.Exec(ctx, "INSERT INTO audit_log (at, actor, role, action, target, detail) VALUES ($1, $2, 'operator', $3, $4, '{}')",
			at, actor, action, fmt.Sprintf(`{"n": %d}`, i)); err != nil {
			t.Fatal(err)
		}
	}
	var all []int64
	p := Page{Limit: 5}
	for {
		res, err := ListAudit(ctx, pool, AuditFilter{}, p)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range res.Items {
			all = append(all, e.ID)
		}
		if res.NextCursor == "" {
			break
		}
		p.Cursor = res.NextCursor
	}
	if len(all) != 12 || !slices.IsSortedFunc(all, func(a, b int64) int { return int(b - a) }) {
		t.Errorf("walked ids %v, want 12 newest first", all)
	}
	res, err := ListAudit(ctx, pool, AuditFilter{Actor: []string{"alice"}, Action: []string{"discard"}}, Page{Limit: 50})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Items) != 2 { // i = 0, 6
		t.Errorf("alice's discards: %d, want 2", len(res.Items))
	}
	for _, e := range res.Items {
		if e.Actor != "alice" || e.Action != "discard" {
			t.Errorf("entry %+v", e)
		}
	}
	res, err = ListAudit(ctx, pool, AuditFilter{From: ptr(base.Add(2 * time.Minute)), To: ptr(base.Add(4 * time.Minute))}, Page{Limit: 50})
	if err != nil || len(res.Items) != 4 { // i = 4..7
		t.Errorf("time range: %d entries, %v; want 4", len(res.Items), err)
	}
}
