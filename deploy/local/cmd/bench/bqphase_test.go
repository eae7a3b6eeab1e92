package main

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/bigquery"

	"github.com/ecomstream/platform/deploy/local/slice"
)

func TestParseGoBench(t *testing.T) {
	tests := []struct {
		name    string
		give    string
		want    string
		wantErr bool
	}{
		{
			name: "bqwh's benchmark among go test's other lines",
			give: "goos: linux\ngoarch: amd64\npkg: github.com/ecomstream/platform/services/bq-writer/internal/bqwh\ncpu: AMD EPYC\n" +
				"BenchmarkWrite100kEvents-2   \t       1\t1523456789 ns/op\t     65641 rows/s\t  23456789 bytes/s\nPASS\nok  \tgithub.com/x\t3.2s\n",
			want: "[{BenchmarkWrite100kEvents-2 1 map[bytes/s:2.3456789e+07 ns/op:1.523456789e+09 rows/s:65641]}]",
		},
		{name: "two benchmarks, allocations", give: "BenchmarkA-8 10 5.5 ns/op 0 B/op\nBenchmarkB 3 7 ns/op\n",
			want: "[{BenchmarkA-8 10 map[B/op:0 ns/op:5.5]} {BenchmarkB 3 map[ns/op:7]}]"},
		{name: "no result lines", give: "PASS\nok x 0.1s\n--- FAIL: BenchmarkX\n", want: "[]"},
		{name: "a benchmark's log line is not a result", give: "BenchmarkX-2 starting\n", want: "[]"},
		{name: "a value that is not a number", give: "BenchmarkX-2 1 fast ns/op\n", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseGoBench(strings.NewReader(tt.give))
			if (err != nil) != tt.wantErr {
				t.Fatalf("error = %v, want error %v", err, tt.wantErr)
			}
			if !tt.wantErr && fmt.Sprint(nonNil(got)) != tt.want {
				t.Errorf("got %v, want %s", got, tt.want)
			}
		})
	}
}

func nonNil(b []goBench) []goBench {
	if b == nil {
		return []goBench{}
	}
	return b
}

