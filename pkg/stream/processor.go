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
)

// ProcessorConfig says what a Processor consumes and as whom.
type ProcessorConfig struct {
	Stage           string   // service name, used in metrics, dead letters, client ids
	Group           string   // consumer group
	Topics          []string // input topics
	TransactionalID string   // stable per instance
}

// Processor runs consume -> handle -> produce in Kafka transactions: each
// polled batch's outputs, dead letters and input offsets commit atomically.
type Processor struct {
	cfg     Config
	pcfg    ProcessorConfig
	handler Handler
	log     *slog.Logger
	metrics *Metrics

	sess *kgo.GroupTransactSession
	adm  *kadm.Client

	// onCommit, if set, is called after each committed batch (tests, metrics).
	onCommit func(records int)
	kprom    *kprom.Metrics
}

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
	p := &Processor{cfg: cfg, pcfg: pcfg, handler: h, log: log, metrics: m}
	for _, o := range opts {
		o.apply(p)
	}
	base, err := cfg.ClientOpts(pcfg.Stage)
	if err != nil {
		return nil, err
	}
	kopts := append(base,
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
	kopts = append(kopts, cfg.GroupOpts(pcfg.TransactionalID)...)
	if p.kprom != nil {
		kopts = append(kopts, kgo.WithHooks(p.kprom))
	}
	sess, err := kgo.NewGroupTransactSession(kopts...)
	if err != nil {
		return nil, fmt.Errorf("kafka transact session: %w", err)
	}
	p.sess = sess
	p.adm = kadm.NewClient(sess.Client())
	return p, nil
}

// Admin is a kadm client sharing the processor's connections.
func (p *Processor) Admin() *kadm.Client { return p.adm }

// Ping checks the brokers answer; used by /readyz.
func (p *Processor) Ping(ctx context.Context) error { return p.sess.Client().Ping(ctx) }

// Run consumes until ctx is done. On shutdown it finishes or aborts the
// in-flight transaction, then leaves the group and closes the client.
func (p *Processor) Run(ctx context.Context) error {
	defer p.sess.Close()
	backoff := NewBackoff(p.cfg)
	for {
		fetches := p.sess.PollRecords(ctx, p.cfg.MaxPollRecords)
		if fetches.IsClientClosed() || ctx.Err() != nil {
			return nil
		}
		var fatal error
		fetches.EachError(func(topic string, partition int32, err error) {
			if errors.Is(err, context.Canceled) {
				return
			}
			p.log.WarnContext(ctx, "fetch error", "topic", topic, "partition", partition, "err", err)
			if IsFatal(err) {
				fatal = err
			}
		})
		if fatal != nil {
			return fmt.Errorf("kafka fetch: %w (fenced: is another instance running with KAFKA_TRANSACTIONAL_ID %q?)", fatal, p.pcfg.TransactionalID)
		}
		recs := fetches.Records()
		if len(recs) == 0 {
			continue
		}
		ok, err := p.batch(ctx, recs)
		if err != nil {
			return err
		}
		if ok {
			backoff.Reset()
			continue
		}
		// A transient failure aborted the batch and rewound the group to its
		// committed offsets: wait, then process the same records again.
		if err := backoff.Wait(ctx); err != nil {
			return nil
		}
	}
}

// batch handles recs in one transaction; it reports whether it committed. A
// non-nil error is fatal to the processor (e.g. fenced by a newer instance).
func (p *Processor) batch(ctx context.Context, recs []*kgo.Record) (bool, error) {
	start := time.Now()
	if err := p.sess.Begin(); err != nil {
		return false, fmt.Errorf("begin transaction: %w", err)
	}
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
	commit := true
	for _, rec := range recs {
		outs, err := p.handleWithRetry(ctx, hctx, rec)
		if err != nil {
			commit = false
			p.log.WarnContext(ctx, "transient error; aborting batch to retry it", "err", err,
				"topic", rec.Topic, "partition", rec.Partition, "offset", rec.Offset, "batch", len(recs))
			break
		}
		for _, o := range outs {
			p.sess.Produce(hctx, o, promise)
		}
	}
	ectx, cancel := context.WithTimeout(hctx, p.cfg.TransactionTimeout)
	defer cancel()
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
	committed, err := p.sess.End(ectx, kgo.TransactionEndTry(commit))
	p.metrics.Batch(ctx, p.pcfg.Stage, len(recs), committed, time.Since(start))
	if err != nil {
		if IsFatal(err) {
			return false, fmt.Errorf("end transaction: %w", err)
		}
		p.log.WarnContext(ctx, "transaction did not commit; the batch will be reprocessed", "err", err)
		return false, nil
	}
	if committed && p.onCommit != nil {
		p.onCommit(len(recs))
	}
	// committed=false with commit=true means a rebalance revoked partitions:
	// the session rewound and the new owner (or we) reprocess; no backoff.
	return committed || commit, nil
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
