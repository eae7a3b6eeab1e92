package stream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kprom"

	"github.com/ecomstream/platform/pkg/deadletter"
)

// ProcessorConfig says what a Processor consumes and as whom.
type ProcessorConfig struct {
	Stage           string   // service name, used in metrics, dead letters, client ids
	Group           string   // consumer group
	Topics          []string // input topics
	TransactionalID string   // stable per instance
}

// Processor runs consume -> handle -> produce in Kafka transactions: each
// batch's outputs, dead letters and input offsets commit atomically.
//
// A batch closes when it holds KAFKA_MAX_POLL_RECORDS records, when
// KAFKA_COMMIT_INTERVAL has passed since its first record, or when it has been
// open for half of KAFKA_TRANSACTION_TIMEOUT, whichever comes first: few,
// larger transactions at a steady load, and never one the broker aborts for
// taking too long. End is never given a deadline (franz-go: cancelling it can
// leave the client in an invalid state, and none of its errors is
// retryable); after an End or Begin error the session is rebuilt, so it
// resumes from the offsets the broker has committed.
type Processor struct {
	cfg     Config
	pcfg    ProcessorConfig
	handler Handler
	log     *slog.Logger
	metrics *Metrics

	kopts []kgo.Opt                 // the session's options, to rebuild it
	sess  *kgo.GroupTransactSession // only Run touches it
	admCl *kgo.Client               // Admin and Ping: outlives session rebuilds
	adm   *kadm.Client

	// onCommit, if set, is called after each committed batch (tests, metrics).
	onCommit func(records int)
	kprom    *kprom.Metrics

	mu       sync.Mutex
	tooLarge map[recordPos]struct{} // inputs whose dead letter the brokers refused as too large

	lastFence time.Time     // when an End last failed as fenced
	perRecord time.Duration // smoothed handling time of one record, sizes the polls
}

// recordPos names an input record.
type recordPos struct {
	topic     string
	partition int32
	offset    int64
}

// pollChunk bounds the records handled between two checks of the batch's
// deadlines: a poll's records are handled all or not at all (the session
// commits the offsets of everything polled), so the cut can only fall between
// polls.
const pollChunk = 500

// chunk is how many records to poll next: at most pollChunk, and no more than
// a quarter of the transaction timeout's worth at the handler's recent speed,
// so a slow handler still commits before the broker aborts its transaction.
func (p *Processor) chunk(room int) int {
	n := pollChunk
	if p.perRecord > 0 {
		n = min(n, max(1, int(p.cfg.TransactionTimeout/4/p.perRecord)))
	}
	return max(1, min(n, room))
}

// observe folds the handling time of n records into perRecord.
func (p *Processor) observe(took time.Duration, n int) {
	if n == 0 {
		return
	}
	d := took / time.Duration(n)
	if p.perRecord == 0 || d > p.perRecord {
		p.perRecord = d // slow down at once
		return
	}
	p.perRecord = (p.perRecord*7 + d) / 8 // speed up gradually
}

// fencedAgainWithin: a second fenced End this soon after the first means
// another instance shares the transactional id; the first may be the broker
// aborting a transaction it timed out during a stall.
const fencedAgainWithin = 5 * time.Minute

// ProcessorOption configures a Processor.
type ProcessorOption interface{ apply(*Processor) }

type optFunc func(*Processor)

func (f optFunc) apply(p *Processor) { f(p) }

// WithRegisterer registers franz-go client metrics (kprom) on reg.
func WithRegisterer(reg prometheus.Registerer) ProcessorOption {
	return optFunc(func(p *Processor) {
		p.kprom = kprom.NewMetrics("kafka", kprom.Registerer(reg), kprom.Subsystem("client"))
	})
}

// WithOnCommit sets a callback run after each committed batch.
func WithOnCommit(fn func(records int)) ProcessorOption {
	return optFunc(func(p *Processor) { p.onCommit = fn })
}

