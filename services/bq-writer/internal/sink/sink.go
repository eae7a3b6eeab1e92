// Package sink is bq-writer's consume loop: it reads valid ClickEvents (and,
// from their own topics in the same group, Orders, ProductChanges and
// CustomerChanges; read_committed), gathers polls into batches (closed when full or when
// Kafka.CommitInterval has passed since their first record), writes each batch
// to the warehouse together with the Kafka positions it covers, and resumes
// from the positions stored in the warehouse. That makes the warehouse write
// exactly-once without Kafka transactions: a batch is either wholly in the
// warehouse with its positions or not at all, and a restarted writer seeks to
// what the warehouse says.
//
// Positions are checked against the log on every assignment (topic id, cluster
// id, log start and end, the group's Kafka commits) and the sink stops with a
// *PositionError when they do not fit, instead of dropping records as stale or
// skipping them. With an exclusive warehouse (one DuckDB file) it also stops
// with a *MemberError when its group has another member.
//
// A warehouse that is a warehouse.Committer (BigQuery) keeps its positions in
// the group's Kafka commits instead: the sink claims the assigned partitions
// with their commits (offset and committed_metadata), commits their starts with
// the claim's metadata before it consumes them, commits every written batch's
// positions with the metadata Write returned, and releases revoked or lost
// partitions. Its group may have several members (committer.go).
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
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
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
	Kafka stream.Config
	Group string
	Topic string
	Stage string
	DLQ   stream.Encoder
	Codec *avroserde.Codec
	// OrdersTopic is the topic of valid Orders ("" = none), read in the same group and written
	// in the same warehouse transaction as Topic; OrderCodec decodes it.
	OrdersTopic string
	OrderCodec  *avroserde.Codec
	// ProductsTopic and CustomersTopic are the topics of valid ProductChanges and
	// CustomerChanges ("" = none), read and written like OrdersTopic into dim_products and
	// dim_users; ProductCodec and CustomerCodec decode them. EmailHashKey is the key of the
	// customers' email hash (USER_EMAIL_HASH_KEY), required with CustomersTopic.
	ProductsTopic  string
	ProductCodec   *avroserde.Codec
	CustomersTopic string
	CustomerCodec  *avroserde.Codec
	EmailHashKey   []byte
	Tracer         trace.Tracer
	Meter          metric.Meter
	Metrics        *stream.Metrics
	Log            *slog.Logger
	Prom           prometheus.Registerer

	// Recovery says what to do with a partition whose stored position does not fit the log
	// ("" = RecoveryRefuse).
	Recovery Recovery
}

// Sink is the consume-and-write loop.
type Sink struct {
	cfg Config
	wh  warehouse.Warehouse
	// committer is wh as a warehouse.Committer, nil when wh stores its own positions (DuckDB).
	committer warehouse.Committer
	cl        *kgo.Client
	adm       *kadm.Client
	handler   stream.Handler

	instanceID string        // the static group.instance.id, "" without static membership
	ready      chan struct{} // closed once cl and adm are set: group callbacks can run before New returns

	entities map[string]entity // the input topics' row builders, by topic

	batch     warehouse.Batch // the batch under construction; only Run touches it
	rowRecs   []*kgo.Record   // the record of each row of batch.Events, for dead-lettering a bad row
	orderRecs []*kgo.Record   // the record of each row of batch.Orders
	prodRecs  []*kgo.Record   // the record of each row of batch.Products
	userRecs  []*kgo.Record   // the record of each row of batch.Users
	links     []trace.Link    // the batch span's links: the process spans of (up to maxLinks) rows
	dlqs      []*kgo.Record   // the batch's dead letters, produced before it is written
	records   int             // records in the batch (rows and dead letters)
	first     time.Time       // when the batch's first record was polled
	due       time.Time       // when the open batch is written if it is not full before

	mu        sync.Mutex
	err       error                   // why the sink must stop (set by rebalance callbacks)
	stop      context.CancelCauseFunc // cancels Run's poll when err is set
	clusterID string                  // the log the assigned partitions are read from
	topicIDs  map[string]string

	rows     metric.Int64Counter
	bytes    metric.Int64Counter
	writeDur metric.Float64Histogram
	latency  metric.Float64Histogram
	// commitFailures counts a Committer's partition commits that failed (committer.go).
	commitFailures metric.Int64Counter
	attrs          map[string]metric.AddOption
	newest         *newestRows // ecom.warehouse.newest_row.timestamp (newest.go)
}

