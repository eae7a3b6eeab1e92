package capture

import (
	"context"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/ecomstream/platform/services/catalog-sync/internal/cdc"
)

// Metrics are the CDC path's instruments.
type Metrics struct {
	txs, changes, retries metric.Int64Counter
	latency               metric.Float64Histogram
	lastCommit            atomic.Int64 // unix nanoseconds of the last commit time delivered to Kafka; 0 = none yet
	now                   func() time.Time
}

// NewMetrics registers the CDC instruments on meter. stats, when set, is the
// stream's (the unconfirmed count).
func NewMetrics(meter metric.Meter, stats func() cdc.Stats) (*Metrics, error) {
	m := &Metrics{now: time.Now}
	var err error
	if m.txs, err = meter.Int64Counter("ecom.catalog.cdc_transactions", metric.WithDescription("source transactions committed to Kafka by CDC (re-deliveries included)")); err != nil {
		return nil, err
	}
	if m.changes, err = meter.Int64Counter("ecom.catalog.cdc_changes", metric.WithDescription("change records committed by CDC, by table and op (upsert, delete)")); err != nil {
		return nil, err
	}
	if m.retries, err = meter.Int64Counter("ecom.catalog.cdc_commit_retries", metric.WithDescription("failed Kafka commits of a CDC batch, retried with backoff")); err != nil {
		return nil, err
	}
	if m.latency, err = meter.Float64Histogram("ecom.catalog.cdc_commit_latency", metric.WithUnit("s"),
		metric.WithDescription("time from a transaction's commit in PostgreSQL to its Kafka commit"),
		metric.WithExplicitBucketBoundaries(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)); err != nil {
		return nil, err
	}
	if _, err = meter.Float64ObservableGauge("ecom.catalog.cdc_lag", metric.WithUnit("s"),
		metric.WithDescription("now minus the commit time of the last transaction CDC committed to Kafka (grows while the catalog is quiet; 0 = none yet)"),
		metric.WithFloat64Callback(func(_ context.Context, o metric.Float64Observer) error {
			if ns := m.lastCommit.Load(); ns > 0 {
				o.Observe(m.now().Sub(time.Unix(0, ns)).Seconds())
			} else {
				o.Observe(0)
			}
			return nil
		})); err != nil {
		return nil, err
	}
	if stats != nil {
		if _, err = meter.Int64ObservableGauge("ecom.catalog.cdc_unconfirmed", metric.WithDescription("transactions received from PostgreSQL and not yet confirmed"),
			metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
				o.Observe(int64(stats().Unconfirmed))
				return nil
			})); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *Metrics) batch(ctx context.Context, txs []cdc.Tx, changes []change, committed time.Time) {
	m.txs.Add(ctx, int64(len(txs)))
	type k struct{ table, op string }
	n := map[k]int64{}
	for _, c := range changes {
		n[k{c.table.Name, c.c.Op}]++
	}
	for key, v := range n {
		m.changes.Add(ctx, v, metric.WithAttributes(attribute.String("table", key.table), attribute.String("op", key.op)))
	}
	for _, tx := range txs {
		m.latency.Record(ctx, max(committed.Sub(tx.CommitTime), 0).Seconds())
	}
	m.lastCommit.Store(txs[len(txs)-1].CommitTime.UnixNano())
}
