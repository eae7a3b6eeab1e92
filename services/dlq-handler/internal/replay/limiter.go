package replay

import (
	"context"
	"math"
	"time"
)

// bucket is a token bucket: rate tokens a second, at most burst saved up.
// The sender takes one token per record of the target topic's bucket (and
// of a slower job's), so a topic never gets more than burst at once nor
// more than rate a second on average. Not safe for
// concurrent use (the sender is one goroutine).
type bucket struct {
	rate   float64
	burst  float64
	tokens float64
	last   time.Time
}

// newBucket returns a full bucket of rate/s; the burst is a tenth of a
// second's worth (at least 1), so a replay starts promptly but cannot flood.
func newBucket(rate float64, now time.Time) *bucket {
	burst := math.Max(1, math.Floor(rate/10))
	return &bucket{rate: rate, burst: burst, tokens: burst, last: now}
}

// reserve takes a token and returns how long to wait before using it (0
// when one was available).
func (b *bucket) reserve(now time.Time) time.Duration {
	if el := now.Sub(b.last); el > 0 {
		b.tokens = math.Min(b.burst, b.tokens+el.Seconds()*b.rate)
		b.last = now
	}
	b.tokens--
	if b.tokens >= 0 {
		return 0
	}
	return time.Duration(-b.tokens / b.rate * float64(time.Second))
}

// wouldWait reports whether the next token is not there yet.
func (b *bucket) wouldWait(now time.Time) bool {
	t := b.tokens
	if el := now.Sub(b.last); el > 0 {
		t = math.Min(b.burst, t+el.Seconds()*b.rate)
	}
	return t < 1
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
