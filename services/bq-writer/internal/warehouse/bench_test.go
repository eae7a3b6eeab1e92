package warehouse

import (
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"
)

// Benchmarks of Write, reported as rows/s, for batch sizes 100, 1000 and 10000 against:
//
//   - an empty table;
//   - a table holding preloaded rows older than the dedup window (the steady state of a long-running
//     writer: zone maps on event_timestamp skip them, so the dedup cost must not grow with them);
//   - a table holding the rows written at 20,000 events/s just before, probed with windows of
//     10s, 1m and 10m: the dedup scan reads the stored rows within the window, so this shows
//     what a window costs at the target rate.
//
// Preloaded rows: WAREHOUSE_BENCH_ROWS (default 2,000,000), random UUID event_ids like real
// traffic (sequential ids would let DuckDB's join-key min/max filter prune every old row group
// and flatter the figures). WAREHOUSE_BENCH_THREADS sets WithThreads (default: DuckDB's),
// WAREHOUSE_BENCH_CHECKPOINT WithCheckpointThreshold.
//
//	go test -bench . -run '^$' ./internal/warehouse/
func BenchmarkWrite(b *testing.B) {
	preload := 2_000_000
	if s := os.Getenv("WAREHOUSE_BENCH_ROWS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			b.Fatalf("WAREHOUSE_BENCH_ROWS: %v", err)
		}
		preload = n
	}
	var threads int // 0: DuckDB's default, one per core
	if s := os.Getenv("WAREHOUSE_BENCH_THREADS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			b.Fatalf("WAREHOUSE_BENCH_THREADS: %v", err)
		}
		threads = n
	}
	checkpoint := DefaultCheckpointThreshold
	if s := os.Getenv("WAREHOUSE_BENCH_CHECKPOINT"); s != "" {
		checkpoint = s
	}
	base := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	// The at-rate table holds the rows a writer at the 20,000 events/s target stored just before
	// the benchmark's events: a window of W then covers about 2·W·20,000 rows (capped by the table).
	atRate := time.Duration(preload/20000) * time.Second
	tables := []struct {
		name     string
		rows     int
		from, to time.Time // preloaded rows spread evenly over [from, to)
		window   time.Duration
	}{
		{name: "empty/window=default", window: DefaultDedupWindow},
		{
			name: fmt.Sprintf("%dk_older_than_window/window=default", preload/1000), rows: preload,
			from: base.Add(-10 * 24 * time.Hour), to: base.Add(-8 * 24 * time.Hour), window: DefaultDedupWindow,
		},
	}
	for _, w := range []time.Duration{10 * time.Second, time.Minute, 10 * time.Minute} {
		tables = append(tables, struct {
			name     string
			rows     int
			from, to time.Time
			window   time.Duration
		}{
			name: fmt.Sprintf("%dk_at_20k_per_s/window=%v", preload/1000, w), rows: preload,
			from: base.Add(-atRate), to: base, window: w,
		})
	}

	dir := b.TempDir()
	for _, tbl := range tables {
		template := filepath.Join(dir, fmt.Sprintf("template-%d-%d-%d.duckdb", tbl.rows, tbl.from.Unix(), tbl.to.Unix()))
		for _, size := range []int{100, 1000, 10000} {
			b.Run(fmt.Sprintf("table=%s/batch=%d", tbl.name, size), func(b *testing.B) {
				b.StopTimer()
				buildTemplate(b, template, tbl.rows, tbl.from, tbl.to)
				path := filepath.Join(b.TempDir(), "w.duckdb")
				copyFile(b, template, path)
				d, err := OpenDuckDB(path, WithDedupWindow(tbl.window), WithThreads(threads), WithCheckpointThreshold(checkpoint))
				if err != nil {
					b.Fatal(err)
				}
				defer d.Close()
				if err := d.Migrate(context.Background()); err != nil {
					b.Fatal(err)
				}
				gen := newGenerator(base, size)
				ctx := context.Background()
				// The first Write loads the dedup index from the table: a start-up cost, not
				// per batch.
				if _, err := d.Write(ctx, "bench", gen.next()); err != nil {
					b.Fatal(err)
				}
				var inserted int
				var cpu time.Duration
				b.ResetTimer()
				for range b.N {
					bt := gen.next()
					c := processCPU()
					b.StartTimer()
					res, err := d.Write(ctx, "bench", bt)
					b.StopTimer()
					cpu += processCPU() - c
					if err != nil {
						b.Fatal(err)
					}
					inserted += res.Inserted
				}
				if inserted != b.N*size {
					b.Fatalf("inserted %d of %d", inserted, b.N*size)
				}
				b.ReportMetric(float64(inserted)/b.Elapsed().Seconds(), "rows/s")
				if cpu > 0 {
					b.ReportMetric(float64(inserted)/cpu.Seconds(), "rows/cpu-s")
				}
			})
		}
	}
}

