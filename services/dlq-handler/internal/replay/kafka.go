package replay

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ecomstream/platform/services/dlq-handler/internal/store"
)

// Cluster is the Kafka side of the replay: produce, and the offsets the
// resolver compares. *Kafka is the real one.
type Cluster interface {
	// Produce sends r (asynchronously; promise is called once).
	Produce(ctx context.Context, r *kgo.Record, promise func(*kgo.Record, error))
	// Flush waits for every produced record's promise.
	Flush(ctx context.Context) error
	// Committed returns group's committed offsets (next to read); a group
	// without offsets has none.
	Committed(ctx context.Context, group string) (map[store.Partition]int64, error)
	// Ends returns topic's end offsets (high watermarks) by partition.
	Ends(ctx context.Context, topic string) (map[int32]int64, error)
	// Stable returns topic's last stable offsets by partition: below them
	// every transaction is decided.
	Stable(ctx context.Context, topic string) (map[int32]int64, error)
	// HasRecords reports whether topic holds a record a read_committed
	// reader sees at an offset in [from[p], to[p]) of some partition p (the
	// offsets between may be transaction markers and aborted records only).
	HasRecords(ctx context.Context, topic string, from, to map[int32]int64) (bool, error)
}

// Kafka is Cluster over a franz-go client with an idempotent producer.
type Kafka struct {
	opts []kgo.Opt
	cl   *kgo.Client
	adm  *kadm.Client
	// Idle is how long HasRecords waits for a record once it read what it
	// could see.
	Idle time.Duration
}

// NewKafka connects with opts (brokers, TLS, SASL: stream.Config.ClientOpts).
// The producer is idempotent (franz-go's default, acks=all): a retried
// produce is written once.
func NewKafka(opts []kgo.Opt) (*Kafka, error) {
	cl, err := kgo.NewClient(append(opts[:len(opts):len(opts)],
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordDeliveryTimeout(30*time.Second),
		kgo.UnknownTopicRetries(3),
	)...)
	if err != nil {
		return nil, fmt.Errorf("replay kafka client: %w", err)
	}
	return &Kafka{opts: opts, cl: cl, adm: kadm.NewClient(cl), Idle: time.Second}, nil
}

// Close closes the client.
func (k *Kafka) Close() { k.cl.Close() }

// Ping checks the brokers answer.
func (k *Kafka) Ping(ctx context.Context) error { return k.cl.Ping(ctx) }

// Produce implements Cluster.
func (k *Kafka) Produce(ctx context.Context, r *kgo.Record, promise func(*kgo.Record, error)) {
	k.cl.Produce(ctx, r, promise)
}

// Flush implements Cluster.
func (k *Kafka) Flush(ctx context.Context) error { return k.cl.Flush(ctx) }

// Committed implements Cluster.
func (k *Kafka) Committed(ctx context.Context, group string) (map[store.Partition]int64, error) {
	resp, err := k.adm.FetchOffsets(ctx, group)
	if err == nil {
		err = resp.Error()
	}
	if errors.Is(err, kerr.GroupIDNotFound) {
		return map[store.Partition]int64{}, nil // never committed
	}
	if err != nil {
		return nil, fmt.Errorf("offsets of group %s: %w", group, err)
	}
	out := map[store.Partition]int64{}
	resp.Each(func(o kadm.OffsetResponse) {
		if o.At >= 0 {
			out[store.Partition{Topic: o.Topic, Partition: o.Partition}] = o.At
		}
	})
	return out, nil
}

// Ends implements Cluster.
func (k *Kafka) Ends(ctx context.Context, topic string) (map[int32]int64, error) {
	ends, err := k.adm.ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("end offsets of %s: %w", topic, err)
	}
	out := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) { out[o.Partition] = o.Offset })
	return out, nil
}

// Stable implements Cluster.
func (k *Kafka) Stable(ctx context.Context, topic string) (map[int32]int64, error) {
	lso, err := k.adm.ListCommittedOffsets(ctx, topic)
	if err == nil {
		err = lso.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("stable offsets of %s: %w", topic, err)
	}
	out := map[int32]int64{}
	lso.Each(func(o kadm.ListedOffset) { out[o.Partition] = o.Offset })
	return out, nil
}

// errUnread is HasRecords' error when it could not read a range to its end
// (no answer within Idle): what it did not read may hold a dead letter.
var errUnread = errors.New("not read to the end")

// HasRecords implements Cluster: it reads the ranges with read_committed,
// keeping the transaction markers, and stops at the first record in a
// range, or once every range was read to its end: a record (or marker) at
// to-1 or beyond was seen. Only an answered fetch counts as having seen
// the offsets: a read that gets nothing within Idle returns errUnread, not
// "only markers" (a slow or absent broker would otherwise pass for an
// empty tail). Each range must be below the last stable offset (every
// transaction in it decided, so the marker of an aborted record at to-1
// is written, at to or beyond).
func (k *Kafka) HasRecords(ctx context.Context, topic string, from, to map[int32]int64) (bool, error) {
	parts := map[int32]kgo.Offset{}
	for p, f := range from {
		if f < to[p] {
			parts[p] = kgo.NewOffset().At(f)
		}
	}
	if len(parts) == 0 {
		return false, nil
	}
	cl, err := kgo.NewClient(append(k.opts[:len(k.opts):len(k.opts)],
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: parts}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(),
		kgo.FetchMaxWait(200*time.Millisecond))...)
	if err != nil {
		return false, fmt.Errorf("read the tail of %s: %w", topic, err)
	}
	defer cl.Close()
	reached := map[int32]bool{}
	for {
		pctx, cancel := context.WithTimeout(ctx, k.Idle)
		fs := cl.PollFetches(pctx)
		cancel()
		if err := ctx.Err(); err != nil {
			return false, err
		}
		for _, fe := range fs.Errors() {
			if !errors.Is(fe.Err, context.DeadlineExceeded) {
				return false, fmt.Errorf("read the tail of %s: %w", topic, fe.Err)
			}
		}
		found := false
		fs.EachRecord(func(r *kgo.Record) {
			end, ok := to[r.Partition]
			if !ok {
				return
			}
			if r.Offset >= end-1 {
				reached[r.Partition] = true
			}
			if !r.Attrs.IsControl() && r.Offset >= from[r.Partition] && r.Offset < end {
				found = true
			}
		})
		if found {
			return true, nil
		}
		if len(reached) == len(parts) {
			return false, nil // only markers or aborted records up to the ends
		}
		if fs.NumRecords() == 0 {
			return false, fmt.Errorf("read the tail of %s: %d of %d partitions %w within %s", topic, len(parts)-len(reached), len(parts), errUnread, k.Idle)
		}
	}
}
