package stream

import (
	"context"
	"testing"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/ecomstream/platform/pkg/deadletter"
)

// TestDeadLetteredEntity: ecom.dead_letters carries the rejection's entity
// on every increment, UnknownEntity when the rejection names none, so a
// stage reading several entities (the validator, bq-writer) tells an
// order's dead letter from a click's even without a rule id.
func TestDeadLetteredEntity(t *testing.T) {
	tests := []struct {
		name string
		rej  *deadletter.Rejection
		want map[string]int64 // entity/code -> count
	}{
		{"order without rule", &deadletter.Rejection{Entity: "order", Reasons: []deadletter.Reason{{Code: deadletter.Undecodable}}},
			map[string]int64{"order/UNDECODABLE": 1}},
		{"click with two reasons", &deadletter.Rejection{Entity: "click_event", Reasons: []deadletter.Reason{{Code: deadletter.MissingField}, {Code: deadletter.InvalidValue}}},
			map[string]int64{"click_event/MISSING_FIELD": 1, "click_event/INVALID_VALUE": 1}},
		{"no entity", deadletter.Rejectf(deadletter.Internal, "", "panic"), map[string]int64{UnknownEntity + "/INTERNAL": 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reader := sdkmetric.NewManualReader()
			m, err := NewMetrics(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)).Meter("t"))
			if err != nil {
				t.Fatal(err)
			}
			m.DeadLettered(context.Background(), "validator", tt.rej)
			var rm metricdata.ResourceMetrics
			if err := reader.Collect(context.Background(), &rm); err != nil {
				t.Fatal(err)
			}
			got := map[string]int64{}
			for _, sm := range rm.ScopeMetrics {
				for _, md := range sm.Metrics {
					if md.Name != "ecom.dead_letters" {
						continue
					}
					for _, p := range md.Data.(metricdata.Sum[int64]).DataPoints {
						entity, _ := p.Attributes.Value("entity")
						code, _ := p.Attributes.Value("code")
						got[entity.AsString()+"/"+code.AsString()] += p.Value
					}
				}
			}
			if len(got) != len(tt.want) {
				t.Fatalf("ecom.dead_letters %v, want %v", got, tt.want)
			}
			for k, v := range tt.want {
				if got[k] != v {
					t.Errorf("ecom.dead_letters %v, want %v", got, tt.want)
				}
			}
		})
	}
}

// TestDeclareStage: a stage's transient-error counter is exported at 0
// before any error (Measure declares it), so WarehouseWritesRetrying and the
// dashboards find a series from the start.
func TestDeclareStage(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	m, err := NewMetrics(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)).Meter("t"))
	if err != nil {
		t.Fatal(err)
	}
	_ = Measure("bq-writer", m)
	m.DeclareStage(context.Background(), "dlq-handler")
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, md := range sm.Metrics {
			if md.Name != "ecom.transient_errors" {
				continue
			}
			for _, p := range md.Data.(metricdata.Sum[int64]).DataPoints {
				stage, _ := p.Attributes.Value("stage")
				got[stage.AsString()] = p.Value
			}
		}
	}
	want := map[string]int64{"bq-writer": 0, "dlq-handler": 0}
	if len(got) != len(want) || got["bq-writer"] != 0 || got["dlq-handler"] != 0 {
		t.Fatalf("ecom.transient_errors points %v, want %v", got, want)
	}
}
