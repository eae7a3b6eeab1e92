package warehouse

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// The dedup must give the same warehouse content however the input is cut into batches and
// whatever order the partitions are read in: the same kept copies (business columns, not source
// coordinates or load time), a copy dropped exactly when it is within the window of the kept copy
// before it in dedup order (event_timestamp, received_at, then the other business columns), and
// every dropped copy kept in fact_events_duplicates.

const dedupTestWindow = time.Minute

// dupCopy builds one copy of id: stamped at t0+at, received recv after its stamp, with user_id
// user ("" for NULL). The other business columns are a function of id alone, so copies that agree
// on these fields are the same business row.
func dupCopy(id string, at, recv time.Duration, user string) EventRow {
	r := row("ecom.events.valid.v1", 0, 0, id, t0.Add(at))
	r.ReceivedAt = r.EventTimestamp.Add(recv)
	r.UserID = nil
	if user != "" {
		r.UserID = ptr(user)
	}
	return r
}

// projection is what the checks compare of a copy: the fields the tests vary.
func projection(r *EventRow) string {
	user := "NULL"
	if r.UserID != nil {
		user = *r.UserID
	}
	return fmt.Sprintf("%s|%d|%d|%s", r.EventID, r.EventTimestamp.UnixMicro(), r.ReceivedAt.UnixMicro(), user)
}

const projectionSQL = `event_id || '|' || epoch_us(event_timestamp) || '|' || epoch_us(received_at) || '|' || coalesce(user_id, 'NULL')`

// stored returns the sorted projections of the rows of table.
func storedProjections(t testing.TB, d *DuckDB, table string) []string {
	t.Helper()
	return queryStrings(t, d, `SELECT `+projectionSQL+` FROM `+table)
}

// businessContent returns every business column of every row of fact_events, sorted: all columns
// but the source coordinates and the load time.
func businessContent(t testing.TB, d *DuckDB) []string {
	t.Helper()
	return queryStrings(t, d, `SELECT CAST(COLUMNS(* EXCLUDE (source_topic, source_partition, source_offset, loaded_at)) AS VARCHAR) FROM fact_events`)
}

// queryStrings runs q on the database directly (not through Query's checks) and returns each row
// printed, sorted.
func queryStrings(t testing.TB, d *DuckDB, q string) []string {
	t.Helper()
	rows, err := d.db.QueryContext(context.Background(), q)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprint(vals...))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

// writeInBatches writes the copies in the order given, one partition per copy, cut after the
// positions in cuts.
func writeInBatches(t testing.TB, d *DuckDB, copies []EventRow, order []int, cuts []bool) {
	t.Helper()
	var cur []EventRow
	for k, i := range order {
		r := copies[i]
		r.SourcePartition, r.SourceOffset = int32(i), 0
		cur = append(cur, r)
		if k == len(order)-1 || cuts[k] {
			mustWrite(t, d, batch(cur...))
			cur = nil
		}
	}
}

