package replay

import (
	"context"
	"sync"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// Meter is the OTel meter the service's metrics are made with.
type Meter = metric.Meter

// metrics: counters of what this replica did, and gauges of the outbox as
// the leader last read it (refreshed every resolver round).
type metrics struct {
	replays metric.Int64Counter // by event: planned, sent, withdrawn, resolved

	mu       sync.Mutex
	outcomes map[string]int64 // replays rows by outcome
	jobs     map[string]int64 // replay_jobs rows by state
}

func newMetrics(m Meter) (*metrics, error) {
	ms := &metrics{}
	if m == nil {
		return ms, nil
	}
	var err error
	if ms.replays, err = m.Int64Counter("ecom.dlq.replay_events",
		metric.WithDescription("Replays by event: planned (recorded in the outbox), sent (produced and marked), withdrawn (could not be sent: purged original, refused by the topic), resolved.")); err != nil {
		return nil, err
	}
	outcomes, err := m.Int64ObservableGauge("ecom.dlq.replays",
		metric.WithDescription("Replays in the store by outcome (pending, sent, resolved, failed_again), as the sending replica last counted them."))
	if err != nil {
		return nil, err
	}
	jobs, err := m.Int64ObservableGauge("ecom.dlq.replay_jobs",
		metric.WithDescription("Replay jobs in the store by state (running, succeeded, failed, cancelled), as the sending replica last counted them."))
	if err != nil {
		return nil, err
	}
	_, err = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		ms.mu.Lock()
		defer ms.mu.Unlock()
		for k, v := range ms.outcomes {
			o.ObserveInt64(outcomes, v, metric.WithAttributes(attribute.String("outcome", k)))
		}
		for k, v := range ms.jobs {
			o.ObserveInt64(jobs, v, metric.WithAttributes(attribute.String("state", k)))
		}
		return nil
	}, outcomes, jobs)
	return ms, err
}

func (m *metrics) add(ctx context.Context, event string, n int) {
	if m.replays != nil && n > 0 {
		m.replays.Add(ctx, int64(n), metric.WithAttributes(attribute.String("event", event)))
	}
}

func (m *metrics) planned(ctx context.Context, n int)  { m.add(ctx, "planned", n) }
func (m *metrics) sent(ctx context.Context, n int)     { m.add(ctx, "sent", n) }
func (m *metrics) withdrawn(ctx context.Context)       { m.add(ctx, "withdrawn", 1) }
func (m *metrics) resolved(ctx context.Context, n int) { m.add(ctx, "resolved", n) }

func (m *metrics) set(outcomes, jobs map[string]int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.outcomes, m.jobs = outcomes, jobs
}