// NewProcessor builds a transactional processor; h is normally wrapped with
// Standard middleware.
func NewProcessor(cfg Config, pcfg ProcessorConfig, h Handler, m *Metrics, log *slog.Logger, opts ...ProcessorOption) (*Processor, error) {
	p := &Processor{cfg: cfg, pcfg: pcfg, handler: h, log: log, metrics: m, tooLarge: map[recordPos]struct{}{}}
	for _, o := range opts {
		o.apply(p)
	}
	base, err := cfg.ClientOpts(pcfg.Stage)
	if err != nil {
		return nil, err
	}
	p.admCl, err = kgo.NewClient(append(base, kgo.WithLogger(kgoLogger{log}))...)
	if err != nil {
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	p.adm = kadm.NewClient(p.admCl)
	p.kopts = append(base,
		kgo.ConsumerGroup(pcfg.Group),
		kgo.ConsumeTopics(pcfg.Topics...),
		kgo.TransactionalID(pcfg.TransactionalID),
		kgo.TransactionTimeout(cfg.TransactionTimeout),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.RequireStableFetchOffsets(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)),
		kgo.WithLogger(kgoLogger{log}),
	)
	p.kopts = append(p.kopts, cfg.FetchCadenceOpts()...)
	if cfg.CommitInterval > cfg.Linger {
		// A transaction's outputs become visible only when it commits, and
		// End flushes whatever is buffered, so lingering up to the commit
		// interval delays nothing a reader can see. It turns a batch's outputs
		// into one produce request per partition leader at commit instead of
		// one every KAFKA_PRODUCER_LINGER, which the broker pays for per request.
		p.kopts = append(p.kopts, kgo.ProducerLinger(cfg.CommitInterval))
	}
	p.kopts = append(p.kopts, cfg.GroupOpts(pcfg.TransactionalID)...)
	if p.kprom != nil {
		// kprom unregisters its collectors when a client closes, so a
		// rebuilt session registers them again.
		p.kopts = append(p.kopts, kgo.WithHooks(p.kprom))
	}
	if p.sess, err = kgo.NewGroupTransactSession(p.kopts...); err != nil {
		p.admCl.Close()
		return nil, fmt.Errorf("kafka transact session: %w", err)
	}
	return p, nil
}

// Admin is a kadm client of the processor's brokers.
func (p *Processor) Admin() *kadm.Client { return p.adm }

// Ping checks the brokers answer; used by /readyz.
func (p *Processor) Ping(ctx context.Context) error { return p.admCl.Ping(ctx) }

// outcome is how a batch ended.
type outcome int

const (
	idle      outcome = iota // nothing polled, or shutting down
	committed                // committed, or given up to a rebalance: go on at once
	aborted                  // a transient error aborted it: back off, then redo it
	broken                   // Begin or End failed: rebuild the session
)

// Run consumes until ctx is done. On shutdown it finishes or aborts the
// in-flight transaction, then leaves the group and closes the client.
func (p *Processor) Run(ctx context.Context) error {
	defer p.admCl.Close()
	defer func() { p.sess.Close() }()
	ectx, stop := endContext(ctx, p.cfg.TransactionTimeout)
	defer stop()
	backoff := NewBackoff(p.cfg)
	for ctx.Err() == nil {
		res, err := p.batch(ctx, ectx)
		if err != nil {
			return err
		}
		switch res {
		case committed:
			backoff.Reset()
		case aborted:
			// The batch was aborted and the group rewound to its committed
			// offsets: wait, then process the same records again.
			if backoff.Wait(ctx) != nil {
				return nil
			}
		case broken:
			if ctx.Err() != nil {
				return nil
			}
			if err := p.rebuild(); err != nil {
				return err
			}
			if backoff.Wait(ctx) != nil {
				return nil
			}
		}
	}
	return nil
}

// endContext is the context of Flush and End: not cancelled by ctx, so a
// shutdown lets the transaction in flight end, but cancelled grace after ctx
// is done, so a broker that never answers cannot hold a shutdown forever (the
// broker aborts the transaction itself at its timeout).
func endContext(ctx context.Context, grace time.Duration) (context.Context, func()) {
	ectx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	var (
		mu sync.Mutex
		t  *time.Timer
	)
	stopAfter := context.AfterFunc(ctx, func() {
		mu.Lock()
		t = time.AfterFunc(grace, cancel)
		mu.Unlock()
	})
	return ectx, func() {
		stopAfter()
		mu.Lock()
		if t != nil {
			t.Stop()
		}
		mu.Unlock()
		cancel()
	}
}

// rebuild replaces the session after Begin or End failed: the new session's
// producer id fences the old one (the broker aborts whatever it left open),
// and joining the group re-reads the committed offsets, so the uncommitted
// batch is redone exactly once.
func (p *Processor) rebuild() error {
	p.sess.Close()
	sess, err := kgo.NewGroupTransactSession(p.kopts...)
	if err != nil {
		return fmt.Errorf("kafka transact session: %w", err)
	}
	p.sess = sess
	p.log.Info("kafka transaction session rebuilt; resuming from the committed offsets")
	return nil
}

