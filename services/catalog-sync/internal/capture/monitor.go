package capture

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"go.opentelemetry.io/otel/metric"

	"github.com/ecomstream/platform/services/catalog-sync/internal/cdc"
)

// SlotCheckInterval is how often the Monitor reads the slot's health.
const SlotCheckInterval = 30 * time.Second

// Monitor watches the replication slot (retained WAL, active) for the
// metrics and, with the stream's state, answers /readyz.
type Monitor struct {
	DB        cdc.Querier
	Slot      string
	WarnBytes int64       // retained WAL above this is logged and flagged
	Streaming func() bool // the stream's Stats().Streaming
	Log       *slog.Logger
	Interval  time.Duration // default SlotCheckInterval
	check     func(ctx context.Context) (cdc.SlotHealth, error)

	mu   sync.Mutex
	last cdc.SlotHealth
	err  error
	seen bool
}

// Register adds the slot gauges to meter.
func (m *Monitor) Register(meter metric.Meter) error {
	_, err := meter.Int64ObservableGauge("ecom.catalog.cdc_slot_retained_wal", metric.WithUnit("By"),
		metric.WithDescription("WAL the replication slot keeps (pg_current_wal_lsn() - restart_lsn); alert above CATALOG_SLOT_WAL_WARN_BYTES"),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			if h, ok := m.health(); ok {
				o.Observe(h.RetainedWALBytes)
			}
			return nil
		}))
	if err != nil {
		return err
	}
	_, err = meter.Int64ObservableGauge("ecom.catalog.cdc_slot_active",
		metric.WithDescription("1 while a session streams from the slot, 0 when not (or the slot is missing)"),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			if h, ok := m.health(); ok {
				o.Observe(b2i(h.Active))
			}
			return nil
		}))
	if err != nil {
		return err
	}
	_, err = meter.Int64ObservableGauge("ecom.catalog.cdc_slot_wal_over_threshold",
		metric.WithDescription("1 when the slot retains more WAL than CATALOG_SLOT_WAL_WARN_BYTES, or its WAL is lost"),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			if h, ok := m.health(); ok {
				o.Observe(b2i(m.over(h)))
			}
			return nil
		}))
	return err
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

func (m *Monitor) over(h cdc.SlotHealth) bool {
	return h.WALStatus == "lost" || (m.WarnBytes > 0 && h.RetainedWALBytes > m.WarnBytes)
}

func (m *Monitor) health() (cdc.SlotHealth, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.last, m.seen && m.err == nil
}

func (m *Monitor) read(ctx context.Context) (cdc.SlotHealth, error) {
	if m.check != nil {
		return m.check(ctx)
	}
	return cdc.CheckSlot(ctx, m.DB, m.Slot)
}

// Run reads the slot's health every Interval until ctx ends; a failed read
// is logged and retried at the next tick (the database may be restarting).
func (m *Monitor) Run(ctx context.Context) error {
	iv := m.Interval
	if iv <= 0 {
		iv = SlotCheckInterval
	}
	t := time.NewTicker(iv)
	defer t.Stop()
	for {
		h, err := m.read(ctx)
		if ctx.Err() != nil {
			return nil
		}
		m.mu.Lock()
		m.last, m.err, m.seen = h, err, true
		m.mu.Unlock()
		switch {
		case err != nil:
			m.Log.WarnContext(ctx, "cdc: cannot read the slot's health", "slot", m.Slot, "err", err)
		case h.Exists && m.over(h):
			m.Log.WarnContext(ctx, "cdc: the slot retains WAL above the threshold (runbook: docs/runbooks/catalog-sync.md)",
				"slot", m.Slot, "retained_wal_bytes", h.RetainedWALBytes, "threshold_bytes", m.WarnBytes, "wal_status", h.WALStatus, "active", h.Active)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Ready is the /readyz check: the stream runs and the slot exists (read
// now, not from the last tick), and its WAL is not lost. Retained WAL above
// the threshold is a detail of the check, not a failure: the consumer may
// be catching up.
func (m *Monitor) Ready(ctx context.Context) error {
	if !m.Streaming() {
		return errors.New("CDC stream is not streaming")
	}
	h, err := m.read(ctx)
	if err != nil {
		return err
	}
	switch {
	case !h.Exists:
		return fmt.Errorf("replication slot %s does not exist", m.Slot)
	case h.WALStatus == "lost":
		return fmt.Errorf("replication slot %s lost its WAL: re-create it and run a full snapshot (runbook)", m.Slot)
	}
	return nil
}
