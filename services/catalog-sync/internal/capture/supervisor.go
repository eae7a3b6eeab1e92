package capture

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/ecomstream/platform/pkg/stream"
	"github.com/ecomstream/platform/services/catalog-sync/internal/cdc"
)

// Supervisor runs the replication stream into the Sink and starts a new
// stream after one ends with an error a reconnect can cure (PostgreSQL
// restarted, the connection dropped, the slot still held by a dead
// session): the new stream resumes at the slot's confirmed position, so
// the unconfirmed transactions are delivered again. An ErrFatal from the
// Sink ends Run with the error (the service exits).
type Supervisor struct {
	New     func() (*cdc.Stream, error)
	Sink    *Sink
	Backoff *stream.Backoff
	Log     *slog.Logger

	mu  sync.Mutex
	cur *cdc.Stream
}

// Run streams until ctx ends.
func (s *Supervisor) Run(ctx context.Context) error {
	for {
		cs, err := s.New()
		if err != nil {
			return err // invalid configuration
		}
		s.mu.Lock()
		s.cur = cs
		s.mu.Unlock()
		started := time.Now()
		err = cs.Run(ctx, s.Sink.Handler(cs.Confirm))
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, ErrFatal) {
			return err
		}
		if err == nil {
			err = errors.New("cdc: stream ended")
		}
		if time.Since(started) > time.Minute {
			s.Backoff.Reset() // it streamed for a while: a new failure starts over
		}
		s.Log.ErrorContext(ctx, "cdc: stream stopped; reconnecting", "err", err)
		if werr := s.Backoff.Wait(ctx); werr != nil {
			return nil
		}
	}
}

// Stats are the current stream's.
func (s *Supervisor) Stats() cdc.Stats {
	s.mu.Lock()
	cs := s.cur
	s.mu.Unlock()
	if cs == nil {
		return cdc.Stats{}
	}
	return cs.Stats()
}