// batch polls and handles records in one transaction until the batch is full,
// its commit interval has passed, or it nears the transaction timeout, then
// ends the transaction. A non-nil error is fatal to the processor.
func (p *Processor) batch(ctx, ectx context.Context) (outcome, error) {
	limit := p.cfg.MaxPollRecords
	recs, err := p.poll(ctx, ctx, p.chunk(limit))
	if err != nil || len(recs) == 0 {
		return idle, err
	}
	start := time.Now()
	if err := p.sess.Begin(); err != nil {
		p.log.WarnContext(ctx, "begin transaction failed; rebuilding the kafka session", "err", err)
		return broken, nil
	}
	closeAt := BatchDeadline(recs[0].Timestamp, start, p.cfg.CommitInterval)
	cutAt := start.Add(p.cfg.TransactionTimeout / 2)
	var (
		mu         sync.Mutex
		produceErr error
	)
	promise := func(_ *kgo.Record, err error) {
		if err != nil {
			mu.Lock()
			if produceErr == nil {
				produceErr = err
			}
			mu.Unlock()
		}
	}
	// Records already polled are handled even if shutdown starts meanwhile;
	// only retries of transient errors stop with ctx.
	hctx := context.WithoutCancel(ctx)
	commit, n := true, 0
	for commit {
		hstart := time.Now()
		for _, rec := range recs {
			outs, err := p.handleWithRetry(ctx, hctx, rec)
			if err != nil {
				commit = false
				p.log.WarnContext(ctx, "transient error; aborting batch to retry it", "err", err,
					"topic", rec.Topic, "partition", rec.Partition, "offset", rec.Offset, "batch", n+len(recs))
				break
			}
			for _, o := range outs {
				p.produce(hctx, rec, o, promise)
			}
		}
		n += len(recs)
		now := time.Now()
		p.observe(now.Sub(hstart), len(recs))
		wait := min(closeAt.Sub(now), cutAt.Sub(now))
		if !commit || n >= limit || wait <= 0 || ctx.Err() != nil {
			break
		}
		pctx, cancel := context.WithTimeout(ctx, wait)
		recs, err = p.poll(ctx, pctx, p.chunk(limit-n))
		cancel()
		if err != nil {
			return idle, err
		}
		if len(recs) == 0 {
			break
		}
	}
	if commit {
		if err := p.sess.Client().Flush(ectx); err != nil {
			commit = false
		}
		mu.Lock()
		if produceErr != nil {
			p.log.WarnContext(ctx, "produce failed; aborting batch", "err", produceErr)
			commit = false
		}
		mu.Unlock()
	}
	ok, err := p.sess.End(ectx, kgo.TransactionEndTry(commit))
	p.metrics.Batch(ctx, p.pcfg.Stage, n, ok, time.Since(start))
	if err != nil {
		if ectx.Err() != nil {
			return idle, nil // shutting down, and the brokers did not answer in time
		}
		if IsFatal(err) {
			if !p.lastFence.IsZero() && time.Since(p.lastFence) < fencedAgainWithin {
				return idle, fmt.Errorf("end transaction: %w (fenced twice within %v: is another instance running with KAFKA_TRANSACTIONAL_ID %q?)",
					err, fencedAgainWithin, p.pcfg.TransactionalID)
			}
			p.lastFence = time.Now()
		}
		p.log.WarnContext(ctx, "transaction did not end cleanly; rebuilding the kafka session, the batch will be redone", "err", err, "batch", n)
		return broken, nil
	}
	if ok {
		if p.onCommit != nil {
			p.onCommit(n)
		}
		return committed, nil
	}
	if commit {
		// A rebalance revoked partitions: the session rewound and the new
		// owner (or we) reprocess; no backoff.
		return committed, nil
	}
	return aborted, nil
}

// BatchDeadline is when a batch whose first record was produced at first
// closes: interval after that, counted from the record's timestamp, not from
// when this stage polled it. So the time a record already waited upstream (in
// the producing stage's open transaction, in the broker, in a fetch) is not
// waited again: only the first stage of a pipeline batches for the whole
// interval, and each stage after it commits as soon as the records it was
// handed are due, which keeps the end-to-end latency near one interval plus
// a commit per stage instead of one interval per stage. A timestamp in the
// future (clock skew) counts as now.
func BatchDeadline(first, now time.Time, interval time.Duration) time.Time {
	if first.IsZero() || first.After(now) {
		first = now
	}
	return first.Add(interval)
}

