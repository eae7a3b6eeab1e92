package main

import (
	"flag"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ecomstream/platform/deploy/local/slice"
)

func TestPassThrough(t *testing.T) {
	tests := []struct {
		give []string
		want []string
	}{
		{give: []string{"-compare", "main"}, want: nil},
		{give: []string{"-compare=main", "-runs", "5", "-events", "1000", "-latency-duration=10s", "-json", "x", "-bin-dir", "y"},
			want: []string{"-events=1000", "-latency-duration=10s"}},
	}
	for _, tt := range tests {
		fs := flag.NewFlagSet("bench", flag.ContinueOnError)
		for _, name := range []string{"compare", "json", "bin-dir"} {
			fs.String(name, "", "")
		}
		fs.Int("runs", 3, "")
		fs.Int("events", 300_000, "")
		fs.Duration("latency-duration", 30*time.Second, "")
		if err := fs.Parse(tt.give); err != nil {
			t.Fatal(err)
		}
		if got := passThrough(fs); !slices.Equal(got, tt.want) {
			t.Errorf("passThrough(%q) = %q, want %q", tt.give, got, tt.want)
		}
	}
}

func TestMedian(t *testing.T) {
	tests := []struct {
		give   []float64
		want   float64
		wantOK bool
	}{
		{give: nil, wantOK: false},
		{give: []float64{7}, want: 7, wantOK: true},
		{give: []float64{30, 10, 20}, want: 20, wantOK: true},
		{give: []float64{4, 1, 3, 2}, want: 2.5, wantOK: true},
	}
	for _, tt := range tests {
		got, ok := median(tt.give)
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("median(%v) = %v, %v, want %v, %v", tt.give, got, ok, tt.want, tt.wantOK)
		}
	}
}

func TestPrintComparison(t *testing.T) {
	run := func(tput, p99, cpu float64) []figure {
		return []figure{
			{Name: "throughput end to end", Unit: "events/s", Value: tput},
			{Name: "latency p99", Unit: "ms", Value: p99, Lower: true},
			{Name: "phase 2 cpu kafka", Unit: "cores", Value: cpu, Lower: true},
		}
	}
	tests := []struct {
		name       string
		base, head [][]figure
		want       []string
	}{
		{
			name: "head faster and cheaper",
			base: [][]figure{run(20000, 140, 0.70), run(22000, 150, 0.72), run(26000, 130, 0.75)},
			head: [][]figure{run(21000, 120, 0.12), run(23100, 90, 0.10), run(19000, 100, 0.11)},
			want: []string{
				"throughput end to end events/s 20000 22000 26000 21000 23100 19000 22000 21000 -4.5% worse",
				"latency p99 ms 140 150 130 120 90.0 100 140 100 -28.6% better",
				"phase 2 cpu kafka cores 0.70 0.72 0.75 0.12 0.10 0.11 0.72 0.11 -84.7% better",
				"-4.5%: within 10% of the base",
			},
		},
		{
			name: "throughput regression",
			base: [][]figure{run(20000, 140, 0.70)},
			head: [][]figure{run(17000, 140, 0.70)},
			want: []string{"-15.0%: NOT within 10% of the base", "+0.0%"},
		},
		{
			name: "a figure only one side has",
			base: [][]figure{run(20000, 140, 0.70)},
			head: [][]figure{append(run(20000, 140, 0.70), figure{Name: "phase 2 cpu apicurio", Unit: "cores", Value: 0.05, Lower: true})},
			want: []string{"phase 2 cpu apicurio cores 0.05 - 0.05\n"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b strings.Builder
			printComparison(&b, &revision{label: "base", runs: tt.base}, &revision{label: "head", runs: tt.head})
			// Compare words, not column widths.
			var lines []string
			for _, l := range strings.Split(b.String(), "\n") {
				lines = append(lines, strings.Join(strings.Fields(l), " "))
			}
			got := strings.Join(lines, "\n")
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Errorf("printComparison() lacks %q:\n%s", w, b.String())
				}
			}
		})
	}
}

func TestStageRates(t *testing.T) {
	before := map[string]stageCounters{
		"ingest-clickstream": countersOf([]slice.Series{
			{Name: "ecom_transactions_total", Labels: map[string]string{"result": "committed"}, Value: 100},
			{Name: "ecom_transactions_total", Labels: map[string]string{"result": "aborted"}, Value: 1},
			{Name: "ecom_batch_records_count", Value: 101},
			{Name: "ecom_batch_records_sum", Value: 5000},
		}),
		"bq-writer": countersOf([]slice.Series{
			{Name: "ecom_transactions_total", Value: 10},
			{Name: "ecom_batch_records_count", Value: 10},
			{Name: "ecom_batch_records_sum", Value: 1000},
			{Name: "ecom_warehouse_write_duration_seconds_count", Value: 10},
		}),
		// validator did not answer the first scrape: no rate for it.
		// ingest-orders has no transaction metrics: no rate for it either.
		"ingest-orders": countersOf([]slice.Series{{Name: "ecom_orders_produced_total", Value: 10}}),
	}
	after := map[string]stageCounters{
		"ingest-clickstream": countersOf([]slice.Series{
			{Name: "ecom_transactions_total", Labels: map[string]string{"result": "committed"}, Value: 2700},
			{Name: "ecom_transactions_total", Labels: map[string]string{"result": "aborted"}, Value: 1},
			{Name: "ecom_batch_records_count", Value: 2701},
			{Name: "ecom_batch_records_sum", Value: 15400},
		}),
		"validator":     countersOf([]slice.Series{{Name: "ecom_transactions_total", Value: 50}}),
		"ingest-orders": countersOf([]slice.Series{{Name: "ecom_orders_produced_total", Value: 900}}),
		"bq-writer": countersOf([]slice.Series{
			{Name: "ecom_transactions_total", Value: 210},
			{Name: "ecom_batch_records_count", Value: 210},
			{Name: "ecom_batch_records_sum", Value: 11000},
			{Name: "ecom_warehouse_write_duration_seconds_count", Value: 210},
		}),
	}
	got := stageRates([]string{"ingest-orders", "ingest-clickstream", "validator", "bq-writer"}, before, after, 10)
	want := []stageRate{
		{name: "ingest-clickstream", txnsPerSec: 260, recsPerTxn: 4},
		{name: "bq-writer", txnsPerSec: 20, recsPerTxn: 50, whWritesPerSec: 20},
	}
	if len(got) != len(want) {
		t.Fatalf("stageRates() = %+v, want %+v", got, want)
	}
	for i := range got {
		g, w := got[i], want[i]
		if g.name != w.name || math.Abs(g.txnsPerSec-w.txnsPerSec) > 1e-9 || math.Abs(g.recsPerTxn-w.recsPerTxn) > 1e-9 || math.Abs(g.whWritesPerSec-w.whWritesPerSec) > 1e-9 {
			t.Errorf("stageRates()[%d] = %+v, want %+v", i, g, w)
		}
	}
}