// New builds the sink; it does not connect until Run.
func New(cfg Config, wh warehouse.Warehouse) (*Sink, error) {
	s := &Sink{cfg: cfg, wh: wh, attrs: map[string]metric.AddOption{}, ready: make(chan struct{})}
	s.committer, _ = wh.(warehouse.Committer)
	var err error
	if s.rows, err = cfg.Meter.Int64Counter("ecom.warehouse.rows", metric.WithDescription("Rows handed to the warehouse, by table and result (inserted, duplicate, stale), and stored rows that changed table because a preferred copy arrived (replaced).")); err != nil {
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
		metric.WithDescription("From the event reaching the platform (received_at: the raw record's Kafka timestamp) to its warehouse commit."),
		metric.WithExplicitBucketBoundaries(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)); err != nil {
		return nil, err
	}
	if s.commitFailures, err = cfg.Meter.Int64Counter("ecom.warehouse.commit.failures", metric.WithDescription("Partition commits to Kafka that failed with a warehouse whose positions are the group's Kafka commits (BigQuery): fenced by a rebalance or refused; the partition's next owner resumes from the previous commit.")); err != nil {
		return nil, err
	}
	// Exported at 0 from the start (also with DuckDB, which never fails one): the dashboards
	// and the alert on it select a series that exists before the first failure.
	s.commitFailures.Add(context.Background(), 0)
	if s.newest, err = newNewestRows(cfg.Meter); err != nil {
		return nil, err
	}
	for _, r := range []string{"inserted", "duplicate", "stale", "replaced"} {
		s.attrs[r] = metric.WithAttributeSet(attribute.NewSet(attribute.String("table", "fact_events"), attribute.String("result", r)))
		s.attrs["order "+r] = metric.WithAttributeSet(attribute.NewSet(attribute.String("table", "fact_orders"), attribute.String("result", r)))
	}
	for _, table := range []string{"dim_products", "dim_users"} {
		for _, r := range []string{"logged", "duplicate", "stale", "version"} {
			s.attrs[table+" "+r] = metric.WithAttributeSet(attribute.NewSet(attribute.String("table", table), attribute.String("result", r)))
		}
	}
	s.attrs["table"] = metric.WithAttributeSet(attribute.NewSet(attribute.String("table", "fact_events")))

	s.entities = map[string]entity{cfg.Topic: {name: warehouse.EntityEvent, decode: s.decodeEvent}}
	topics := []string{cfg.Topic}
	if cfg.OrdersTopic != "" {
		if cfg.OrdersTopic == cfg.Topic {
			return nil, fmt.Errorf("the orders topic %q is the events topic", cfg.OrdersTopic)
		}
		if cfg.OrderCodec == nil {
			return nil, errors.New("orders topic without an order codec")
		}
		s.entities[cfg.OrdersTopic] = entity{name: warehouse.EntityOrder, decode: s.decodeOrder}
		topics = append(topics, cfg.OrdersTopic)
	}
	for _, e := range []struct {
		topic, what string
		codec       *avroserde.Codec
		ent         entity
	}{
		{cfg.ProductsTopic, "products", cfg.ProductCodec, entity{name: warehouse.EntityProduct, decode: s.decodeProduct}},
		{cfg.CustomersTopic, "customers", cfg.CustomerCodec, entity{name: warehouse.EntityUser, decode: s.decodeCustomer}},
	} {
		if e.topic == "" {
			continue
		}
		if _, ok := s.entities[e.topic]; ok {
			return nil, fmt.Errorf("the %s topic %q is also another input topic", e.what, e.topic)
		}
		if e.codec == nil {
			return nil, fmt.Errorf("%s topic without a codec", e.what)
		}
		s.entities[e.topic] = e.ent
		topics = append(topics, e.topic)
	}
	if cfg.CustomersTopic != "" && len(cfg.EmailHashKey) == 0 {
		return nil, errors.New("customers topic without an email hash key")
	}
	s.handler = stream.Chain(s.decode, stream.Standard(cfg.Stage, cfg.Group, cfg.Tracer, cfg.DLQ, stream.DeadLetterLimit(cfg.Kafka), cfg.Metrics, cfg.Log)...)

	base, err := cfg.Kafka.ClientOpts(cfg.Stage)
	if err != nil {
		return nil, err
	}
	opts := append(base,
		kgo.ConsumerGroup(cfg.Group),
		kgo.ConsumeTopics(topics...),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		// resume sets every assigned partition's offset. An offset that falls out of range
		// afterwards (retention or truncation while reading) is an error, never a silent reset.
		kgo.ConsumeResetOffset(kgo.NoResetOffset()),
		kgo.OnPartitionsAssigned(s.onAssigned),
		kgo.AdjustFetchOffsetsFn(s.resume),
		// Dead letters: idempotent, acknowledged by all in-sync replicas.
		kgo.RequiredAcks(kgo.AllISRAcks()),
	)
	if s.committer != nil {
		opts = append(opts, kgo.OnPartitionsRevoked(s.release), kgo.OnPartitionsLost(s.release))
	}
	opts = append(opts, cfg.Kafka.FetchCadenceOpts()...)
	if cfg.Kafka.StaticMembership {
		s.instanceID = cfg.Kafka.DefaultTransactionalID(cfg.Stage)
	}
	opts = append(opts, cfg.Kafka.GroupOpts(cfg.Kafka.DefaultTransactionalID(cfg.Stage))...)
	if cfg.Prom != nil {
		opts = append(opts, kgo.WithHooks(kprom.NewMetrics("kafka", kprom.Registerer(cfg.Prom), kprom.Subsystem("client"))))
	}
	if s.cl, err = kgo.NewClient(opts...); err != nil {
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	s.adm = kadm.NewClient(s.cl)
	close(s.ready)
	return s, nil
}

// Admin is a kadm client sharing the sink's connections.
func (s *Sink) Admin() *kadm.Client { return s.adm }

// Ping checks the brokers answer.
func (s *Sink) Ping(ctx context.Context) error { return s.cl.Ping(ctx) }

// entity is one input topic's row builder.
type entity struct {
	name warehouse.Entity
	// decode decodes rec and appends its row (with meta) to the batch under construction.
	decode func(ctx context.Context, rec *kgo.Record, meta rowMeta) error
}

// rowMeta is what every row carries besides its record's value.
type rowMeta struct {
	traceID, dqWarnings string
}

// decode is the inner handler: a valid record becomes a row of the batch
// under construction, built by its topic's entity; a bad one is rejected (and
// dead-lettered by the middleware).
func (s *Sink) decode(ctx context.Context, rec *kgo.Record) ([]*kgo.Record, error) {
	e, ok := s.entities[rec.Topic]
	if !ok {
		return nil, fmt.Errorf("record of unexpected topic %q", rec.Topic)
	}
	var meta rowMeta
	if sc := trace.SpanContextFromContext(ctx); sc.HasTraceID() {
		meta.traceID = sc.TraceID().String()
	}
	for _, h := range rec.Headers {
		if h.Key == stream.DQWarningsHeader {
			meta.dqWarnings = string(h.Value)
		}
	}
	if err := e.decode(ctx, rec, meta); err != nil {
		return nil, err
	}
	if len(s.links) < maxLinks {
		s.links = append(s.links, trace.LinkFromContext(ctx))
	}
	return nil, nil
}

func (s *Sink) decodeEvent(ctx context.Context, rec *kgo.Record, meta rowMeta) error {
	var ev events.ClickEvent
	if _, err := s.cfg.Codec.Decode(ctx, rec.Value, &ev); err != nil {
		return err
	}
	s.batch.Events = append(s.batch.Events, warehouse.EventRow{ClickEvent: ev, TraceID: meta.traceID, DQWarnings: meta.dqWarnings,
		SourceTopic: rec.Topic, SourcePartition: rec.Partition, SourceOffset: rec.Offset})
	s.rowRecs = append(s.rowRecs, rec)
	return nil
}

func (s *Sink) decodeOrder(ctx context.Context, rec *kgo.Record, meta rowMeta) error {
	var o events.Order
	if _, err := s.cfg.OrderCodec.Decode(ctx, rec.Value, &o); err != nil {
		return err
	}
	s.batch.Orders = append(s.batch.Orders, warehouse.OrderRow{Order: o, TraceID: meta.traceID, DQWarnings: meta.dqWarnings,
		SourceTopic: rec.Topic, SourcePartition: rec.Partition, SourceOffset: rec.Offset})
	s.orderRecs = append(s.orderRecs, rec)
	return nil
}

func (s *Sink) decodeProduct(ctx context.Context, rec *kgo.Record, _ rowMeta) error {
	var p events.ProductChange
	if _, err := s.cfg.ProductCodec.Decode(ctx, rec.Value, &p); err != nil {
		return err
	}
	s.batch.Products = append(s.batch.Products, warehouse.ProductRow{ProductChange: p, SourceTopic: rec.Topic, SourcePartition: rec.Partition, SourceOffset: rec.Offset})
	s.prodRecs = append(s.prodRecs, rec)
	return nil
}

// decodeCustomer keeps only what dim_users may hold: the email becomes its keyed hash and
// domain here, so it never reaches the warehouse.
func (s *Sink) decodeCustomer(ctx context.Context, rec *kgo.Record, _ rowMeta) error {
	var c events.CustomerChange
	if _, err := s.cfg.CustomerCodec.Decode(ctx, rec.Value, &c); err != nil {
		return err
	}
	u := warehouse.NewUserRow(&c, s.cfg.EmailHashKey)
	u.SourceTopic, u.SourcePartition, u.SourceOffset = rec.Topic, rec.Partition, rec.Offset
	s.batch.Users = append(s.batch.Users, u)
	s.userRecs = append(s.userRecs, rec)
	return nil
}

// fail records why the sink must stop and wakes Run. The first reason wins.
func (s *Sink) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil {
		s.err = err
	}
	if s.stop != nil {
		s.stop(err)
	}
}

