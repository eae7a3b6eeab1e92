package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ecomstream/platform/deploy/local/slice"
	"github.com/ecomstream/platform/deploy/local/storefront"
)

func TestValidateOrders(t *testing.T) {
	ok := options{ordersRate: 50, ordersBurst: 20, ordersDuration: time.Minute, ordersPoll: 15 * time.Second}
	tests := []struct {
		name    string
		give    func(*options)
		wantErr string
	}{
		{"defaults", func(*options) {}, ""},
		{"no burst", func(o *options) { o.ordersBurst = 1 }, ""},
		{"count and faults", func(o *options) { o.ordersCount, o.ordersFaults = 5000, 1 }, ""},
		{"zero rate", func(o *options) { o.ordersRate = 0 }, "-orders-rate"},
		{"burst below 1", func(o *options) { o.ordersBurst = 0.5 }, "-orders-burst"},
		{"no duration", func(o *options) { o.ordersDuration = 0 }, "-orders-duration"},
		{"negative count", func(o *options) { o.ordersCount = -1 }, "-orders-count"},
		{"no poll", func(o *options) { o.ordersPoll = 0 }, "-orders-poll"},
		{"fault rate above 1", func(o *options) { o.ordersFaults = 1.5 }, "-orders-fault-rate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := ok
			tt.give(&o)
			err := validateOrders(o)
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.HasPrefix(err.Error(), tt.wantErr)) {
				t.Errorf("validateOrders() = %v, want an error starting %q", err, tt.wantErr)
			}
		})
	}
}

func TestOrdersMissing(t *testing.T) {
	tests := []struct {
		name     string
		files    map[string]string // binary name -> contents
		wantWhy  string            // substring; "" = runs
		wantErrs bool
	}{
		{"all there", map[string]string{"ingest-orders": "x", "validator": "..ORDERS_INPUT_TOPIC..", "bq-writer": "ORDERS_INPUT_TOPIC", "storefront": "x"}, "", false},
		{"no ingest-orders", map[string]string{"validator": "ORDERS_INPUT_TOPIC", "bq-writer": "ORDERS_INPUT_TOPIC", "storefront": "x"}, "has no ingest-orders", false},
		{"old bq-writer", map[string]string{"ingest-orders": "x", "validator": "ORDERS_INPUT_TOPIC", "bq-writer": "INPUT_TOPIC", "storefront": "x"}, "bq-writer does not read orders", false},
		{"no storefront", map[string]string{"ingest-orders": "x", "validator": "ORDERS_INPUT_TOPIC", "bq-writer": "ORDERS_INPUT_TOPIC"}, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, body := range tt.files {
				if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			why, err := ordersMissing(dir)
			if (err != nil) != tt.wantErrs {
				t.Fatalf("ordersMissing() error = %v, want error %v", err, tt.wantErrs)
			}
			if tt.wantWhy == "" && why != "" || !strings.Contains(why, tt.wantWhy) {
				t.Errorf("ordersMissing() = %q, want it to contain %q", why, tt.wantWhy)
			}
		})
	}
}

