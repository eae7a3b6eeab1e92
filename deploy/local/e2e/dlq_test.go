package e2e

import (
	"context"
	"maps"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/ecomstream/platform/deploy/local/slice"
	"github.com/ecomstream/platform/pkg/events"
)

// checkDeadLetterStore proves that the slice's dlq-handler stored every dead
// letter the slice's stages produced (want: what the test read from the
// dead-letter topic for the slice's source topics) exactly once, with the
// stage, source, codes and rule ids of the envelope, in state new, and that
// the API's filters (stage, code, rule id, state) and stats find exactly
// them.
func checkDeadLetterStore(ctx context.Context, t *testing.T, sl *slice.Slice, want map[string]events.DeadLetter) {
	t.Helper()
	began := time.Now()
	var stored []slice.DeadLetter
	var err error
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
		if stored, err = sl.DLQ.List(ctx, nil); err == nil && len(stored) >= len(want) {
			break
		}
	}
	if err != nil {
		t.Fatalf("dead-letter store: %v", err)
	}
	t.Logf("dead-letter store: %d of %d dead letters stored %s after the topic was read (%d relayed)",
		len(stored), len(want), time.Since(began).Round(time.Millisecond), sl.DLQ.Relayed())
	seen := map[string]int{}
	for _, got := range stored {
		seen[got.ID]++
		dl, ok := want[got.ID]
		if !ok {
			t.Errorf("stored dead letter %s (stage %s, source %s) is not on the topic for this slice", got.ID, got.Stage, got.SourceTopic)
			continue
		}
		codes, rules := envelopeCodes(dl)
		if got.Stage != dl.Stage || got.SourceTopic != dl.SourceTopic || got.SourceOffset != dl.SourceOffset ||
			!slices.Equal(got.Codes, codes) || !slices.Equal(got.RuleIDs, rules) || got.State != "new" || len(got.Reasons) != len(dl.Reasons) {
			t.Errorf("stored %s: stage %s source %s/%d codes %v rules %v state %s; topic has stage %s source %s/%d codes %v rules %v",
				got.ID, got.Stage, got.SourceTopic, got.SourceOffset, got.Codes, got.RuleIDs, got.State,
				dl.Stage, dl.SourceTopic, dl.SourceOffset, codes, rules)
		}
	}
	for id, dl := range want {
		if seen[id] == 0 {
			t.Errorf("dead letter %s (stage %s, %v) is not in the store", id, dl.Stage, reasons(dl))
		}
	}
	for id, n := range seen {
		if n > 1 {
			t.Errorf("dead letter %s stored %d times", id, n)
		}
	}

	// Every filter value the dead letters have selects exactly theirs.
	filters := map[string]map[string][]string{"stage": {}, "code": {}, "rule_id": {}}
	for id, dl := range want {
		filters["stage"][dl.Stage] = append(filters["stage"][dl.Stage], id)
		codes, rules := envelopeCodes(dl)
		for _, c := range codes {
			filters["code"][c] = append(filters["code"][c], id)
		}
		for _, r := range rules {
			filters["rule_id"][r] = append(filters["rule_id"][r], id)
		}
	}
	filters["state"] = map[string][]string{"new": slices.Collect(maps.Keys(want)), "resolved": nil}
	for param, byValue := range filters {
		for value, ids := range byValue {
			got, err := sl.DLQ.List(ctx, url.Values{param: {value}})
			if err != nil {
				t.Errorf("list %s=%s: %v", param, value, err)
				continue
			}
			gotIDs := make([]string, len(got))
			for i, g := range got {
				gotIDs[i] = g.ID
			}
			slices.Sort(gotIDs)
			slices.Sort(ids)
			if !slices.Equal(gotIDs, ids) {
				t.Errorf("list %s=%s: %d dead letters, want %d", param, value, len(gotIDs), len(ids))
			}
		}
	}
	st, err := sl.DLQ.Stats(ctx, url.Values{"window": {"1h"}, "buckets": {"1"}})
	if err != nil {
		t.Fatalf("stats: %v", err)
	}
	if st.Total != len(want) || st.ByState["new"] != len(want) {
		t.Errorf("stats: total %d, by state %v; want %d new", st.Total, st.ByState, len(want))
	}
	for _, s := range st.ByStage {
		if s.Total != len(filters["stage"][s.Key]) {
			t.Errorf("stats: stage %s %d, want %d", s.Key, s.Total, len(filters["stage"][s.Key]))
		}
	}
	// One dead letter in full: its original is decoded for reading.
	for id := range want {
		dl, err := sl.DLQ.Get(ctx, id)
		if err != nil || dl.DeadLetter.ID != id || dl.Original.Size != len(want[id].OriginalValue) ||
			(len(dl.Original.Decoded) == 0 && dl.Original.Hex == "") {
			t.Errorf("get %s: %v (id %q, original %s of %d bytes, want %d bytes shown)", id, err, dl.DeadLetter.ID,
				dl.Original.Format, dl.Original.Size, len(want[id].OriginalValue))
		}
		break
	}
}

// envelopeCodes are a dead letter's distinct codes and rule ids, sorted, as
// the store keeps them.
func envelopeCodes(dl events.DeadLetter) (codes, rules []string) {
	for _, r := range dl.Reasons {
		if !slices.Contains(codes, r.Code) {
			codes = append(codes, r.Code)
		}
		if r.RuleID != nil && !slices.Contains(rules, *r.RuleID) {
			rules = append(rules, *r.RuleID)
		}
	}
	slices.Sort(codes)
	slices.Sort(rules)
	return codes, rules
}
