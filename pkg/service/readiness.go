package service

import (
	"context"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/ecomstream/platform/pkg/httpserver"
)

// ReadinessInterval is how often a service evaluates its readiness checks in
// the background, so ecom.ready is current even when nothing probes /readyz.
const ReadinessInterval = 15 * time.Second

// readiness exports the outcome of the latest readiness round, whichever ran
// it (a /readyz probe or the background loop), as the gauges ecom.ready
// (1 ready, 0 not) and ecom.ready.check{check} (1 ok, 0 failing).
//
// The background loop runs a round only when none ran for a whole interval:
// with a Kubernetes probe on /readyz every few seconds it adds no load on the
// dependencies, and without one it adds one round per interval.
type readiness struct {
	interval time.Duration
	now      func() time.Time

	mu      sync.Mutex
	last    []httpserver.CheckResult
	at      time.Time // when the last round ended; zero before the first
	evalled chan struct{}
}

func newReadiness(meter metric.Meter, interval time.Duration, now func() time.Time) (*readiness, error) {
	r := &readiness{interval: interval, now: now, evalled: make(chan struct{}, 1)}
	ready, err := meter.Int64ObservableGauge("ecom.ready",
		metric.WithDescription("1 when every readiness check of the service passed in the latest round (/readyz or the background round every 15 s), else 0."))
	if err != nil {
		return nil, err
	}
	check, err := meter.Int64ObservableGauge("ecom.ready.check",
		metric.WithDescription("1 when the readiness check named by the label check passed in the latest round, else 0."))
	if err != nil {
		return nil, err
	}
	_, err = meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.at.IsZero() {
			return nil // no round yet: no figure rather than a made-up one
		}
		all := int64(1)
		for _, c := range r.last {
			v := int64(1)
			if c.Err != nil {
				v, all = 0, 0
			}
			o.ObserveInt64(check, v, metric.WithAttributes(attribute.String("check", c.Name)))
		}
		o.ObserveInt64(ready, all)
		return nil
	}, ready, check)
	if err != nil {
		return nil, err
	}
	return r, nil
}

// observe records a round's outcome (httpserver.WithReadinessObserver).
func (r *readiness) observe(results []httpserver.CheckResult) {
	r.mu.Lock()
	r.last = append(r.last[:0], results...)
	r.at = r.now()
	r.mu.Unlock()
	select {
	case r.evalled <- struct{}{}:
	default:
	}
}

// due is how long until the next background round: interval after the last
// round, now when there was none.
func (r *readiness) due() time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.at.IsZero() {
		return 0
	}
	return max(r.at.Add(r.interval).Sub(r.now()), 0)
}

// run evaluates srv's checks at once and then whenever no round ran for an
// interval, until ctx is done.
func (r *readiness) run(ctx context.Context, evaluate func(context.Context) []httpserver.CheckResult) error {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-r.evalled:
			// A round ran (a probe, or ours): the next one is due an
			// interval after it.
		case <-t.C:
			if r.due() == 0 {
				evaluate(ctx)
			}
		}
		t.Reset(r.due())
	}
}
