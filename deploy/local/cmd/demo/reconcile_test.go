package main

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ecomstream/platform/deploy/local/reconcile"
)

func TestReconcileWindow(t *testing.T) {
	start := time.Date(2026, 12, 1, 20, 0, 0, 0, time.UTC)
	tests := []struct {
		name     string
		now      time.Time
		ok       bool
		from, to time.Time
	}{
		{name: "within the settle time of the start: no window", now: start.Add(time.Minute)},
		{name: "at the settle time: none yet (empty)", now: start.Add(reconcileSettle)},
		{name: "early: from the start, not before", now: start.Add(5 * time.Minute), ok: true, from: start, to: start.Add(3 * time.Minute)},
		{name: "later: the lookback", now: start.Add(time.Hour), ok: true, from: start.Add(53 * time.Minute), to: start.Add(58 * time.Minute)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, ok := reconcileWindow(start, tt.now)
			if ok != tt.ok || (ok && (!w.From.Equal(tt.from) || !w.To.Equal(tt.to))) {
				t.Errorf("reconcileWindow(%v) = %v, %v; want %v .. %v, %v", tt.now, w, ok, tt.from, tt.to, tt.ok)
			}
		})
	}
}

func TestReconcileSummary(t *testing.T) {
	w := reconcile.Window{From: time.Unix(0, 0), To: time.Unix(60, 0)}
	balanced := &reconcile.Report{Source: "clickstream", Window: w, Terms: map[string]int64{reconcile.TermConsumed: 5, reconcile.TermWritten: 5},
		Hops: []*reconcile.Hop{{Stage: "bq-writer", Consumed: 5, Out: map[string]int64{reconcile.TermWritten: 5}}}}
	lost := &reconcile.Report{Source: "orders", Window: w, Terms: map[string]int64{reconcile.TermConsumed: 5, reconcile.TermWritten: 4},
		Hops: []*reconcile.Hop{{Stage: "bq-writer", Consumed: 5, Out: map[string]int64{reconcile.TermWritten: 4}}}}
	inFlight := &reconcile.Report{Source: "catalog", Window: w, Terms: map[string]int64{reconcile.TermConsumed: 5},
		Hops: []*reconcile.Hop{{Stage: "bq-writer", InFlight: 5, Out: map[string]int64{}}}}
	tests := []struct {
		rep  *reconcile.Report
		want string
	}{
		{balanced, "balanced (5 records)"},
		{lost, "DIFFERENCE 1 (go run ./cmd/reconcile -source orders -from 1970-01-01T00:00:00Z -to 1970-01-01T00:01:00Z lists the records)"},
		{inFlight, "not settled"},
	}
	for _, tt := range tests {
		if got := summary(tt.rep); got != tt.want {
			t.Errorf("summary(%s) = %q, want %q", tt.rep.Source, got, tt.want)
		}
	}
}

// TestReconcilerTargets: the file_sd file names the metrics address as job reconcile of the
// slice, with an owner file, and stop removes both.
func TestReconcilerTargets(t *testing.T) {
	dir := t.TempDir()
	done := make(chan struct{})
	close(done)
	r := &reconciler{addr: "127.0.0.1:40999", id: "demo-reconcile", dir: dir, srv: &http.Server{}, cancel: func() {}, done: done}
	if err := r.writeTargets("demo"); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "demo-reconcile.json"))
	if err != nil {
		t.Fatal(err)
	}
	var groups []struct {
		Targets []string          `json:"targets"`
		Labels  map[string]string `json:"labels"`
	}
	if err := json.Unmarshal(b, &groups); err != nil {
		t.Fatal(err)
	}
	if len(groups) != 1 || len(groups[0].Targets) != 1 || groups[0].Targets[0] != r.addr ||
		groups[0].Labels["job"] != "reconcile" || groups[0].Labels["slice"] != "demo" {
		t.Errorf("targets file: %s", b)
	}
	if owner, err := os.ReadFile(filepath.Join(dir, "demo-reconcile.owner")); err != nil || strings.TrimSpace(string(owner)) == "" {
		t.Errorf("owner file: %q, %v", owner, err)
	}
	r.stop()
	if left, _ := filepath.Glob(filepath.Join(dir, "*")); len(left) != 0 {
		t.Errorf("after stop: %v left", left)
	}
}
