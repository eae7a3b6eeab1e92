package reconcile

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ecomstream/platform/pkg/stream"
)

// Log reads Kafka topics for the reconciliation: read_committed, so records of aborted
// transactions (a killed stage's half-written batch) are not counted, and by record, never by
// offset arithmetic (commit markers take offsets too).
type Log struct {
	Opts []kgo.Opt // seed brokers and the rest of the connection; the consumer options are Log's
	Adm  *kadm.Client
	// Lateness is how far before a window's start a topic is read from: records carry their
	// producer's timestamp, which is not monotonic in the log.
	Lateness time.Duration
	// Idle ends a read when no record arrived for this long, for the partitions still short of
	// their end offset: their last offsets are aborted records or markers, which a read_committed
	// fetch never shows (default 5 s; before the first record of the read, 3 x Idle, since a new
	// client's first fetch on a loaded broker can take seconds). A partition whose last record
	// arrives is done without waiting: at end-1, or at end-2 for a transactional record (its
	// commit marker is the last offset).
	Idle time.Duration
}

// Read calls fn with every committed record of topic whose timestamp is in w (timestamps at
// millisecond precision, as Kafka keeps them), from the offset of w.From-Lateness to the
// read_committed end offsets listed when Read starts.
func (l *Log) Read(ctx context.Context, topic string, w Window, fn func(*kgo.Record) error) error {
	ends, err := stream.CommittedEnds(ctx, l.Adm, topic)
	if err != nil {
		return fmt.Errorf("end offsets of %s: %w", topic, err)
	}
	starts, err := l.Adm.ListOffsetsAfterMilli(ctx, w.From.Add(-l.Lateness).UnixMilli(), topic)
	if err != nil {
		return fmt.Errorf("start offsets of %s: %w", topic, err)
	}
	if err := starts.Error(); err != nil {
		return fmt.Errorf("start offsets of %s: %w", topic, err)
	}
	from := map[int32]kgo.Offset{}
	left := map[int32]int64{} // partition -> end offset still to reach
	ends.Each(func(e kadm.ListedOffset) {
		s, ok := starts.Lookup(topic, e.Partition)
		start := int64(0)
		if ok && s.Offset >= 0 {
			start = s.Offset
		}
		if start < e.Offset {
			from[e.Partition] = kgo.NewOffset().At(start)
			left[e.Partition] = e.Offset
		}
	})
	if len(left) == 0 {
		return nil
	}
	cl, err := kgo.NewClient(append(append([]kgo.Opt{}, l.Opts...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: from}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()))...)
	if err != nil {
		return fmt.Errorf("kafka client: %w", err)
	}
	defer cl.Close()
	idle := l.Idle
	if idle <= 0 {
		idle = 5 * time.Second
	}
	seen := false
	for len(left) > 0 {
		wait := idle
		if !seen {
			wait = 3 * idle
		}
		pctx, cancel := context.WithTimeout(ctx, wait)
		fs := cl.PollFetches(pctx)
		cancel()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var ferr error
		fs.EachError(func(_ string, _ int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
				ferr = err
			}
		})
		if ferr != nil {
			return fmt.Errorf("read %s: %w", topic, ferr)
		}
		recs := fs.Records()
		if len(recs) == 0 {
			return nil // idle: what is left below the ends are markers and aborted records
		}
		seen = true
		for _, r := range recs {
			end, ok := left[r.Partition]
			if !ok || r.Offset >= end {
				continue // past the listed end: not part of this reading
			}
			if w.Contains(r.Timestamp) {
				if err := fn(r); err != nil {
					return err
				}
			}
			if r.Offset+1 >= end || (r.Attrs.IsTransactional() && r.Offset+2 >= end) {
				delete(left, r.Partition)
			}
		}
	}
	return nil
}

// Consumed returns group's committed offsets of topic (the next offset it will read, by
// partition); a partition without a commit is absent (nothing of it consumed).
func (l *Log) Consumed(ctx context.Context, group, topic string) (map[int32]int64, error) {
	offs, err := l.Adm.FetchOffsetsForTopics(ctx, group, topic)
	if errors.Is(err, kerr.GroupIDNotFound) {
		return map[int32]int64{}, nil // a group that never committed: nothing consumed yet
	}
	if err != nil {
		return nil, fmt.Errorf("committed offsets of %s on %s: %w", group, topic, err)
	}
	out := map[int32]int64{}
	offs.Each(func(o kadm.OffsetResponse) {
		if o.Err == nil && o.At >= 0 && o.Topic == topic {
			out[o.Partition] = o.At
		}
	})
	return out, nil
}
