package main

import (
	"context"
	"errors"
	"testing"
	"time"
)

// fakeTime is a clock that only moves when the pacer sleeps (or the test
// advances it), so pacing can be checked exactly and instantly.
type fakeTime struct {
	now    time.Time
	sleeps int
}

func (f *fakeTime) clock() time.Time { return f.now }

func (f *fakeTime) sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	f.sleeps++
	f.now = f.now.Add(d)
	return nil
}

func TestPacer(t *testing.T) {
	tests := []struct {
		name       string
		rate       float64
		events     int
		stall      time.Duration // the caller is busy this long before the events
		wantWithin [2]time.Duration
	}{
		{"1000/s", 1000, 5000, 0, [2]time.Duration{4990 * time.Millisecond, 5010 * time.Millisecond}},
		{"20000/s", 20000, 100_000, 0, [2]time.Duration{4990 * time.Millisecond, 5010 * time.Millisecond}},
		{"slow", 2, 10, 0, [2]time.Duration{4400 * time.Millisecond, 4600 * time.Millisecond}},
		// After a stall only a burst of 50 ms worth goes out at once: the
		// rest is paced, no catch-up spike.
		{"stall", 1000, 1000, time.Hour, [2]time.Duration{940 * time.Millisecond, 960 * time.Millisecond}},
		{"unlimited", 0, 1000, 0, [2]time.Duration{0, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ft := &fakeTime{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
			p := newPacer(tt.rate, ft.clock)
			p.sleep = ft.sleep
			ft.now = ft.now.Add(tt.stall)
			start := ft.now
			for i := range tt.events {
				if err := p.wait(context.Background()); err != nil {
					t.Fatalf("event %d: %v", i, err)
				}
			}
			if took := ft.now.Sub(start); took < tt.wantWithin[0] || took > tt.wantWithin[1] {
				t.Errorf("%d events took %v, want within %v", tt.events, took, tt.wantWithin)
			}
			if tt.rate > 1000 && ft.sleeps > tt.events/10 {
				t.Errorf("%d sleeps for %d events: sleeping per event", ft.sleeps, tt.events)
			}
		})
	}
}

func TestPacerStopsOnCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, rate := range []float64{0, 1} {
		p := newPacer(rate, time.Now)
		p.tokens = 0
		if err := p.wait(ctx); !errors.Is(err, context.Canceled) {
			t.Errorf("rate %v: wait = %v, want context.Canceled", rate, err)
		}
	}
}
