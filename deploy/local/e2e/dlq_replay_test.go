package e2e

import (
	"context"
	"encoding/json"
	"net/url"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ecomstream/platform/deploy/local/clickgen"
	"github.com/ecomstream/platform/deploy/local/reconcile"
	"github.com/ecomstream/platform/deploy/local/slice"
	"github.com/ecomstream/platform/deploy/local/stacktest"
	"github.com/ecomstream/platform/deploy/local/svcrun"
)

const (
	replayRule    = "click.event_type_allowed"
	replayRecords = 400 // valid clickstream events sent; their search events fail the narrowed rule
	// allowedNarrow is the validator's default ALLOWED_EVENT_TYPES without
	// search: a rule configured too narrowly, the incident of the story.
	allowedNarrow = "page_view,product_view,add_to_cart,remove_from_cart,begin_checkout,purchase"
	allowedFixed  = "page_view,product_view,search,add_to_cart,remove_from_cart,begin_checkout,purchase"
)

// TestE2EReplayStory is issue 9's whole story on the real stack: events fail
// a validator rule (ALLOWED_EVENT_TYPES without search); the rule is relaxed
// by config and the validator restarted; the operator replays by filter
// through dlq-handler's API (a dry run first); each replayed event lands in
// fact_events exactly once and its dead letter becomes resolved; replaying
// the same filter again replays nothing; and the whole story balances in the
// reconciliation, the replays as records entering the path at the validator.
func TestE2EReplayStory(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test: runs without -short, against the local stack")
	}
	eps := stacktest.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	start := time.Now() // the reconciliation's window starts here
	root, binDir, _, err := svcrun.BuildTree(ctx)
	if err != nil {
		t.Fatal(err)
	}
	runDir := filepath.Join(root, ".run", "e2e", t.Name()+"-"+time.Now().Format("20060102-150405"))
	prefix := "e2e-" + stacktest.UniqueName(t, "") + "."
	sl, err := slice.New(slice.Options{
		BinDir: binDir, RunDir: runDir, Brokers: eps.KafkaBrokers, Registry: eps.SchemaRegistryURL,
		Prefix: prefix, QueryToken: token, DLQ: &slice.DLQOptions{},
		Env: map[string][]string{
			"validator":   {"ALLOWED_EVENT_TYPES=" + allowedNarrow},
			"dlq-handler": {"DLQ_REPLAY_RESOLVE_INTERVAL=500ms"},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("service logs: %s", runDir)
	if err := sl.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer sl.Stop()
	defer func() {
		if err := sl.DropDLQ(context.WithoutCancel(ctx)); err != nil {
			t.Errorf("drop the dead-letter store: %v", err)
		}
	}()

	// Valid events only: the search ones fail the narrowed rule, the others land.
	gen := clickgen.New(clickgen.WithSeed(uint64(time.Now().UnixNano())), clickgen.WithBrokenFraction(0), clickgen.WithDuplicateFraction(0))
	prod, err := kgo.NewClient(kgo.SeedBrokers(eps.KafkaBrokers...), kgo.ProducerLinger(5*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	landed, searches := map[string]bool{}, map[string]bool{}
	var recs []*kgo.Record
	for len(recs) < replayRecords {
		r := gen.Next()
		var ev struct {
			EventType string `json:"event_type"`
		}
		if err := json.Unmarshal(r.Value, &ev); err != nil || !r.Expect.Valid {
			t.Fatalf("clickgen made a broken record without being asked: %v %+v", err, r.Expect)
		}
		if ev.EventType == "search" {
			searches[r.EventID] = true
		} else {
			landed[r.EventID] = true
		}
		recs = append(recs, &kgo.Record{Topic: sl.Topics.Raw, Key: r.Key, Value: r.Value})
	}
	if len(searches) == 0 {
		t.Fatalf("no search event among %d events", len(recs))
	}
	if err := prod.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	t.Logf("sent %d events: %d search events fail %s", len(recs), len(searches), replayRule)

	// The incident: the search events are dead letters of the rule, nothing else is.
	filter := url.Values{"stage": {"validator"}, "rule_id": {replayRule}}
	dead := waitDeadLetters(ctx, t, sl, filter, len(searches), "new")
	for _, dl := range dead {
		if dl.Attempt != 1 || dl.SourceTopic != sl.Topics.Events {
			t.Errorf("dead letter %s: attempt %d source %s, want attempt 1 from %s", dl.ID, dl.Attempt, dl.SourceTopic, sl.Topics.Events)
		}
	}
	if all, err := sl.DLQ.List(ctx, nil); err != nil || len(all) != len(searches) {
		t.Fatalf("store holds %d dead letters (%v), want the %d of the rule", len(all), err, len(searches))
	}
	waitFactEvents(ctx, t, sl, landed)
	if ids, err := queryIDs(ctx, sl, "SELECT event_id FROM fact_events"); err != nil || len(ids) != len(landed) {
		t.Fatalf("fact_events holds %d events (%v), want the %d that passed", len(ids), err, len(landed))
	}

	// The fix: the rule relaxed by config, the validator restarted.
	if err := sl.Restart(ctx, "validator", "ALLOWED_EVENT_TYPES="+allowedFixed); err != nil {
		t.Fatal(err)
	}

	// The operator replays by filter: a dry run says how many, then the job.
	req := slice.ReplayRequest{Filter: map[string]any{"stage": []string{"validator"}, "rule_id": []string{replayRule}}}
	dry := req
	dry.DryRun = true
	res, err := sl.DLQ.Replay(ctx, dry)
	if err != nil {
		t.Fatal(err)
	}
	if !res.DryRun || res.Matched != len(searches) || res.Planned != 0 || res.JobID != "" {
		t.Errorf("dry run: %+v, want %d matched and nothing planned", res, len(searches))
	}
	began := time.Now()
	res, err = sl.DLQ.Replay(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if res.Matched != len(searches) || res.Planned != len(searches) || res.JobID == "" {
		t.Fatalf("replay: %+v, want %d planned in a job", res, len(searches))
	}
	job := waitJob(ctx, t, sl, res.JobID)
	if job.Total != len(searches) || job.Sent != len(searches) {
		t.Errorf("job %s: %+v, want %d sent", job.ID, job, len(searches))
	}

	// Each replayed event lands once, and its dead letter is resolved.
	want := map[string]bool{}
	for id := range landed {
		want[id] = true
	}
	for id := range searches {
		want[id] = true
	}
	waitFactEvents(ctx, t, sl, want)
	resolved := waitDeadLetters(ctx, t, sl, filter, len(searches), "resolved")
	t.Logf("replayed %d dead letters: landed and resolved %s after the request", len(resolved), time.Since(began).Round(time.Millisecond))
	for _, dl := range resolved {
		if dl.State != "resolved" {
			t.Errorf("dead letter %s is %s, want resolved", dl.ID, dl.State)
		}
	}

	// Replaying the same filter again replays nothing.
	res, err = sl.DLQ.Replay(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if res.Matched != 0 || res.Planned != 0 || res.JobID != "" || res.Skipped != len(searches) {
		t.Errorf("second replay: %+v, want nothing matched or planned, %d skipped", res, len(searches))
	}
	time.Sleep(2 * time.Second) // a replay now would reach the warehouse or the store within this
	_, rows, err := sl.Query(ctx, "SELECT event_id, count(*) FROM fact_events GROUP BY event_id")
	if err != nil {
		t.Fatal(err)
	}
	extra := 0
	for _, r := range rows {
		id, _ := r[0].(string)
		if n, _ := r[1].(float64); n != 1 || !want[id] {
			extra++
			t.Errorf("fact_events: event %s %v times (expected: %t)", id, r[1], want[id])
		}
	}
	if len(rows) != len(want) || extra > 0 {
		t.Errorf("fact_events holds %d events, want %d each once", len(rows), len(want))
	}
	if all, err := sl.DLQ.List(ctx, nil); err != nil || len(all) != len(searches) {
		t.Errorf("store holds %d dead letters (%v) after the replays, want %d: a replay failed again", len(all), err, len(searches))
	}
	st, err := sl.DLQ.Stats(ctx, url.Values{"window": {"1h"}, "buckets": {"1"}})
	if err != nil || st.ByState["resolved"] != len(searches) || st.ByState["new"]+st.ByState["replayed"]+st.ByState["failed_again"] != 0 {
		t.Errorf("stats: %v by state %v, want %d resolved and nothing unresolved", err, st.ByState, len(searches))
	}

	// The story balances in the reconciliation: each search event dead-lettered once, and
	// its replay a record that entered the path again at the validator and was written.
	rec := assertReconciled(ctx, t, sl, reconcile.SourceClickstream, reconcile.Window{From: start, To: time.Now()})
	for _, h := range rec.Hops {
		if h.Stage == reconcile.StageReplay && h.Consumed != int64(len(searches)) {
			t.Errorf("reconciliation: %d replays, want %d", h.Consumed, len(searches))
		}
	}
}

// waitDeadLetters waits until the filter (in state) selects n dead letters
// and returns them; more than n fails at once.
func waitDeadLetters(ctx context.Context, t *testing.T, sl *slice.Slice, filter url.Values, n int, state string) []slice.DeadLetter {
	t.Helper()
	f := url.Values{"state": {state}}
	for k, v := range filter {
		f[k] = v
	}
	var got []slice.DeadLetter
	var err error
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if got, err = sl.DLQ.List(ctx, f); err == nil && len(got) >= n {
			break
		}
	}
	if err != nil || len(got) != n {
		t.Fatalf("dead letters %v: %d (%v), want %d", f, len(got), err, n)
	}
	return got
}

// waitFactEvents waits until fact_events holds every event of want.
func waitFactEvents(ctx context.Context, t *testing.T, sl *slice.Slice, want map[string]bool) {
	t.Helper()
	var have map[string]bool
	var err error
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if have, err = queryIDs(ctx, sl, "SELECT event_id FROM fact_events"); err == nil && allIn(want, have) {
			return
		}
	}
	t.Fatalf("fact_events: %d events (%v), want all %d", len(have), err, len(want))
}

// waitJob waits until a replay job has finished and returns it; a job that
// did not succeed fails the test.
func waitJob(ctx context.Context, t *testing.T, sl *slice.Slice, id string) slice.ReplayJob {
	t.Helper()
	var job slice.ReplayJob
	var err error
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if job, err = sl.DLQ.ReplayJob(ctx, id); err == nil && job.State != "running" {
			break
		}
	}
	if err != nil || job.State != "succeeded" {
		t.Fatalf("replay job %s: %+v (%v), want succeeded", id, job, err)
	}
	return job
}
