package main

import (
	"context"
	"fmt"
	"time"

	"github.com/ecomstream/platform/deploy/local/slice"
)

// stageCounters are the cumulative counters of one service's /metrics that
// show its commit cadence.
type stageCounters struct {
	ok            bool
	txns          float64 // ecom_transactions_total, every result
	batches, recs float64 // ecom_batch_records count and sum
	whWrites      float64 // ecom_warehouse_write_duration_seconds_count (bq-writer)
}

func countersOf(s []slice.Series) stageCounters {
	return stageCounters{
		ok:       true,
		txns:     slice.Sum(s, "ecom_transactions_total", nil),
		batches:  slice.Sum(s, "ecom_batch_records_count", nil),
		recs:     slice.Sum(s, "ecom_batch_records_sum", nil),
		whWrites: slice.Sum(s, "ecom_warehouse_write_duration_seconds_count", nil),
	}
}

// scrapeStages reads the counters of every process of the slice; one that
// does not answer (or the storefront, which has no /metrics) is marked not ok
// and left out of the rates.
func scrapeStages(ctx context.Context, sl *slice.Slice) map[string]stageCounters {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	out := map[string]stageCounters{}
	for _, name := range sl.Names {
		if s, err := slice.Scrape(ctx, sl.Procs[name].HTTPAddr, "ecom_"); err == nil {
			out[name] = countersOf(s)
		}
	}
	return out
}

// stageRate is one stage's cadence over a window.
type stageRate struct {
	name                   string
	txnsPerSec, recsPerTxn float64
	whWritesPerSec         float64
}

// stageRates are the rates of the named stages (in that order) between two
// scrapes wall seconds apart.
func stageRates(names []string, before, after map[string]stageCounters, wall float64) []stageRate {
	var out []stageRate
	for _, name := range names {
		b, a := before[name], after[name]
		if !b.ok || !a.ok || wall <= 0 || a.txns == 0 && a.batches == 0 && a.whWrites == 0 {
			continue // no answer, or not a stage with transactions (ingest-orders, an idle one)
		}
		r := stageRate{name: name, txnsPerSec: (a.txns - b.txns) / wall, whWritesPerSec: (a.whWrites - b.whWrites) / wall}
		if n := a.batches - b.batches; n > 0 {
			r.recsPerTxn = (a.recs - b.recs) / n
		}
		out = append(out, r)
	}
	return out
}

// printStageRates prints each stage's transactions (or warehouse commits)
// per second over a phase's steady window and returns them as figures named
// "<phase> transactions/s <stage>".
func printStageRates(phase string, names []string, before, after map[string]stageCounters, wall float64) []figure {
	rates := stageRates(names, before, after, wall)
	if len(rates) == 0 {
		return nil
	}
	fmt.Printf("  commit cadence, %s (from /metrics):\n", phase)
	var figs []figure
	var total float64
	for _, r := range rates {
		line := fmt.Sprintf("    %-20s %6.1f transactions/s, %6.1f records/batch", r.name, r.txnsPerSec, r.recsPerTxn)
		if r.whWritesPerSec > 0 {
			line += fmt.Sprintf(", %6.1f warehouse writes/s", r.whWritesPerSec)
		}
		fmt.Println(line)
		total += r.txnsPerSec
		figs = append(figs, figure{Name: phase + " transactions/s " + r.name, Unit: "1/s", Value: r.txnsPerSec, Lower: true})
	}
	fmt.Printf("    %-20s %6.1f transactions/s\n", "total", total)
	return append(figs, figure{Name: phase + " transactions/s total", Unit: "1/s", Value: total, Lower: true})
}
