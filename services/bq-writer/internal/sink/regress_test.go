package sink

// Regression tests for positions that do not fit the log (issue 5, defect 3) and for a second
// writer in the group (defect 6). They use only the API of helpers_test.go, so they also run
// against the code before the fix, where they fail: records are dropped as stale or skipped
// without an error, and two writers split the partitions between two files.

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/ecomstream/platform/services/bq-writer/internal/warehouse"
)

func TestSinkStopsWhenPositionsDoNotFitTheLog(t *testing.T) {
	const group = "bq"
	tests := []struct {
		name string
		// change runs after a first sink wrote 20 records to file A (wh1, still open) and
		// stopped. It returns the env and the file the second sink runs on.
		change func(t *testing.T, e *env, wh1 *counting, fileA string) (*env, string)
		want   string
	}{
		{
			name: "topic deleted and recreated",
			change: func(t *testing.T, e *env, _ *counting, fileA string) (*env, string) {
				e.recreate()
				e.produce("new", 6) // offsets below the stored positions
				return e, fileA
			},
			want: "deleted and recreated",
		},
		{
			name: "failover to another cluster",
			change: func(t *testing.T, _ *env, _ *counting, fileA string) (*env, string) {
				other := newEnv(t, kfake.ClusterID("west"))
				other.produce("west", 60) // more records than stored: the offsets alone fit
				return other, fileA
			},
			want: "cluster west",
		},
		{
			name: "empty warehouse, group has committed offsets",
			change: func(t *testing.T, e *env, _ *counting, _ string) (*env, string) {
				e.produce("more", 4)
				return e, tempFile(t, "new.duckdb")
			},
			want: "holds no position",
		},
		{
			name: "records deleted by retention before they were written",
			change: func(t *testing.T, e *env, wh1 *counting, fileA string) (*env, string) {
				e.produce("more", 20)
				ctx := context.Background()
				// The warehouse's positions, not the group's Kafka offsets: those only mirror
				// the warehouse, asynchronously, and can lag it when the first sink stops.
				positions, err := wh1.Positions(ctx, group)
				if err != nil {
					t.Fatal(err)
				}
				ends, err := e.adm.ListEndOffsets(ctx, e.topic)
				if err != nil {
					t.Fatal(err)
				}
				del := kadm.Offsets{}
				for p, pos := range positions {
					if end, ok := ends.Lookup(p.Topic, p.Partition); ok && end.Offset >= pos.Next+2 {
						del.AddOffset(p.Topic, p.Partition, pos.Next+2, -1)
					}
				}
				if len(del) == 0 {
					t.Fatal("no partition to delete records from")
				}
				if _, err := e.adm.DeleteRecords(ctx, del); err != nil {
					t.Fatal(err)
				}
				return e, fileA
			},
			want: "below the log start",
		},
		{
			name: "stored position beyond the log end",
			change: func(t *testing.T, e *env, wh1 *counting, fileA string) (*env, string) {
				if _, err := wh1.Write(context.Background(), group, warehouse.Batch{
					Positions: map[warehouse.Partition]int64{{Topic: e.topic, Partition: 0}: 1000}}); err != nil {
					t.Fatal(err)
				}
				e.produce("more", 4)
				return e, fileA
			},
			want: "beyond the log end",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, kfake.ClusterID("east"))
			fileA := tempFile(t, "a.duckdb")
			wh1 := openFile(t, fileA)
			first := start(t, e.config(group), wh1)
			e.produce("old", 20)
			wh1.waitInserted(t, 20)
			e.waitMirrored(t, group, wh1)
			if err := first.stop(); err != nil {
				t.Fatal(err)
			}

			e2, file := tt.change(t, e, wh1, fileA)
			if err := wh1.Close(); err != nil {
				t.Fatal(err)
			}
			wh2 := openFile(t, file)
			second := start(t, e2.config(group), wh2)
			err, stopped := second.stopped(8 * time.Second)
			_, inserted, stale := wh2.counts()
			switch {
			case !stopped:
				t.Fatalf("the sink kept running: it inserted %d rows and dropped %d as stale, want a stop with %q", inserted, stale, tt.want)
			case err == nil || !strings.Contains(err.Error(), tt.want):
				t.Fatalf("Run = %v, want an error containing %q", err, tt.want)
			case inserted != 0 || stale != 0:
				t.Fatalf("the sink wrote before stopping: %d rows inserted, %d stale", inserted, stale)
			case strings.Contains(err.Error(), "\n"):
				t.Fatalf("the error is not one line: %q", err)
			}
			t.Logf("stopped with: %v", err)
		})
	}
}

