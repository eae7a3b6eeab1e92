// Package cursor keeps the poller's position in the storefront's listing in a
// compacted Kafka topic that only ingest-orders writes. The cursor record is
// produced in the same transaction as the orders it covers (KIP-618's
// source-offset handling), so it never moves without its orders; it is read
// back with read_committed, after the transactional producer has been
// initialised, which fences an older instance and aborts its open transaction.
package cursor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ecomstream/platform/pkg/stream"
)

// Cursor is a position: every order version with updated_at before Since
// (less the lateness overlap) has been produced.
type Cursor struct {
	Since     time.Time `json:"since"`
	Committed time.Time `json:"committed_at"`
}

// Topic is the spec of the state topic: compacted, one partition (a cursor
// is read whole at start, so there is nothing to spread).
func Topic(name string) stream.TopicSpec {
	return stream.TopicSpec{Name: name, Partitions: 1, Configs: map[string]string{"cleanup.policy": "compact"}}
}

// TransactionalID is the fixed transactional id of the writer of cursor
// name: the same in every replica, so initialising it fences any other.
func TransactionalID(service, name string) string { return service + "-cursor-" + name }

// Record is the cursor as a record of topic, keyed by the cursor's name.
func Record(topic, name string, c Cursor) (*kgo.Record, error) {
	v, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("cursor: %w", err)
	}
	return &kgo.Record{Topic: topic, Key: []byte(name), Value: v}, nil
}

// Fence initialises the transactional producer cl (InitProducerId): from then
// on an older producer with the same transactional id is fenced and its open
// transaction aborted, so what Load reads next is final.
func Fence(ctx context.Context, cl *kgo.Client) error {
	if _, _, err := cl.ProducerID(ctx); err != nil {
		return fmt.Errorf("cursor: init transactional producer: %w", err)
	}
	return nil
}

// idle is how long Load waits for more records once it has read up to what
// it can see: the offsets after the last data record may be transaction
// markers or aborted records, which a read_committed consumer never returns.
// Stopping early only makes the cursor older (more repeats), never newer.
const idle = time.Second

// idleGrace is how long Load reads before an idle poll may end it: a new
// client's first fetch on a loaded machine can take longer than idle. A
// partition whose last transaction committed ends Load at its last record.
const idleGrace = 3 * time.Second

// Load reads cursor name from topic with read_committed; ok is false when it
// was never committed. opts are the connection options.
func Load(ctx context.Context, opts []kgo.Opt, topic, name string) (c Cursor, ok bool, err error) {
	cl, err := kgo.NewClient(append(opts,
		kgo.ConsumeTopics(topic),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(200*time.Millisecond),
	)...)
	if err != nil {
		return c, false, fmt.Errorf("cursor: %w", err)
	}
	defer cl.Close()
	ends, err := stream.CommittedEnds(ctx, kadm.NewClient(cl), topic)
	if err != nil {
		return c, false, fmt.Errorf("cursor: end offsets of %s: %w", topic, err)
	}
	want := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			want[o.Partition] = o.Offset
		}
	})
	start := time.Now()
	for len(want) > 0 {
		pctx, cancel := context.WithTimeout(ctx, idle)
		fs := cl.PollFetches(pctx)
		cancel()
		if ctx.Err() != nil {
			return c, false, fmt.Errorf("cursor: %w", ctx.Err())
		}
		n := 0
		for _, fe := range fs.Errors() {
			if !errors.Is(fe.Err, context.DeadlineExceeded) && !errors.Is(fe.Err, context.Canceled) {
				return c, false, fmt.Errorf("cursor: read %s: %w", topic, fe.Err)
			}
		}
		fs.EachRecord(func(r *kgo.Record) {
			n++
			// The end is one past the last record, or past the commit marker after it
			// when it was written in a transaction (as every cursor record is).
			if r.Offset+1 >= want[r.Partition] || r.Attrs.IsTransactional() && r.Offset+2 >= want[r.Partition] {
				delete(want, r.Partition)
			}
			if string(r.Key) != name {
				return
			}
			if r.Value == nil { // tombstone: an operator reset the cursor
				c, ok = Cursor{}, false
				return
			}
			var v Cursor
			if json.Unmarshal(r.Value, &v) == nil {
				c, ok = v, true
			}
		})
		if n == 0 && time.Since(start) > idleGrace {
			break
		}
	}
	return c, ok, nil
}
