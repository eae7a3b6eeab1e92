package warehouse

import (
	"math"
	"testing"
	"time"
)

func TestRecentIDs(t *testing.T) {
	now := t0.Add(time.Hour)
	r := newRecentIDs(time.Minute, 1000)
	r.loaded = true // empty table: covers everything
	if !r.covers(t0) {
		t.Fatal("empty loaded index must cover everything")
	}
	for i := range 100 {
		ts := t0.Add(time.Duration(i) * time.Second)
		r.add(string(rune('a'+i%26))+string(rune('A'+i/26)), ts, ts.Add(time.Second))
	}
	r.advance(now)
	newest := t0.Add(99 * time.Second)
	if want := newest.Add(-r.horizon()); !r.coveredFrom.Equal(want) {
		t.Fatalf("coveredFrom = %v, want %v", r.coveredFrom, want)
	}
	tests := []struct {
		name     string
		id       string
		ts, recv time.Time
		want     neighbour
	}{
		{"same timestamp, received later", "aA", t0, t0.Add(2 * time.Second), keptBefore},
		{"same timestamp, received at the same time", "aA", t0, t0.Add(time.Second), keptNear},
		{"same timestamp, received earlier", "aA", t0, t0, keptNear},
		{"within window after", "aA", t0.Add(59 * time.Second), t0, keptBefore},
		{"within window before", "bA", t0.Add(-59 * time.Second), t0, keptNear},
		{"outside window", "aA", t0.Add(61 * time.Second), t0, noNeighbour},
		{"unknown id", "zz", t0, t0, noNeighbour},
		{"last id", "vD", t0.Add(99 * time.Second), t0.Add(101 * time.Second), keptBefore},
	}
	for _, tt := range tests {
		if got := r.lookup(tt.id, tt.ts, tt.recv); got != tt.want {
			t.Errorf("%s: lookup(%q, %v, %v) = %v, want %v", tt.name, tt.id, tt.ts, tt.recv, got, tt.want)
		}
	}
	// Coverage: a row needs its whole window above coveredFrom.
	if r.covers(t0) || !r.covers(newest) {
		t.Fatalf("covers: t0 %v newest %v (coveredFrom %v)", r.covers(t0), r.covers(newest), r.coveredFrom)
	}

	// A future-stamped event cannot drag coverage past the wall clock.
	r.add("future", now.Add(24*time.Hour), now)
	r.advance(now)
	if r.coveredFrom.After(now) {
		t.Fatalf("coveredFrom %v moved past now %v", r.coveredFrom, now)
	}

	// Over the cap the oldest buckets go and coverage follows.
	small := newRecentIDs(time.Minute, 10)
	small.loaded = true
	for i := range 40 {
		small.add(string(rune('a'+i)), t0.Add(time.Duration(i)*time.Second), t0)
	}
	small.advance(now)
	if small.size > 10 {
		t.Fatalf("size %d over cap", small.size)
	}
	if small.covers(t0.Add(39 * time.Second)) {
		t.Fatal("rows whose window lost its ids must not be covered")
	}
}

// Kept copies of one id more than the window apart can share a bucket when the window is under
// two seconds (buckets are at least a second wide): the entry is then near any row, and removing
// one copy leaves it, so the other copy is never missed.
func TestRecentIDsSharedBucketAndRemove(t *testing.T) {
	tests := []struct {
		name   string
		window time.Duration
		add    []time.Duration // offsets from t0 of the kept copies of "e", received a second later
		remove []time.Duration
		probe  time.Duration // received two seconds later
		want   neighbour
	}{
		{name: "one copy", window: 0, add: []time.Duration{0}, probe: 0, want: keptBefore},
		{name: "one copy, off by a microsecond", window: 0, add: []time.Duration{0}, probe: time.Microsecond, want: noNeighbour},
		{name: "two copies in one bucket", window: 0, add: []time.Duration{0, 500 * time.Millisecond}, probe: 0, want: keptNear},
		{name: "two copies in one bucket, probe the second", window: 0, add: []time.Duration{0, 500 * time.Millisecond}, probe: 500 * time.Millisecond, want: keptNear},
		{name: "removed", window: time.Minute, add: []time.Duration{0}, remove: []time.Duration{0}, probe: 0, want: noNeighbour},
		{name: "remove of another row keeps the entry", window: time.Minute, add: []time.Duration{0}, remove: []time.Duration{time.Second}, probe: 0, want: keptBefore},
		{name: "remove from a shared bucket keeps it", window: 0, add: []time.Duration{0, 500 * time.Millisecond}, remove: []time.Duration{0}, probe: 500 * time.Millisecond, want: keptNear},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRecentIDs(tt.window, 100)
			r.loaded = true
			for _, d := range tt.add {
				r.add("e", t0.Add(d), t0.Add(d+time.Second))
			}
			for _, d := range tt.remove {
				r.remove("e", t0.Add(d), t0.Add(d+time.Second))
			}
			if got := r.lookup("e", t0.Add(tt.probe), t0.Add(tt.probe+2*time.Second)); got != tt.want {
				t.Fatalf("lookup = %v, want %v", got, tt.want)
			}
			if r.size < 0 || r.size > len(tt.add) {
				t.Fatalf("size = %d", r.size)
			}
		})
	}
}

// The packed entry gives back the event_timestamp exactly and an upper bound of received_at
// less than a millisecond above it.
func TestRecentEntryRoundTrip(t *testing.T) {
	r := newRecentIDs(time.Minute, 10)
	tests := []struct {
		name     string
		ts, recv time.Time
		wantRecv time.Time // upper bound returned; zero: unknown
	}{
		{"received later", t0, t0.Add(150 * time.Millisecond), t0.Add(150 * time.Millisecond)},
		{"rounded up", t0, t0.Add(150*time.Millisecond + time.Microsecond), t0.Add(151 * time.Millisecond)},
		{"received before its timestamp", t0, t0.Add(-1500 * time.Microsecond), t0.Add(-time.Millisecond)},
		{"before the epoch", time.UnixMicro(-1_000_001), time.UnixMicro(-1_000_001).Add(time.Second), time.UnixMicro(-1_000_001).Add(time.Second)},
		{"weeks late", t0, t0.Add(30 * 24 * time.Hour), time.Time{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := tt.ts.UnixMicro()
			b := floorDiv(ts, r.width)
			gotTS, gotRecv := r.decode(b, r.entry(b, ts, tt.recv.UnixMicro()))
			if gotTS != ts {
				t.Fatalf("ts = %d, want %d", gotTS, ts)
			}
			want := int64(math.MaxInt64)
			if !tt.wantRecv.IsZero() {
				want = tt.wantRecv.UnixMicro()
			}
			if gotRecv != want {
				t.Fatalf("recv bound = %d, want %d", gotRecv, want)
			}
		})
	}
}
