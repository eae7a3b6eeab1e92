// Package ingest is dlq-handler's consumer of the dead-letter topic: it reads
// ecom.dlq.v1 (read_committed) in a consumer group, decodes each record as a
// DeadLetter through the registry, gathers polls into batches and writes each
// batch to the store together with the positions it covers, in one PostgreSQL
// transaction. On every assignment the positions stored in PostgreSQL replace
// the group's Kafka offsets, so the store, not Kafka, says what was stored:
// a batch is either wholly stored with its positions or not at all, and a
// restarted consumer reads again exactly what was not stored. Kafka's
// committed offsets only mirror the positions, for lag monitoring.
//
// Nothing on the topic is dropped: a record that is not a DeadLetter is stored
// as an undecodable one (store.Undecodable), a transient error (registry or
// PostgreSQL unreachable) is retried with backoff, and any other error stops
// the consumer before its positions move.
package ingest

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/ecomstream/platform/pkg/deadletter"
	"github.com/ecomstream/platform/pkg/events"
	"github.com/ecomstream/platform/pkg/stream"
	"github.com/ecomstream/platform/services/dlq-handler/internal/store"
)

// Decoder decodes a DeadLetter in the Confluent wire format (an
// *avroserde.Codec). Bad bytes are a *deadletter.Rejection; any other
// error is transient.
type Decoder interface {
	Decode(ctx context.Context, b []byte, v any) (int, error)
}

// Store is what the consumer needs of the store (a *store.Store).
type Store interface {
	Write(ctx context.Context, group string, rows []store.Row, next map[store.Partition]int64) (store.WriteResult, error)
	Positions(ctx context.Context, group string) (map[store.Partition]int64, error)
}

var _ Store = (*store.Store)(nil)

// Config is what the consumer reads and how.
type Config struct {
	Kafka       stream.Config
	Service     string // client id and the stage of its metrics
	Group       string
	Topic       string
	PIIEntities []string
	Codec       Decoder
	Meter       metric.Meter
	Metrics     *stream.Metrics
	Tracer      trace.Tracer // nil = no spans
	Log         *slog.Logger
}

// runbook explains every stop of the consumer.
const runbook = "docs/runbooks/dlq-handler.md"

// PositionError is a stored position that does not fit the Kafka log of its
// partition: reading from it would skip dead letters or wait for offsets
// that never come, so the consumer stops.
type PositionError struct {
	Topic     string
	Partition int32
	Problem   string
}

func (e *PositionError) Error() string {
	return fmt.Sprintf("stored position does not fit the log: %s/%d: %s (%s#position-mismatch)", e.Topic, e.Partition, e.Problem, runbook)
}

// Consumer is the consume-and-store loop.
type Consumer struct {
	cfg   Config
	st    Store
	cl    *kgo.Client
	adm   *kadm.Client
	ready chan struct{} // closed once cl and adm are set: group callbacks can run before New returns

	mu   sync.Mutex
	err  error                   // why the consumer must stop (set by the assignment callback)
	stop context.CancelCauseFunc // cancels Run's poll when err is set

	// The batch under construction; only Run touches it.
	rows    []store.Row
	next    map[store.Partition]int64
	records int
	first   time.Time
	due     time.Time

	stored, duplicates, undecodable, writeErrors metric.Int64Counter
}