// failed returns why the sink must stop, or nil.
func (s *Sink) failed() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

func (s *Sink) setLog(cluster string, topicIDs map[string]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.clusterID = cluster
	// A new map, never changed afterwards: batches hold it while a rebalance may set another.
	ids := maps.Clone(s.topicIDs)
	if ids == nil {
		ids = map[string]string{}
	}
	maps.Copy(ids, topicIDs)
	s.topicIDs = ids
}

// Run consumes until ctx is done or the sink must stop (a *PositionError, a *MemberError, a
// warehouse error that retrying cannot fix).
//
// Polls are gathered into one batch until it holds Kafka.MaxPollRecords records or Kafka.CommitInterval
// has passed since its first record; then it is written once. Rebalances are blocked while a
// batch is open (BlockRebalanceOnPoll), so a rebalance waits at most one interval plus a write,
// and a partition is never revoked with unwritten records. On shutdown an open batch is simply
// not written: nothing of it is committed, and it is read again on start.
func (s *Sink) Run(ctx context.Context) error {
	// BlockRebalanceOnPoll: leaving the group waits for AllowRebalance.
	defer s.cl.CloseAllowingRebalance()
	runCtx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	s.mu.Lock()
	s.stop = stop
	s.mu.Unlock()
	s.reset()
	if err := s.newest.seed(ctx, s.wh, time.Now()); err != nil && ctx.Err() == nil {
		s.cfg.Log.WarnContext(ctx, "reading the newest rows failed; ecom.warehouse.newest_row.timestamp reads the start time for the facts until their first commit", "err", err)
	}
	lastCheck := time.Now()
	limit := s.cfg.Kafka.MaxPollRecords
	if limit <= 0 {
		limit = 1
	}
	for {
		if err := s.failed(); err != nil {
			return err // before writing anything more
		}
		// An open batch ends the poll when it is due; an idle poll ends for the topic id check.
		deadline := time.Now().Add(logCheckInterval)
		if s.records > 0 && s.cfg.Kafka.CommitInterval > 0 {
			deadline = s.due
		}
		pollCtx, cancelPoll := context.WithDeadline(runCtx, deadline)
		fetches := s.cl.PollRecords(pollCtx, limit-s.records)
		cancelPoll()
		if err := s.failed(); err != nil {
			return err
		}
		if fetches.IsClientClosed() || ctx.Err() != nil {
			return nil // an open batch is not written: it is read again on start
		}
		if time.Since(lastCheck) >= logCheckInterval {
			lastCheck = time.Now()
			if err := s.checkTopicIDs(ctx); err != nil {
				return err
			}
		}
		var fetchErr error
		fetches.EachError(func(topic string, p int32, err error) {
			if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
				return // shutdown, or the batch interval ended the poll
			}
			s.cfg.Log.WarnContext(ctx, "fetch error", "topic", topic, "partition", p, "err", err)
			if errors.Is(err, kerr.OffsetOutOfRange) {
				err = &PositionError{Topic: topic, Partition: p, Problem: "the next offset to read fell out of the log (records deleted by retention or the log truncated before they were written): " + err.Error()}
			}
			fetchErr = err
		})
		if fetchErr != nil && errors.Is(fetchErr, kgo.ErrClientClosed) {
			return nil
		}
		var perr *PositionError
		if errors.As(fetchErr, &perr) {
			return perr
		}
		if fetchErr != nil && stream.IsFatal(fetchErr) {
			return fmt.Errorf("kafka: %w (is another bq-writer running with the same KAFKA_TRANSACTIONAL_ID / group instance id?)", fetchErr)
		}
		if recs := fetches.Records(); len(recs) > 0 {
			if s.records == 0 {
				s.first = time.Now()
				// Due one interval after the first record was produced, not polled: the
				// time it waited upstream is not waited again (stream.BatchDeadline).
				s.due = stream.BatchDeadline(recs[0].Timestamp, s.first, s.cfg.Kafka.CommitInterval)
			}
			if err := s.add(ctx, recs); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
		}
		if s.records > 0 && (s.records >= limit || s.cfg.Kafka.CommitInterval <= 0 || !time.Now().Before(s.due)) {
			if err := s.failed(); err != nil {
				return err
			}
			if err := s.write(ctx); err != nil {
				if ctx.Err() != nil {
					return nil // shutting down mid-batch: nothing committed, it is replayed on start
				}
				return err
			}
		}
		if s.records == 0 {
			s.cl.AllowRebalance()
		}
	}
}

