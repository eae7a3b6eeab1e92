package main

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ecomstream/platform/deploy/local/clickgen"
	"github.com/ecomstream/platform/deploy/local/storefront"
)

// stats counts records by outcome. The generating loop writes generated
// counts and the producer's promise goroutine writes delivery counts, while
// the progress loop reads both, hence atomics.
type stats struct {
	kinds      []string // index 0 is KindValid, then the broken kinds
	index      map[string]int
	generated  atomic.Int64
	delivered  atomic.Int64
	failed     atomic.Int64
	duplicates atomic.Int64
	byKind     []atomic.Int64 // delivered originals (not duplicates), per kind
	firstErr   sync.Once
	placer     *storefront.Placer // nil unless purchases are placed as orders
}

func newStats() *stats {
	kinds := append([]string{clickgen.KindValid}, clickgen.BrokenKinds()...)
	s := &stats{kinds: kinds, index: make(map[string]int, len(kinds)), byKind: make([]atomic.Int64, len(kinds))}
	for i, k := range kinds {
		s.index[k] = i
	}
	return s
}

// brokenAttrs renders the delivered broken records per kind, skipping zeros
// so a progress line stays short.
func (s *stats) brokenAttrs() slog.Attr {
	var attrs []any
	for i, k := range s.kinds[1:] {
		if n := s.byKind[i+1].Load(); n > 0 {
			attrs = append(attrs, slog.Int64(k, n))
		}
	}
	return slog.Group("broken", attrs...)
}

// orderAttrs renders what became of the purchases placed as orders; empty
// when they are not placed.
func (s *stats) orderAttrs() slog.Attr {
	if s.placer == nil {
		return slog.Attr{}
	}
	p := s.placer.Stats()
	return slog.Group("orders", "placed", p.Placed, "already", p.Already, "failed", p.Failed, "dropped", p.Dropped,
		"pending", p.Queued-p.Placed-p.Already-p.Failed)
}

// expectLine is one line of the -expect-out file: what the platform must do
// with one record, and where the record landed so a test can find the dead
// letter by source partition and offset as well as by event id.
type expectLine struct {
	EventID   string `json:"event_id,omitempty"`
	Key       string `json:"key"`
	Valid     bool   `json:"valid"`
	Kind      string `json:"kind"`
	Stage     string `json:"stage,omitempty"`
	Code      string `json:"code,omitempty"`
	RuleID    string `json:"rule_id,omitempty"`
	Duplicate bool   `json:"duplicate,omitempty"`
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Offset    int64  `json:"offset"`
	// ValueB64 is set when there is no usable event id, so the record can
	// only be matched by its original bytes.
	ValueB64 string `json:"value_b64,omitempty"`
	Error    string `json:"error,omitempty"` // delivery failed; the record is not in Kafka
}

// expectWriter writes expectations from the producer's promises. Those run
// serially, but Close can race with a late promise after an aborted flush,
// hence the mutex.
type expectWriter struct {
	mu     sync.Mutex
	w      *bufio.Writer
	c      io.Closer
	err    error
	closed bool
}

func newExpectWriter(wc io.WriteCloser) *expectWriter {
	return &expectWriter{w: bufio.NewWriterSize(wc, 256<<10), c: wc}
}

func (x *expectWriter) write(rec clickgen.Record, topic string, partition int32, offset int64, deliveryErr error) {
	line := expectLine{
		EventID:   rec.EventID,
		Key:       string(rec.Key),
		Valid:     rec.Expect.Valid,
		Kind:      rec.Expect.Kind,
		Stage:     rec.Expect.Stage,
		Code:      rec.Expect.Code,
		RuleID:    rec.Expect.RuleID,
		Duplicate: rec.Duplicate,
		Topic:     topic,
		Partition: partition,
		Offset:    offset,
	}
	if rec.EventID == "" {
		line.ValueB64 = base64.StdEncoding.EncodeToString(rec.Value)
	}
	if deliveryErr != nil {
		line.Partition, line.Offset, line.Error = -1, -1, deliveryErr.Error()
	}
	b, err := json.Marshal(line)
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.closed || x.err != nil {
		return
	}
	if err == nil {
		_, err = x.w.Write(append(b, '\n'))
	}
	x.err = err
}

func (x *expectWriter) Close() error {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.closed {
		return x.err
	}
	x.closed = true
	if x.err != nil {
		_ = x.c.Close()
		return fmt.Errorf("write expectations: %w", x.err)
	}
	if err := x.w.Flush(); err != nil {
		_ = x.c.Close()
		return fmt.Errorf("write expectations: %w", err)
	}
	if err := x.c.Close(); err != nil {
		return fmt.Errorf("write expectations: %w", err)
	}
	return nil
}

// reportProgress logs a progress line every interval until done is closed.
func reportProgress(s *stats, log *slog.Logger, interval time.Duration, done <-chan struct{}) {
	t := time.NewTicker(interval)
	defer t.Stop()
	last, lastAt := int64(0), time.Now()
	for {
		select {
		case <-done:
			return
		case now := <-t.C:
			n := s.delivered.Load()
			log.Info("progress",
				"sent", n,
				"rate", fmt.Sprintf("%.0f/s", float64(n-last)/now.Sub(lastAt).Seconds()),
				"errors", s.failed.Load(),
				"duplicates", s.duplicates.Load(),
				s.brokenAttrs(), s.orderAttrs())
			last, lastAt = n, now
		}
	}
}