var templates sync.Map // path -> struct{}: built in this process

// buildTemplate creates, once per process, a migrated database file with rows preloaded in
// event_timestamp order over [from, to), as a long-running writer would have left it.
func buildTemplate(b *testing.B, path string, rows int, from, to time.Time) {
	b.Helper()
	if _, done := templates.Load(path); done {
		return
	}
	start := time.Now()
	d, err := OpenDuckDB(path)
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		if err := d.Close(); err != nil {
			b.Fatal(err)
		}
		templates.Store(path, struct{}{})
		if rows > 0 {
			b.Logf("preloaded %d rows in %v", rows, time.Since(start).Round(time.Millisecond))
		}
	}()
	ctx := context.Background()
	if err := d.Migrate(ctx); err != nil {
		b.Fatal(err)
	}
	if rows == 0 {
		return
	}
	step := to.Sub(from).Microseconds() / int64(rows)
	// Same shape as the generator's rows; loaded through SQL because it is ~10x faster than
	// appending 2M rows from Go.
	_, err = d.writer.ExecContext(ctx, fmt.Sprintf(`
		INSERT INTO fact_events
		SELECT uuid()::VARCHAR, ts, CAST(ts AS DATE), CAST(strftime(ts, '%%Y%%m%%d') AS INTEGER),
		       ['page_view', 'product_view', 'search', 'add_to_cart', 'purchase'][1 + i %% 5],
		       CASE WHEN i %% 3 = 0 THEN NULL ELSE 'user-' || (i %% 50000) END,
		       'anon-' || (i %% 80000), 'sess-' || (i // 20),
		       'https://shop.example.com/p/sku-' || (i %% 5000) || '?utm_source=newsletter',
		       'https://www.google.com/', 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36',
		       'desktop', 'Linux', 'Chrome', 'DE', 'BE', 'Berlin', 'sku-' || (i %% 5000), NULL,
		       2, 1999, 'EUR', NULL, 'kafka', ts + INTERVAL 150 MILLISECONDS,
		       md5(i::VARCHAR), 'ecom.events.valid.v1', CAST(i %% 6 AS INTEGER), i // 6, ts + INTERVAL 1 SECOND
		FROM (SELECT i, TIMESTAMPTZ '%s' + to_microseconds(i * %d) AS ts FROM range(%d) r(i))
		ORDER BY ts`, from.Format(time.RFC3339Nano), step, rows))
	if err != nil {
		b.Fatal(err)
	}
}

func copyFile(b *testing.B, from, to string) {
	b.Helper()
	src, err := os.Open(from)
	if err != nil {
		b.Fatal(err)
	}
	defer src.Close()
	dst, err := os.Create(to)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		b.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		b.Fatal(err)
	}
}

// generator produces batches of new events spread over 6 partitions, 20,000 events per second of
// event time (the target rate), with random UUID event_ids.
type generator struct {
	rows   []EventRow
	offset int64
	clock  time.Time
	rng    *rand.Rand
}

func newGenerator(start time.Time, size int) *generator {
	g := &generator{rows: make([]EventRow, size), clock: start, rng: rand.New(rand.NewPCG(1, uint64(size)))}
	for i := range g.rows {
		g.rows[i] = row("ecom.events.valid.v1", 0, 0, "00000000-0000-0000-0000-000000000000", start)
	}
	return g
}

func (g *generator) next() Batch {
	b := Batch{Events: g.rows, Positions: make(map[Partition]int64, 6)}
	var id [16]byte
	for i := range g.rows {
		r := &g.rows[i]
		for j := 0; j < 16; j += 8 {
			v := g.rng.Uint64()
			for k := range 8 {
				id[j+k] = byte(v >> (8 * k))
			}
		}
		r.EventID = uuidString(id)
		r.SourcePartition = int32(g.offset % 6)
		r.SourceOffset = g.offset / 6
		g.clock = g.clock.Add(50 * time.Microsecond)
		r.EventTimestamp = g.clock
		r.ReceivedAt = g.clock.Add(150 * time.Millisecond)
		b.Positions[Partition{r.SourceTopic, r.SourcePartition}] = r.SourceOffset + 1
		g.offset++
	}
	return b
}

func uuidString(u [16]byte) string {
	var buf [36]byte
	hex.Encode(buf[0:8], u[0:4])
	buf[8] = '-'
	hex.Encode(buf[9:13], u[4:6])
	buf[13] = '-'
	hex.Encode(buf[14:18], u[6:8])
	buf[18] = '-'
	hex.Encode(buf[19:23], u[8:10])
	buf[23] = '-'
	hex.Encode(buf[24:], u[10:])
	return string(buf[:])
}
