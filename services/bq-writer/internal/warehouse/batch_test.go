package warehouse

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// The neutral checks are what a second backend calls instead of re-implementing them: these
// pin their answers without a store.
func TestValidateBatch(t *testing.T) {
	good := batch(row("t", 0, 3, "e1", t0))
	tests := []struct {
		name    string
		group   string
		give    func(b Batch) Batch
		wantErr error
		wantRow int // RowError index, -1 for none
	}{
		{name: "valid", group: testGroup, give: func(b Batch) Batch { return b }, wantRow: -1},
		{name: "no group", group: "", give: func(b Batch) Batch { return b }, wantErr: ErrInvalidBatch, wantRow: -1},
		{name: "negative position", group: testGroup, give: func(b Batch) Batch {
			b.Positions[Partition{"t", 1}] = -1
			return b
		}, wantErr: ErrInvalidBatch, wantRow: -1},
		{name: "row not covered", group: testGroup, give: func(b Batch) Batch {
			b.Positions[Partition{"t", 0}] = 3
			return b
		}, wantErr: ErrInvalidBatch, wantRow: -1},
		{name: "row without a position", group: testGroup, give: func(b Batch) Batch {
			b.Positions = map[Partition]int64{{"u", 0}: 9}
			return b
		}, wantErr: ErrInvalidBatch, wantRow: -1},
		{name: "bad row", group: testGroup, give: func(b Batch) Batch {
			b.Events[0].EventID = ""
			return b
		}, wantErr: ErrInvalidBatch, wantRow: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := good
			b.Events = slices.Clone(good.Events)
			b.Positions = map[Partition]int64{{"t", 0}: 4}
			err := ValidateBatch(tt.group, tt.give(b))
			if !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			var re *RowError
			if got := errors.As(err, &re); got != (tt.wantRow >= 0) || (got && re.Index != tt.wantRow) {
				t.Fatalf("RowError = %v, want index %d", re, tt.wantRow)
			}
		})
	}
}

func TestFreshRows(t *testing.T) {
	b := batch(row("t", 0, 5, "a", t0), row("t", 0, 6, "b", t0), row("t", 1, 0, "c", t0), row("u", 0, 2, "d", t0))
	tests := []struct {
		name      string
		stored    map[Partition]int64
		wantFresh []int
		wantStale int
	}{
		{name: "nothing stored", stored: nil, wantFresh: []int{0, 1, 2, 3}},
		{name: "replay below the stored offset", stored: map[Partition]int64{{"t", 0}: 6}, wantFresh: []int{1, 2, 3}, wantStale: 1},
		{name: "stored offset is the next one, not written", stored: map[Partition]int64{{"t", 1}: 0}, wantFresh: []int{0, 1, 2, 3}},
		{name: "all stale", stored: map[Partition]int64{{"t", 0}: 7, {"t", 1}: 1, {"u", 0}: 3}, wantStale: 4, wantFresh: []int{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fresh, stale := FreshRows(len(b.Events), EventAt(&b), tt.stored)
			if !slices.Equal(fresh, tt.wantFresh) || stale != tt.wantStale {
				t.Fatalf("FreshRows = %v, %d; want %v, %d", fresh, stale, tt.wantFresh, tt.wantStale)
			}
		})
	}
}

func TestCheckSameLog(t *testing.T) {
	p := Partition{"t", 0}
	tests := []struct {
		name     string
		stored   Position
		topicID  string
		cluster  string
		conflict bool
	}{
		{name: "same ids", stored: Position{Next: 4, TopicID: "A", ClusterID: "C"}, topicID: "A", cluster: "C"},
		{name: "unknown ids match", stored: Position{Next: 4}, topicID: "A", cluster: "C"},
		{name: "batch without ids", stored: Position{Next: 4, TopicID: "A", ClusterID: "C"}},
		{name: "recreated topic", stored: Position{Next: 4, TopicID: "A"}, topicID: "B", conflict: true},
		{name: "other cluster", stored: Position{Next: 4, ClusterID: "C"}, cluster: "D", conflict: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := Batch{Positions: map[Partition]int64{p: 9}, ClusterID: tt.cluster, TopicIDs: map[string]string{"t": tt.topicID}}
			next, err := CheckSameLog(map[Partition]Position{p: tt.stored, {"other", 0}: {Next: 1, TopicID: "Z"}}, b)
			if tt.conflict {
				if !errors.Is(err, ErrPositionConflict) {
					t.Fatalf("err = %v, want ErrPositionConflict", err)
				}
				return
			}
			if err != nil || next[p] != 4 || next[Partition{"other", 0}] != 1 {
				t.Fatalf("CheckSameLog = %v, %v", next, err)
			}
		})
	}
}

func TestValidatePositions(t *testing.T) {
	tests := []struct {
		name    string
		group   string
		give    map[Partition]Position
		wantErr string
	}{
		{name: "valid", group: testGroup, give: map[Partition]Position{{"t", 0}: {Next: 0}}},
		{name: "no group", give: map[Partition]Position{{"t", 0}: {Next: 0}}, wantErr: "empty consumer group"},
		{name: "no topic", group: testGroup, give: map[Partition]Position{{"", 0}: {Next: 1}}, wantErr: "bad position"},
		{name: "negative partition", group: testGroup, give: map[Partition]Position{{"t", -1}: {Next: 1}}, wantErr: "bad position"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidatePositions(tt.group, tt.give)
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, ErrInvalidBatch)) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestSortedPartitions(t *testing.T) {
	got := SortedPartitions(map[Partition]int{{"b", 0}: 1, {"a", 10}: 1, {"a", 2}: 1})
	want := []Partition{{"a", 2}, {"a", 10}, {"b", 0}}
	if !slices.Equal(got, want) {
		t.Fatalf("SortedPartitions = %v, want %v", got, want)
	}
}