// New builds the consumer; it connects in Run.
func New(cfg Config, st Store) (*Consumer, error) {
	if cfg.Tracer == nil {
		cfg.Tracer = noop.NewTracerProvider().Tracer("")
	}
	c := &Consumer{cfg: cfg, st: st, ready: make(chan struct{}), next: map[store.Partition]int64{}}
	var err error
	if c.stored, err = cfg.Meter.Int64Counter("ecom.dlq.dead_letters_stored",
		metric.WithDescription("Dead letters stored, by stage, reason code and rule id (a dead letter with several reasons counts under each distinct code and rule id).")); err != nil {
		return nil, err
	}
	if c.duplicates, err = cfg.Meter.Int64Counter("ecom.dlq.dead_letters_duplicate",
		metric.WithDescription("Dead letters read that were stored already (re-delivered: same dead_letter_id), not stored again.")); err != nil {
		return nil, err
	}
	if c.undecodable, err = cfg.Meter.Int64Counter("ecom.dlq.undecodable",
		metric.WithDescription("Records on the dead-letter topic that are not DeadLetters, stored as stage unknown, code UNDECODABLE.")); err != nil {
		return nil, err
	}
	if c.writeErrors, err = cfg.Meter.Int64Counter("ecom.dlq.store_write_errors",
		metric.WithDescription("Failed store writes (a batch of dead letters and its positions), each retried or fatal.")); err != nil {
		return nil, err
	}
	// Exported at 0 from the start: DeadLetterStoreWriteErrors rates it.
	c.writeErrors.Add(context.Background(), 0)
	base, err := cfg.Kafka.ClientOpts(cfg.Service)
	if err != nil {
		return nil, err
	}
	opts := append(base,
		kgo.ConsumerGroup(cfg.Group),
		kgo.ConsumeTopics(cfg.Topic),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		// resume sets every assigned partition's offset. An offset that falls
		// out of range afterwards (retention deleted unread dead letters) is
		// an error, never a silent reset.
		kgo.ConsumeResetOffset(kgo.NoResetOffset()),
		kgo.AdjustFetchOffsetsFn(c.resume),
		kgo.WithLogger(stream.Logger(cfg.Log)),
	)
	opts = append(opts, cfg.Kafka.FetchCadenceOpts()...)
	opts = append(opts, cfg.Kafka.GroupOpts(cfg.Kafka.DefaultTransactionalID(cfg.Service))...)
	if c.cl, err = kgo.NewClient(opts...); err != nil {
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	c.adm = kadm.NewClient(c.cl)
	close(c.ready)
	return c, nil
}

// Admin is a kadm client sharing the consumer's connections.
func (c *Consumer) Admin() *kadm.Client { return c.adm }

// Ping checks the brokers answer; used by /readyz.
func (c *Consumer) Ping(ctx context.Context) error { return c.cl.Ping(ctx) }

// fail records why the consumer must stop and wakes Run; the first reason wins.
func (c *Consumer) fail(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil {
		c.err = err
	}
	if c.stop != nil {
		c.stop(err)
	}
}

func (c *Consumer) failed() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// StartOf decides where a partition starts: at its stored position when it
// lies within the log [start, end], at the log start when none is stored (a
// new group, topic or partition: the dead-letter topic is all this service
// reads, so all of it is stored). A stored position outside the log is a
// problem, never a silent start elsewhere.
func StartOf(pos int64, stored bool, start, end int64) (next int64, problem string) {
	switch {
	case !stored:
		return start, ""
	case pos > end:
		return 0, fmt.Sprintf("the stored next offset %d is beyond the log end %d: the topic was recreated or truncated, or this is another cluster", pos, end)
	case pos < start:
		return 0, fmt.Sprintf("the stored next offset %d is below the log start %d: dead letters %d..%d were deleted by the topic's retention before they were stored", pos, start, pos, start-1)
	default:
		return pos, ""
	}
}

// resume runs on every assignment of new partitions, before any of their
// records is fetched: the store's positions replace the group's Kafka offsets.
func (c *Consumer) resume(ctx context.Context, assigned map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error) {
	select {
	case <-c.ready:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if err := c.failed(); err != nil {
		return nil, err
	}
	topics := slices.Sorted(maps.Keys(assigned))
	var pos map[store.Partition]int64
	var starts, ends kadm.ListedOffsets
	err := retry(ctx, c.cfg.Kafka, func() error {
		var err error
		if pos, err = c.st.Positions(ctx, c.cfg.Group); err != nil {
			if !store.IsTransient(err) {
				return permanent{err}
			}
			c.cfg.Log.WarnContext(ctx, "reading the stored positions failed; retrying", "err", err)
			return err
		}
		if starts, err = c.adm.ListStartOffsets(ctx, topics...); err == nil {
			ends, err = c.adm.ListEndOffsets(ctx, topics...)
		}
		if err != nil {
			c.cfg.Log.WarnContext(ctx, "listing the log offsets failed; retrying", "err", err)
		}
		return err
	})
	if err != nil {
		if ctx.Err() == nil {
			c.fail(fmt.Errorf("on assignment: %w", err))
		}
		return nil, err
	}
	for _, topic := range topics {
		for _, part := range slices.Sorted(maps.Keys(assigned[topic])) {
			st, ok1 := starts.Lookup(topic, part)
			en, ok2 := ends.Lookup(topic, part)
			var lerr error
			switch {
			case !ok1 || !ok2:
				lerr = fmt.Errorf("log offsets of %s/%d: not in the brokers' answer", topic, part)
			case st.Err != nil:
				lerr = fmt.Errorf("log start offset of %s/%d: %w", topic, part, st.Err)
			case en.Err != nil:
				lerr = fmt.Errorf("log end offset of %s/%d: %w", topic, part, en.Err)
			}
			if lerr != nil {
				c.fail(lerr)
				return nil, lerr
			}
			p, ok := pos[store.Partition{Topic: topic, Partition: part}]
			next, problem := StartOf(p, ok, st.Offset, en.Offset)
			if problem != "" {
				perr := &PositionError{Topic: topic, Partition: part, Problem: problem}
				c.fail(perr)
				return nil, perr
			}
			// Epoch -1: the store's offset, not a Kafka commit, so no leader-epoch check.
			assigned[topic][part] = kgo.NewOffset().At(next).WithEpoch(-1)
		}
	}
	c.cfg.Log.InfoContext(ctx, "partitions assigned; resuming from the stored positions", "assigned", len(assigned), "stored", len(pos))
	return assigned, nil
}

// Run consumes until ctx is done or the consumer must stop (a
// *PositionError, a store error retrying cannot fix, a fatal Kafka error).
//
// Polls are gathered into a batch until it holds Kafka.MaxPollRecords records
// or Kafka.CommitInterval has passed since its first record; then it is
// written once. Rebalances wait while a batch is open (BlockRebalanceOnPoll),
// so a partition is never revoked with unwritten records. On shutdown an open
// batch is not written: nothing of it is stored, and it is read again on start.
func (c *Consumer) Run(ctx context.Context) error {
	defer c.cl.CloseAllowingRebalance()
	runCtx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	c.mu.Lock()
	c.stop = stop
	c.mu.Unlock()
	limit := max(c.cfg.Kafka.MaxPollRecords, 1)
	for {
		if err := c.failed(); err != nil {
			return err
		}
		deadline := time.Now().Add(time.Minute)
		if c.records > 0 && c.cfg.Kafka.CommitInterval > 0 {
			deadline = c.due
		}
		pollCtx, cancelPoll := context.WithDeadline(runCtx, deadline)
		fetches := c.cl.PollRecords(pollCtx, limit-c.records)
		cancelPoll()
		if err := c.failed(); err != nil {
			return err
		}
		if fetches.IsClientClosed() || ctx.Err() != nil {
			return nil // an open batch is not written: it is read again on start
		}
		var fetchErr error
		fetches.EachError(func(topic string, p int32, err error) {
			if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
				return // shutdown, or the batch interval ended the poll
			}
			c.cfg.Log.WarnContext(ctx, "fetch error", "topic", topic, "partition", p, "err", err)
			if errors.Is(err, kerr.OffsetOutOfRange) {
				err = &PositionError{Topic: topic, Partition: p, Problem: "the next offset to read fell out of the log (dead letters deleted by the topic's retention before they were stored): " + err.Error()}
			}
			if fetchErr == nil || !errors.As(fetchErr, new(*PositionError)) {
				fetchErr = err
			}
		})
		var perr *PositionError
		if errors.As(fetchErr, &perr) {
			return perr
		}
		if fetchErr != nil && stream.IsFatal(fetchErr) {
			return fmt.Errorf("kafka: %w", fetchErr)
		}
		if recs := fetches.Records(); len(recs) > 0 {
			if c.records == 0 {
				c.first = time.Now()
				c.due = stream.BatchDeadline(recs[0].Timestamp, c.first, c.cfg.Kafka.CommitInterval)
			}
			if err := c.add(ctx, recs); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
		}
		if c.records > 0 && (c.records >= limit || c.cfg.Kafka.CommitInterval <= 0 || !time.Now().Before(c.due)) {
			if err := c.write(ctx); err != nil {
				if ctx.Err() != nil {
					return nil // nothing of the batch is stored: it is read again on start
				}
				return err
			}
		}
		if c.records == 0 {
			c.cl.AllowRebalance()
		}
	}
}

// add decodes recs into the batch under construction.
func (c *Consumer) add(ctx context.Context, recs []*kgo.Record) error {
	for _, rec := range recs {
		var row store.Row
		err := retry(ctx, c.cfg.Kafka, func() error {
			var err error
			row, err = c.decode(ctx, rec)
			if err != nil {
				c.cfg.Log.WarnContext(ctx, "decoding a dead letter failed (registry unreachable?); retrying", "err", err,
					"partition", rec.Partition, "offset", rec.Offset)
				c.cfg.Metrics.Transient(ctx, c.cfg.Service)
			}
			return err
		})
		if err != nil {
			return err
		}
		c.rows = append(c.rows, row)
		c.next[store.Partition{Topic: rec.Topic, Partition: rec.Partition}] = rec.Offset + 1
		c.records++
	}
	return nil
}

// decode is rec's row: its DeadLetter's, or an undecodable one when rec is
// not a DeadLetter. Only a transient error (the registry cannot be asked
// for the writer schema) is returned.
func (c *Consumer) decode(ctx context.Context, rec *kgo.Record) (store.Row, error) {
	var dl events.DeadLetter
	_, err := c.cfg.Codec.Decode(ctx, rec.Value, &dl)
	if err == nil && dl.DeadLetterID == "" {
		err = deadletter.Rejectf(deadletter.Undecodable, "dead_letter_id", "a DeadLetter without dead_letter_id")
	}
	if err == nil {
		return store.FromDeadLetter(&dl, rec.Partition, rec.Offset, c.cfg.PIIEntities), nil
	}
	rej, ok := deadletter.AsRejection(err)
	if !ok {
		return store.Row{}, err
	}
	c.undecodable.Add(ctx, 1)
	c.cfg.Log.WarnContext(ctx, "record on the dead-letter topic is not a DeadLetter; stored as undecodable",
		"partition", rec.Partition, "offset", rec.Offset, "reason", rej.Error())
	hdrs := make([]store.Header, 0, len(rec.Headers))
	for _, h := range rec.Headers {
		hdrs = append(hdrs, store.Header{Key: h.Key, Value: base64.StdEncoding.EncodeToString(h.Value)})
	}
	return store.Undecodable(rec.Topic, rec.Partition, rec.Offset, rec.Timestamp, rec.Key, rec.Value, hdrs, rej.Error(), c.cfg.PIIEntities), nil
}

// write stores the batch under construction with its positions, then
// mirrors the positions to Kafka, and empties the batch.
func (c *Consumer) write(ctx context.Context) error {
	ctx, span := c.cfg.Tracer.Start(ctx, "store dead_letters", trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("db.system", "postgresql"), attribute.String("db.collection.name", "dead_letters"),
			attribute.Int("messaging.batch.message_count", c.records)))
	defer span.End()
	var res store.WriteResult
	err := retry(ctx, c.cfg.Kafka, func() error {
		var err error
		res, err = c.st.Write(ctx, c.cfg.Group, c.rows, c.next)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return permanent{ctx.Err()}
		}
		c.writeErrors.Add(ctx, 1)
		if !store.IsTransient(err) {
			return permanent{err}
		}
		c.cfg.Log.WarnContext(ctx, "store write failed; retrying", "err", err, "dead_letters", len(c.rows))
		c.cfg.Metrics.Transient(ctx, c.cfg.Service)
		return err
	})
	if err != nil {
		span.RecordError(err)
		return fmt.Errorf("store write: %w (%s#store-write-errors)", err, runbook)
	}
	for _, r := range res.Inserted {
		for _, p := range r.ReasonPairs() {
			c.stored.Add(ctx, 1, metric.WithAttributes(attribute.String("stage", r.Stage), attribute.String("code", p[0]), attribute.String("rule_id", p[1])))
		}
	}
	if res.Duplicates > 0 {
		c.duplicates.Add(ctx, int64(res.Duplicates))
	}
	span.SetAttributes(attribute.Int("ecom.dlq.inserted", len(res.Inserted)), attribute.Int("ecom.dlq.duplicates", res.Duplicates),
		attribute.Int("ecom.dlq.failed_again", res.FailedAgain))
	c.cfg.Metrics.Batch(ctx, c.cfg.Service, c.records, true, time.Since(c.first))

	// Kafka's committed offsets only mirror the store (for lag monitoring):
	// losing this commit loses nothing.
	offsets := map[string]map[int32]kgo.EpochOffset{}
	for p, n := range c.next {
		if offsets[p.Topic] == nil {
			offsets[p.Topic] = map[int32]kgo.EpochOffset{}
		}
		offsets[p.Topic][p.Partition] = kgo.EpochOffset{Epoch: -1, Offset: n}
	}
	c.cl.CommitOffsets(ctx, offsets, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, _ *kmsg.OffsetCommitResponse, err error) {
		if err != nil && ctx.Err() == nil {
			c.cfg.Log.DebugContext(ctx, "mirror commit to kafka failed", "err", err)
		}
	})
	c.rows, c.records = c.rows[:0], 0
	c.next = map[store.Partition]int64{}
	return nil
}

// permanent stops retry.
type permanent struct{ error }

func (p permanent) Unwrap() error { return p.error }

// retry runs fn until it succeeds, returns a permanent error, or ctx ends,
// backing off (capped, jittered) between attempts.
func retry(ctx context.Context, cfg stream.Config, fn func() error) error {
	b := stream.NewBackoff(cfg)
	for {
		err := fn()
		if err == nil {
			return nil
		}
		var p permanent
		if errors.As(err, &p) {
			return p.error
		}
		if werr := b.Wait(ctx); werr != nil {
			return errors.Join(err, werr)
		}
	}
}