func TestDedupIndependentOfBatching(t *testing.T) {
	const s = time.Second
	tests := []struct {
		name   string
		copies []EventRow
		// wantKept are the indexes into copies of the copies fact_events must hold; all others
		// must be in the duplicates table.
		wantKept []int
	}{
		{
			name:     "chain: the third copy is more than the window after the first",
			copies:   []EventRow{dupCopy("e", 0, s, "u"), dupCopy("e", 50*s, s, "u"), dupCopy("e", 100*s, s, "u")},
			wantKept: []int{0, 2},
		},
		{
			name: "longer chain",
			copies: []EventRow{dupCopy("e", 0, s, "u"), dupCopy("e", 50*s, s, "u"), dupCopy("e", 100*s, s, "u"),
				dupCopy("e", 150*s, s, "u")},
			wantKept: []int{0, 2},
		},
		{
			name:     "a dropped copy is kept again when the copy it duplicated is replaced",
			copies:   []EventRow{dupCopy("e", 0, s, "u"), dupCopy("e", 40*s, s, "u"), dupCopy("e", 70*s, s, "u")},
			wantKept: []int{0, 2},
		},
		{
			name:     "exactly the window apart is a duplicate",
			copies:   []EventRow{dupCopy("e", 0, s, "u"), dupCopy("e", dedupTestWindow, s, "u")},
			wantKept: []int{0},
		},
		{
			name:     "a microsecond beyond the window is not",
			copies:   []EventRow{dupCopy("e", 0, s, "u"), dupCopy("e", dedupTestWindow+time.Microsecond, s, "u")},
			wantKept: []int{0, 1},
		},
		{
			name:     "equal timestamps: the first received is kept",
			copies:   []EventRow{dupCopy("e", 0, 3*s, "u"), dupCopy("e", 0, s, "u"), dupCopy("e", 0, 2*s, "u")},
			wantKept: []int{1},
		},
		{
			name:     "equal timestamps and receipt: business columns decide, NULL first",
			copies:   []EventRow{dupCopy("e", 0, s, "b"), dupCopy("e", 0, s, "a"), dupCopy("e", 0, s, "")},
			wantKept: []int{2},
		},
		{
			name:     "identical copies: one is kept",
			copies:   []EventRow{dupCopy("e", 0, s, "u"), dupCopy("e", 0, s, "u"), dupCopy("e", 0, s, "u")},
			wantKept: []int{0},
		},
		{
			name: "two ids side by side",
			copies: []EventRow{dupCopy("e", 0, s, "u"), dupCopy("f", 30*s, s, "u"), dupCopy("e", 30*s, s, "u"),
				dupCopy("f", 0, 2*s, "u")},
			wantKept: []int{0, 3},
		},
	}
	for _, index := range []int{DefaultDedupIndexSize, 0} {
		for _, tt := range tests {
			t.Run(fmt.Sprintf("index=%d/%s", index, tt.name), func(t *testing.T) {
				var wantKept, wantDropped []string
				for i := range tt.copies {
					if slices.Contains(tt.wantKept, i) {
						wantKept = append(wantKept, projection(&tt.copies[i]))
					} else {
						wantDropped = append(wantDropped, projection(&tt.copies[i]))
					}
				}
				slices.Sort(wantKept)
				slices.Sort(wantDropped)
				d, _ := openTest(t, WithDedupWindow(dedupTestWindow), WithDedupIndexSize(index))
				// Every arrival order, cut into batches in every way.
				n := len(tt.copies)
				var want []string
				masks := make([]int, 1<<(n-1)) // bit k: cut after the k-th copy
				for m := range masks {
					masks[m] = m
				}
				if testing.Short() && n > 3 {
					masks = []int{0, len(masks) - 1, 0b101, 0b010} // one batch, one per copy, two mixes
				}
				for _, order := range permutations(n) {
					for _, mask := range masks {
						cuts := make([]bool, n)
						for k := range n - 1 {
							cuts[k] = mask&(1<<k) != 0
						}
						emptyWarehouse(t, d)
						writeInBatches(t, d, tt.copies, order, cuts)
						kept := storedProjections(t, d, "fact_events")
						if !slices.Equal(kept, wantKept) {
							t.Fatalf("order %v cuts %v: fact_events holds\n%v\nwant\n%v", order, cuts, kept, wantKept)
						}
						content := businessContent(t, d)
						if want == nil {
							want = content
						} else if !slices.Equal(content, want) {
							t.Fatalf("order %v cuts %v: business content\n%v\ndiffers from the first order's\n%v", order, cuts, content, want)
						}
						if dropped := storedProjections(t, d, "fact_events_duplicates"); !slices.Equal(dropped, wantDropped) {
							t.Fatalf("order %v cuts %v: duplicates table holds\n%v\nwant\n%v", order, cuts, dropped, wantDropped)
						}
					}
				}
			})
		}
	}
}

// emptyWarehouse deletes every row and forgets the in-memory index, as if the file were new.
func emptyWarehouse(t testing.TB, d *DuckDB) {
	t.Helper()
	for _, table := range []string{"fact_events", "fact_events_duplicates", "stream_positions"} {
		if _, err := d.writer.ExecContext(context.Background(), "DELETE FROM "+table); err != nil {
			// Before the duplicates table existed there is nothing to empty.
			if !strings.Contains(err.Error(), "does not exist") {
				t.Fatal(err)
			}
		}
	}
	if d.recent != nil {
		d.recent = newRecentIDs(d.opts.dedupWindow, d.opts.dedupIndex)
	}
}

func permutations(n int) [][]int {
	if n == 0 {
		return [][]int{{}}
	}
	var out [][]int
	for _, p := range permutations(n - 1) {
		for at := 0; at <= len(p); at++ {
			q := slices.Insert(slices.Clone(p), at, n-1)
			out = append(out, q)
		}
	}
	return out
}

