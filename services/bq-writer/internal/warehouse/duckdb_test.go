package warehouse

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	duckdb "github.com/duckdb/duckdb-go/v2"

	ddl "github.com/ecomstream/platform/sql"
)

func TestMigrateIsIdempotentAndMatchesAppender(t *testing.T) {
	d, _ := openTest(t)
	if err := d.Migrate(context.Background()); err != nil {
		t.Fatalf("second migrate: %v", err)
	}
	// The duplicates table must match too: rows move between the two with INSERT ... SELECT *.
	for _, table := range []string{"fact_events", duplicatesTable} {
		cols := tableColumns(t, d, table)
		// The appender names its columns, but a column it does not fill would silently stay NULL.
		if !slices.Equal(cols, factColumns) {
			t.Fatalf("%s columns %v\nappender columns    %v", table, cols, factColumns)
		}
	}
}

func TestWriteStoresRowAndPosition(t *testing.T) {
	d, _ := openTest(t)
	full := row("ecom.events.valid.v1", 3, 41, "evt-full", t0)
	bare := row("ecom.events.valid.v1", 3, 42, "evt-bare", t0.Add(time.Hour)) // 00:30 next day, UTC
	bare.UserID, bare.Referrer, bare.Quantity, bare.PriceMinor, bare.TraceID = nil, nil, nil, nil, ""
	b := batch(full, bare)

	before := time.Now().UTC().Truncate(time.Microsecond)
	res := mustWrite(t, d, b)
	if res.Inserted != 2 || res.Duplicates != 0 || res.Stale != 0 || res.Bytes <= 0 {
		t.Fatalf("result = %+v", res)
	}

	cols, rows, err := d.Query(context.Background(), `
		SELECT event_id, event_timestamp, strftime(event_date, '%Y-%m-%d') AS d, date_key, user_id, quantity,
		       price_minor, trace_id, source_topic, source_partition, source_offset, loaded_at
		FROM fact_events ORDER BY source_offset`, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(cols) != 12 || len(rows) != 2 {
		t.Fatalf("cols %v rows %v", cols, rows)
	}
	got := rows[0]
	want := []any{"evt-full", t0, "2025-03-14", int32(20250314), "user-000041", int32(2), int64(1999),
		"4bf92f3577b34da6a3ce929d0e0e4736", "ecom.events.valid.v1", int32(3), int64(41)}
	for i, w := range want {
		if g := got[i]; fmt.Sprint(g) != fmt.Sprint(w) {
			t.Errorf("%s = %v (%T), want %v", cols[i], g, g, w)
		}
	}
	if loaded := got[11].(time.Time); loaded.Before(before) || loaded.After(time.Now()) {
		t.Errorf("loaded_at %v not within the write", loaded)
	}
	// Second row: NULLs stay NULL and the date is the UTC date.
	for i, name := range cols {
		switch name {
		case "user_id", "quantity", "price_minor", "trace_id":
			if rows[1][i] != nil {
				t.Errorf("bare %s = %v, want NULL", name, rows[1][i])
			}
		case "d":
			if rows[1][i] != "2025-03-15" {
				t.Errorf("bare event_date = %v, want 2025-03-15", rows[1][i])
			}
		}
	}

	pos, err := d.Positions(context.Background(), testGroup)
	if err != nil {
		t.Fatal(err)
	}
	if want := map[Partition]int64{{"ecom.events.valid.v1", 3}: 43}; !maps.Equal(nextOffsets(pos), want) {
		t.Fatalf("positions = %v, want %v", pos, want)
	}
	if other, _ := d.Positions(context.Background(), "someone-else"); len(other) != 0 {
		t.Fatalf("positions of another group = %v", other)
	}
}

// An injected failure after the rows and positions are written rolls back both: this also proves
// the appender flushes into the open transaction rather than committing on its own.
func TestWriteRollsBackOnFailure(t *testing.T) {
	d, _ := openTest(t)
	mustWrite(t, d, batch(seq("a", 0, 0, 10)...))

	injected := errors.New("injected")
	d.beforeCommit = func() error { return injected }
	b := batch(seq("a", 0, 10, 100)...)
	_, err := d.Write(context.Background(), testGroup, b)
	if !errors.Is(err, injected) {
		t.Fatalf("err = %v, want injected", err)
	}
	if n := count(t, d, `SELECT count(*) FROM fact_events`); n != 10 {
		t.Fatalf("rows after rollback = %d, want 10", n)
	}
	pos, _ := d.Positions(context.Background(), testGroup)
	if got := pos[Partition{"ecom.events.valid.v1", 0}].Next; got != 10 {
		t.Fatalf("position after rollback = %d, want 10", got)
	}

	// The writer connection is usable again and the retried batch goes in whole.
	d.beforeCommit = nil
	if res := mustWrite(t, d, b); res.Inserted != 100 {
		t.Fatalf("retry = %+v", res)
	}
	if n := count(t, d, `SELECT count(*) FROM fact_events`); n != 110 {
		t.Fatalf("rows after retry = %d, want 110", n)
	}
}

func TestWriteCancelledContextWritesNothing(t *testing.T) {
	d, _ := openTest(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := d.Write(ctx, testGroup, batch(seq("a", 0, 0, 10)...))
	if !errors.Is(err, context.Canceled) || IsTransient(err) {
		t.Fatalf("err = %v, want context.Canceled and not transient", err)
	}
	if n := count(t, d, `SELECT count(*) FROM fact_events`); n != 0 {
		t.Fatalf("rows = %d", n)
	}
}

// Positions survive Close/Open; replaying what was written (the consumer restarted from older
// Kafka offsets) writes nothing.
func TestResumeAcrossReopenAndReplay(t *testing.T) {
	path := t.TempDir() + "/w.duckdb"
	ctx := context.Background()
	d, err := OpenDuckDB(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	rows := append(seq("p0", 0, 0, 50), seq("p1", 1, 100, 50)...)
	first := batch(rows...)
	first.Positions[Partition{"ecom.events.valid.v1", 2}] = 7 // a partition whose records were all dead-lettered
	if _, err := d.Write(ctx, testGroup, first); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if err := d.Ping(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("ping after close = %v", err)
	}

	d, err = OpenDuckDB(path)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := d.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	pos, err := d.Positions(ctx, testGroup)
	if err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(nextOffsets(pos), first.Positions) {
		t.Fatalf("positions after reopen = %v, want %v", pos, first.Positions)
	}

	res, err := d.Write(ctx, testGroup, first)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(res, WriteResult{Stale: 100}) {
		t.Fatalf("replay = %+v, want all 100 stale", res)
	}
	if n := count(t, d, `SELECT count(*) FROM fact_events`); n != 100 {
		t.Fatalf("rows = %d, want 100", n)
	}
}

func TestWriteDedupAndStale(t *testing.T) {
	const topic = "ecom.events.valid.v1"
	tests := []struct {
		name    string
		window  time.Duration // 0: 24h; -1: WithDedupWindow(0)
		earlier []EventRow    // written first, in one batch
		give    []EventRow
		want    WriteResult // Bytes ignored
		// wantOffsets are the source offsets stored for event "dup" after both writes.
		wantOffsets []int64
	}{
		{
			name: "duplicate within batch keeps lowest offset",
			give: []EventRow{
				row(topic, 0, 5, "dup", t0),
				row(topic, 0, 3, "dup", t0),
				row(topic, 0, 4, "other", t0),
				row(topic, 0, 6, "dup", t0),
			},
			want:        WriteResult{Inserted: 2, Duplicates: 2},
			wantOffsets: []int64{3},
		},
		{
			name:        "duplicate of stored row, same timestamp",
			earlier:     []EventRow{row(topic, 0, 0, "dup", t0)},
			give:        []EventRow{row(topic, 0, 1, "dup", t0), row(topic, 0, 2, "new", t0)},
			want:        WriteResult{Inserted: 1, Duplicates: 1},
			wantOffsets: []int64{0},
		},
		{
			name:        "duplicate of stored row re-stamped within the window",
			earlier:     []EventRow{row(topic, 0, 0, "dup", t0)},
			give:        []EventRow{row(topic, 0, 1, "dup", t0.Add(23*time.Hour))},
			want:        WriteResult{Duplicates: 1},
			wantOffsets: []int64{0},
		},
		{
			// Documented limit: the stored twin is outside the window, so it is not looked at.
			name:        "stored twin outside the window is not checked",
			earlier:     []EventRow{row(topic, 0, 0, "dup", t0)},
			give:        []EventRow{row(topic, 0, 1, "dup", t0.Add(25*time.Hour))},
			want:        WriteResult{Inserted: 1},
			wantOffsets: []int64{0, 1},
		},
		{
			name:        "window bounds each row, not just the batch",
			earlier:     []EventRow{row(topic, 0, 0, "dup", t0)},
			give:        []EventRow{row(topic, 0, 1, "dup", t0.Add(30*time.Hour)), row(topic, 0, 2, "x", t0.Add(-time.Hour))},
			want:        WriteResult{Inserted: 2},
			wantOffsets: []int64{0, 1},
		},
		{
			name:        "short window",
			window:      time.Minute,
			earlier:     []EventRow{row(topic, 0, 0, "dup", t0), row(topic, 0, 1, "dup2", t0)},
			give:        []EventRow{row(topic, 0, 2, "dup", t0.Add(59*time.Second)), row(topic, 0, 3, "dup2", t0.Add(61*time.Second))},
			want:        WriteResult{Inserted: 1, Duplicates: 1},
			wantOffsets: []int64{0},
		},
		{
			// A phone that was offline: its resend keeps the client timestamp, so the twin is
			// found days later with a one-minute window.
			name:        "late resend with the same timestamp",
			window:      time.Minute,
			earlier:     []EventRow{row(topic, 0, 0, "dup", t0), row(topic, 0, 1, "live", t0.Add(72*time.Hour))},
			give:        []EventRow{row(topic, 0, 2, "dup", t0), row(topic, 0, 3, "live2", t0.Add(72*time.Hour))},
			want:        WriteResult{Inserted: 1, Duplicates: 1},
			wantOffsets: []int64{0},
		},
		{
			name:        "window 0 drops only equal timestamps",
			window:      -1,
			earlier:     []EventRow{row(topic, 0, 0, "dup", t0)},
			give:        []EventRow{row(topic, 0, 1, "dup", t0), row(topic, 0, 2, "dup", t0.Add(time.Microsecond))},
			want:        WriteResult{Inserted: 1, Duplicates: 1},
			wantOffsets: []int64{0, 2},
		},
		{
			name:        "in-batch copies further apart than the window are both kept",
			window:      time.Minute,
			give:        []EventRow{row(topic, 0, 1, "dup", t0.Add(2*time.Minute)), row(topic, 0, 2, "dup", t0)},
			want:        WriteResult{Inserted: 2},
			wantOffsets: []int64{1, 2},
		},
		{
			// The stored copy was stamped later: the earlier copy takes its place.
			name:        "earlier copy replaces the stored one",
			window:      time.Minute,
			earlier:     []EventRow{row(topic, 0, 0, "dup", t0.Add(30*time.Second))},
			give:        []EventRow{row(topic, 1, 0, "dup", t0)},
			want:        WriteResult{Inserted: 1, Replaced: 1},
			wantOffsets: []int64{0},
		},
		{
			name:        "replay below the stored position is stale, the rest goes in",
			earlier:     []EventRow{row(topic, 0, 0, "a", t0), row(topic, 0, 1, "dup", t0)},
			give:        []EventRow{row(topic, 0, 1, "dup", t0), row(topic, 0, 2, "b", t0), row(topic, 1, 0, "c", t0)},
			want:        WriteResult{Inserted: 2, Stale: 1},
			wantOffsets: []int64{1},
		},
		{
			name:        "same event_id in two partitions",
			give:        []EventRow{row(topic, 1, 9, "dup", t0), row(topic, 0, 9, "dup", t0)},
			want:        WriteResult{Inserted: 1, Duplicates: 1},
			wantOffsets: []int64{9},
		},
	}
	// Every case runs with the in-memory index and with scans only: both must agree.
	for _, index := range []int{DefaultDedupIndexSize, 0} {
		for _, tt := range tests {
			t.Run(fmt.Sprintf("index=%d/%s", index, tt.name), func(t *testing.T) {
				opts := []Option{WithDedupIndexSize(index), WithDedupWindow(24 * time.Hour)}
				switch {
				case tt.window < 0:
					opts = append(opts, WithDedupWindow(0))
				case tt.window > 0:
					opts = append(opts, WithDedupWindow(tt.window))
				}
				d, _ := openTest(t, opts...)
				if len(tt.earlier) > 0 {
					mustWrite(t, d, batch(tt.earlier...))
				}
				got := mustWrite(t, d, batch(tt.give...))
				got.Bytes = 0
				if !reflect.DeepEqual(got, tt.want) {
					t.Fatalf("result = %+v, want %+v", got, tt.want)
				}
				_, rows, err := d.Query(context.Background(), `SELECT source_offset FROM fact_events WHERE event_id = 'dup' ORDER BY 1`, 10)
				if err != nil {
					t.Fatal(err)
				}
				var offs []int64
				for _, r := range rows {
					offs = append(offs, r[0].(int64))
				}
				if !slices.Equal(offs, tt.wantOffsets) {
					t.Fatalf("stored offsets of dup = %v, want %v", offs, tt.wantOffsets)
				}
			})
		}
	}
}

// After a restart the index is rebuilt from the table, so a duplicate of a row written before the
// restart is still found; rows the index does not cover (too old, or beyond its cap) take the scan.
func TestDedupIndexSurvivesRestartAndFallsBack(t *testing.T) {
	path := filepath.Join(t.TempDir(), "w.duckdb")
	ctx := context.Background()
	d, err := OpenDuckDB(path, WithDedupWindow(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	old := row("t", 0, 0, "old", t0)
	live := make([]EventRow, 100) // one per second from t0+1h
	for i := range live {
		live[i] = row("t", 1, int64(i), fmt.Sprintf("live-%d", i), t0.Add(time.Hour+time.Duration(i)*time.Second))
	}
	mustWrite(t, d, batch(append([]EventRow{old}, live...)...))
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}

	for _, tt := range []struct {
		name  string
		index int
		// wantIndexed: whether the live duplicate is covered by the index when checked.
		wantIndexed bool
	}{
		{name: "default index", index: DefaultDedupIndexSize, wantIndexed: true},
		{name: "index capped below the live rows", index: 50, wantIndexed: false},
		{name: "no index", index: 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d, err := OpenDuckDB(path, WithDedupWindow(time.Minute), WithDedupIndexSize(tt.index))
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			dupLive := live[99]
			dupLive.SourcePartition, dupLive.SourceOffset = 2, 0
			dupOld := old
			dupOld.SourcePartition, dupOld.SourceOffset = 2, 1
			// Resends, received after the stored copies: those stay.
			dupLive.ReceivedAt = dupLive.ReceivedAt.Add(time.Second)
			dupOld.ReceivedAt = dupOld.ReceivedAt.Add(time.Second)
			// Each subtest writes into the same file; the fresh row is unique per subtest.
			fresh := row("t", 2, 2, "fresh-"+tt.name, t0.Add(time.Hour+100*time.Second))
			var covered bool
			d.beforeCommit = func() error {
				covered = d.recent != nil && d.recent.covers(dupLive.EventTimestamp)
				return nil
			}
			res, err := d.Write(ctx, "group-"+tt.name, batch(dupLive, dupOld, fresh))
			if err != nil {
				t.Fatal(err)
			}
			if res.Inserted != 1 || res.Duplicates != 2 {
				t.Fatalf("result = %+v, want 1 inserted, 2 duplicates", res)
			}
			if covered != tt.wantIndexed {
				t.Fatalf("live duplicate checked in memory = %v, want %v", covered, tt.wantIndexed)
			}
			if d.recent != nil && (d.recent.size > tt.index || d.recent.covers(old.EventTimestamp)) {
				t.Fatalf("index size %d (cap %d), covered from %v", d.recent.size, tt.index, d.recent.coveredFrom)
			}
		})
	}
}

func TestDedupClusters(t *testing.T) {
	at := func(offsets ...time.Duration) []EventRow {
		rows := make([]EventRow, len(offsets))
		for i, o := range offsets {
			rows[i] = row("t", 0, int64(i), fmt.Sprint(i), t0.Add(o))
		}
		return rows
	}
	tests := []struct {
		name   string
		give   []EventRow
		window time.Duration
		want   [][]int
	}{
		{name: "one cluster", give: at(0, time.Second, 2*time.Second), window: time.Second, want: [][]int{{0, 1, 2}}},
		{name: "late event split off", give: at(-3*time.Hour, 0, time.Second), window: time.Minute, want: [][]int{{0}, {1, 2}}},
		{name: "gap of exactly 2w stays", give: at(0, 2*time.Minute), window: time.Minute, want: [][]int{{0, 1}}},
		{
			name: "capped at maxProbes, widest gaps win",
			give: at(0, time.Hour, 3*time.Hour, 6*time.Hour, 10*time.Hour, 15*time.Hour, 21*time.Hour, 28*time.Hour,
				28*time.Hour+2*time.Minute, 76*time.Hour),
			window: time.Second,
			want:   [][]int{{0, 1}, {2}, {3}, {4}, {5}, {6}, {7, 8}, {9}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			byTime := make([]int, len(tt.give))
			for i := range byTime {
				byTime[i] = i
			}
			got := clusters(tt.give, byTime, tt.window)
			if len(got) > maxProbes {
				t.Fatalf("%d clusters > maxProbes", len(got))
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Fatalf("clusters = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestPositionsNeverMoveBack(t *testing.T) {
	d, _ := openTest(t)
	p := Partition{"t", 0}
	mustWrite(t, d, Batch{Positions: map[Partition]int64{p: 100}})
	mustWrite(t, d, Batch{Positions: map[Partition]int64{p: 40}})
	pos, _ := d.Positions(context.Background(), testGroup)
	if pos[p].Next != 100 {
		t.Fatalf("position = %d, want 100", pos[p].Next)
	}
}

func TestWriteRejectsInvalidBatch(t *testing.T) {
	good := row("t", 0, 5, "e", t0)
	noID := good
	noID.EventID = ""
	huge := good
	huge.Quantity = ptr(1 << 40)
	badUTF8 := row("t", 0, 6, "e2", t0)
	badUTF8.City = ptr("M\xfcnchen") // Latin-1, not UTF-8
	tests := []struct {
		name    string
		group   string
		give    Batch
		wantRow int // index of the RowError, -1 for a batch-level error
	}{
		{name: "empty group", group: "", give: batch(good), wantRow: -1},
		{name: "row without position", group: testGroup, give: Batch{Events: []EventRow{good}}, wantRow: -1},
		{name: "row at its position", group: testGroup, give: Batch{Events: []EventRow{good}, Positions: map[Partition]int64{{"t", 0}: 5}}, wantRow: -1},
		{name: "negative position", group: testGroup, give: Batch{Positions: map[Partition]int64{{"t", 0}: -1}}, wantRow: -1},
		{name: "no event id", group: testGroup, give: batch(noID), wantRow: 0},
		{name: "quantity overflows INTEGER", group: testGroup, give: batch(huge), wantRow: 0},
		{name: "invalid UTF-8", group: testGroup, give: batch(good, badUTF8), wantRow: 1},
	}
	d, _ := openTest(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := d.Write(context.Background(), tt.group, tt.give)
			if !errors.Is(err, ErrInvalidBatch) || IsTransient(err) {
				t.Fatalf("err = %v, want ErrInvalidBatch, not transient", err)
			}
			var rowErr *RowError
			switch {
			case tt.wantRow < 0 && errors.As(err, &rowErr):
				t.Fatalf("err = %v, want a batch-level error", err)
			case tt.wantRow >= 0 && (!errors.As(err, &rowErr) || rowErr.Index != tt.wantRow):
				t.Fatalf("err = %v, want RowError for row %d", err, tt.wantRow)
			}
		})
	}
	// Without the bad row the batch goes in: the caller's dead-letter-and-retry path.
	if res := mustWrite(t, d, batch(good)); res.Inserted != 1 {
		t.Fatalf("retry without the bad row = %+v", res)
	}
	if n := count(t, d, `SELECT count(*) FROM fact_events`); n != 1 {
		t.Fatalf("rows = %d, want 1", n)
	}
}

func TestIsTransient(t *testing.T) {
	tests := []struct {
		name string
		give error
		want bool
	}{
		{name: "io", give: &duckdb.Error{Type: duckdb.ErrorTypeIO, Msg: "IO Error: disk full"}, want: true},
		{name: "out of memory", give: &duckdb.Error{Type: duckdb.ErrorTypeOutOfMemory}, want: true},
		{name: "transaction conflict", give: fmt.Errorf("commit: %w", &duckdb.Error{Type: duckdb.ErrorTypeTransaction}), want: true},
		{name: "deadline", give: context.DeadlineExceeded, want: true},
		{name: "canceled", give: context.Canceled, want: false},
		{name: "interrupt because canceled", give: errors.Join(context.Canceled, &duckdb.Error{Type: duckdb.ErrorTypeInterrupt}), want: false},
		{name: "constraint", give: &duckdb.Error{Type: duckdb.ErrorTypeConstraint}, want: false},
		{name: "catalog", give: &duckdb.Error{Type: duckdb.ErrorTypeCatalog}, want: false},
		{name: "fatal", give: &duckdb.Error{Type: duckdb.ErrorTypeFatal}, want: false},
		{name: "invalid batch", give: ErrInvalidBatch, want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := wrap("write batch", tt.give)
			if got := IsTransient(err); got != tt.want {
				t.Fatalf("IsTransient(%v) = %v, want %v", err, got, tt.want)
			}
			if !errors.Is(err, tt.give) {
				t.Fatalf("wrapped error lost its cause")
			}
		})
	}
}

// Readers never see half a batch: every batch inserts n rows and moves the position by n, so a
// snapshot always has count(*) == sum(next_offset). Run with -race to check the locking.
func TestConcurrentReadersSeeWholeBatches(t *testing.T) {
	d, _ := openTest(t, WithMaxConcurrentQueries(3)) // three readers at once
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	var wg sync.WaitGroup
	errc := make(chan error, 4)
	for range 3 {
		wg.Go(func() {
			for ctx.Err() == nil {
				_, rows, err := d.Query(ctx, `SELECT (SELECT count(*) FROM fact_events) AS n,
					(SELECT coalesce(sum(next_offset), 0) FROM stream_positions) AS p`, 1)
				if err != nil {
					if ctx.Err() == nil {
						errc <- err
					}
					return
				}
				if fmt.Sprint(rows[0][0]) != fmt.Sprint(rows[0][1]) {
					errc <- fmt.Errorf("torn read: %v rows, positions sum %v", rows[0][0], rows[0][1])
					return
				}
				if err := d.Ping(ctx); err != nil && ctx.Err() == nil {
					errc <- err
					return
				}
			}
		})
	}
	for i := range 30 {
		mustWrite(t, d, batch(seq("c", 0, int64(i*200), 200)...))
	}
	cancel()
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
}

func TestCloseCancelsQueriesAndRejectsCalls(t *testing.T) {
	d, err := OpenDuckDB("")
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		close(started)
		_, _, err := d.Query(context.Background(), `SELECT count(*) FROM range(1000000000000) a`, 1)
		done <- err
	}()
	<-started
	time.Sleep(100 * time.Millisecond) // let the scan start
	closed := make(chan error, 1)
	go func() { closed <- d.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("close: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not interrupt the running query")
	}
	if err := <-done; err == nil {
		t.Fatal("query finished without error after Close")
	}
	for name, err := range map[string]error{
		"write": func() error {
			_, err := d.Write(context.Background(), testGroup, batch(row("t", 0, 0, "e", t0)))
			return err
		}(),
		"positions": func() error { _, err := d.Positions(context.Background(), testGroup); return err }(),
		"query":     func() error { _, _, err := d.Query(context.Background(), "SELECT 1", 1); return err }(),
		"migrate":   d.Migrate(context.Background()),
		"ping":      d.Ping(context.Background()),
	} {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("%s after close: %v, want ErrClosed", name, err)
		}
	}
	if err := d.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
}

func TestOpenRejectsBadOptions(t *testing.T) {
	for name, opt := range map[string]Option{
		"negative window":  WithDedupWindow(-time.Second),
		"negative threads": WithThreads(-1),
		"injected config":  WithMemoryLimit("1GB&enable_external_access=true"),
		"injected ckpt":    WithCheckpointThreshold("1GB&enable_external_access=true"),
		"negative index":   WithDedupIndexSize(-1),
	} {
		if d, err := OpenDuckDB("", opt); err == nil {
			d.Close()
			t.Errorf("%s: open succeeded", name)
		}
	}
	d, err := OpenDuckDB("", WithThreads(1), WithMemoryLimit("256MB"), WithDedupWindow(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	_, rows, err := d.Query(context.Background(), `SELECT current_setting('threads'), current_setting('memory_limit'),
		current_setting('TimeZone'), current_setting('checkpoint_threshold'), current_setting('enable_external_access')`, 1)
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(rows[0]); got != "[1 244.1 MiB UTC 122.0 MiB false]" {
		t.Errorf("settings = %s", got)
	}
}

// A warehouse file made before client_ip, collector_source and dq_warnings existed gets them on
// Migrate, at the end of both tables, so the appender and the moves between the tables (INSERT ... SELECT *) work
// on it: an HTTP event's columns are stored, and survive being demoted to the duplicates table.
func TestMigrateAddsCollectorColumnsToOlderFiles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "old.duckdb")
	old := olderFile(t, path, func(s ddl.Statement) (string, bool) {
		if strings.Contains(s.Name, "order") || strings.Contains(s.Name, "dim_") || strings.Contains(s.Name, "views_") {
			return "", false // the order tables, dimensions and views came later still (TestMigrateAddsOrderTablesToOlderFiles)
		}
		// The DDL as first released: no collector or dq_warnings columns, nor the ALTERs adding them.
		q := strings.Replace(s.SQL, "loaded_at        TIMESTAMPTZ NOT NULL,\n    client_ip        VARCHAR,\n    collector_source VARCHAR,\n    dq_warnings      VARCHAR\n",
			"loaded_at        TIMESTAMPTZ NOT NULL\n", 1)
		var keep []string
		for _, line := range strings.Split(q, "\n") {
			if !strings.Contains(line, "client_ip") && !strings.Contains(line, "collector_source") && !strings.Contains(line, "dq_warnings") {
				keep = append(keep, line)
			}
		}
		return strings.Join(keep, "\n"), true
	})
	if n := count(t, old, `SELECT count(*) FROM information_schema.columns WHERE column_name IN ('client_ip', 'collector_source', 'dq_warnings')`); n != 0 {
		t.Fatalf("the old DDL still has %d collector columns", n)
	}
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}

	d, err := OpenDuckDB(path)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := d.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	const topic = "ecom.events.valid.v1"
	later := row(topic, 0, 0, "http-1", t0)
	later.Source, later.ClientIP, later.CollectorSource = "http", ptr("203.0.113.0"), ptr("web")
	later.DQWarnings = "click.commerce_fields"
	later.ReceivedAt = t0.Add(time.Second)
	mustWrite(t, d, batch(later))
	// An earlier-received copy is preferred: the stored one moves to the duplicates table whole.
	earlier := later
	earlier.SourceOffset, earlier.ReceivedAt, earlier.CollectorSource = 1, t0.Add(time.Millisecond), ptr("ios")
	if res := mustWrite(t, d, batch(earlier)); res.Inserted != 1 || res.Replaced != 1 {
		t.Fatalf("second write = %+v, want the new copy kept and the stored one demoted", res)
	}
	for _, c := range []struct{ table, want string }{
		{"fact_events", "1 203.0.113.0 ios click.commerce_fields"},
		{duplicatesTable, "0 203.0.113.0 web click.commerce_fields"},
	} {
		_, rows, err := d.Query(context.Background(), `SELECT source_offset, client_ip, collector_source, dq_warnings FROM `+c.table, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(rows) != 1 || fmt.Sprintf("%v %v %v %v", rows[0]...) != c.want {
			t.Errorf("%s rows = %v, want [%s]", c.table, rows, c.want)
		}
	}
}