// reset empties the batch under construction.
func (s *Sink) reset() {
	s.batch = warehouse.Batch{Events: s.batch.Events[:0], Orders: s.batch.Orders[:0], Products: s.batch.Products[:0], Users: s.batch.Users[:0],
		Positions: map[warehouse.Partition]int64{}}
	s.orderRecs, s.prodRecs, s.userRecs = s.orderRecs[:0], s.prodRecs[:0], s.userRecs[:0]
	s.rowRecs, s.links, s.dlqs, s.records = s.rowRecs[:0], s.links[:0], s.dlqs[:0], 0
}

// add decodes recs into the batch under construction.
func (s *Sink) add(ctx context.Context, recs []*kgo.Record) error {
	for _, rec := range recs {
		var outs []*kgo.Record
		err := retry(ctx, s.cfg.Kafka, func() error {
			n, no, nl := len(s.batch.Events), len(s.batch.Orders), len(s.links)
			np, nu := len(s.batch.Products), len(s.batch.Users)
			var err error
			outs, err = s.handler(ctx, rec)
			if err != nil { // a transient error (Measure counted it): undo and retry
				s.batch.Events, s.rowRecs = s.batch.Events[:n], s.rowRecs[:n]
				s.batch.Orders, s.orderRecs = s.batch.Orders[:no], s.orderRecs[:no]
				s.batch.Products, s.prodRecs = s.batch.Products[:np], s.prodRecs[:np]
				s.batch.Users, s.userRecs = s.batch.Users[:nu], s.userRecs[:nu]
				s.links = s.links[:nl]
			}
			return err
		})
		if err != nil {
			return err
		}
		s.dlqs = append(s.dlqs, outs...)
		s.batch.Positions[warehouse.Partition{Topic: rec.Topic, Partition: rec.Partition}] = rec.Offset + 1
		s.records++
	}
	return nil
}