// dedupOracle applies the rule to the whole multiset at once: per event_id, in dedup order, a
// copy is kept when it is more than the window after the last kept one. The generator below
// varies only event_timestamp, received_at and user_id between copies of an id, so this order is
// the whole dedup order.
func dedupOracle(copies []EventRow, w time.Duration) (kept, dropped []string) {
	byID := map[string][]EventRow{}
	for _, c := range copies {
		byID[c.EventID] = append(byID[c.EventID], c)
	}
	for _, cs := range byID {
		slices.SortFunc(cs, func(a, b EventRow) int {
			if c := a.EventTimestamp.Compare(b.EventTimestamp); c != 0 {
				return c
			}
			if c := a.ReceivedAt.Compare(b.ReceivedAt); c != 0 {
				return c
			}
			switch {
			case a.UserID == nil && b.UserID == nil:
				return 0
			case a.UserID == nil:
				return -1
			case b.UserID == nil:
				return 1
			}
			return strings.Compare(*a.UserID, *b.UserID)
		})
		var last time.Time
		for i := range cs {
			if i == 0 || cs[i].EventTimestamp.Sub(last) > w {
				kept = append(kept, projection(&cs[i]))
				last = cs[i].EventTimestamp
			} else {
				dropped = append(dropped, projection(&cs[i]))
			}
		}
	}
	slices.Sort(kept)
	slices.Sort(dropped)
	return kept, dropped
}

// dedupCorpus generates partition logs holding unique events and duplicated ones of every shape:
// resends with the same timestamp received later, re-stamped copies inside and just outside the
// window, chains of copies each within the window of the next, copies equal in timestamp and
// receipt that differ in a business column, identical copies, and late copies hours behind the
// live ones (checked by scans, not the in-memory index). Copies land in random partitions.
func dedupCorpus(rng *rand.Rand, partitions int) [][]EventRow {
	const s = time.Second
	var all []EventRow
	live := func() time.Duration { return time.Duration(rng.IntN(150)) * s } // 2.5 minutes of traffic
	for i := range 150 {
		all = append(all, dupCopy(fmt.Sprintf("uniq-%03d", i), live(), 150*time.Millisecond, fmt.Sprintf("user-%d", i)))
	}
	for i := range 60 {
		id := fmt.Sprintf("dup-%03d", i)
		at := live()
		if i%10 == 0 {
			at -= 3 * time.Hour // late
		}
		switch i % 6 {
		case 0: // resends received later
			for k := range 2 + rng.IntN(3) {
				all = append(all, dupCopy(id, at, time.Duration(k+1)*s, "u"))
			}
		case 1: // re-stamped within and beyond the window, and at its edge
			for _, d := range []time.Duration{0, 30 * s, dedupTestWindow, dedupTestWindow + time.Microsecond, 2*dedupTestWindow + s} {
				if rng.IntN(3) > 0 {
					all = append(all, dupCopy(id, at+d, s, "u"))
				}
			}
		case 2: // a chain of copies 20-59s apart
			t := at
			for range 3 + rng.IntN(4) {
				all = append(all, dupCopy(id, t, s, "u"))
				t += time.Duration(20+rng.IntN(40)) * s
			}
		case 3: // equal timestamp and receipt, business columns differ
			for _, u := range []string{"b", "", "a", "c"}[:2+rng.IntN(3)] {
				all = append(all, dupCopy(id, at, s, u))
			}
		case 4: // identical copies
			for range 2 + rng.IntN(3) {
				all = append(all, dupCopy(id, at, s, "u"))
			}
		case 5: // a mix, with a copy far outside the window
			all = append(all, dupCopy(id, at, 2*s, "u"), dupCopy(id, at+10*s, s, "u"), dupCopy(id, at, s, "v"),
				dupCopy(id, at+3*time.Minute, s, "u"))
		}
	}
	rng.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
	logs := make([][]EventRow, partitions)
	for _, r := range all {
		p := rng.IntN(partitions)
		r.SourcePartition, r.SourceOffset = int32(p), int64(len(logs[p]))
		logs[p] = append(logs[p], r)
	}
	return logs
}

