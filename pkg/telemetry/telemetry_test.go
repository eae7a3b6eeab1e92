package telemetry

import (
	"context"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestSetupServesMetricsAndTraces(t *testing.T) {
	tel, shutdown, err := Setup(context.Background(), "svc", "v1", Config{SampleRatio: 1, Environment: "test"})
	if err != nil {
		t.Fatal(err)
	}
	defer shutdown(context.Background())
	c, err := tel.Meter.Int64Counter("ecom.test.things")
	if err != nil {
		t.Fatal(err)
	}
	c.Add(context.Background(), 3)
	_, span := tel.Tracer.Start(context.Background(), "x")
	if !span.SpanContext().HasTraceID() {
		t.Error("spans get no trace id without an exporter")
	}
	span.End()

	rec := httptest.NewRecorder()
	tel.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	if !strings.Contains(string(body), "ecom_test_things_total") || !strings.Contains(string(body), "go_goroutines") {
		t.Errorf("metrics missing:\n%s", body)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		give Config
		ok   bool
	}{
		{Config{SampleRatio: 1}, true},
		{Config{OTLPEndpoint: "http://127.0.0.1:4318", SampleRatio: 0.1}, true},
		{Config{OTLPEndpoint: "127.0.0.1:4318", SampleRatio: 1}, false},
		{Config{SampleRatio: 2}, false},
	}
	for _, tt := range tests {
		if err := tt.give.Validate(); (err == nil) != tt.ok {
			t.Errorf("%+v: %v", tt.give, err)
		}
	}
}
