package poller

import (
	"context"
	"log/slog"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/ecomstream/platform/services/ingest-orders/internal/cursor"
	"github.com/ecomstream/platform/services/ingest-orders/internal/storefront"
)

func TestCursorLagSeconds(t *testing.T) {
	wall := time.Date(2026, 12, 1, 20, 0, 0, 0, time.UTC)
	tests := []struct {
		name              string
		polled            bool
		since, shop, seen time.Time
		now               time.Time
		want              float64
	}{
		{"before the first poll", false, time.Time{}, time.Time{}, time.Time{}, wall, 0},
		{"polled, no order ever", true, time.Time{}, t0, wall, wall, 0},
		{"at the page", true, t0, t0.Add(30 * time.Second), wall, wall, 30},
		{"grows with the wall clock after the page", true, t0, t0.Add(30 * time.Second), wall, wall.Add(time.Minute), 90},
		{"no shop time: the wall clock", true, wall.Add(-time.Minute), time.Time{}, wall, wall.Add(10 * time.Second), 70},
		{"cursor ahead of the shop's clock", true, t0.Add(time.Minute), t0, wall, wall, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := &cursorLag{}
			if tt.polled {
				l.page(tt.since, tt.shop, tt.seen)
			}
			if got := l.seconds(tt.now); got != tt.want {
				t.Errorf("lag %v, want %v", got, tt.want)
			}
		})
	}
}

// lagGauge collects ecom.orders.cursor_lag.
func lagGauge(t *testing.T, rd *sdkmetric.ManualReader) (float64, bool) {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := rd.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name == "ecom.orders.cursor_lag" && m.Unit == "s" {
				for _, p := range m.Data.(metricdata.Gauge[float64]).DataPoints {
					return p.Value, true
				}
			}
		}
	}
	return 0, false
}

// TestPollerCursorLag: 0 before the first poll; after a page, the shop time (the fake API's
// T0+1h) minus the page's newest updated_at; then it grows with the wall clock while no round
// succeeds.
func TestPollerCursorLag(t *testing.T) {
	e := newEnv(t, []answer{{Page: []storefront.Order{order("o-a", 1, time.Second), order("o-b", 1, 2*time.Second)}}}, jsonEncoder{}, cursor.Cursor{})
	rd := sdkmetric.NewManualReader()
	wall := time.Date(2026, 12, 1, 20, 0, 0, 0, time.UTC)
	now := wall
	p, err := New(e.p.cfg, Deps{API: e.p.d.API, Txn: e.txn, Orders: jsonEncoder{}, Topic: topic, Tracer: e.p.d.Tracer,
		Meter: sdkmetric.NewMeterProvider(sdkmetric.WithReader(rd)).Meter("t"), Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	p.now = func() time.Time { return now }
	if v, ok := lagGauge(t, rd); !ok || v != 0 {
		t.Errorf("before the first poll: %v (reported %v), want 0", v, ok)
	}
	if err := p.Round(context.Background()); err != nil {
		t.Fatal(err)
	}
	newest := p.Cursor().Since
	want := t0.Add(time.Hour).Sub(newest).Seconds()
	if v, _ := lagGauge(t, rd); v != want {
		t.Errorf("after the page: %v, want %v (shop time - cursor %v)", v, want, newest)
	}
	now = wall.Add(5 * time.Minute)
	if v, _ := lagGauge(t, rd); v != want+300 {
		t.Errorf("5 minutes without a round: %v, want %v", v, want+300)
	}
}

// TestPollerCursorLagAfterRestart: a poller started from a committed cursor
// reports the lag from it before any round succeeds (wall clock: no page has
// brought the shop's yet), so a restart into a failing API still alerts.
func TestPollerCursorLagAfterRestart(t *testing.T) {
	wall := time.Date(2026, 12, 1, 20, 0, 0, 0, time.UTC)
	e := newEnv(t, nil, jsonEncoder{}, cursor.Cursor{})
	rd := sdkmetric.NewManualReader()
	p, err := New(e.p.cfg, Deps{API: e.p.d.API, Txn: e.txn, Orders: jsonEncoder{}, Topic: topic, Tracer: e.p.d.Tracer,
		Meter: sdkmetric.NewMeterProvider(sdkmetric.WithReader(rd)).Meter("t"), Log: slog.New(slog.DiscardHandler),
		Start: cursor.Cursor{Since: wall.Add(-10 * time.Minute)}})
	if err != nil {
		t.Fatal(err)
	}
	p.now = func() time.Time { return wall }
	if v, ok := lagGauge(t, rd); !ok || v != 600 {
		t.Errorf("after a restart, before any round: %v (reported %v), want 600 (now - the committed cursor)", v, ok)
	}
}

// TestAPIErrorsFromTheStart: ecom.orders.api_errors is exported (at 0) before
// the first failure, so the error-rate alert and dashboards see a series.
func TestAPIErrorsFromTheStart(t *testing.T) {
	rd := sdkmetric.NewManualReader()
	if _, err := newMetrics(sdkmetric.NewMeterProvider(sdkmetric.WithReader(rd)).Meter("t"), time.Now); err != nil {
		t.Fatal(err)
	}
	var rm metricdata.ResourceMetrics
	if err := rd.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name == "ecom.orders.api_errors" {
				if pts := m.Data.(metricdata.Sum[int64]).DataPoints; len(pts) == 1 && pts[0].Value == 0 {
					return
				}
				t.Fatalf("ecom.orders.api_errors before any failure: %+v, want one point at 0", m.Data)
			}
		}
	}
	t.Fatal("ecom.orders.api_errors is not exported before the first failure")
}