// A property test: the same partition logs consumed in many random interleavings, cut into random
// batches, with replays of written batches, restarts (the in-memory index is rebuilt) and three
// index configurations, must all leave the content the rule gives for the whole input at once.
func TestDedupPropertySameContentHoweverBatched(t *testing.T) {
	const partitions = 4
	rng := rand.New(rand.NewPCG(5, 2026))
	logs := dedupCorpus(rng, partitions)
	var input []EventRow
	for _, l := range logs {
		input = append(input, l...)
	}
	wantKept, wantDropped := dedupOracle(input, dedupTestWindow)

	runs := 30
	if testing.Short() {
		runs = 6
	}
	var first []string
	for run := range runs {
		index := []int{DefaultDedupIndexSize, 0, 40}[run%3]
		opts := []Option{WithDedupWindow(dedupTestWindow), WithDedupIndexSize(index)}
		path := filepath.Join(t.TempDir(), "w.duckdb")
		open := func() *DuckDB {
			d, err := OpenDuckDB(path, opts...)
			if err != nil {
				t.Fatal(err)
			}
			if err := d.Migrate(context.Background()); err != nil {
				t.Fatal(err)
			}
			return d
		}
		d := open()

		// A random interleaving of the partitions (each read in offset order), cut into batches
		// of 1-60 rows.
		next := make([]int, partitions)
		var prev Batch
		for remaining := len(input); remaining > 0; {
			size := 1 + rng.IntN(60)
			if run == 0 {
				size = len(input) // one batch
			}
			var rows []EventRow
			for len(rows) < size && remaining > 0 {
				p := rng.IntN(partitions)
				if next[p] == len(logs[p]) {
					continue
				}
				rows = append(rows, logs[p][next[p]])
				next[p]++
				remaining--
			}
			b := batch(rows...)
			mustWrite(t, d, b)
			switch rng.IntN(10) {
			case 0: // the consumer re-read what it wrote: all stale
				if res := mustWrite(t, d, prev); res.Stale != len(prev.Events) {
					t.Fatalf("run %d: replay = %+v, want all %d stale", run, res, len(prev.Events))
				}
			case 1:
				if err := d.Close(); err != nil {
					t.Fatal(err)
				}
				d = open()
			}
			prev = b
		}

		kept := storedProjections(t, d, "fact_events")
		content := businessContent(t, d)
		if !slices.Equal(kept, wantKept) {
			d.Close()
			t.Fatalf("run %d (index %d): fact_events differs from the rule applied to the whole input:\n%s",
				run, index, diffSorted(kept, wantKept))
		}
		if first == nil {
			first = content
		} else if !slices.Equal(content, first) {
			d.Close()
			t.Fatalf("run %d (index %d): business content differs from run 0:\n%s", run, index, diffSorted(content, first))
		}
		dropped := storedProjections(t, d, "fact_events_duplicates")
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(dropped, wantDropped) {
			t.Fatalf("run %d (index %d): duplicates table differs:\n%s", run, index, diffSorted(dropped, wantDropped))
		}
	}
	t.Logf("%d records, %d kept, %d duplicates, %d runs", len(input), len(wantKept), len(wantDropped), runs)
}

// diffSorted lists what got has beyond want (+) and lacks (-); both sorted.
func diffSorted(got, want []string) string {
	var b strings.Builder
	i, j := 0, 0
	for i < len(got) || j < len(want) {
		switch {
		case j == len(want) || (i < len(got) && got[i] < want[j]):
			fmt.Fprintf(&b, "+ %s\n", got[i])
			i++
		case i == len(got) || want[j] < got[i]:
			fmt.Fprintf(&b, "- %s\n", want[j])
			j++
		default:
			i++
			j++
		}
	}
	return b.String()
}

// Copies equal in every business column keep the lowest source coordinates, whatever order they
// arrive in (the rule of BigQuery's prod.fact_events): a copy arriving later from a lower
// partition replaces the stored one. Before, the stored copy stayed, and the two backends showed
// different source coordinates for the same event (the conformance suite's e09).
func TestDedupIdenticalCopiesKeepLowestCoordinates(t *testing.T) {
	d, _ := openTest(t)
	ts := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	// Equal offsets: row derives user_id from the offset.
	if res := mustWrite(t, d, batch(row("t", 1, 5, "e1", ts))); res.Inserted != 1 {
		t.Fatalf("first copy: %+v", res)
	}
	res := mustWrite(t, d, batch(row("t", 0, 5, "e1", ts)))
	if res.Inserted != 1 || res.Replaced != 1 || res.Duplicates != 0 {
		t.Fatalf("the copy from partition 0: %+v, want inserted 1, replaced 1", res)
	}
	if n := count(t, d, `SELECT count(*) FROM fact_events WHERE event_id = 'e1' AND source_partition = 0 AND source_offset = 5`); n != 1 {
		t.Fatal("fact_events does not keep the copy at partition 0, offset 5")
	}
	if n := count(t, d, `SELECT count(*) FROM fact_events_duplicates WHERE event_id = 'e1' AND source_partition = 1`); n != 1 {
		t.Fatal("the copy from partition 1 is not a duplicate")
	}
	// A copy from a higher partition changes nothing.
	if res := mustWrite(t, d, batch(row("t", 2, 5, "e1", ts))); res.Duplicates != 1 || res.Replaced != 0 {
		t.Fatalf("a third copy from partition 2: %+v, want one duplicate", res)
	}
}
