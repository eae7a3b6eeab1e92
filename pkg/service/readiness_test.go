package service

import (
	"context"
	"errors"
	"io"
	"net/http"
	"regexp"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/ecomstream/platform/pkg/config"
	"github.com/ecomstream/platform/pkg/httpserver"
)

// gauges collects rd's int64 gauges as "name label=value" -> value.
func gauges(t *testing.T, rd *sdkmetric.ManualReader) map[string]int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := rd.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if g, ok := m.Data.(metricdata.Gauge[int64]); ok {
				for _, p := range g.DataPoints {
					out[m.Name+" "+p.Attributes.Encoded(attribute.DefaultEncoder())] = p.Value
				}
			}
		}
	}
	return out
}

// TestReadinessGauges: nothing before the first round, then the latest
// round's outcome per check and overall.
func TestReadinessGauges(t *testing.T) {
	down := errors.New("down")
	tests := []struct {
		name   string
		rounds [][]httpserver.CheckResult
		want   map[string]int64
	}{
		{"no round yet", nil, map[string]int64{}},
		{"all pass", [][]httpserver.CheckResult{{{Name: "kafka"}, {Name: "schema_registry"}}},
			map[string]int64{"ecom.ready ": 1, "ecom.ready.check check=kafka": 1, "ecom.ready.check check=schema_registry": 1}},
		{"one fails", [][]httpserver.CheckResult{{{Name: "kafka"}, {Name: "warehouse", Err: down}}},
			map[string]int64{"ecom.ready ": 0, "ecom.ready.check check=kafka": 1, "ecom.ready.check check=warehouse": 0}},
		{"the latest round counts", [][]httpserver.CheckResult{{{Name: "kafka", Err: down}}, {{Name: "kafka"}}},
			map[string]int64{"ecom.ready ": 1, "ecom.ready.check check=kafka": 1}},
		{"no checks", [][]httpserver.CheckResult{{}}, map[string]int64{"ecom.ready ": 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reader := sdkmetric.NewManualReader()
			r, err := newReadiness(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)).Meter("t"), time.Minute, time.Now)
			if err != nil {
				t.Fatal(err)
			}
			for _, round := range tt.rounds {
				r.observe(round)
			}
			got := gauges(t, reader)
			if len(got) != len(tt.want) {
				t.Fatalf("gauges %v, want %v", got, tt.want)
			}
			for k, v := range tt.want {
				if g, ok := got[k]; !ok || g != v {
					t.Errorf("gauges %v, want %v", got, tt.want)
				}
			}
		})
	}
}

// TestReadinessLoop: the loop runs a round at once and then one per
// interval, none while probes keep the outcome fresh, and stops with ctx.
func TestReadinessLoop(t *testing.T) {
	tests := []struct {
		name     string
		interval time.Duration
		probe    time.Duration // a /readyz every probe; 0 = none
		run      time.Duration
		min, max int64 // background rounds
	}{
		{"one round at start", time.Hour, 0, 100 * time.Millisecond, 1, 1},
		{"one round per interval", 30 * time.Millisecond, 0, 400 * time.Millisecond, 4, 15},
		{"probes make rounds unnecessary", 300 * time.Millisecond, 20 * time.Millisecond, 600 * time.Millisecond, 1, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := newReadiness(sdkmetric.NewMeterProvider().Meter("t"), tt.interval, time.Now)
			if err != nil {
				t.Fatal(err)
			}
			var rounds atomic.Int64
			ctx, cancel := context.WithTimeout(context.Background(), tt.run)
			defer cancel()
			done := make(chan error, 1)
			go func() {
				done <- r.run(ctx, func(context.Context) []httpserver.CheckResult {
					rounds.Add(1)
					res := []httpserver.CheckResult{{Name: "kafka"}}
					r.observe(res)
					return res
				})
			}()
			if tt.probe > 0 {
				tick := time.NewTicker(tt.probe)
			probing:
				for {
					select {
					case <-ctx.Done():
						break probing
					case <-tick.C:
						r.observe([]httpserver.CheckResult{{Name: "kafka"}})
					}
				}
				tick.Stop()
			}
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("run: %v", err)
				}
			case <-time.After(tt.run + 5*time.Second):
				t.Fatal("run did not stop with its context")
			}
			if n := rounds.Load(); n < tt.min || n > tt.max {
				t.Errorf("%d background rounds, want %d..%d", n, tt.min, tt.max)
			}
		})
	}
}

// TestRuntimeExportsReadiness: a running service exposes ecom_ready and
// ecom_ready_check on /metrics from its background round, without any
// /readyz, with the registry unreachable and a service check passing.
func TestRuntimeExportsReadiness(t *testing.T) {
	env := map[string]string{"SCHEMA_REGISTRY_URL": "http://127.0.0.1:1", "HTTP_ADDR": "127.0.0.1:0", "HTTP_READY_CHECK_TIMEOUT": "500ms"}
	load := func(cfg any) error { return config.LoadFrom(config.MapLookup(env), cfg) }
	want := []*regexp.Regexp{
		regexp.MustCompile(`(?m)^ecom_ready\{[^}]*\} 0$`),
		regexp.MustCompile(`(?m)^ecom_ready_check\{check="schema_registry"[^}]*\} 0$`),
		regexp.MustCompile(`(?m)^ecom_ready_check\{check="warehouse"[^}]*\} 1$`),
	}
	var body string
	captureStderr(t, func() {
		err := run(context.Background(), "svc", "test", load, &testConfig{}, func(ctx context.Context, rt *Runtime) error {
			rt.HTTP.AddCheck("warehouse", func(context.Context) error { return nil })
			ctx, cancel := context.WithCancel(ctx)
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- rt.Run(ctx) }()
			addr, err := rt.HTTP.Addr(ctx)
			if err != nil {
				return err
			}
			for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
				resp, err := http.Get("http://" + addr + "/metrics")
				if err != nil {
					return err
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				body = string(b)
				if matchAll(body, want) {
					break
				}
			}
			http.DefaultClient.CloseIdleConnections()
			cancel()
			return <-done
		})
		if err != nil {
			t.Errorf("run: %v", err)
		}
	})
	for _, re := range want {
		if !re.MatchString(body) {
			t.Errorf("/metrics has no line matching %s:\n%s", re, grepLines(body, "ecom_ready"))
		}
	}
}

func matchAll(s string, res []*regexp.Regexp) bool {
	for _, re := range res {
		if !re.MatchString(s) {
			return false
		}
	}
	return true
}

// grepLines is the lines of s holding sub.
func grepLines(s, sub string) string {
	var out string
	for _, l := range regexp.MustCompile(`(?m)^.*`+regexp.QuoteMeta(sub)+`.*$`).FindAllString(s, -1) {
		out += l + "\n"
	}
	return out
}
