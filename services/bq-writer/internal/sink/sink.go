// Package sink is bq-writer's consume loop: it reads valid ClickEvents
// (read_committed), writes each polled batch to the warehouse together with
// the Kafka positions it covers, and resumes from the positions stored in the
// warehouse. That makes the warehouse write exactly-once without Kafka
// transactions: a batch is either wholly in the warehouse with its positions
// or not at all, and a restarted writer seeks to what the warehouse says.
//
// Records that cannot be decoded are dead-lettered (produced and acknowledged)
// before the batch that covers their offsets is committed, so nothing is
// lost; after a crash in between, the same dead letter (same deterministic
// dead_letter_id) may be written twice and the dead-letter store dedups it.
package sink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/plugin/kprom"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/ecomstream/platform/pkg/avroserde"
	"github.com/ecomstream/platform/pkg/deadletter"
	"github.com/ecomstream/platform/pkg/events"
	"github.com/ecomstream/platform/pkg/stream"
	protoavro "github.com/ecomstream/platform/proto/avro"
	"github.com/ecomstream/platform/services/bq-writer/internal/warehouse"
)

// Config is what the sink consumes and how.
type Config struct {
	Kafka   stream.Config
	Group   string
	Topic   string
	Stage   string
	DLQ     stream.Encoder
	Codec   *avroserde.Codec
	Tracer  trace.Tracer
	Meter   metric.Meter
	Metrics *stream.Metrics
	Log     *slog.Logger
	Prom    prometheus.Registerer
}

// Sink is the consume-and-write loop.
type Sink struct {
	cfg     Config
	wh      warehouse.Warehouse
	cl      *kgo.Client
	adm     *kadm.Client
	handler stream.Handler

	batch   warehouse.Batch // the batch under construction; only Run touches it
	rowRecs []*kgo.Record   // the record of each row of batch, for dead-lettering a bad row
	links   []trace.Link    // the batch span's links: the process spans of (up to maxLinks) rows

	rows     metric.Int64Counter
	bytes    metric.Int64Counter
	writeDur metric.Float64Histogram
	latency  metric.Float64Histogram
	attrs    map[string]metric.AddOption
}

