package warehouse

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// BenchmarkWriteWithDuplicates is BenchmarkWrite's empty and at-rate tables with 2% of each batch
// being resends of rows of the batch before (same event_id and event_timestamp, received a second
// later, another partition): the path where the dedup reads stored copies. WAREHOUSE_BENCH_ROWS
// as for BenchmarkWrite.
//
//	go test -bench WriteWithDuplicates -run '^$' ./internal/warehouse/
func BenchmarkWriteWithDuplicates(b *testing.B) {
	preload := 2_000_000
	if s := os.Getenv("WAREHOUSE_BENCH_ROWS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			b.Fatalf("WAREHOUSE_BENCH_ROWS: %v", err)
		}
		preload = n
	}
	base := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	atRate := time.Duration(preload/20000) * time.Second
	dir := b.TempDir()
	for _, tbl := range []struct {
		name     string
		rows     int
		from, to time.Time
	}{
		{name: "empty"},
		{name: fmt.Sprintf("%dk_at_20k_per_s", preload/1000), rows: preload, from: base.Add(-atRate), to: base},
	} {
		template := filepath.Join(dir, fmt.Sprintf("template-%d.duckdb", tbl.rows))
		for _, size := range []int{1000, 10000} {
			b.Run(fmt.Sprintf("table=%s/window=default/batch=%d/duplicates=2%%", tbl.name, size), func(b *testing.B) {
				b.StopTimer()
				buildTemplate(b, template, tbl.rows, tbl.from, tbl.to)
				path := filepath.Join(b.TempDir(), "w.duckdb")
				copyFile(b, template, path)
				d, err := OpenDuckDB(path)
				if err != nil {
					b.Fatal(err)
				}
				defer d.Close()
				if err := d.Migrate(context.Background()); err != nil {
					b.Fatal(err)
				}
				gen := newGenerator(base, size)
				ctx := context.Background()
				prev := resendable(gen.next().Events)
				if _, err := d.Write(ctx, "bench", Batch{Events: prev, Positions: positionsOf(prev)}); err != nil {
					b.Fatal(err)
				}
				var rows, dups int
				var resendOffset int64
				var cpu time.Duration
				b.ResetTimer()
				for range b.N {
					bt := gen.next()
					// Every 50th row becomes a resend of a row of the batch before, read from
					// partition 6 (which the generator does not use) at its own offsets.
					for i := 0; i < size; i += 50 {
						r := prev[i]
						r.ReceivedAt = r.ReceivedAt.Add(time.Second)
						r.SourcePartition, r.SourceOffset = 6, resendOffset
						bt.Events[i] = r
						resendOffset++
					}
					bt.Positions = positionsOf(bt.Events)
					c := processCPU()
					b.StartTimer()
					res, err := d.Write(ctx, "bench", bt)
					b.StopTimer()
					cpu += processCPU() - c
					if err != nil {
						b.Fatal(err)
					}
					rows += res.Inserted + res.Duplicates
					dups += res.Duplicates
					prev = resendable(bt.Events)
				}
				if dups != b.N*((size+49)/50) {
					b.Fatalf("%d duplicates, want %d", dups, b.N*((size+49)/50))
				}
				b.ReportMetric(float64(rows)/b.Elapsed().Seconds(), "rows/s")
				if cpu > 0 {
					b.ReportMetric(float64(rows)/cpu.Seconds(), "rows/cpu-s")
				}
			})
		}
	}
}

// resendable copies a batch's rows: the generator reuses its slice.
func resendable(rows []EventRow) []EventRow { return append([]EventRow(nil), rows...) }

func positionsOf(rows []EventRow) map[Partition]int64 {
	pos := make(map[Partition]int64)
	for _, r := range rows {
		p := Partition{r.SourceTopic, r.SourcePartition}
		pos[p] = max(pos[p], r.SourceOffset+1)
	}
	return pos
}
