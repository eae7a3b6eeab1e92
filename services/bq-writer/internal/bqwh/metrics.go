package bqwh

import (
	"context"
	"fmt"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
)

const gib = 1 << 30

type metrics struct {
	rows, bytes, retries, streams metric.Int64Counter
	latency                       metric.Float64Histogram
	cost                          metric.Float64Counter
	price                         float64
}

func newMetrics(m metric.Meter, price float64) (*metrics, error) {
	if m == nil {
		m = noop.NewMeterProvider().Meter("bqwh")
	}
	out := &metrics{price: price}
	var err error
	if out.rows, err = m.Int64Counter("ecom.bigquery.append.rows", metric.WithDescription("Rows appended to BigQuery raw tables through the Storage Write API, by table.")); err != nil {
		return nil, fmt.Errorf("bqwh: metric: %w", err)
	}
	if out.bytes, err = m.Int64Counter("ecom.bigquery.append.bytes", metric.WithUnit("By"), metric.WithDescription("Serialized row bytes appended, by table (what the Storage Write API bills).")); err != nil {
		return nil, fmt.Errorf("bqwh: metric: %w", err)
	}
	if out.retries, err = m.Int64Counter("ecom.bigquery.append.retries", metric.WithDescription("Appends retried, by gRPC code (DeadlineExceeded: no answer within the append timeout, resent on a new connection).")); err != nil {
		return nil, fmt.Errorf("bqwh: metric: %w", err)
	}
	if out.streams, err = m.Int64Counter("ecom.bigquery.streams", metric.WithDescription("Write streams by event: opened, finalized (fenced at a claim), reconnected (an append had no answer within the append timeout: a new writer and connection on the same stream), gone (named by a commit and not found: at-least-once from the commit), unknown (named by a commit, finalized before, and its row count not given again: at-least-once from the commit).")); err != nil {
		return nil, fmt.Errorf("bqwh: metric: %w", err)
	}
	if out.latency, err = m.Float64Histogram("ecom.bigquery.append.duration", metric.WithUnit("s"), metric.WithDescription("Time from sending an append to its acknowledgement, retries included, by table.")); err != nil {
		return nil, fmt.Errorf("bqwh: metric: %w", err)
	}
	if out.cost, err = m.Float64Counter("ecom.bigquery.append.cost", metric.WithUnit("{USD}"), metric.WithDescription("Estimated Storage Write API cost (bytes x BIGQUERY_PRICE_STORAGE_WRITE_USD_PER_GIB / GiB); rate() gives cost per second.")); err != nil {
		return nil, fmt.Errorf("bqwh: metric: %w", err)
	}
	return out, nil
}

func (m *metrics) appended(ctx context.Context, table string, rows int, bytes int64, seconds float64) {
	a := metric.WithAttributes(attribute.String("table", table))
	m.rows.Add(ctx, int64(rows), a)
	m.bytes.Add(ctx, bytes, a)
	m.latency.Record(ctx, seconds, a)
	m.cost.Add(ctx, float64(bytes)*m.price/gib, a)
}

func (m *metrics) retried(ctx context.Context, code string) {
	m.retries.Add(ctx, 1, metric.WithAttributes(attribute.String("code", code)))
}

func (m *metrics) stream(ctx context.Context, event string) {
	m.streams.Add(ctx, 1, metric.WithAttributes(attribute.String("event", event)))
}
