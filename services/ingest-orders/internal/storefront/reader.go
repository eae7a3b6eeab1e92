package storefront

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"
)

// Reader pages through the listing, retrying what can succeed later: 429 and
// 503 after their Retry-After, other 5xx, transport errors and cut-off
// bodies with capped, jittered exponential backoff. The poller and backfill
// both read with it.
type Reader struct {
	API        *Client
	Limit      int
	BackoffMin time.Duration
	BackoffMax time.Duration
	// OnError sees every failed request (metrics); may be nil.
	OnError func(ctx context.Context, err error)
	// Sleep and Jitter are replaced by tests; nil means real time and
	// uniform jitter in [d/2, d].
	Sleep  func(ctx context.Context, d time.Duration) error
	Jitter func(d time.Duration) time.Duration
}

// Each reads the listing from since (zero = the beginning) page by page and
// calls fn with each; it stops when fn returns false or an error, or after
// the last page. A failed request is repeated (same since and token) until it
// succeeds, ctx ends, or the error is one retrying cannot fix (a 4xx, which
// includes ErrBadPageToken), which is returned.
func (r *Reader) Each(ctx context.Context, since time.Time, fn func(*Page) (bool, error)) error {
	token := ""
	b := r.Backoff()
	for {
		page, err := r.API.List(ctx, since, token, r.Limit)
		if err != nil {
			if r.OnError != nil {
				r.OnError(ctx, err)
			}
			var se *StatusError
			if errors.As(err, &se) && !se.Retryable() {
				return err
			}
			if werr := r.sleep(ctx, b.Next(err)); werr != nil {
				return werr
			}
			continue
		}
		b.Reset()
		more, err := fn(page)
		if err != nil || !more || !page.HasMore || page.NextPageToken == "" || len(page.Orders) == 0 {
			return err
		}
		token = page.NextPageToken
	}
}

func (r *Reader) sleep(ctx context.Context, d time.Duration) error {
	if r.Sleep != nil {
		return r.Sleep(ctx, d)
	}
	return Sleep(ctx, d)
}

// Backoff returns a fresh backoff of r's bounds.
func (r *Reader) Backoff() *Backoff {
	j := r.Jitter
	if j == nil {
		j = func(d time.Duration) time.Duration { return d/2 + rand.N(d/2+1) }
	}
	return &Backoff{min: r.BackoffMin, max: r.BackoffMax, cur: r.BackoffMin, jitter: j}
}

// Backoff is capped exponential backoff with jitter that honours a
// Retry-After.
type Backoff struct {
	min, max, cur time.Duration
	jitter        func(time.Duration) time.Duration
}

// Reset starts over after a success.
func (b *Backoff) Reset() { b.cur = b.min }

// Next is the wait before retrying after err: the jittered backoff, or the
// answer's Retry-After when that is longer (the server said when: earlier is
// pointless). A Retry-After above the cap is honoured too.
func (b *Backoff) Next(err error) time.Duration {
	d := b.jitter(b.cur)
	b.cur = min(b.cur*2, b.max)
	var se *StatusError
	if errors.As(err, &se) && se.RetryAfter > d {
		return se.RetryAfter
	}
	return d
}

// Sleep waits d or until ctx ends.
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
