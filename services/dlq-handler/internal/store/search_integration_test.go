package store

import (
	"context"
	"fmt"
	"testing"

	"github.com/ecomstream/platform/pkg/events"
)

// TestIntegrationSearchColumn: Write stores message_redacted (what a
// caller without the PII right is shown), its tsvector finds the masked
// text only (q=ann does not find a hidden ann+tag@x.com), and
// BackfillSearch fills the rows stored without it, chunk by chunk, once.
func TestIntegrationSearchColumn(t *testing.T) {
	st, pool := testStore(t)
	ctx := context.Background()
	rows := []Row{
		row("dl-mail", 0, func(dl *events.DeadLetter) {
			dl.Reasons = []events.Reason{{Code: "INVALID_VALUE", Field: ptr("note"), Message: "notify ann+tag@x.com failed"}}
		}),
		row("dl-ip", 1, func(dl *events.DeadLetter) {
			dl.Reasons = []events.Reason{{Code: "RULE_FAILED", Field: ptr("client_ip"), Message: `client_ip "10.9.8.7": want public`}}
		}),
	}
	// dl-mail must not be pii (its email is in a reason, not the original):
	// its message is masked all the same. dl-ip's quoted value is masked
	// for its personal field, pii or not.
	if rows[0].PII {
		t.Fatal("dl-mail must not be pii for this test")
	}
	if _, err := st.Write(ctx, "g", rows, nil); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"dl-mail": "notify [redacted] failed", "dl-ip": `client_ip "[redacted]": want public`}
	for id, w := range want {
		var got *string
		if err := pool.QueryRow(ctx, "SELECT message_redacted FROM dead_letters WHERE dead_letter_id = $1", id).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got == nil || *got != w {
			t.Errorf("%s: message_redacted = %v, want %q", id, got, w)
		}
	}
	for _, tt := range []struct {
		q                 string
		redacted, allText int
	}{{"ann", 0, 1}, {"tag@x.com", 0, 1}, {`"10.9.8.7"`, 0, 1}, {"notify", 1, 1}, {"public", 1, 1}} {
		r := count(t, pool, "SELECT count(*) FROM dead_letters WHERE message_redacted_tsv @@ websearch_to_tsquery('simple', $1)", tt.q)
		a := count(t, pool, "SELECT count(*) FROM dead_letters WHERE message_tsv @@ websearch_to_tsquery('simple', $1)", tt.q)
		if r != tt.redacted || a != tt.allText {
			t.Errorf("q=%s: redacted finds %d, message %d; want %d, %d", tt.q, r, a, tt.redacted, tt.allText)
		}
	}

	// Rows stored before the column (NULL): the backfill fills them in
	// chunks and leaves the others alone.
	defer func(n int) { searchChunk = n }(searchChunk)
	searchChunk = 2
	var more []Row
	for i := range 5 {
		more = append(more, row(fmt.Sprintf("dl-old-%d", i), int64(10+i), func(dl *events.DeadLetter) {
			dl.Reasons = []events.Reason{{Code: "INVALID_VALUE", Message: fmt.Sprintf("old %d to bo%d@shop.example", i, i)}}
		}))
	}
	if _, err := st.Write(ctx, "g", more, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, "UPDATE dead_letters SET message_redacted = NULL WHERE dead_letter_id LIKE 'dl-old-%'"); err != nil {
		t.Fatal(err)
	}
	n, err := st.BackfillSearch(ctx)
	if err != nil || n != 5 {
		t.Fatalf("BackfillSearch = %d, %v; want 5", n, err)
	}
	if c := count(t, pool, "SELECT count(*) FROM dead_letters WHERE message_redacted IS NULL"); c != 0 {
		t.Errorf("%d rows left without message_redacted", c)
	}
	if c := count(t, pool, "SELECT count(*) FROM dead_letters WHERE message_redacted = 'old 3 to [redacted]'"); c != 1 {
		t.Errorf("backfilled dl-old-3: %d rows hold the redacted message, want 1", c)
	}
	if n, err := st.BackfillSearch(ctx); err != nil || n != 0 {
		t.Errorf("second BackfillSearch = %d, %v; want 0", n, err)
	}
}
