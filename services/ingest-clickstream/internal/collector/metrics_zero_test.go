package collector

import (
	"context"
	"testing"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// TestEventsCounterFromTheStart: ecom.collector.events is exported at 0 for
// both results before any request (the dashboards and the health page rate
// it; TestIntegrationMetricsExist found it missing when its request was not
// answered 200).
func TestEventsCounterFromTheStart(t *testing.T) {
	rd := sdkmetric.NewManualReader()
	if _, err := newMetrics(sdkmetric.NewMeterProvider(sdkmetric.WithReader(rd)).Meter("t"), func() int64 { return 0 }); err != nil {
		t.Fatal(err)
	}
	var rm metricdata.ResourceMetrics
	if err := rd.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != "ecom.collector.events" {
				continue
			}
			for _, p := range m.Data.(metricdata.Sum[int64]).DataPoints {
				r, _ := p.Attributes.Value("result")
				got[r.AsString()] = p.Value
			}
		}
	}
	if len(got) != 2 || got["accepted"] != 0 || got["rejected"] != 0 {
		t.Fatalf("ecom.collector.events before any request: %v, want accepted and rejected at 0", got)
	}
}
