package sink

import (
	"context"
	"strings"
	"testing"

	"github.com/ecomstream/platform/services/bq-writer/internal/warehouse"
)

func TestStartOf(t *testing.T) {
	p := warehouse.Partition{Topic: "t", Partition: 0}
	log := func(committed ...int64) *logState {
		l := &logState{cluster: "c1", topicIDs: map[string]string{"t": "id-1"},
			start: map[warehouse.Partition]int64{p: 10}, end: map[warehouse.Partition]int64{p: 50},
			committed: map[warehouse.Partition]int64{}}
		if len(committed) > 0 {
			l.committed[p] = committed[0]
		}
		return l
	}
	pos := func(next int64, topicID, cluster string) *warehouse.Position {
		return &warehouse.Position{Next: next, TopicID: topicID, ClusterID: cluster}
	}
	tests := []struct {
		name      string
		stored    *warehouse.Position // nil: none stored
		log       *logState
		rec       Recovery
		wantNext  int64
		wantReset bool
		wantProb  string // "" = fits
	}{
		{name: "fits", stored: pos(30, "id-1", "c1"), log: log(25), wantNext: 30},
		{name: "fits at the log start", stored: pos(10, "id-1", "c1"), log: log(), wantNext: 10},
		{name: "fits at the log end", stored: pos(50, "id-1", "c1"), log: log(), wantNext: 50},
		{name: "ids unknown in the warehouse", stored: pos(30, "", ""), log: log(), wantNext: 30},
		{name: "new group", log: log(), wantNext: 10},
		{name: "committed offset 0 only", log: log(0), wantNext: 10},
		{name: "topic recreated", stored: pos(30, "id-0", "c1"), log: log(), wantProb: "deleted and recreated"},
		{name: "topic recreated, earliest", stored: pos(30, "id-0", "c1"), log: log(), rec: RecoveryEarliest, wantNext: 10, wantReset: true, wantProb: "recreated"},
		{name: "other cluster", stored: pos(30, "id-1", "c0"), log: log(), wantProb: "cluster c0, bq-writer is connected to cluster c1"},
		{name: "other cluster, committed", stored: pos(30, "id-1", "c0"), log: log(20), rec: RecoveryCommitted, wantNext: 20, wantReset: true, wantProb: "cluster"},
		{name: "beyond the log end", stored: pos(51, "id-1", "c1"), log: log(), wantProb: "beyond the log end 50"},
		{name: "below the log start", stored: pos(9, "id-1", "c1"), log: log(), wantProb: "offsets 9..9 were deleted by retention"},
		{name: "below the log start, earliest", stored: pos(3, "id-1", "c1"), log: log(), rec: RecoveryEarliest, wantNext: 10, wantReset: true, wantProb: "below"},
		{name: "empty warehouse, committed offsets", log: log(40), wantProb: "holds no position but the group has committed offset 40"},
		{name: "empty warehouse, committed", log: log(40), rec: RecoveryCommitted, wantNext: 40, wantReset: true, wantProb: "no position"},
		{name: "empty warehouse, commit outside the log", log: log(60), rec: RecoveryCommitted, wantNext: 10, wantReset: true, wantProb: "no position"},
		{name: "empty warehouse, earliest", log: log(40), rec: RecoveryEarliest, wantNext: 10, wantReset: true, wantProb: "no position"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var st warehouse.Position
			if tt.stored != nil {
				st = *tt.stored
			}
			next, reset, problem := tt.log.startOf(p, st, tt.stored != nil, tt.rec)
			if (problem == "") != (tt.wantProb == "") || !strings.Contains(problem, tt.wantProb) {
				t.Fatalf("problem = %q, want %q", problem, tt.wantProb)
			}
			if problem != "" && tt.rec == "" {
				return // refused: no start
			}
			if next != tt.wantNext || reset != tt.wantReset {
				t.Fatalf("start = %d (reset %v), want %d (reset %v)", next, reset, tt.wantNext, tt.wantReset)
			}
		})
	}
}