// write writes the batch under construction as one atomic warehouse batch and empties it.
func (s *Sink) write(ctx context.Context) error {
	start := s.first
	dlqs := s.dlqs
	s.mu.Lock()
	s.batch.ClusterID, s.batch.TopicIDs = s.clusterID, s.topicIDs
	s.mu.Unlock()

	// Dead letters are durable before the positions that cover them move.
	if len(dlqs) > 0 {
		if err := retry(ctx, s.cfg.Kafka, func() error { return stream.ProduceDeadLetters(ctx, s.cl, dlqs) }); err != nil {
			return fmt.Errorf("produce dead letters: %w", err)
		}
	}

	ctx, span := s.cfg.Tracer.Start(ctx, "write fact_events", trace.WithSpanKind(trace.SpanKindClient), trace.WithLinks(s.links...),
		trace.WithAttributes(attribute.String("db.system", "duckdb"), attribute.String("db.collection.name", "fact_events"),
			attribute.Int("messaging.batch.message_count", s.records)))
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
			if errors.Is(err, warehouse.ErrPositionConflict) {
				err = fmt.Errorf("%w (%s#positions-do-not-fit-the-log)", err, runbook)
			}
			return permanent{err}
		}
		if err != nil {
			s.cfg.Log.WarnContext(ctx, "warehouse write failed; retrying", "err", err, "rows", len(s.batch.Events), "orders", len(s.batch.Orders))
			s.cfg.Metrics.Transient(ctx, s.cfg.Stage)
		}
		return err
	})
	if err != nil {
		span.RecordError(err)
		return fmt.Errorf("warehouse write: %w", err)
	}
	now := time.Now()
	s.newest.committed(&s.batch)
	s.rows.Add(ctx, int64(res.Inserted), s.attrs["inserted"])
	s.rows.Add(ctx, int64(res.Duplicates), s.attrs["duplicate"])
	s.rows.Add(ctx, int64(res.Stale), s.attrs["stale"])
	if res.Replaced > 0 {
		s.rows.Add(ctx, int64(res.Replaced), s.attrs["replaced"])
	}
	for r, n := range map[string]int{"inserted": res.Orders.Inserted, "replaced": res.Orders.Replaced,
		"stale": res.Orders.Stale, "duplicate": res.Orders.Duplicates} {
		if n > 0 {
			s.rows.Add(ctx, int64(n), s.attrs["order "+r])
		}
	}
	for table, d := range map[string]warehouse.DimResult{"dim_products": res.Products, "dim_users": res.Users} {
		for r, n := range map[string]int{"logged": d.Logged, "duplicate": d.Duplicates, "stale": d.Stale, "version": d.Versions} {
			if n > 0 {
				s.rows.Add(ctx, int64(n), s.attrs[table+" "+r])
			}
		}
	}
	s.bytes.Add(ctx, res.Bytes, s.attrs["table"])
	for i := range s.batch.Events {
		s.latency.Record(ctx, now.Sub(s.batch.Events[i].ReceivedAt).Seconds())
	}
	span.SetAttributes(attribute.Int("ecom.rows.inserted", res.Inserted), attribute.Int("ecom.rows.duplicate", res.Duplicates),
		attribute.Int("ecom.rows.stale", res.Stale), attribute.Int("ecom.orders.written", res.Orders.Inserted+res.Orders.Replaced))
	s.cfg.Metrics.Batch(ctx, s.cfg.Stage, s.records, true, time.Since(start))

	if s.committer != nil {
		s.commitBatch(ctx, res.Commits)
		s.reset()
		return nil
	}
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
	s.reset()
	return nil
}