// poll returns up to n records, waiting under pctx; fetch errors that mean
// this instance must stop are returned, others are logged (the client
// retries them).
func (p *Processor) poll(ctx, pctx context.Context, n int) ([]*kgo.Record, error) {
	fetches := p.sess.PollRecords(pctx, n)
	if fetches.IsClientClosed() || ctx.Err() != nil {
		return nil, nil
	}
	var fatal error
	fetches.EachError(func(topic string, partition int32, err error) {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return
		}
		p.log.WarnContext(ctx, "fetch error", "topic", topic, "partition", partition, "err", err)
		if IsFatal(err) {
			fatal = err
		}
	})
	if fatal != nil {
		return nil, fmt.Errorf("kafka fetch: %w (fenced: is another instance running with KAFKA_TRANSACTIONAL_ID %q?)", fatal, p.pcfg.TransactionalID)
	}
	return fetches.Records(), nil
}

// produce sends o, an output of rec, in the open transaction. A dead letter
// that cannot fit the record limit, or that the brokers refused as too large
// in an earlier attempt of this batch, is replaced by its minimal envelope,
// so a dead letter never stalls its partition.
//
// An output that the handler gave no timestamp carries its input's: the time
// the event reached the platform travels with it through every stage, so each
// stage's BatchDeadline counts from there and only the first stage of a
// pipeline waits the whole commit interval. (Dead letters keep the time they
// were made: their retention runs from the failure.)
func (p *Processor) produce(ctx context.Context, rec, o *kgo.Record, promise func(*kgo.Record, error)) {
	if o.Topic != deadletter.Topic {
		if o.Timestamp.IsZero() {
			o.Timestamp = rec.Timestamp
		}
		p.sess.Produce(ctx, o, promise)
		return
	}
	pos := recordPos{rec.Topic, rec.Partition, rec.Offset}
	p.mu.Lock()
	_, refused := p.tooLarge[pos]
	delete(p.tooLarge, pos)
	p.mu.Unlock()
	if refused || (p.cfg.ProducerMaxRecord > 0 && !FitsRecordLimit(o, p.cfg.ProducerMaxRecord)) {
		if m, ok := MinimalDeadLetter(o); ok {
			p.log.WarnContext(ctx, "dead letter too large; writing its minimal envelope", "topic", rec.Topic,
				"partition", rec.Partition, "offset", rec.Offset, "bytes", RecordBytes(o))
			o = m
		}
	}
	p.sess.Produce(ctx, o, func(r *kgo.Record, err error) {
		if IsTooLarge(err) {
			p.mu.Lock()
			p.tooLarge[pos] = struct{}{}
			p.mu.Unlock()
		}
		promise(r, err)
	})
}

// handleWithRetry retries transient errors in place a few times (keeping the
// open transaction) before giving up so the batch is aborted and retried.
func (p *Processor) handleWithRetry(ctx, hctx context.Context, rec *kgo.Record) ([]*kgo.Record, error) {
	const inPlace = 3
	outs, err := p.handler(hctx, rec)
	if err == nil {
		return outs, nil
	}
	b := NewBackoff(p.cfg) // only on the slow path: the hot path allocates nothing here
	for i := 1; i < inPlace; i++ {
		if werr := b.Wait(ctx); werr != nil {
			return nil, err
		}
		if outs, err = p.handler(hctx, rec); err == nil {
			return outs, nil
		}
	}
	return nil, err
}

// IsFatal reports errors after which this instance must stop: another
// instance took its transactional id or group.instance.id (two instances
// configured alike, or a zombie), or the cluster forbids what it does. Exiting
// makes the problem visible (a crash loop) instead of an idle, "ready" pod.
func IsFatal(err error) bool {
	return errors.Is(err, kerr.ProducerFenced) ||
		errors.Is(err, kerr.FencedInstanceID) ||
		errors.Is(err, kerr.InvalidProducerEpoch) ||
		errors.Is(err, kerr.TransactionalIDAuthorizationFailed) ||
		errors.Is(err, kerr.GroupAuthorizationFailed) ||
		errors.Is(err, kerr.TopicAuthorizationFailed) ||
		errors.Is(err, kerr.ClusterAuthorizationFailed)
}

// kgoLogger adapts slog to franz-go's logger at warn and above.
type kgoLogger struct{ l *slog.Logger }

// Logger is franz-go's logger writing warnings and errors to log, for a
// service's own clients (kgo.WithLogger).
func Logger(log *slog.Logger) kgo.Logger { return kgoLogger{log} }

func (k kgoLogger) Level() kgo.LogLevel { return kgo.LogLevelWarn }

func (k kgoLogger) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	switch level {
	case kgo.LogLevelError:
		k.l.Error("kafka: "+msg, keyvals...)
	case kgo.LogLevelWarn:
		k.l.Warn("kafka: "+msg, keyvals...)
	case kgo.LogLevelInfo:
		k.l.Info("kafka: "+msg, keyvals...)
	default:
		k.l.Debug("kafka: "+msg, keyvals...)
	}
}