// New builds the sink; it does not connect until Run.
func New(cfg Config, wh warehouse.Warehouse) (*Sink, error) {
	s := &Sink{cfg: cfg, wh: wh, attrs: map[string]metric.AddOption{}}
	var err error
	if s.rows, err = cfg.Meter.Int64Counter("ecom.warehouse.rows", metric.WithDescription("Rows handed to the warehouse, by table and result (inserted, duplicate, stale).")); err != nil {
		return nil, err
	}
	if s.bytes, err = cfg.Meter.Int64Counter("ecom.warehouse.bytes", metric.WithUnit("By"), metric.WithDescription("Approximate bytes inserted, by table.")); err != nil {
		return nil, err
	}
	if s.writeDur, err = cfg.Meter.Float64Histogram("ecom.warehouse.write.duration", metric.WithUnit("s"),
		metric.WithDescription("Time of one atomic warehouse write (rows + positions)."),
		metric.WithExplicitBucketBoundaries(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)); err != nil {
		return nil, err
	}
	if s.latency, err = cfg.Meter.Float64Histogram("ecom.event.latency", metric.WithUnit("s"),
		metric.WithDescription("From ingest-clickstream reading an event (received_at) to its warehouse commit."),
		metric.WithExplicitBucketBoundaries(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)); err != nil {
		return nil, err
	}
	for _, r := range []string{"inserted", "duplicate", "stale"} {
		s.attrs[r] = metric.WithAttributeSet(attribute.NewSet(attribute.String("table", "fact_events"), attribute.String("result", r)))
	}
	s.attrs["table"] = metric.WithAttributeSet(attribute.NewSet(attribute.String("table", "fact_events")))

	s.handler = stream.Chain(s.decode, stream.Standard(cfg.Stage, cfg.Group, cfg.Tracer, cfg.DLQ, stream.DeadLetterLimit(cfg.Kafka), cfg.Metrics, cfg.Log)...)

	base, err := cfg.Kafka.ClientOpts(cfg.Stage)
	if err != nil {
		return nil, err
	}
	opts := append(base,
		kgo.ConsumerGroup(cfg.Group),
		kgo.ConsumeTopics(cfg.Topic),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.AdjustFetchOffsetsFn(s.resume),
		// Dead letters: idempotent, acknowledged by all in-sync replicas.
		kgo.RequiredAcks(kgo.AllISRAcks()),
	)
	opts = append(opts, cfg.Kafka.GroupOpts(cfg.Kafka.DefaultTransactionalID(cfg.Stage))...)
	if cfg.Prom != nil {
		opts = append(opts, kgo.WithHooks(kprom.NewMetrics("kafka", kprom.Registerer(cfg.Prom), kprom.Subsystem("client"))))
	}
	if s.cl, err = kgo.NewClient(opts...); err != nil {
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	s.adm = kadm.NewClient(s.cl)
	return s, nil
}

// Admin is a kadm client sharing the sink's connections.
func (s *Sink) Admin() *kadm.Client { return s.adm }

// Ping checks the brokers answer.
func (s *Sink) Ping(ctx context.Context) error { return s.cl.Ping(ctx) }

// resume replaces the group's Kafka offsets with the warehouse's positions:
// the warehouse, not Kafka, is the source of truth of what was written.
func (s *Sink) resume(ctx context.Context, assigned map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error) {
	var pos map[warehouse.Partition]int64
	err := retry(ctx, s.cfg.Kafka, func() error {
		var err error
		pos, err = s.wh.Positions(ctx, s.cfg.Group)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read warehouse positions: %w", err)
	}
	for topic, parts := range assigned {
		for p := range parts {
			if next, ok := pos[warehouse.Partition{Topic: topic, Partition: p}]; ok {
				parts[p] = kgo.NewOffset().At(next)
			}
		}
	}
	s.cfg.Log.InfoContext(ctx, "partitions assigned; resuming from warehouse positions", "assigned", len(assigned), "stored", len(pos))
	return assigned, nil
}

// decode is the inner handler: a valid record becomes a row of the batch
// under construction; a bad one is rejected (and dead-lettered by the
// middleware).
func (s *Sink) decode(ctx context.Context, rec *kgo.Record) ([]*kgo.Record, error) {
	var ev events.ClickEvent
	if _, err := s.cfg.Codec.Decode(ctx, rec.Value, &ev); err != nil {
		return nil, err
	}
	row := warehouse.EventRow{ClickEvent: ev, SourceTopic: rec.Topic, SourcePartition: rec.Partition, SourceOffset: rec.Offset}
	if sc := trace.SpanContextFromContext(ctx); sc.HasTraceID() {
		row.TraceID = sc.TraceID().String()
	}
	s.batch.Events = append(s.batch.Events, row)
	s.rowRecs = append(s.rowRecs, rec)
	if len(s.links) < maxLinks {
		s.links = append(s.links, trace.LinkFromContext(ctx))
	}
	return nil, nil
}

// Run consumes until ctx is done.
func (s *Sink) Run(ctx context.Context) error {
	// BlockRebalanceOnPoll: leaving the group waits for AllowRebalance.
	defer s.cl.CloseAllowingRebalance()
	for {
		fetches := s.cl.PollRecords(ctx, s.cfg.Kafka.MaxPollRecords)
		if fetches.IsClientClosed() || ctx.Err() != nil {
			return nil
		}
		var fetchErr error
		fetches.EachError(func(topic string, p int32, err error) {
			if !errors.Is(err, context.Canceled) {
				s.cfg.Log.WarnContext(ctx, "fetch error", "topic", topic, "partition", p, "err", err)
				fetchErr = err
			}
		})
		if fetchErr != nil && errors.Is(fetchErr, kgo.ErrClientClosed) {
			return nil
		}
		if fetchErr != nil && stream.IsFatal(fetchErr) {
			return fmt.Errorf("kafka: %w (is another bq-writer running with the same KAFKA_TRANSACTIONAL_ID / group instance id?)", fetchErr)
		}
		recs := fetches.Records()
		if len(recs) > 0 {
			if err := s.write(ctx, recs); err != nil {
				if ctx.Err() != nil {
					return nil // shutting down mid-batch: nothing committed, it is replayed on start
				}
				return err
			}
		}
		s.cl.AllowRebalance()
	}
}

// write turns recs into one atomic warehouse batch.
func (s *Sink) write(ctx context.Context, recs []*kgo.Record) error {
	start := time.Now()
	s.batch = warehouse.Batch{Events: make([]warehouse.EventRow, 0, len(recs)), Positions: map[warehouse.Partition]int64{}}
	s.rowRecs, s.links = s.rowRecs[:0], s.links[:0]
	var dlqs []*kgo.Record
	for _, rec := range recs {
		var outs []*kgo.Record
		err := retry(ctx, s.cfg.Kafka, func() error {
			n := len(s.batch.Events)
			var err error
			outs, err = s.handler(ctx, rec)
			if err != nil { // a transient error (Measure counted it): undo and retry
				s.batch.Events = s.batch.Events[:n]
				s.rowRecs = s.rowRecs[:n]
				s.links = s.links[:min(n, len(s.links))]
			}
			return err
		})
		if err != nil {
			return err
		}
		dlqs = append(dlqs, outs...)
		s.batch.Positions[warehouse.Partition{Topic: rec.Topic, Partition: rec.Partition}] = rec.Offset + 1
	}

	// Dead letters are durable before the positions that cover them move.
	if len(dlqs) > 0 {
		if err := retry(ctx, s.cfg.Kafka, func() error { return stream.ProduceDeadLetters(ctx, s.cl, dlqs) }); err != nil {
			return fmt.Errorf("produce dead letters: %w", err)
		}
	}

	ctx, span := s.cfg.Tracer.Start(ctx, "write fact_events", trace.WithSpanKind(trace.SpanKindClient), trace.WithLinks(s.links...),
		trace.WithAttributes(attribute.String("db.system", "duckdb"), attribute.String("db.collection.name", "fact_events"),
			attribute.Int("messaging.batch.message_count", len(recs))))
	defer span.End()
	var res warehouse.WriteResult
	err := retry(ctx, s.cfg.Kafka, func() error {
		wstart := time.Now()
		var err error
		res, err = s.wh.Write(ctx, s.cfg.Group, s.batch)
		s.writeDur.Record(ctx, time.Since(wstart).Seconds())
		var rowErr *warehouse.RowError
		if errors.As(err, &rowErr) {
			// One row the warehouse cannot store: dead-letter it (its offset
			// stays covered by the batch's positions) and write the rest.
			if derr := s.deadLetterRow(ctx, rowErr); derr != nil {
				return derr
			}
			return errRetryNow
		}
		if err != nil && !warehouse.IsTransient(err) {
			return permanent{err}
		}
		if err != nil {
			s.cfg.Log.WarnContext(ctx, "warehouse write failed; retrying", "err", err, "rows", len(s.batch.Events))
			s.cfg.Metrics.Transient(ctx, s.cfg.Stage)
		}
		return err
	})
	if err != nil {
		span.RecordError(err)
		return fmt.Errorf("warehouse write: %w", err)
	}
	now := time.Now()
	s.rows.Add(ctx, int64(res.Inserted), s.attrs["inserted"])
	s.rows.Add(ctx, int64(res.Duplicates), s.attrs["duplicate"])
	s.rows.Add(ctx, int64(res.Stale), s.attrs["stale"])
	s.bytes.Add(ctx, res.Bytes, s.attrs["table"])
	for i := range s.batch.Events {
		s.latency.Record(ctx, now.Sub(s.batch.Events[i].ReceivedAt).Seconds())
	}
	span.SetAttributes(attribute.Int("ecom.rows.inserted", res.Inserted), attribute.Int("ecom.rows.duplicate", res.Duplicates),
		attribute.Int("ecom.rows.stale", res.Stale))
	s.cfg.Metrics.Batch(ctx, s.cfg.Stage, len(recs), true, time.Since(start))

	// Kafka's committed offsets only mirror the warehouse (for lag
	// monitoring); losing this commit loses nothing.
	offsets := make(map[string]map[int32]kgo.EpochOffset)
	for p, next := range s.batch.Positions {
		if offsets[p.Topic] == nil {
			offsets[p.Topic] = map[int32]kgo.EpochOffset{}
		}
		offsets[p.Topic][p.Partition] = kgo.EpochOffset{Epoch: -1, Offset: next}
	}
	s.cl.CommitOffsets(ctx, offsets, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, _ *kmsg.OffsetCommitResponse, err error) {
		if err != nil && ctx.Err() == nil {
			s.cfg.Log.DebugContext(ctx, "mirror commit to kafka failed", "err", err)
		}
	})
	return nil
}

// deadLetterRow produces the dead letter of the row rowErr names and removes
// the row from the batch.
func (s *Sink) deadLetterRow(ctx context.Context, rowErr *warehouse.RowError) error {
	i := rowErr.Index
	if i < 0 || i >= len(s.rowRecs) {
		return permanent{fmt.Errorf("warehouse reported row %d of %d: %w", i, len(s.rowRecs), rowErr)}
	}
	rec := s.rowRecs[i]
	rej := &deadletter.Rejection{Entity: protoavro.ClickEvent, Reasons: []deadletter.Reason{{
		Code: deadletter.InvalidValue, Message: "warehouse cannot store the row: " + rowErr.Reason}}}
	dl, err := stream.DeadLetterRecord(rec, s.cfg.Stage, rej, s.batch.Events[i].TraceID, s.cfg.DLQ, stream.DeadLetterLimit(s.cfg.Kafka))
	if err != nil {
		return err
	}
	if err := stream.ProduceDeadLetters(ctx, s.cl, []*kgo.Record{dl}); err != nil {
		return err
	}
	s.cfg.Metrics.DeadLettered(ctx, s.cfg.Stage, rej)
	s.cfg.Log.WarnContext(ctx, "row dead-lettered by the warehouse", "reason", rowErr.Reason,
		"topic", rec.Topic, "partition", rec.Partition, "offset", rec.Offset)
	s.batch.Events = append(s.batch.Events[:i], s.batch.Events[i+1:]...)
	s.rowRecs = append(s.rowRecs[:i], s.rowRecs[i+1:]...)
	if i < len(s.links) {
		s.links = append(s.links[:i], s.links[i+1:]...)
	}
	return nil
}

// errRetryNow asks retry for another attempt without a backoff.
var errRetryNow = errors.New("retry now")

// maxLinks bounds the links of one batch span.
const maxLinks = 128

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
		if errors.Is(err, errRetryNow) {
			continue
		}
		if werr := b.Wait(ctx); werr != nil {
			return errors.Join(err, werr)
		}
	}
}
