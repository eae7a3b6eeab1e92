package main

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"testing"
)

// positionsSource is bq-writer's code that logs a position recovery.
const positionsSource = "../../../../services/bq-writer/internal/sink/positions.go"

// TestRecoveryMsgIsBQWriters ties recoveryMsg and the fields logCursor reads
// to bq-writer's log call: the demo reads bq-writer's log, a module it cannot
// import, so a reworded message or a renamed field would silently show no
// recoveries.
func TestRecoveryMsgIsBQWriters(t *testing.T) {
	src, err := os.ReadFile(positionsSource)
	if err != nil {
		t.Fatal(err)
	}
	call := regexp.MustCompile(`(?s)Log\.WarnContext\(ctx, ` + regexp.QuoteMeta(strconv.Quote(recoveryMsg)) + `,(.*?)\)\n`).FindSubmatch(src)
	if call == nil {
		t.Fatalf("%s has no Log.WarnContext(ctx, %q, ...): bq-writer's message changed; change recoveryMsg with it", positionsSource, recoveryMsg)
	}
	for _, field := range []string{"topic", "partition", "problem", "start"} {
		if !regexp.MustCompile(`(^|[\s,])"` + field + `",`).Match(call[1]) {
			t.Errorf("bq-writer's recovery log has no field %q (args: %s); logCursor reads it", field, call[1])
		}
	}
}

func TestLogCursorRecoveries(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bq-writer.log")
	earlier := `{"level":"WARN","msg":"` + recoveryMsg + `","topic":"old","partition":9,"problem":"an earlier run's","start":1}` + "\n"
	if err := os.WriteFile(path, []byte(earlier), 0o644); err != nil {
		t.Fatal(err)
	}
	c := logMark(path) // this run starts here: the earlier line is not reported
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	write := func(s string) {
		if _, err := f.WriteString(s); err != nil {
			t.Fatal(err)
		}
	}
	write(`{"level":"INFO","msg":"started"}` + "\n" + "not json\n" +
		`{"level":"WARN","msg":"` + recoveryMsg + `","topic":"ecom.orders.valid.v1","partition":2,"problem":"the warehouse holds no position","recovery":"committed","start":42}` + "\n" +
		`{"level":"WARN","msg":"` + recoveryMsg + `","topic":"ecom.events.valid.v1","partition":0,"problem":"x","start":7`) // not yet complete
	want := []string{"ecom.orders.valid.v1/2 from offset 42: the warehouse holds no position"}
	if got := c.recoveries(); !slices.Equal(got, want) {
		t.Errorf("recoveries() = %q, want %q", got, want)
	}
	write("}\n")
	want = []string{"ecom.events.valid.v1/0 from offset 7: x"}
	if got := c.recoveries(); !slices.Equal(got, want) {
		t.Errorf("recoveries() after the line completed = %q, want %q", got, want)
	}
	if got := c.recoveries(); len(got) != 0 {
		t.Errorf("recoveries() again = %q, want none", got)
	}
	if got := logMark(filepath.Join(t.TempDir(), "none.log")).recoveries(); got != nil {
		t.Errorf("recoveries() of a missing log = %q, want nil", got)
	}
}
