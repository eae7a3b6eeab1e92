package warehouse

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// BenchmarkDimSnapshot writes a snapshot of 100,000 products (batches of 5,000, the default
// KAFKA_MAX_POLL_RECORDS) into an empty dim_products, then the same products again at a later
// LSN (all no-op changes: logged, no version) and then each with a new price (a second version
// each), reporting changes/s of each pass.
//
//	go test -bench DimSnapshot -run '^$' ./internal/warehouse/
func BenchmarkDimSnapshot(b *testing.B) {
	const products, batchSize = 100_000, 5_000
	for range b.N {
		d, _ := openTest(b)
		ctx := context.Background()
		var off int64
		for _, p := range []struct {
			name  string
			lsn   int64
			price int64
		}{{"first", 10, 100}, {"no-op", 20, 100}, {"new_price", 30, 120}} {
			b.StopTimer()
			rows := make([]ProductRow, 0, batchSize)
			b.StartTimer()
			start := time.Now()
			for i := range products {
				r := product(off, fmt.Sprintf("p-%06d", i), p.lsn, p.price)
				r.SourceOrdinal = 0
				off++
				rows = append(rows, r)
				if len(rows) == batchSize {
					if _, err := d.Write(ctx, testGroup, dimBatch(rows, nil)); err != nil {
						b.Fatal(err)
					}
					rows = rows[:0]
				}
			}
			b.ReportMetric(float64(products)/time.Now().Sub(start).Seconds(), p.name+"_changes/s")
		}
		if n := count(b, d, `SELECT count(*) FROM dim_products`); n != 2*products {
			b.Fatalf("dim_products has %d rows, want %d", n, 2*products)
		}
	}
}
