package warehouse

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

func TestQueryBeyondTheSlotsIsRefusedAtOnce(t *testing.T) {
	tests := []struct {
		name  string
		slots int
	}{
		{"one slot", 1},
		{"default", DefaultMaxConcurrentQueries},
		{"four slots", 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, _ := openTest(t, WithMaxConcurrentQueries(tt.slots))
			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			for range tt.slots {
				wg.Go(func() { _, _, _ = d.Query(ctx, `SELECT count(*) FROM range(1000000000000)`, 1) })
			}
			defer func() { cancel(); wg.Wait() }()
			deadline := time.Now().Add(20 * time.Second)
			for len(d.querySlots) < tt.slots {
				if time.Now().After(deadline) {
					t.Fatalf("%d of %d slots taken", len(d.querySlots), tt.slots)
				}
				time.Sleep(10 * time.Millisecond)
			}
			_, _, err := d.Query(context.Background(), `SELECT 1`, 1)
			if !errors.Is(err, ErrQueryBusy) {
				t.Fatalf("query beyond %d slots: %v, want ErrQueryBusy", tt.slots, err)
			}
			if got, want := d.db.Stats().MaxOpenConnections, tt.slots+2; got != want {
				t.Errorf("pool of %d connections, want %d (writer, slots, one for Positions and Ping)", got, want)
			}
			cancel()
			wg.Wait()
			// Slots are given back.
			if _, _, err := d.Query(context.Background(), `SELECT 1`, 1); err != nil {
				t.Errorf("after the slots are free: %v", err)
			}
		})
	}
}

func TestMaxConcurrentQueriesIsChecked(t *testing.T) {
	for _, n := range []int{-1, 0, MaxConcurrentQueries + 1} {
		if d, err := OpenDuckDB("", WithMaxConcurrentQueries(n)); err == nil {
			_ = d.Close()
			t.Errorf("WithMaxConcurrentQueries(%d) accepted", n)
		}
	}
}
