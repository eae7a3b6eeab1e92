package store

import (
	"context"
	"fmt"
	"os"
	"reflect"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ecomstream/platform/pkg/events"
	"github.com/ecomstream/platform/pkg/stream"
)

// testStore is a Store on a fresh, migrated schema (testPool's), through a
// pool whose search_path is that schema, as main builds it.
func testStore(t *testing.T) (*Store, *pgxpool.Pool) {
	t.Helper()
	admin, schema := testPool(t)
	ctx := context.Background()
	if _, err := Migrate(ctx, admin, schema); err != nil {
		t.Fatal(err)
	}
	pc, err := pgxpool.ParseConfig(os.Getenv("DATABASE_URL"))
	if err != nil {
		t.Fatal(err)
	}
	pc.ConnConfig.RuntimeParams["search_path"] = schema
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close) // before testPool's cleanup drops the schema
	return New(pool), pool
}

// row is a dead letter's row with id, read at DLQ offset off.
func row(id string, off int64, give func(*events.DeadLetter)) Row {
	dl := deadLetter()
	dl.DeadLetterID = id
	if give != nil {
		give(&dl)
	}
	return FromDeadLetter(&dl, 0, off, DefaultPIIEntities)
}

func count(t *testing.T, pool *pgxpool.Pool, query string, args ...any) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// TestIntegrationWrite: rows and positions in one transaction; a re-delivery
// is one row; a failed write stores neither rows nor positions; every column
// round-trips.
func TestIntegrationWrite(t *testing.T) {
	s, pool := testStore(t)
	ctx := context.Background()
	p0, p1 := Partition{Topic: "ecom.dlq.v1", Partition: 0}, Partition{Topic: "ecom.dlq.v1", Partition: 1}

	res, err := s.Write(ctx, "g", []Row{row("a", 0, nil), row("b", 1, nil), row("a", 2, nil)}, map[Partition]int64{p0: 3})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Inserted) != 2 || res.Duplicates != 1 || res.Inserted[0].DeadLetterID != "a" || res.Inserted[1].DeadLetterID != "b" {
		t.Errorf("first write = %d inserted, %d duplicates; want a and b inserted, the second a a duplicate", len(res.Inserted), res.Duplicates)
	}
	// A re-delivery in a later batch, and another partition.
	res, err = s.Write(ctx, "g", []Row{row("b", 3, nil), row("c", 0, nil)}, map[Partition]int64{p0: 4, p1: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Inserted) != 1 || res.Duplicates != 1 {
		t.Errorf("second write = %d inserted, %d duplicates; want 1 and 1", len(res.Inserted), res.Duplicates)
	}
	if n := count(t, pool, "SELECT count(*) FROM dead_letters"); n != 3 {
		t.Errorf("%d rows, want 3", n)
	}
	// The first copy is kept: its DLQ offset is the first read's.
	if n := count(t, pool, "SELECT dlq_offset FROM dead_letters WHERE dead_letter_id = 'a'"); n != 0 {
		t.Errorf("a's dlq_offset %d, want the first copy's 0", n)
	}
	pos, err := s.Positions(ctx, "g")
	if err != nil {
		t.Fatal(err)
	}
	if want := map[Partition]int64{p0: 4, p1: 1}; !reflect.DeepEqual(pos, want) {
		t.Errorf("positions %v, want %v", pos, want)
	}
	// A late write of an earlier batch (a former owner of the partition) does not move it back.
	if _, err := s.Write(ctx, "g", []Row{row("a", 1, nil)}, map[Partition]int64{p0: 2}); err != nil {
		t.Fatal(err)
	}
	if pos, _ := s.Positions(ctx, "g"); pos[p0] != 4 {
		t.Errorf("position after an earlier batch %d, want it kept at 4", pos[p0])
	}
	if other, err := s.Positions(ctx, "other"); err != nil || len(other) != 0 {
		t.Errorf("another group's positions = %v, %v; want none", other, err)
	}

	// A batch with a row the database refuses (codes NULL): nothing of it.
	bad := row("e", 5, nil)
	bad.Codes = nil
	if _, err := s.Write(ctx, "g", []Row{row("d", 4, nil), bad}, map[Partition]int64{p0: 6}); err == nil {
		t.Fatal("a write with a refused row succeeded")
	} else if IsTransient(err) {
		t.Errorf("a refused row is transient: %v", err)
	}
	if n := count(t, pool, "SELECT count(*) FROM dead_letters WHERE dead_letter_id IN ('d', 'e')"); n != 0 {
		t.Errorf("%d rows of the failed write stored", n)
	}
	if pos, _ := s.Positions(ctx, "g"); pos[p0] != 4 {
		t.Errorf("position after the failed write %d, want 4", pos[p0])
	}

	// Every column as the conversion made it.
	want := row("a", 0, nil)
	var got Row
	var hdrs, reasons string
	var state string
	if err := pool.QueryRow(ctx, `SELECT stage, entity, source_topic, source_partition, source_offset, source_timestamp,
		original_key, original_value, original_headers::text, schema_id, reasons::text, codes, rule_ids, message, attempt,
		trace_id, failed_at, dlq_partition, dlq_offset, pii, state FROM dead_letters WHERE dead_letter_id = 'a'`).Scan(
		&got.Stage, &got.Entity, &got.SourceTopic, &got.SourcePartition, &got.SourceOffset, &got.SourceTimestamp,
		&got.OriginalKey, &got.OriginalValue, &hdrs, &got.SchemaID, &reasons, &got.Codes, &got.RuleIDs, &got.Message,
		&got.Attempt, &got.TraceID, &got.FailedAt, &got.DLQPartition, &got.DLQOffset, &got.PII, &state); err != nil {
		t.Fatal(err)
	}
	if got.Stage != want.Stage || *got.Entity != *want.Entity || got.SourceTopic != want.SourceTopic ||
		got.SourcePartition != want.SourcePartition || got.SourceOffset != want.SourceOffset ||
		!got.SourceTimestamp.Equal(want.SourceTimestamp) || string(got.OriginalKey) != string(want.OriginalKey) ||
		string(got.OriginalValue) != string(want.OriginalValue) || *got.SchemaID != *want.SchemaID ||
		!reflect.DeepEqual(got.Codes, want.Codes) || !reflect.DeepEqual(got.RuleIDs, want.RuleIDs) || got.Message != want.Message ||
		got.Attempt != want.Attempt || *got.TraceID != *want.TraceID || !got.FailedAt.Equal(want.FailedAt) || got.PII != want.PII ||
		state != StateNew {
		t.Errorf("stored row\n%+v\nwant\n%+v (state %s)", got, want, state)
	}
	if hdrs != `[{"key": "traceparent", "value": "MDAtYWJjLWRlZi0wMQ=="}]` {
		t.Errorf("original_headers %s", hdrs)
	}
	if reasons != `[{"code": "RULE_FAILED", "field": "price", "message": "price must be > 0", "rule_id": "price_positive"}, `+
		`{"code": "MISSING_FIELD", "field": "currency", "message": "currency is required", "rule_id": null}, `+
		`{"code": "RULE_FAILED", "field": null, "message": "currency is not ISO 4217", "rule_id": "currency_iso"}]` {
		t.Errorf("reasons %s", reasons)
	}
	// The free-text index sees the message.
	if n := count(t, pool, "SELECT count(*) FROM dead_letters WHERE message_tsv @@ to_tsquery('simple', 'currency & iso')"); n != 3 {
		t.Errorf("free-text search found %d rows, want 3", n)
	}
}

