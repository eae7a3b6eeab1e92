package stream

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// LagReporter exposes a consumer group's lag (log end offset minus committed
// offset, per partition) as the gauge ecom.consumer.lag. It asks the brokers
// every interval, so the figure is what an operator's kadm/kafka-consumer-groups
// would show, including for partitions this instance does not own.
type LagReporter struct {
	adm      *kadm.Client
	group    string
	interval time.Duration
	log      *slog.Logger

	mu   sync.Mutex
	last map[string]map[int32]int64
}

// NewLagReporter registers the gauge on meter.
func NewLagReporter(adm *kadm.Client, group string, interval time.Duration, meter metric.Meter, log *slog.Logger) (*LagReporter, error) {
	r := &LagReporter{adm: adm, group: group, interval: interval, log: log}
	_, err := meter.Int64ObservableGauge("ecom.consumer.lag",
		metric.WithDescription("Records not yet consumed by the group, per topic and partition."),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			r.mu.Lock()
			defer r.mu.Unlock()
			for topic, parts := range r.last {
				for p, lag := range parts {
					o.Observe(lag, metric.WithAttributes(
						attribute.String("group", group), attribute.String("topic", topic),
						attribute.String("partition", strconv.Itoa(int(p)))))
				}
			}
			return nil
		}))
	return r, err
}

// Run refreshes the lag until ctx is done.
func (r *LagReporter) Run(ctx context.Context) error {
	t := time.NewTicker(r.interval)
	defer t.Stop()
	for {
		r.refresh(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (r *LagReporter) refresh(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, r.interval)
	defer cancel()
	lags, err := r.adm.Lag(ctx, r.group)
	if err != nil {
		if ctx.Err() == nil {
			r.log.DebugContext(ctx, "consumer lag unavailable", "err", err)
		}
		return
	}
	next := map[string]map[int32]int64{}
	for _, gl := range lags {
		for topic, parts := range gl.Lag {
			for p, l := range parts {
				if l.Err != nil || l.Lag < 0 {
					continue
				}
				if next[topic] == nil {
					next[topic] = map[int32]int64{}
				}
				next[topic][p] = l.Lag
			}
		}
	}
	r.mu.Lock()
	r.last = next
	r.mu.Unlock()
}
