package stream

import (
	"context"
	"math/rand/v2"
	"time"
)

// Backoff is capped exponential backoff with jitter, from
// KAFKA_RETRY_BACKOFF_MIN up to KAFKA_RETRY_BACKOFF_MAX. Every retry of a
// transient error in the platform waits with it.
type Backoff struct {
	min, max, cur time.Duration
}

// NewBackoff starts at cfg.RetryBackoffMin.
func NewBackoff(cfg Config) *Backoff {
	return &Backoff{min: cfg.RetryBackoffMin, max: cfg.RetryBackoffMax, cur: cfg.RetryBackoffMin}
}

// Reset starts over from the minimum after a success.
func (b *Backoff) Reset() { b.cur = b.min }

func (b *Backoff) next() time.Duration {
	d := b.cur/2 + rand.N(b.cur/2+1)
	b.cur = min(b.cur*2, b.max)
	return d
}

// Wait sleeps the next backoff, or returns ctx's error when ctx ends first.
func (b *Backoff) Wait(ctx context.Context) error {
	t := time.NewTimer(b.next())
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
