package storefront

import (
	"sync"
	"time"
)

// Clock is the simulator's sense of shop time. Every timestamp in an order
// (created_at, updated_at, paid_at, ...) is shop time; webhook signature
// timestamps and Retry-After are wall time, because the receiver judges them
// against its own clock.
type Clock interface {
	Now() time.Time
}

// SimClock runs shop time Speed times faster than the wall clock from a
// starting point: with Speed 3600 an hour of shop life passes in a second,
// so an order goes from created to delivered (a few shop days) in a couple
// of minutes.
type SimClock struct {
	start     time.Time // shop time at wall
	wall      time.Time
	speed     float64
	wallClock func() time.Time
}

// NewSimClock starts shop time at start (the wall clock's now if zero),
// running speed times as fast as the wall clock (1 if speed <= 0).
func NewSimClock(start time.Time, speed float64) *SimClock {
	return newSimClock(start, speed, time.Now)
}

func newSimClock(start time.Time, speed float64, wall func() time.Time) *SimClock {
	if speed <= 0 {
		speed = 1
	}
	now := wall()
	if start.IsZero() {
		start = now
	}
	return &SimClock{start: start.UTC(), wall: now, speed: speed, wallClock: wall}
}

// Now is the shop time.
func (c *SimClock) Now() time.Time {
	elapsed := c.wallClock().Sub(c.wall) // monotonic
	return c.start.Add(time.Duration(float64(elapsed) * c.speed))
}

// Speed is shop seconds per wall second.
func (c *SimClock) Speed() float64 { return c.speed }

// ManualClock is a Clock that moves only when told to, for tests.
type ManualClock struct {
	mu  sync.Mutex
	now time.Time
}

// NewManualClock returns a clock standing at t.
func NewManualClock(t time.Time) *ManualClock { return &ManualClock{now: t.UTC()} }

func (c *ManualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Add moves the clock forward by d and returns the new time.
func (c *ManualClock) Add(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	return c.now
}

var (
	_ Clock = (*SimClock)(nil)
	_ Clock = (*ManualClock)(nil)
)
