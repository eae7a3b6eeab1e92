package sink

// Regression test for bq-writer's cadence (issue 5, defect 11): polls are gathered into one
// warehouse batch until it is full or KAFKA_COMMIT_INTERVAL has passed since its first record, instead
// of one warehouse transaction per poll.

import (
	"testing"
	"time"
)

func TestSinkWritesOnceWhenFullOrDue(t *testing.T) {
	const group = "bq"
	e := newEnv(t)
	path := tempFile(t, "w.duckdb")
	wh := openFile(t, path)
	cfg := e.config(group)
	cfg.Kafka.MaxPollRecords = 3
	withBatchInterval(&cfg, 5*time.Second) // only a full batch is written
	s := start(t, cfg, wh)

	// Three records, each in a poll of its own: one write of three rows.
	for i := range 3 {
		e.produce("full-"+string(rune('a'+i)), 1)
		time.Sleep(150 * time.Millisecond)
	}
	wh.waitInserted(t, 3)
	if writes, ins, _ := wh.counts(); writes != 1 || ins != 3 {
		t.Fatalf("%d writes for %d rows, want one write of 3 rows", writes, ins)
	}

	// Two more: not full and not due, so not written; stopping leaves them uncommitted.
	e.produce("open", 2)
	time.Sleep(300 * time.Millisecond)
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	if writes, ins, _ := wh.counts(); writes != 1 || ins != 3 {
		t.Fatalf("after stop: %d writes, %d rows; the open batch must not be written", writes, ins)
	}

	// On restart the open batch is read again and written once, when due.
	wh.Close()
	wh2 := openFile(t, path)
	cfg.Kafka.MaxPollRecords = 1000
	withBatchInterval(&cfg, 20*time.Millisecond)
	s2 := start(t, cfg, wh2)
	wh2.waitInserted(t, 2)
	if err := s2.stop(); err != nil {
		t.Fatal(err)
	}
	wh2.Close()
	if n := rows(t, path); n != 5 {
		t.Fatalf("file holds %d rows, want 5", n)
	}
}