// deadLetterRow produces the dead letter of the row rowErr names and removes
// the row from the batch.
func (s *Sink) deadLetterRow(ctx context.Context, rowErr *warehouse.RowError) error {
	i := rowErr.Index
	var recs []*kgo.Record
	var schema string
	switch rowErr.Entity {
	case warehouse.EntityOrder:
		recs, schema = s.orderRecs, protoavro.Order
	case warehouse.EntityProduct:
		recs, schema = s.prodRecs, protoavro.ProductChange
	case warehouse.EntityUser:
		recs, schema = s.userRecs, protoavro.CustomerChange
	default:
		recs, schema = s.rowRecs, protoavro.ClickEvent
	}
	if i < 0 || i >= len(recs) {
		return permanent{fmt.Errorf("warehouse reported %s row %d of %d: %w", schema, i, len(recs), rowErr)}
	}
	traceID := ""
	switch rowErr.Entity {
	case warehouse.EntityOrder:
		traceID = s.batch.Orders[i].TraceID
	case warehouse.EntityProduct, warehouse.EntityUser:
	default:
		traceID = s.batch.Events[i].TraceID
	}
	rec := recs[i]
	rej := &deadletter.Rejection{Entity: schema, Reasons: []deadletter.Reason{{
		Code: deadletter.InvalidValue, Message: "warehouse cannot store the row: " + rowErr.Reason}}}
	dl, err := stream.DeadLetterRecord(rec, s.cfg.Stage, rej, traceID, s.cfg.DLQ, stream.DeadLetterLimit(s.cfg.Kafka))
	if err != nil {
		return err
	}
	if err := stream.ProduceDeadLetters(ctx, s.cl, []*kgo.Record{dl}); err != nil {
		return err
	}
	s.cfg.Metrics.DeadLettered(ctx, s.cfg.Stage, rej)
	s.cfg.Log.WarnContext(ctx, "row dead-lettered by the warehouse", "entity", schema, "reason", rowErr.Reason,
		"topic", rec.Topic, "partition", rec.Partition, "offset", rec.Offset)
	switch rowErr.Entity {
	case warehouse.EntityOrder:
		s.batch.Orders, s.orderRecs = slices.Delete(s.batch.Orders, i, i+1), slices.Delete(s.orderRecs, i, i+1)
	case warehouse.EntityProduct:
		s.batch.Products, s.prodRecs = slices.Delete(s.batch.Products, i, i+1), slices.Delete(s.prodRecs, i, i+1)
	case warehouse.EntityUser:
		s.batch.Users, s.userRecs = slices.Delete(s.batch.Users, i, i+1), slices.Delete(s.userRecs, i, i+1)
	default:
		s.batch.Events, s.rowRecs = slices.Delete(s.batch.Events, i, i+1), slices.Delete(s.rowRecs, i, i+1)
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