func TestServicesIn(t *testing.T) {
	old, cur := t.TempDir(), t.TempDir()
	for _, svc := range []string{"ingest-orders", "catalog-sync"} {
		if err := os.MkdirAll(filepath.Join(cur, "services", svc), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(cur, "services", svc, "main.go"), []byte("package main"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	names, missing := servicesIn(old)
	if !slices.Equal(names, []string{"ingest-clickstream", "validator", "bq-writer"}) || !slices.Equal(missing, []string{"ingest-orders", "catalog-sync"}) {
		t.Errorf("servicesIn(old) = %v, %v", names, missing)
	}
	names, missing = servicesIn(cur)
	if !slices.Equal(names, []string{"ingest-clickstream", "validator", "bq-writer", "ingest-orders", "catalog-sync"}) || len(missing) != 0 {
		t.Errorf("servicesIn(current) = %v, %v", names, missing)
	}
}

var t0 = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

func versionLine(t *testing.T, id string, version int, updated time.Time, broken string, late bool) []byte {
	t.Helper()
	b, err := json.Marshal(storefront.Version{Order: storefront.Order{ID: id, Version: version, UpdatedAt: updated, CreatedAt: updated}, Broken: broken, Late: late})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseVersion(t *testing.T) {
	tests := []struct {
		name    string
		give    []byte
		want    madeVersion
		wantErr bool
	}{
		{"valid", versionLine(t, "o-1", 2, t0, "", false), madeVersion{versionKey{"o-1", 2}, t0, false, false}, false},
		{"broken", versionLine(t, "o-2", 1, t0, storefront.BrokenNoLines, false), madeVersion{versionKey{"o-2", 1}, t0, true, false}, false},
		{"late", versionLine(t, "o-3", 3, t0, "", true), madeVersion{versionKey{"o-3", 3}, t0, false, true}, false},
		{"no id", versionLine(t, "", 1, t0, "", false), madeVersion{}, true},
		{"version 0", versionLine(t, "o-4", 0, t0, "", false), madeVersion{}, true},
		{"not json", []byte(`{"order":`), madeVersion{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseVersion(tt.give)
			if (err != nil) != tt.wantErr || !got.updated.Equal(tt.want.updated) || got.versionKey != tt.want.versionKey || got.broken != tt.want.broken || got.late != tt.want.late {
				t.Errorf("parseVersion() = %+v, %v; want %+v, error %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestLatestValid(t *testing.T) {
	made := []madeVersion{
		{versionKey: versionKey{"a", 1}}, {versionKey: versionKey{"a", 2}},
		{versionKey: versionKey{"b", 1}}, {versionKey: versionKey{"b", 2}, broken: true}, // illegal_transition: v2 dead-lettered
		{versionKey: versionKey{"c", 1}, broken: true}, // broken from the start: never lands
		{versionKey: versionKey{"d", 3}, late: true}, {versionKey: versionKey{"d", 2}},
	}
	got := latestValid(made)
	want := map[string]int{"a": 2, "b": 1, "d": 3}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("latestValid() = %v, want %v", got, want)
	}
}

func us(d time.Duration) float64 { return float64(t0.Add(d).UnixMicro()) }

func TestLandedSet(t *testing.T) {
	l := newLandedSet()
	if !strings.Contains(l.sampleSQL(), ">= -5000000") {
		t.Errorf("first sample: %s", l.sampleSQL())
	}
	err := l.add([][]any{
		{"a", 1.0, "webhook", us(0), us(100 * time.Millisecond), us(time.Second)},
		{"b", 1.0, "api", us(0), nil, us(2 * time.Second)},
	})
	if err != nil {
		t.Fatal(err)
	}
	// The next sample overlaps the first by sampleOverlap: "a" v1 again,
	// now with a later load stamp, keeps its first sight.
	if want := fmt.Sprintf(">= %d", t0.Add(2*time.Second-sampleOverlap).UnixMicro()); !strings.Contains(l.sampleSQL(), want) {
		t.Errorf("second sample: %s, want %s", l.sampleSQL(), want)
	}
	err = l.add([][]any{
		{"a", 1.0, "webhook", us(0), us(100 * time.Millisecond), us(9 * time.Second)},
		{"a", 3.0, "api", us(5 * time.Second), us(6 * time.Second), us(7 * time.Second)},
		{"c", json.Number("2"), "webhook", us(0), json.Number(fmt.Sprint(t0.UnixMicro())), int64(t0.Add(3 * time.Second).UnixMicro())},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := l.versions[versionKey{"a", 1}].loaded; !got.Equal(t0.Add(time.Second)) {
		t.Errorf("a v1 loaded %v, want its first sight %v", got, t0.Add(time.Second))
	}
	if !l.versions[versionKey{"b", 1}].received.IsZero() {
		t.Errorf("b v1: a NULL received_at should be zero")
	}
	if fmt.Sprint(l.latest) != "map[a:3 b:1 c:2]" {
		t.Errorf("latest = %v", l.latest)
	}

	tests := []struct {
		name        string
		expected    map[string]int
		wantMissing int
		wantAt      time.Time
	}{
		// a's v2 was replaced by v3 between samples: v3's load counts.
		{"caught up", map[string]int{"a": 2, "b": 1, "c": 2}, 0, t0.Add(7 * time.Second)},
		{"older versions", map[string]int{"a": 1, "c": 1}, 0, t0.Add(3 * time.Second)}, // c v1 unseen: v2 counts
		{"behind", map[string]int{"a": 4, "b": 1, "d": 1}, 2, time.Time{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			missing, at := l.catchUp(tt.expected)
			if missing != tt.wantMissing || !at.Equal(tt.wantAt) {
				t.Errorf("catchUp() = %d, %v; want %d, %v", missing, at, tt.wantMissing, tt.wantAt)
			}
		})
	}

	for _, bad := range [][]any{
		{"a", 1.0, "api", us(0), nil},                 // 5 values
		{nil, 1.0, "api", us(0), nil, us(0)},          // no id
		{"a", "one", "api", us(0), nil, us(0)},        // version not a number
		{"a", 1.0, "api", us(0), nil, nil},            // no loaded_at
		{"a", 1.0, "api", true, us(0), us(0)},         // updated_at not a number
		{"a", 1.0, nil, us(0), us(0), us(0)},          // no source
		{"a", 1.0, "api", us(0), us(0), "yesterday"},  // loaded_at not a number
		{"a", 1.0, "api", us(0), "x", "not a number"}, // both
	} {
		if err := newLandedSet().add([][]any{bad}); err == nil {
			t.Errorf("add(%v): no error", bad)
		}
	}
}

func TestOrderLatencies(t *testing.T) {
	made := []madeVersion{
		{versionKey: versionKey{"a", 1}, updated: t0},
		{versionKey: versionKey{"a", 2}, updated: t0.Add(time.Second)},
		{versionKey: versionKey{"b", 1}, updated: t0},
		{versionKey: versionKey{"c", 1}, updated: t0, late: true},   // not measured
		{versionKey: versionKey{"d", 1}, updated: t0, broken: true}, // not measured
		{versionKey: versionKey{"e", 1}, updated: t0},               // never seen landing
	}
	landed := map[versionKey]landedVersion{
		{"a", 1}: {source: "webhook", updated: t0, received: t0.Add(50 * time.Millisecond), loaded: t0.Add(300 * time.Millisecond)},
		{"a", 2}: {source: "webhook", updated: t0, received: t0.Add(1100 * time.Millisecond), loaded: t0.Add(1500 * time.Millisecond)},
		{"b", 1}: {source: "api", updated: t0, received: t0.Add(8 * time.Second), loaded: t0.Add(8500 * time.Millisecond)},
		{"c", 1}: {source: "api", updated: t0, received: t0.Add(time.Minute), loaded: t0.Add(time.Minute)},
		{"d", 1}: {source: "api", updated: t0, loaded: t0.Add(time.Minute)},
	}
	got := orderLatencies(made, landed)
	ms := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	want := map[string]latencies{
		"all":     {total: ms(300, 500, 8500), ingest: ms(50, 100, 8000), pipeline: ms(250, 400, 500)},
		"webhook": {total: ms(300, 500), ingest: ms(50, 100), pipeline: ms(250, 400)},
		"api":     {total: ms(8500), ingest: ms(8000), pipeline: ms(500)},
	}
	if len(got) != len(want) {
		t.Fatalf("orderLatencies() has %d populations, want %d: %v", len(got), len(want), got)
	}
	for k, w := range want {
		g := got[k]
		if g == nil || !slices.Equal(g.total, w.total) || !slices.Equal(g.ingest, w.ingest) || !slices.Equal(g.pipeline, w.pipeline) {
			t.Errorf("orderLatencies()[%q] = %+v, want %+v", k, g, w)
		}
	}
	if p := percentile(got["all"].total, 0.5); p != 500*time.Millisecond {
		t.Errorf("p50 = %v, want 500ms", p)
	}
}

func TestOrderCountersOf(t *testing.T) {
	ingest := []slice.Series{
		{Name: "ecom_orders_produced_total", Labels: map[string]string{"source": "api", "otel_scope_name": "x"}, Value: 120},
		{Name: "ecom_orders_produced_total", Labels: map[string]string{"source": "webhook"}, Value: 900},
		{Name: "ecom_orders_cursor_lag_seconds", Value: 14.5},
		{Name: "ecom_orders_pages_polled_total", Value: 7},
	}
	validator := []slice.Series{
		{Name: "ecom_records_processed_total", Labels: map[string]string{"topic": "p.ecom.orders.v1", "outcome": "dead_lettered"}, Value: 11},
		{Name: "ecom_records_processed_total", Labels: map[string]string{"topic": "p.ecom.orders.v1", "outcome": "ok"}, Value: 1000},
		{Name: "ecom_records_processed_total", Labels: map[string]string{"topic": "p.ecom.events.v1", "outcome": "dead_lettered"}, Value: 99},
	}
	writer := []slice.Series{
		{Name: "ecom_warehouse_rows_total", Labels: map[string]string{"table": "fact_orders", "result": "inserted"}, Value: 800},
		{Name: "ecom_warehouse_rows_total", Labels: map[string]string{"table": "fact_orders", "result": "replaced"}, Value: 150},
		{Name: "ecom_warehouse_rows_total", Labels: map[string]string{"table": "fact_orders", "result": "duplicate"}, Value: 70},
		{Name: "ecom_warehouse_rows_total", Labels: map[string]string{"table": "fact_events", "result": "inserted"}, Value: 5000},
	}
	got := orderCountersOf(ingest, validator, writer, "p.ecom.orders.v1")
	if fmt.Sprint(got.produced) != "map[api:120 webhook:900]" || got.lag != 14.5 || got.deadLettered != 11 ||
		fmt.Sprint(got.rows) != "map[duplicate:70 inserted:800 replaced:150]" {
		t.Errorf("orderCountersOf() = %+v", got)
	}
}