// TestIntegrationFailedAgain: a dead letter rejecting a replay links to the
// replayed one, which becomes failed_again with its replay's outcome; a
// re-delivery of it changes nothing more; a discarded one stays discarded.
func TestIntegrationFailedAgain(t *testing.T) {
	s, pool := testStore(t)
	ctx := context.Background()
	p := Partition{Topic: "ecom.dlq.v1", Partition: 0}
	if _, err := s.Write(ctx, "g", []Row{row("orig", 0, nil), row("gone", 1, nil)}, map[Partition]int64{p: 2}); err != nil {
		t.Fatal(err)
	}
	// The replay (what dlqapi records): orig's attempt 1 sent.
	if _, err := pool.Exec(ctx, `UPDATE dead_letters SET state = 'replayed', state_changed_at = now() WHERE dead_letter_id = 'orig';
		UPDATE dead_letters SET state = 'discarded', discard_reason = 'test', discarded_by = 'alice' WHERE dead_letter_id = 'gone';
		INSERT INTO replays (dead_letter_id, attempt, requested_by, target_topic, sent_at, outcome) VALUES
			('orig', 1, 'alice', 'ecom.orders.v1', now(), 'sent'), ('gone', 1, 'alice', 'ecom.orders.v1', now(), 'sent')`); err != nil {
		t.Fatal(err)
	}
	again := func(id, of string, off int64) Row {
		return row(id, off, func(dl *events.DeadLetter) {
			dl.Attempt = 2
			dl.OriginalHeaders = append(dl.OriginalHeaders, events.Header{Key: stream.ReplayOfHeader, Value: []byte(of)},
				events.Header{Key: stream.ReplayAttemptHeader, Value: []byte("1")})
		})
	}
	res, err := s.Write(ctx, "g", []Row{again("orig-2", "orig", 2), again("gone-2", "gone", 3)}, map[Partition]int64{p: 4})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Inserted) != 2 || res.FailedAgain != 1 {
		t.Errorf("write = %d inserted, %d failed again; want 2 and 1 (the discarded one stays)", len(res.Inserted), res.FailedAgain)
	}
	var state, outcome, replayOf string
	if err := pool.QueryRow(ctx, `SELECT d.state, r.outcome, n.replay_of FROM dead_letters d JOIN replays r USING (dead_letter_id)
		JOIN dead_letters n ON n.replay_of = d.dead_letter_id WHERE d.dead_letter_id = 'orig'`).Scan(&state, &outcome, &replayOf); err != nil {
		t.Fatal(err)
	}
	if state != StateFailedAgain || outcome != "failed_again" || replayOf != "orig" {
		t.Errorf("orig: state %s, replay outcome %s, linked from %q; want failed_again, failed_again, orig", state, outcome, replayOf)
	}
	if n := count(t, pool, "SELECT count(*) FROM dead_letters WHERE dead_letter_id = 'gone' AND state = 'discarded'"); n != 1 {
		t.Error("the discarded dead letter changed state")
	}
	if n := count(t, pool, "SELECT count(*) FROM dead_letters WHERE replay_of IS NULL"); n != 2 {
		t.Errorf("%d rows without replay_of, want the 2 first rejections", n)
	}
	// The same dead letter again (a producer retry): a duplicate, nothing linked.
	res, err = s.Write(ctx, "g", []Row{again("orig-2", "orig", 4)}, map[Partition]int64{p: 5})
	if err != nil || res.Duplicates != 1 || res.FailedAgain != 0 {
		t.Errorf("re-delivery = %+v, %v; want one duplicate, nothing failed again", res, err)
	}
}