// A second writer on another file joins the group: it stops, naming the other member, before it
// writes anything.
func TestSinkStopsOnAnotherMember(t *testing.T) {
	const group = "bq"
	e := newEnv(t)
	whA := openFile(t, tempFile(t, "a.duckdb"))
	a := start(t, e.config(group), whA)
	e.produce("a", 20)
	whA.waitInserted(t, 20)

	fileB := tempFile(t, "b.duckdb")
	whB := openFile(t, fileB)
	b := start(t, e.config(group), whB)
	e.produce("b", 40)
	err, stopped := b.stopped(8 * time.Second)
	_, insertedB, _ := whB.counts()
	var perr *PositionError
	switch {
	case !stopped:
		_, insertedA, _ := whA.counts()
		t.Fatalf("the second writer kept running beside the first (file A has %d rows, file B %d): nothing stops the group's partitions from being split between two files", insertedA, insertedB)
	case insertedB != 0:
		t.Fatalf("the second writer wrote %d rows before stopping", insertedB)
	case err != nil && strings.Contains(err.Error(), "another member") && strings.Contains(err.Error(), "member_id"):
		t.Logf("second writer stopped with: %v", err)
	case errors.As(err, &perr):
		// The first writer saw the second one first (on the rebalance the second one's
		// join started), stopped and left the group; alone, the second writer was then
		// refused by its empty file's positions. Both stopped, neither wrote elsewhere:
		// that is only right if the first writer did stop on the other member.
		aErr, aStopped := a.stopped(8 * time.Second)
		if !aStopped || aErr == nil || !strings.Contains(aErr.Error(), "another member") {
			t.Fatalf("second writer: %v (positions), but the first did not stop on the other member (stopped %v: %v)", err, aStopped, aErr)
		}
		t.Logf("first writer stopped on the other member (%v); the second, alone then, on its empty file: %v", aErr, err)
	default:
		t.Fatalf("Run = %v, want an error naming the other member", err)
	}
	// The first writer may stop too (it sees the second one on its next assignment); either
	// way it never wrote the second writer's share elsewhere.
	if err := a.stop(); err != nil && !strings.Contains(err.Error(), "another member") {
		t.Fatalf("first writer: %v", err)
	}
}

// A topic deleted and recreated while the sink runs: the client refuses the new incarnation, and
// the sink stops with an error instead of waiting silently.
func TestSinkStopsWhenTopicRecreatedWhileRunning(t *testing.T) {
	e := newEnv(t)
	wh := openFile(t, tempFile(t, "a.duckdb"))
	r := start(t, e.config("bq"), wh)
	e.produce("old", 20)
	wh.waitInserted(t, 20)
	e.recreate()
	e.produce("new", 6)
	err, stopped := r.stopped(25 * time.Second)
	_, inserted, stale := wh.counts()
	switch {
	case !stopped:
		t.Fatalf("the sink kept running without an error: %d rows of the new topic inserted, %d stale", inserted-20, stale)
	case err == nil || !strings.Contains(err.Error(), "deleted and recreated"):
		t.Fatalf("Run = %v, want a stop saying the topic was recreated", err)
	}
	t.Logf("stopped with: %v", err)
}