// With POSITION_RECOVERY set, the sink starts where it says, re-anchors the stored position on
// the current log, and writes.
func TestSinkRecovery(t *testing.T) {
	const group = "bq"
	tests := []struct {
		name   string
		rec    Recovery
		change func(t *testing.T, e *env, fileA string) string
		want   int // rows the second run inserts
	}{
		{name: "recreated topic from its start", rec: RecoveryEarliest, want: 6, change: func(t *testing.T, e *env, fileA string) string {
			e.recreate()
			e.produce("new", 6)
			return fileA
		}},
		{name: "empty warehouse rebuilt from the log start", rec: RecoveryEarliest, want: 24, change: func(t *testing.T, e *env, _ string) string {
			e.produce("more", 4)
			return tempFile(t, "new.duckdb")
		}},
		{name: "empty warehouse from the committed offsets", rec: RecoveryCommitted, want: 4, change: func(t *testing.T, e *env, _ string) string {
			e.produce("more", 4)
			return tempFile(t, "new.duckdb")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			fileA := tempFile(t, "a.duckdb")
			wh1 := openFile(t, fileA)
			first := start(t, e.config(group), wh1)
			e.produce("old", 20)
			wh1.waitInserted(t, 20)
			if err := first.stop(); err != nil {
				t.Fatal(err)
			}
			wh1.Close()

			file := tt.change(t, e, fileA)
			wh2 := openFile(t, file)
			cfg := e.config(group)
			cfg.Recovery = tt.rec
			second := start(t, cfg, wh2)
			wh2.waitInserted(t, tt.want)
			if err := second.stop(); err != nil {
				t.Fatal(err)
			}
			if _, ins, stale := wh2.counts(); ins != tt.want || stale != 0 {
				t.Fatalf("inserted %d, stale %d; want %d, 0", ins, stale, tt.want)
			}
			ids, _ := e.adm.ListTopics(context.Background(), e.topic)
			pos, err := wh2.Positions(context.Background(), group)
			if err != nil {
				t.Fatal(err)
			}
			for p, st := range pos {
				if st.TopicID != topicID(ids[e.topic].ID) {
					t.Errorf("%v: position on topic id %q, the topic has %q", p, st.TopicID, topicID(ids[e.topic].ID))
				}
			}
		})
	}
}

// Stops are one line naming the partition, how many more are affected and the way out.
func TestStopErrorsAreOneLine(t *testing.T) {
	err := (&PositionError{Topic: "t", Partition: 2, Problem: "x", More: 3}).Error()
	if strings.Contains(err, "\n") || !strings.Contains(err, "t/2: x (and 3 more partitions)") || !strings.Contains(err, "POSITION_RECOVERY") {
		t.Fatalf("error = %q", err)
	}
	err = (&MemberError{Group: "bq-writer", Member: "member_id m-2, client_id bq-writer, host /10.0.0.2"}).Error()
	if strings.Contains(err, "\n") || !strings.Contains(err, `"bq-writer" has another member (member_id m-2`) || !strings.Contains(err, "KAFKA_CONSUMER_GROUP") {
		t.Fatalf("error = %q", err)
	}
}

// A Committer's missing position is reported as a claim the backend could not make, not as a
// lost DuckDB file.
func TestStartOfCommitter(t *testing.T) {
	p := warehouse.Partition{Topic: "t", Partition: 0}
	l := &logState{topicIDs: map[string]string{}, start: map[warehouse.Partition]int64{p: 0}, end: map[warehouse.Partition]int64{p: 50},
		committed: map[warehouse.Partition]int64{p: 40}, committer: true}
	for _, tt := range []struct{ metadata, want string }{
		{"", "its metadata is empty (an offset reset with the Kafka CLI)"},
		{"kgo-member-1", "its metadata is not a BigQuery position of this writer's tables"},
	} {
		l.metadata = map[warehouse.Partition]string{p: tt.metadata}
		_, _, problem := l.startOf(p, warehouse.Position{}, false, RecoveryRefuse)
		if !strings.Contains(problem, "claimed no position from the group's Kafka commit at offset 40: "+tt.want) || strings.Contains(problem, "DuckDB file") {
			t.Errorf("metadata %q: problem = %q", tt.metadata, problem)
		}
		if next, reset, _ := l.startOf(p, warehouse.Position{}, false, RecoveryCommitted); next != 40 || !reset {
			t.Errorf("metadata %q, committed: starts at %d (reset %v), want 40 reset", tt.metadata, next, reset)
		}
	}
	if next, _, _ := l.startOf(p, warehouse.Position{Next: 40}, true, RecoveryRefuse); next != 40 {
		t.Fatalf("claimed position 40 starts at %d", next)
	}
}
