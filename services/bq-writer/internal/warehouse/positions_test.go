package warehouse

import (
	"context"
	"database/sql"
	"errors"
	"testing"
	"time"
)

// A file written before positions carried their log ids is migrated in place: its positions
// survive with unknown ids, and the next write of a partition fills them in.
func TestMigrateAddsLogIDsToAnExistingFile(t *testing.T) {
	path := t.TempDir() + "/old.duckdb"
	db, err := sql.Open("duckdb", path)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		// stream_positions as the first release created it.
		`CREATE TABLE stream_positions (consumer_group VARCHAR NOT NULL, topic VARCHAR NOT NULL, "partition" INTEGER NOT NULL,
			next_offset BIGINT NOT NULL, updated_at TIMESTAMPTZ NOT NULL, PRIMARY KEY (consumer_group, topic, "partition"))`,
		`INSERT INTO stream_positions VALUES ('bq-writer', 't', 0, 10, now()), ('bq-writer', 't', 1, 20, now())`,
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	ctx := context.Background()
	d, err := OpenDuckDB(path)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	for range 2 { // idempotent
		if err := d.Migrate(ctx); err != nil {
			t.Fatal(err)
		}
	}
	pos, err := d.Positions(ctx, testGroup)
	if err != nil {
		t.Fatal(err)
	}
	if got := pos[Partition{"t", 0}]; got.Next != 10 || got.TopicID != "" || got.ClusterID != "" || got.UpdatedAt.IsZero() {
		t.Fatalf("migrated position = %+v, want next 10 with unknown ids", got)
	}

	// Unknown stored ids match any log; the write records the batch's.
	mustWrite(t, d, Batch{Positions: map[Partition]int64{{"t", 0}: 15}, ClusterID: "c1", TopicIDs: map[string]string{"t": "id-1"}})
	pos, _ = d.Positions(ctx, testGroup)
	if got := pos[Partition{"t", 0}]; got.Next != 15 || got.TopicID != "id-1" || got.ClusterID != "c1" {
		t.Fatalf("position after write = %+v, want 15 on id-1/c1", got)
	}
	if got := pos[Partition{"t", 1}]; got.Next != 20 || got.TopicID != "" {
		t.Fatalf("untouched position = %+v", got)
	}
}

// A batch read from another log than its partition's stored position is refused, not dropped as
// stale; ResetPositions is the explicit way to re-anchor.
func TestWriteRefusesBatchFromAnotherLog(t *testing.T) {
	const topic = "ecom.events.valid.v1"
	ctx := context.Background()
	ids := func(id string) map[string]string { return map[string]string{topic: id} }
	tests := []struct {
		name    string
		cluster string
		topicID map[string]string
		wantErr bool
	}{
		{name: "same log", cluster: "c1", topicID: ids("id-1")},
		{name: "ids unknown to the batch", cluster: "", topicID: nil},
		{name: "topic recreated", cluster: "c1", topicID: ids("id-2"), wantErr: true},
		{name: "other cluster", cluster: "c2", topicID: ids("id-1"), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, _ := openTest(t)
			first := batch(seq("a", 0, 0, 10)...)
			first.ClusterID, first.TopicIDs = "c1", ids("id-1")
			mustWrite(t, d, first)

			b := batch(seq("b", 0, 0, 5)...) // offsets below the stored position
			b.ClusterID, b.TopicIDs = tt.cluster, tt.topicID
			res, err := d.Write(ctx, testGroup, b)
			if !tt.wantErr {
				if err != nil || res.Stale != 5 {
					t.Fatalf("Write = %+v, %v; want 5 stale", res, err)
				}
				return
			}
			if !errors.Is(err, ErrPositionConflict) || IsTransient(err) {
				t.Fatalf("Write = %+v, %v; want ErrPositionConflict", res, err)
			}
			if n := count(t, d, `SELECT count(*) FROM fact_events`); n != 10 {
				t.Fatalf("rows = %d, want 10", n)
			}

			// Re-anchor on the new log at offset 0 (moving back), then the batch goes in.
			p := Partition{topic, 0}
			if err := d.ResetPositions(ctx, testGroup, map[Partition]Position{p: {Next: 0, TopicID: tt.topicID[topic], ClusterID: tt.cluster}}); err != nil {
				t.Fatal(err)
			}
			pos, _ := d.Positions(ctx, testGroup)
			if got := pos[p]; got.Next != 0 || got.TopicID != tt.topicID[topic] || got.ClusterID != tt.cluster || time.Since(got.UpdatedAt) > time.Minute {
				t.Fatalf("reset position = %+v", got)
			}
			if res := mustWrite(t, d, b); res.Inserted != 5 {
				t.Fatalf("write after reset = %+v, want 5 inserted", res)
			}
		})
	}
}

func TestResetPositionsRejectsBadInput(t *testing.T) {
	d, _ := openTest(t)
	ctx := context.Background()
	if err := d.ResetPositions(ctx, "", map[Partition]Position{{"t", 0}: {}}); !errors.Is(err, ErrInvalidBatch) {
		t.Errorf("empty group: %v", err)
	}
	if err := d.ResetPositions(ctx, testGroup, map[Partition]Position{{"t", 0}: {Next: -1}}); !errors.Is(err, ErrInvalidBatch) {
		t.Errorf("negative offset: %v", err)
	}
}

// nextOffsets drops everything but the next offsets of positions.
func nextOffsets(positions map[Partition]Position) map[Partition]int64 {
	out := make(map[Partition]int64, len(positions))
	for p, pos := range positions {
		out[p] = pos.Next
	}
	return out
}
