package runs

import (
	"context"
	"sync/atomic"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/ecomstream/platform/services/catalog-sync/internal/snapshot"
)

type metrics struct {
	runs, rowsRead, changes metric.Int64Counter
	duration                metric.Float64Histogram
	lastSuccess             *atomic.Int64 // unix seconds; 0 = none yet
}

func newMetrics(meter metric.Meter) (metrics, error) {
	m := metrics{lastSuccess: &atomic.Int64{}}
	var err error
	if m.runs, err = meter.Int64Counter("ecom.catalog.snapshot_runs", metric.WithDescription("finished snapshot runs, by outcome (succeeded, failed, cancelled) and trigger")); err != nil {
		return m, err
	}
	if m.rowsRead, err = meter.Int64Counter("ecom.catalog.snapshot_rows_read", metric.WithDescription("source rows read by snapshots, by table")); err != nil {
		return m, err
	}
	if m.changes, err = meter.Int64Counter("ecom.catalog.changes_sent", metric.WithDescription("change records committed by snapshots, by table, op (upsert, delete) and source (snapshot, backfill)")); err != nil {
		return m, err
	}
	if m.duration, err = meter.Float64Histogram("ecom.catalog.snapshot_duration", metric.WithUnit("s"),
		metric.WithDescription("duration of a snapshot run (this process's part of it), by outcome"),
		metric.WithExplicitBucketBoundaries(0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)); err != nil {
		return m, err
	}
	_, err = meter.Int64ObservableGauge("ecom.catalog.last_success", metric.WithUnit("s"),
		metric.WithDescription("unix time of the end of the last successful snapshot run (0 = none since start)"),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			o.Observe(m.lastSuccess.Load())
			return nil
		}))
	return m, err
}

func (m metrics) page(ctx context.Context, p snapshot.Page, source string) {
	t := attribute.String("table", p.Table)
	if p.RowsRead > 0 {
		m.rowsRead.Add(ctx, int64(p.RowsRead), metric.WithAttributes(t))
	}
	src := attribute.String("source", source)
	if p.Upserts > 0 {
		m.changes.Add(ctx, int64(p.Upserts), metric.WithAttributes(t, attribute.String("op", snapshot.OpUpsert), src))
	}
	if p.Deletes > 0 {
		m.changes.Add(ctx, int64(p.Deletes), metric.WithAttributes(t, attribute.String("op", snapshot.OpDelete), src))
	}
}
