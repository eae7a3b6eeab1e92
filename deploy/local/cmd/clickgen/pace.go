package main

import (
	"context"
	"time"
)

// minSleep keeps the pacer from sleeping per event at high rates: timers are
// not precise below about a millisecond, so it waits at least that long and
// lets the tokens accumulated meanwhile go out as a small burst.
const minSleep = time.Millisecond

// pacer is a token bucket: tokens accrue at rate per second up to burst, and
// every event takes one. The burst cap (50 ms of events) keeps a stall, e.g. a
// full producer buffer, from being followed by a catch-up spike.
type pacer struct {
	rate   float64
	burst  float64
	tokens float64
	last   time.Time
	now    func() time.Time
	sleep  func(ctx context.Context, d time.Duration) error
}

func newPacer(rate float64, now func() time.Time) *pacer {
	return &pacer{
		rate:   rate,
		burst:  max(1, rate/20),
		tokens: 1, // the first event goes out at once
		last:   now(),
		now:    now,
		sleep:  sleepCtx,
	}
}

// wait blocks until the next event may be sent, or ctx is done. A rate of 0
// or less never waits.
func (p *pacer) wait(ctx context.Context) error {
	if p.rate <= 0 {
		return ctx.Err()
	}
	for {
		now := p.now()
		p.tokens = min(p.burst, p.tokens+now.Sub(p.last).Seconds()*p.rate)
		p.last = now
		if p.tokens >= 1 {
			p.tokens--
			return nil
		}
		d := time.Duration((1 - p.tokens) / p.rate * float64(time.Second))
		if err := p.sleep(ctx, max(d, minSleep)); err != nil {
			return err
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