// TestIntegrationPurge: the retention deletes resolved and discarded rows
// past their retention and never unresolved ones, purges pii originals past
// theirs whatever the state, and touches nothing else.
func TestIntegrationPurge(t *testing.T) {
	s, pool := testStore(t)
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Second)
	old, recent := now.Add(-100*24*time.Hour), now.Add(-time.Hour)
	type fixture struct {
		id, state string
		changed   time.Time
		failed    time.Time
		pii       bool
	}
	fixtures := []fixture{
		{"resolved-old", StateResolved, old, old, false},
		{"discarded-old", StateDiscarded, old, old, false},
		{"resolved-recent", StateResolved, recent, old, false},
		{"new-old", StateNew, old, old, false},
		{"replayed-old", StateReplayed, old, old, false},
		{"failed-again-old", StateFailedAgain, old, old, false},
		{"pii-new-old", StateNew, old, old, true},
		{"pii-new-recent", StateNew, recent, recent, true},
		{"pii-resolved-old", StateResolved, old, old, true}, // deleted, not purged
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
		if _, err := pool.Exec(ctx, `UPDATE dead_letters SET state = $2, state_changed_at = $3,
			discard_reason = CASE WHEN $2 = 'discarded' THEN 'test' END, discarded_by = CASE WHEN $2 = 'discarded' THEN 'alice' END
			WHERE dead_letter_id = $1`, f.id, f.state, f.changed); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := pool.Exec(ctx, `INSERT INTO replays (dead_letter_id, attempt, requested_by, target_topic, outcome)
		VALUES ('resolved-old', 1, 'alice', 't', 'resolved')`); err != nil {
		t.Fatal(err)
	}

	// Retention off: nothing.
	res, err := s.Purge(ctx, now, RetentionPolicy{})
	if err != nil || res != (RetentionResult{}) {
		t.Errorf("Purge with no retention = %+v, %v", res, err)
	}
	res, err = s.Purge(ctx, now, RetentionPolicy{Resolved: 90 * 24 * time.Hour, PII: 30 * 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if res != (RetentionResult{Deleted: 3, PIIPurged: 1}) {
		t.Errorf("Purge = %+v, want 3 deleted (resolved-old, discarded-old, pii-resolved-old), 1 purged (pii-new-old)", res)
	}
	left := map[string]bool{}
	r, err := pool.Query(ctx, "SELECT dead_letter_id, original_value IS NULL AND original_key IS NULL AND original_headers = '[]' AND pii_purged_at IS NOT NULL FROM dead_letters")
	if err != nil {
		t.Fatal(err)
	}
	for r.Next() {
		var id string
		var purged bool
		if err := r.Scan(&id, &purged); err != nil {
			t.Fatal(err)
		}
		left[id] = purged
	}
	if r.Err() != nil {
		t.Fatal(r.Err())
	}
	want := map[string]bool{"resolved-recent": false, "new-old": false, "replayed-old": false, "failed-again-old": false,
		"pii-new-old": true, "pii-new-recent": false}
	if !reflect.DeepEqual(left, want) {
		t.Errorf("after Purge (id: purged) %v, want %v", left, want)
	}
	if n := count(t, pool, "SELECT count(*) FROM replays"); n != 0 {
		t.Errorf("%d replays of deleted dead letters left", n)
	}
	// Again: nothing more.
	if res, err := s.Purge(ctx, now, RetentionPolicy{Resolved: 90 * 24 * time.Hour, PII: 30 * 24 * time.Hour}); err != nil || res != (RetentionResult{}) {
		t.Errorf("second Purge = %+v, %v; want nothing", res, err)
	}
}

// TestIntegrationPurgeChunks: more rows than one retention statement takes
// are all deleted.
func TestIntegrationPurgeChunks(t *testing.T) {
	s, pool := testStore(t)
	ctx := context.Background()
	n := purgeChunk + 7
	if _, err := pool.Exec(ctx, fmt.Sprintf(`INSERT INTO dead_letters (dead_letter_id, stage, source_topic, source_partition,
		source_offset, source_timestamp, original_value, reasons, codes, rule_ids, message, attempt, failed_at, dlq_partition,
		dlq_offset, state, state_changed_at)
		SELECT 'r-' || i, 'validator', 't', 0, i, now(), '\x00', '[]', '{}', '{}', '', 1, now() - interval '200 days', 0, i,
			'resolved', now() - interval '200 days' FROM generate_series(1, %d) i`, n)); err != nil {
		t.Fatal(err)
	}
	res, err := s.Purge(ctx, time.Now(), RetentionPolicy{Resolved: time.Hour})
	if err != nil || res.Deleted != n {
		t.Errorf("Purge = %+v, %v; want %d deleted", res, err, n)
	}
	if left := count(t, pool, "SELECT count(*) FROM dead_letters"); left != 0 {
		t.Errorf("%d rows left", left)
	}
}

// TestIntegrationStats: counts by state and by stage/code/rule/state, and
// the oldest unresolved dead letter.
func TestIntegrationStats(t *testing.T) {
	s, pool := testStore(t)
	ctx := context.Background()
	st, err := s.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.ByState) != len(States) || st.ByState[StateNew] != 0 || len(st.ByReason) != 0 || !st.OldestUnresolved.IsZero() {
		t.Errorf("empty store: %+v", st)
	}
	t0 := time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)
	rows := []Row{
		row("a", 0, func(dl *events.DeadLetter) { dl.FailedAt = t0.Add(time.Hour) }), // RULE_FAILED x2 rules, MISSING_FIELD
		row("b", 1, func(dl *events.DeadLetter) { dl.FailedAt = t0; dl.Reasons = dl.Reasons[:1] }),
		row("c", 2, func(dl *events.DeadLetter) {
			dl.FailedAt = t0.Add(-time.Hour)
			dl.Stage = "bq-writer"
			dl.Reasons = []events.Reason{{Code: "INVALID_VALUE", Message: "x"}, {Code: "INVALID_VALUE", Message: "y"}}
		}),
	}
	if _, err := s.Write(ctx, "g", rows, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, "UPDATE dead_letters SET state = 'resolved' WHERE dead_letter_id = 'c'"); err != nil {
		t.Fatal(err)
	}
	if st, err = s.Stats(ctx); err != nil {
		t.Fatal(err)
	}
	if want := map[string]int64{"new": 2, "replayed": 0, "failed_again": 0, "resolved": 1, "discarded": 0}; !reflect.DeepEqual(st.ByState, want) {
		t.Errorf("ByState %v, want %v", st.ByState, want)
	}
	want := []ReasonCount{
		{"bq-writer", "INVALID_VALUE", "", "resolved", 1},
		{"validator", "MISSING_FIELD", "", "new", 1},
		{"validator", "RULE_FAILED", "currency_iso", "new", 1},
		{"validator", "RULE_FAILED", "price_positive", "new", 2},
	}
	if !reflect.DeepEqual(st.ByReason, want) {
		t.Errorf("ByReason\n%v\nwant\n%v", st.ByReason, want)
	}
	if !st.OldestUnresolved.Equal(t0) {
		t.Errorf("OldestUnresolved %v, want %v (c is resolved)", st.OldestUnresolved, t0)
	}
}
