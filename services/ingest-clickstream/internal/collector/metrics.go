package collector

import (
	"context"
	"strconv"
	"sync"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// metrics are the collector's instruments (ecom_collector_* in Prometheus).
type metrics struct {
	requests metric.Int64Counter
	events   metric.Int64Counter
	duration metric.Float64Histogram

	mu     sync.RWMutex
	byCode map[int]metric.MeasurementOption
	result map[string]metric.MeasurementOption
}

func newMetrics(meter metric.Meter, inflight func() int64) (*metrics, error) {
	m := &metrics{byCode: map[int]metric.MeasurementOption{}, result: map[string]metric.MeasurementOption{}}
	var err error
	if m.requests, err = meter.Int64Counter("ecom.collector.requests",
		metric.WithDescription("HTTP collector requests answered, by status code.")); err != nil {
		return nil, err
	}
	if m.events, err = meter.Int64Counter("ecom.collector.events",
		metric.WithDescription("Events in requests answered 200, by result (accepted, rejected).")); err != nil {
		return nil, err
	}
	if m.duration, err = meter.Float64Histogram("ecom.collector.request.duration", metric.WithUnit("s"),
		metric.WithDescription("Time from a request's arrival to its answer (Kafka's acks included)."),
		metric.WithExplicitBucketBoundaries(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)); err != nil {
		return nil, err
	}
	if _, err = meter.Int64ObservableGauge("ecom.collector.inflight.bytes", metric.WithUnit("By"),
		metric.WithDescription("Request bytes whose records await Kafka's acks (bounded by COLLECTOR_MAX_INFLIGHT_BYTES)."),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			o.Observe(inflight())
			return nil
		})); err != nil {
		return nil, err
	}
	for _, r := range []string{"accepted", "rejected"} {
		m.result[r] = metric.WithAttributeSet(attribute.NewSet(attribute.String("result", r)))
		// Exported at 0 from the start: the dashboards and the health page rate it, and a
		// collector nobody has sent to yet is not "no data".
		m.events.Add(context.Background(), 0, m.result[r])
	}
	return m, nil
}

func (m *metrics) code(status int) metric.MeasurementOption {
	m.mu.RLock()
	o, ok := m.byCode[status]
	m.mu.RUnlock()
	if ok {
		return o
	}
	o = metric.WithAttributeSet(attribute.NewSet(attribute.String("code", strconv.Itoa(status))))
	m.mu.Lock()
	m.byCode[status] = o
	m.mu.Unlock()
	return o
}

func (m *metrics) request(ctx context.Context, status int, seconds float64) {
	o := m.code(status)
	m.requests.Add(ctx, 1, o)
	m.duration.Record(ctx, seconds, o)
}

func (m *metrics) eventsAnswered(ctx context.Context, accepted, rejected int) {
	if accepted > 0 {
		m.events.Add(ctx, int64(accepted), m.result["accepted"])
	}
	if rejected > 0 {
		m.events.Add(ctx, int64(rejected), m.result["rejected"])
	}
}
