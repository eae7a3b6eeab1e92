// Package monitor reports the store's contents as gauges: dead letters by
// state, by stage and state, and by stage/code/rule/state, the age of the
// oldest unresolved one, and the time of the oldest one waiting for an
// operator (new or failed_again; the alert signal). The counts come from one query set every refresh
// interval, not from every scrape: a scrape never waits for the database.
package monitor

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/ecomstream/platform/services/dlq-handler/internal/store"
)

// StatsFunc reads the store's counts (store.Store.Stats).
type StatsFunc func(ctx context.Context) (store.Stats, error)

// Monitor refreshes the store's stats and reports them.
type Monitor struct {
	stats    StatsFunc
	interval time.Duration
	log      *slog.Logger
	now      func() time.Time

	mu   sync.Mutex
	last *store.Stats // nil until the first refresh succeeded
}

// New registers the gauges on meter; they report nothing until Run's first
// refresh. now nil = time.Now.
func New(stats StatsFunc, interval time.Duration, meter metric.Meter, log *slog.Logger, now func() time.Time) (*Monitor, error) {
	if now == nil {
		now = time.Now
	}
	m := &Monitor{stats: stats, interval: interval, log: log, now: now}
	byState, err := meter.Int64ObservableGauge("ecom.dlq.dead_letters",
		metric.WithDescription("Dead letters in the store, by state (new, replayed, failed_again, resolved, discarded)."))
	if err != nil {
		return nil, err
	}
	byReason, err := meter.Int64ObservableGauge("ecom.dlq.dead_letters_by_reason",
		metric.WithDescription("Dead letters in the store, by stage, reason code, rule id and state (a dead letter with several reasons counts under each)."))
	if err != nil {
		return nil, err
	}
	oldest, err := meter.Float64ObservableGauge("ecom.dlq.oldest_unresolved_age", metric.WithUnit("s"),
		metric.WithDescription("Age of the oldest unresolved (new, replayed, failed_again) dead letter, from its failed_at; 0 when there is none."))
	if err != nil {
		return nil, err
	}
	byStage, err := meter.Int64ObservableGauge("ecom.dlq.dead_letters_by_stage",
		metric.WithDescription("Dead letters in the store, by stage and state; every state is reported for each stage that has a dead letter."))
	if err != nil {
		return nil, err
	}
	waiting, err := meter.Float64ObservableGauge("ecom.dlq.oldest_unresolved.timestamp", metric.WithUnit("s"),
		metric.WithDescription("Unix time (failed_at) of the oldest dead letter waiting for an operator, in state new or failed_again; 0 when there is none. time() minus it is the alert signal."))
	if err != nil {
		return nil, err
	}
	_, err = meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		m.mu.Lock()
		st := m.last
		m.mu.Unlock()
		if st == nil {
			return nil
		}
		for state, n := range st.ByState {
			o.ObserveInt64(byState, n, metric.WithAttributes(attribute.String("state", state)))
		}
		for _, rc := range st.ByReason {
			o.ObserveInt64(byReason, rc.Count, metric.WithAttributes(attribute.String("stage", rc.Stage), attribute.String("code", rc.Code),
				attribute.String("rule_id", rc.RuleID), attribute.String("state", rc.State)))
		}
		for stage, states := range st.ByStage {
			for state, n := range states {
				o.ObserveInt64(byStage, n, metric.WithAttributes(attribute.String("stage", stage), attribute.String("state", state)))
			}
		}
		o.ObserveFloat64(oldest, OldestAge(st.OldestUnresolved, m.now()))
		o.ObserveFloat64(waiting, Timestamp(st.OldestWaiting))
		return nil
	}, byState, byReason, byStage, oldest, waiting)
	if err != nil {
		return nil, err
	}
	return m, nil
}

// OldestAge is the age in seconds of the oldest unresolved dead letter
// failed at oldest (zero: none, age 0).
func OldestAge(oldest, now time.Time) float64 {
	if oldest.IsZero() {
		return 0
	}
	return max(now.Sub(oldest).Seconds(), 0)
}

// Timestamp is t in unix seconds, 0 for the zero time (no dead letter).
func Timestamp(t time.Time) float64 {
	if t.IsZero() {
		return 0
	}
	return float64(t.UnixNano()) / 1e9
}

// Refresh reads the stats once. A failure keeps the last stats (the gauges
// go on reporting them) and is returned.
func (m *Monitor) Refresh(ctx context.Context) error {
	st, err := m.stats(ctx)
	if err != nil {
		return err
	}
	m.mu.Lock()
	m.last = &st
	m.mu.Unlock()
	return nil
}

// Run refreshes the stats every interval until ctx ends.
func (m *Monitor) Run(ctx context.Context) error {
	t := time.NewTicker(m.interval)
	defer t.Stop()
	for {
		if err := m.Refresh(ctx); err != nil && ctx.Err() == nil {
			m.log.WarnContext(ctx, "reading the store's stats failed; the gauges keep the last ones", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