func TestAppendCountersOf(t *testing.T) {
	tests := []struct {
		name string
		give []slice.Series
		want appendCounters
	}{
		{name: "summed over tables", give: []slice.Series{
			{Name: "ecom_bigquery_append_rows_total", Labels: map[string]string{"table": "fact_events"}, Value: 100},
			{Name: "ecom_bigquery_append_rows_total", Labels: map[string]string{"table": "fact_orders"}, Value: 5},
			{Name: "ecom_bigquery_append_bytes_total", Labels: map[string]string{"table": "fact_events"}, Value: 4000},
			{Name: "ecom_bigquery_append_bytes_total", Labels: map[string]string{"table": "fact_orders"}, Value: 600},
			{Name: "ecom_bigquery_append_duration_seconds_sum", Labels: map[string]string{"table": "fact_events"}, Value: 1.5},
			{Name: "ecom_bigquery_append_duration_seconds_count", Labels: map[string]string{"table": "fact_events"}, Value: 30},
			{Name: "ecom_bigquery_append_duration_seconds_bucket", Labels: map[string]string{"le": "+Inf"}, Value: 30},
		}, want: appendCounters{rows: 105, bytes: 4600, durSum: 1.5, durCount: 30}},
		{name: "a unit suffix on the bytes counter", give: []slice.Series{
			{Name: "ecom_bigquery_append_bytes_bytes_total", Value: 7},
		}, want: appendCounters{bytes: 7}},
		{name: "other bigquery metrics do not count", give: []slice.Series{
			{Name: "ecom_bigquery_append_retries_total", Value: 3},
			{Name: "ecom_bigquery_append_cost_total", Value: 0.1},
			{Name: "ecom_bigquery_append_bytes_created", Value: 1.7e9},
			{Name: "ecom_bigquery_streams_total", Value: 4},
		}, want: appendCounters{}},
		{name: "nothing scraped", want: appendCounters{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := appendCountersOf(tt.give); got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestLagsOf(t *testing.T) {
	from := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	row := func(evAfter, lag time.Duration) []bigquery.Value {
		ev := from.Add(evAfter)
		return []bigquery.Value{ev, ev.Add(lag)}
	}
	var hundred [][]bigquery.Value
	for i := 1; i <= 100; i++ {
		hundred = append(hundred, row(time.Duration(i)*time.Millisecond, time.Duration(i)*time.Millisecond))
	}
	tests := []struct {
		name    string
		give    [][]bigquery.Value
		want    lagStats
		wantErr string
	}{
		{name: "percentiles of 1..100 ms", give: hundred, want: lagStats{n: 100, p50: 51 * time.Millisecond, p99: 100 * time.Millisecond, max: 100 * time.Millisecond}},
		{name: "an event stamped before the window (a source duplicate) is left out",
			give: [][]bigquery.Value{row(-time.Hour, 2*time.Hour), row(0, 40*time.Millisecond)},
			want: lagStats{n: 1, p50: 40 * time.Millisecond, p99: 40 * time.Millisecond, max: 40 * time.Millisecond}},
		{name: "no rows", give: nil, wantErr: "no rows"},
		{name: "only rows before the window", give: [][]bigquery.Value{row(-time.Second, 0)}, wantErr: "no rows"},
		{name: "not timestamps", give: [][]bigquery.Value{{"x", int64(1)}}, wantErr: "want two timestamps"},
		{name: "one column", give: [][]bigquery.Value{{from}}, wantErr: "want 2 columns"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := lagsOf(tt.give, from)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("got %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

func TestValidateBigQuery(t *testing.T) {
	tests := []struct {
		name    string
		give    options
		phases  map[string]bool
		wantErr string
	}{
		{name: "defaults", give: options{bqRate: 1000, bqDuration: 20 * time.Second}, phases: map[string]bool{"bigquery": true}},
		{name: "no rate", give: options{bqRate: 0, bqDuration: time.Second}, wantErr: "-bq-rate"},
		{name: "no duration", give: options{bqRate: 10}, wantErr: "-bq-duration"},
		{name: "with -compare", give: options{bqRate: 10, bqDuration: time.Second, compare: "main"}, phases: map[string]bool{"bigquery": true}, wantErr: "-compare"},
		{name: "-compare without the phase", give: options{bqRate: 10, bqDuration: time.Second, compare: "main"}, phases: map[string]bool{"throughput": true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := validateBigQuery(tt.give, tt.phases)
			if (tt.wantErr == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestDefaultPhasesLeaveOutBigQuery(t *testing.T) {
	if slices.Contains(defaultPhases, "bigquery") || !slices.Contains(phaseNames, "bigquery") {
		t.Errorf("defaultPhases %v, phaseNames %v: bigquery must be a phase, not a default one", defaultPhases, phaseNames)
	}
	if len(defaultPhases) != len(phaseNames)-1 {
		t.Errorf("defaultPhases %v: want every phase but bigquery", defaultPhases)
	}
}

func TestPrintWarehouses(t *testing.T) {
	res := bqResult{offered: 1000, rowsPerSec: 985, bytesPerSec: 350_000,
		lag:  lagStats{n: 19_700, p50: 180 * time.Millisecond, p99: 900 * time.Millisecond, max: 1500 * time.Millisecond},
		fake: goBench{Name: "BenchmarkWrite100kEvents-2", N: 1, Metrics: map[string]float64{"rows/s": 65641, "bytes/s": 23456789}}}
	tests := []struct {
		name    string
		figs    []figure
		want    []string
		notWant []string
	}{
		{name: "with the throughput phase", figs: []figure{{Name: "throughput end to end", Unit: "events/s", Value: 41234}, {Name: "latency p50", Value: 3}},
			want: []string{"duckdb (throughput phase, as fast as it goes)        41234", "bigquery emulator (1000 events/s offered)",
				"985         350000  180 / 900 / 1500 ms (19700 rows)", "bqwh on its in-process fake (BenchmarkWrite100kEvents-2)", "65641       23456789"}},
		{name: "bigquery alone", want: []string{"bigquery emulator", "bqwh on its in-process fake"}, notWant: []string{"duckdb"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			printWarehouses(&b, tt.figs, res)
			for _, w := range tt.want {
				if !strings.Contains(b.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, b.String())
				}
			}
			for _, w := range tt.notWant {
				if strings.Contains(b.String(), w) {
					t.Errorf("output has %q:\n%s", w, b.String())
				}
			}
		})
	}
	figs := res.figures()
	want := map[string]float64{"bigquery emulator appended": 985, "bigquery emulator appended bytes": 350_000, "bigquery emulator lag p99": 900,
		"bqwh fake appended": 65641, "bqwh fake appended bytes": 23456789}
	for _, f := range figs {
		if v, ok := want[f.Name]; ok {
			if f.Value != v {
				t.Errorf("figure %q = %g, want %g", f.Name, f.Value, v)
			}
			delete(want, f.Name)
		}
		if (strings.Contains(f.Name, "lag") || strings.Contains(f.Name, "append mean")) != f.Lower {
			t.Errorf("figure %q: lower_is_better %v", f.Name, f.Lower)
		}
	}
	if len(want) > 0 {
		t.Errorf("figures lack %v", want)
	}
}
