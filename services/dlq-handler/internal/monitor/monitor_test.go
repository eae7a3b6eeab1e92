package monitor

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.uber.org/goleak"

	"github.com/ecomstream/platform/services/dlq-handler/internal/store"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestTimestamp(t *testing.T) {
	tests := []struct {
		give time.Time
		want float64
	}{
		{time.Time{}, 0}, // none waiting: 0, as the contract says
		{time.Unix(1_764_590_400, 500_000_000), 1_764_590_400.5},
	}
	for _, tt := range tests {
		if got := Timestamp(tt.give); got != tt.want {
			t.Errorf("Timestamp(%v) = %v, want %v", tt.give, got, tt.want)
		}
	}
}

func TestOldestAge(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		oldest time.Time
		want   float64
	}{
		{time.Time{}, 0},
		{now.Add(-90 * time.Second), 90},
		{now.Add(time.Second), 0}, // a stage's clock ahead of ours
	}
	for _, tt := range tests {
		if got := OldestAge(tt.oldest, now); got != tt.want {
			t.Errorf("OldestAge(%v) = %v, want %v", tt.oldest, got, tt.want)
		}
	}
}

// points are a collection's gauge points as "name attrs" -> value.
func points(t *testing.T, rd *sdkmetric.ManualReader) map[string]float64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := rd.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	key := func(name string, s attribute.Set) string { return name + " " + s.Encoded(attribute.DefaultEncoder()) }
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Gauge[int64]:
				for _, dp := range d.DataPoints {
					out[key(m.Name, dp.Attributes)] = float64(dp.Value)
				}
			case metricdata.Gauge[float64]:
				for _, dp := range d.DataPoints {
					out[key(m.Name, dp.Attributes)] = dp.Value
				}
			}
		}
	}
	return out
}

// TestGauges: nothing before the first refresh, the stats after it, the
// last stats kept when a refresh fails.
func TestGauges(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	stats := store.Stats{
		ByState:          map[string]int64{"new": 3, "resolved": 1},
		ByReason:         []store.ReasonCount{{Stage: "validator", Code: "RULE_FAILED", RuleID: "price_positive", State: "new", Count: 3}},
		ByStage:          map[string]map[string]int64{"validator": {"new": 3, "failed_again": 0}, "bq-writer": {"resolved": 1}},
		OldestUnresolved: now.Add(-time.Hour),
		OldestWaiting:    now.Add(-30 * time.Minute),
	}
	var fail error
	rd := sdkmetric.NewManualReader()
	m, err := New(func(context.Context) (store.Stats, error) { return stats, fail }, time.Minute,
		sdkmetric.NewMeterProvider(sdkmetric.WithReader(rd)).Meter("t"), slog.New(slog.NewTextHandler(io.Discard, nil)), func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	if got := points(t, rd); len(got) != 0 {
		t.Errorf("before the first refresh: %v", got)
	}
	if err := m.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{
		"ecom.dlq.dead_letters state=new":      3,
		"ecom.dlq.dead_letters state=resolved": 1,
		"ecom.dlq.dead_letters_by_reason code=RULE_FAILED,rule_id=price_positive,stage=validator,state=new": 3,
		"ecom.dlq.oldest_unresolved_age ":                                   3600,
		"ecom.dlq.dead_letters_by_stage stage=validator,state=new":          3,
		"ecom.dlq.dead_letters_by_stage stage=validator,state=failed_again": 0,
		"ecom.dlq.dead_letters_by_stage stage=bq-writer,state=resolved":     1,
		"ecom.dlq.oldest_unresolved.timestamp ":                             float64(now.Add(-30 * time.Minute).Unix()),
	}
	check := func(when string) {
		got := points(t, rd)
		if len(got) != len(want) {
			t.Errorf("%s: %v, want %v", when, got, want)
		}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("%s: %s = %v, want %v", when, k, got[k], v)
			}
		}
	}
	check("after a refresh")
	fail = errors.New("connection refused")
	if err := m.Refresh(context.Background()); err == nil {
		t.Error("a failed refresh returned nil")
	}
	check("after a failed refresh")
}
