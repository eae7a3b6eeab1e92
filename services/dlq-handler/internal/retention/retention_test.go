package retention

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.uber.org/goleak"

	"github.com/ecomstream/platform/pkg/config"
	"github.com/ecomstream/platform/services/dlq-handler/internal/store"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestParseSchedule(t *testing.T) {
	tests := []struct {
		give    string
		wantNil bool
		wantErr bool
	}{
		{give: "@every 1h"},
		{give: "0 3 * * *"},
		{give: "@daily"},
		{give: "off", wantNil: true},
		{give: "OFF", wantNil: true},
		{give: "", wantNil: true},
		{give: "every hour", wantErr: true},
		{give: "75 * * * *", wantErr: true},
		{give: "CRON_TZ=Europe/Berlin 0 3 * * *", wantErr: true},
	}
	for _, tt := range tests {
		s, err := ParseSchedule(tt.give)
		switch {
		case tt.wantErr:
			if err == nil || !strings.Contains(err.Error(), "DLQ_RETENTION_SCHEDULE") {
				t.Errorf("%q: %v, want an error naming DLQ_RETENTION_SCHEDULE", tt.give, err)
			}
		case err != nil:
			t.Errorf("%q: %v", tt.give, err)
		case (s == nil) != tt.wantNil:
			t.Errorf("%q: schedule %v, want nil %v", tt.give, s, tt.wantNil)
		}
	}
}

// TestConfig: the defaults are the contract's, and a zero retention is refused.
func TestConfig(t *testing.T) {
	var c Config
	if err := config.LoadFrom(config.MapLookup(nil), &c); err != nil {
		t.Fatal(err)
	}
	if p := c.Policy(); p.Resolved != 90*24*time.Hour || p.PII != 30*24*time.Hour || c.Schedule != "@every 1h" {
		t.Errorf("defaults %+v", c)
	}
	for _, v := range []string{"DLQ_RETENTION_RESOLVED", "DLQ_RETENTION_PII"} {
		var c Config
		if err := config.LoadFrom(config.MapLookup(map[string]string{v: "0s"}), &c); err == nil || !strings.Contains(err.Error(), v) {
			t.Errorf("%s=0s: %v, want an error naming it", v, err)
		}
	}
}

// fakePurge records its calls and answers from results, in order.
type fakePurge struct {
	mu      sync.Mutex
	calls   []store.RetentionPolicy
	nows    []time.Time
	results []error
}

func (f *fakePurge) purge(_ context.Context, now time.Time, p store.RetentionPolicy) (store.RetentionResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, p)
	f.nows = append(f.nows, now)
	var err error
	if len(f.results) > 0 {
		err, f.results = f.results[0], f.results[1:]
	}
	return store.RetentionResult{Deleted: 2, PIIPurged: 1}, err
}

func (f *fakePurge) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.calls)
}

// sums are the counters' totals by name.
func sums(t *testing.T, rd *sdkmetric.ManualReader) map[string]int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := rd.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if s, ok := m.Data.(metricdata.Sum[int64]); ok {
				for _, dp := range s.DataPoints {
					out[m.Name] += dp.Value
				}
			}
		}
	}
	return out
}

// TestPurge: an on-demand run applies the policy as of now and counts what
// it did, a failed one too.
func TestPurge(t *testing.T) {
	rd := sdkmetric.NewManualReader()
	meter := sdkmetric.NewMeterProvider(sdkmetric.WithReader(rd)).Meter("t")
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	f := &fakePurge{results: []error{nil, errors.New("connection refused")}}
	r, err := New(Config{Resolved: time.Hour, PII: time.Minute, Schedule: "off"}, f.purge, meter, slog.New(slog.NewTextHandler(io.Discard, nil)),
		func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	res, err := r.Purge(context.Background(), TriggerAPI)
	if err != nil || res != (store.RetentionResult{Deleted: 2, PIIPurged: 1}) {
		t.Errorf("Purge = %+v, %v", res, err)
	}
	if f.calls[0] != (store.RetentionPolicy{Resolved: time.Hour, PII: time.Minute}) || !f.nows[0].Equal(now) {
		t.Errorf("purge called with %+v at %v", f.calls[0], f.nows[0])
	}
	if _, err := r.Purge(context.Background(), TriggerAPI); err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("failed Purge = %v", err)
	}
	got := sums(t, rd)
	want := map[string]int64{"ecom.dlq.retention_runs": 2, "ecom.dlq.retention_deleted": 4, "ecom.dlq.retention_pii_purged": 2}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %d, want %d", k, got[k], v)
		}
	}
}

// every is a schedule of a short period.
type every time.Duration

func (e every) Next(t time.Time) time.Time { return t.Add(time.Duration(e)) }

// TestRun: the schedule runs the retention again and again, a failed run
// does not stop it, and no schedule runs nothing.
func TestRun(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	meter := sdkmetric.NewMeterProvider().Meter("t")
	f := &fakePurge{results: []error{errors.New("down")}}
	r, err := New(Config{Resolved: time.Hour, PII: time.Hour, Schedule: "@every 1h"}, f.purge, meter, log, nil)
	if err != nil {
		t.Fatal(err)
	}
	r.schedule = every(5 * time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	deadline := time.Now().Add(5 * time.Second)
	for f.count() < 3 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run = %v", err)
	}
	if n := f.count(); n < 3 {
		t.Errorf("%d scheduled runs, want at least 3 (the first failed)", n)
	}

	off := &fakePurge{}
	r, err = New(Config{Resolved: time.Hour, PII: time.Hour, Schedule: "off"}, off.purge, meter, log, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := r.Run(ctx); err != nil || off.count() != 0 {
		t.Errorf("Run without a schedule = %v after %d runs, want nil after none", err, off.count())
	}
}
