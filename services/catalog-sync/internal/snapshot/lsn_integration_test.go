package snapshot

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"

	"github.com/ecomstream/platform/pkg/events"
)

// decoding is a temporary test_decoding slot on a session of its own: the
// commits of the test's schema, in commit order, with their LSNs.
type decoding struct {
	conn *pgx.Conn
	slot string
}

func (l *live) decoding() *decoding {
	l.t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, os.Getenv("CATALOG_DATABASE_URL"))
	if err != nil {
		l.t.Fatal(err)
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	d := &decoding{conn: conn, slot: "catsync_lsntest_" + hex.EncodeToString(b[:])}
	// Temporary: the slot goes with the session, whatever happens to the test.
	if _, err := conn.Exec(ctx, `SELECT pg_create_logical_replication_slot($1, 'test_decoding', true)`, d.slot); err != nil {
		l.t.Fatalf("create the decoding slot: %v", err)
	}
	l.t.Cleanup(func() {
		_, _ = conn.Exec(context.Background(), `SELECT pg_drop_replication_slot($1)`, d.slot)
		_ = conn.Close(context.Background())
	})
	return d
}

// commit is one decoded transaction of the test's products table: the
// prices it set, and the end of its commit record (test_decoding's LSN of
// a COMMIT). The commit record starts before a snapshot's LSN exactly when
// it ends at or before it: both are record boundaries.
type commit struct {
	end    int64
	xid    string
	prices map[string]int64
}

// updateRE reads the new row of an update (after the old key, the table
// has REPLICA IDENTITY FULL) or of an insert.
var updateRE = regexp.MustCompile(`^table [a-z0-9_]+\.products: (?:INSERT|UPDATE): (?:.* new-tuple: )?product_id\[text\]:'([^']*)' [^\n]*? price_minor\[bigint\]:(-?[0-9]+) `)

// commits returns the decoded transactions that changed schema's products.
func (d *decoding) commits(t *testing.T, schema string) []commit {
	t.Helper()
	rows, err := d.conn.Query(context.Background(), `SELECT lsn::text, data FROM pg_logical_slot_get_changes($1, NULL, NULL, 'include-xids', '1')`, d.slot)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []commit
	var cur map[string]int64
	for rows.Next() {
		var lsn, data string
		if err := rows.Scan(&lsn, &data); err != nil {
			t.Fatal(err)
		}
		switch {
		case strings.HasPrefix(data, "BEGIN"):
			cur = map[string]int64{}
		case strings.HasPrefix(data, "COMMIT"):
			if len(cur) > 0 {
				end, err := pglogrepl.ParseLSN(lsn)
				if err != nil {
					t.Fatal(err)
				}
				out = append(out, commit{end: int64(end), prices: cur, xid: data})
			}
		case strings.HasPrefix(data, "table "+schema+".products: "):
			m := updateRE.FindStringSubmatch(data)
			if m == nil {
				t.Fatalf("unexpected change %q", data)
			}
			n, _ := strconv.ParseInt(m[2], 10, 64)
			cur[m[1]] = n
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// seen is what one snapshot read: its LSN and the price of every product.
type seen struct {
	snap   string
	lsn    int64
	prices map[string]int64
}

// TestIntegrationSnapshotLSNBoundary: while writers commit updates as fast
// as they can, every snapshot shows exactly the commits whose commit record
// precedes its LSN (the records' source_lsn): none before it is missing (the
// CDC change of such a commit would be ordered before the snapshot's stale
// view of the row, so the stale view would win) and none after it is
// visible. Reading pg_current_wal_lsn() inside the transaction breaks it: a
// commit whose record is written (the session waits for its flush) but not
// yet visible is missing from a snapshot whose LSN is past it.
func TestIntegrationSnapshotLSNBoundary(t *testing.T) {
	l := newLive(t)
	const writers, snapshots = 4, 60
	l.exec(`INSERT INTO $S.products (product_id, sku, name, price_minor, currency)
		SELECT format('p-%s', i), 'SKU', 'Mug', 0, 'EUR' FROM generate_series(1, $1::int) i`, writers)
	dec := l.decoding()
	src := l.source()
	ctx := context.Background()
	// The writers stop between statements, so every update they ran has
	// committed (or failed) when they are done.
	var stop atomic.Bool
	defer stop.Store(true)
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := 1; w <= writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 1; !stop.Load(); n++ {
				_, err := l.owner.Exec(ctx, fmt.Sprintf(`UPDATE %s.products SET price_minor = $1 WHERE product_id = $2`, l.schema), n, fmt.Sprintf("p-%d", w))
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	// Snapshots for a while (at least snapshots of them), from the writers'
	// first commits on.
	var started int
	for start := time.Now(); started < writers; time.Sleep(10 * time.Millisecond) {
		if time.Since(start) > 10*time.Second {
			t.Fatal("the writers did not commit within 10 s")
		}
		if err := l.owner.QueryRow(ctx, fmt.Sprintf(`SELECT count(*) FROM %s.products WHERE price_minor > 0`, l.schema)).Scan(&started); err != nil {
			t.Fatal(err)
		}
	}
	var got []seen
	for until := time.Now().Add(2 * time.Second); len(got) < snapshots || time.Now().Before(until); {
		tx, err := src.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		rows, err := tx.Page(ctx, productsTable, "", true, 100)
		if err != nil {
			t.Fatal(err)
		}
		s := seen{lsn: tx.LSN(), prices: map[string]int64{}}
		if err := tx.(*pgTx).tx.QueryRow(ctx, `SELECT pg_current_snapshot()::text`).Scan(&s.snap); err != nil {
			t.Fatal(err)
		}
		for _, r := range rows {
			s.prices[r.Key] = r.Value.(*events.ProductChange).PriceMinor
		}
		if err := tx.Close(ctx); err != nil {
			t.Fatal(err)
		}
		got = append(got, s)
	}
	stop.Store(true)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("writer: %v", err)
	}
	commits := dec.commits(t, l.schema)
	if len(commits) < 100 {
		t.Fatalf("only %d commits decoded during %d snapshots: the writers did not run beside them", len(commits), len(got))
	}
	// Replay the commits in LSN order (decoding's order) and compare each
	// snapshot with the state after the commits that end at or before its
	// LSN.
	slices.SortStableFunc(got, func(a, b seen) int { return cmp.Compare(a.lsn, b.lsn) })
	want := map[string]int64{}
	for k := range got[0].prices {
		want[k] = 0
	}
	bad, next := 0, 0
	for _, s := range got {
		for ; next < len(commits) && commits[next].end <= s.lsn; next++ {
			maps.Copy(want, commits[next].prices)
		}
		if len(s.prices) != writers {
			t.Errorf("snapshot at %s has %d products, want %d", pglogrepl.LSN(s.lsn), len(s.prices), writers)
		}
		for k, v := range s.prices {
			if v != want[k] {
				if bad++; bad <= 10 {
					var at []string
					for _, c := range commits {
						if p, ok := c.prices[k]; ok && (p == v || p == want[k] || p == v+1) {
							at = append(at, fmt.Sprintf("%d@%s %s", p, pglogrepl.LSN(c.end), c.xid))
						}
					}
					t.Errorf("snapshot %s at %s: %s has price %d, the commits before its LSN set %d (%v)", s.snap, pglogrepl.LSN(s.lsn), k, v, want[k], at)
				}
			}
		}
	}
	// The table itself ends as the last commits left it: reading the
	// snapshots left no trace (a row version read as aborted while its
	// commit was in flight would be hinted so, and lost).
	for ; next < len(commits); next++ {
		maps.Copy(want, commits[next].prices)
	}
	final := map[string]int64{}
	rows, err := l.owner.Query(ctx, fmt.Sprintf(`SELECT product_id, price_minor FROM %s.products`, l.schema))
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var k string
		var v int64
		if err := rows.Scan(&k, &v); err != nil {
			t.Fatal(err)
		}
		final[k] = v
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(final, want) {
		t.Errorf("the table ends as %v, the last commits set %v", final, want)
	}
	t.Logf("%d snapshots beside %d commits, %d rows off the LSN boundary", len(got), len(commits), bad)
}

// logBuffer is a slog destination tests read while the logger writes.
type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// snapSlots returns the temporary slots of src now.
func (l *live) snapSlots(src *PG) []string {
	l.t.Helper()
	rows, err := l.owner.Query(context.Background(), `SELECT slot_name FROM pg_replication_slots WHERE temporary AND starts_with(slot_name::text, $1)`, src.SlotPrefix+SlotSuffix)
	if err != nil {
		l.t.Fatal(err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		l.t.Fatal(err)
	}
	return names
}

// waitFor polls cond every 20 ms for up to 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for start := time.Now(); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Since(start) > 10*time.Second {
			t.Fatalf("after 10 s: %s", what)
		}
	}
}

// TestIntegrationSnapshotWaitsForRunningTransaction: a snapshot started
// while a transaction holds an update waits for it (the slot's snapshot
// builder waits for the transactions running at its start), logging that
// it waits, on a temporary slot of its own; once the update commits the
// snapshot sees it, with its commit record before the snapshot's LSN, and
// the slot is gone. A cancelled wait returns at once and leaves no slot.
func TestIntegrationSnapshotWaitsForRunningTransaction(t *testing.T) {
	l := newLive(t)
	ctx := context.Background()
	l.exec(`INSERT INTO $S.products (product_id, sku, name, price_minor, currency) VALUES ('p-1', 'SKU', 'Mug', 100, 'EUR')`)
	dec := l.decoding()
	var logs logBuffer
	src := l.source()
	src.Log = slog.New(slog.NewTextHandler(&logs, nil))
	src.WaitLogEvery = 50 * time.Millisecond
	hold := func(price int) pgx.Tx {
		tx, err := l.owner.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, fmt.Sprintf(`UPDATE %s.products SET price_minor = $1 WHERE product_id = 'p-1'`, l.schema), price); err != nil {
			t.Fatal(err)
		}
		return tx
	}

	t.Run("the snapshot waits and then sees the commit", func(t *testing.T) {
		holder := hold(200)
		type begun struct {
			tx  Tx
			err error
		}
		done := make(chan begun, 1)
		go func() {
			tx, err := src.Begin(ctx)
			done <- begun{tx, err}
		}()
		waitFor(t, "no wait logged", func() bool { return strings.Contains(logs.String(), "snapshot waits for the transactions running") })
		slots := l.snapSlots(src)
		if len(slots) != 1 || !regexp.MustCompile(`^`+src.SlotPrefix+`_snap_[0-9]+_[0-9a-f]{8}$`).MatchString(slots[0]) {
			t.Fatalf("temporary slots while waiting: %v", slots)
		}
		select {
		case b := <-done:
			t.Fatalf("Begin returned while a transaction with an update was open: %v", b.err)
		default:
		}
		if err := holder.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		b := <-done
		if b.err != nil {
			t.Fatal(b.err)
		}
		defer b.tx.Close(ctx)
		rows, err := b.tx.Page(ctx, productsTable, "", true, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(rows) != 1 || rows[0].Value.(*events.ProductChange).PriceMinor != 200 {
			t.Fatalf("the snapshot read %+v, want p-1 at price 200", rows)
		}
		commits := dec.commits(t, l.schema)
		if len(commits) != 1 || commits[0].prices["p-1"] != 200 || commits[0].end > b.tx.LSN() {
			t.Fatalf("commits %+v, want the update's ending at or before the snapshot's LSN %s", commits, pglogrepl.LSN(b.tx.LSN()))
		}
		if !strings.Contains(logs.String(), "consistent_point="+pglogrepl.LSN(b.tx.LSN()).String()) {
			t.Errorf("the log does not name the snapshot's LSN as the slot's consistent point:\n%s", logs.String())
		}
		if s := l.snapSlots(src); len(s) != 0 {
			t.Errorf("temporary slots after the snapshot was taken: %v", s)
		}
	})

	t.Run("a cancelled wait leaves no slot", func(t *testing.T) {
		holder := hold(300)
		defer holder.Rollback(ctx)
		bctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() {
			tx, err := src.Begin(bctx)
			if err == nil {
				_ = tx.Close(ctx)
			}
			done <- err
		}()
		waitFor(t, "no slot created", func() bool { return len(l.snapSlots(src)) == 1 })
		cancel()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "waited") {
				t.Fatalf("Begin = %v, want the cancel after its wait", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Begin did not return within 5 s of its cancel")
		}
		// The cancel request stops the server's wait; the slot goes with
		// its session while the holder is still open.
		waitFor(t, "the cancelled snapshot's slot is still there", func() bool { return len(l.snapSlots(src)) == 0 })
	})
}

// TestIntegrationSnapshotHoldsTheHorizon: from before the slot's creation
// until the snapshot is imported, a transaction of the source's own holds
// the row-removal horizon at or below the snapshot's xmin (PG.holdHorizon:
// PostgreSQL's slot release leaves a moment in which nothing else does, and
// a row version the snapshot sees can be pruned then), and it ends once the
// snapshot is imported.
func TestIntegrationSnapshotHoldsTheHorizon(t *testing.T) {
	l := newLive(t)
	ctx := context.Background()
	l.exec(`INSERT INTO $S.products (product_id, sku, name, price_minor, currency) VALUES ('p-1', 'SKU', 'Mug', 100, 'EUR')`)
	src := l.source()
	// A transaction with an update keeps the slot's creation waiting, so the
	// sessions can be looked at in the middle of it.
	holder, err := l.owner.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Rollback(ctx)
	if _, err := holder.Exec(ctx, fmt.Sprintf(`UPDATE %s.products SET price_minor = 200 WHERE product_id = 'p-1'`, l.schema)); err != nil {
		t.Fatal(err)
	}
	var holderXid int64
	if err := holder.QueryRow(ctx, `SELECT pg_current_xact_id()::text::bigint`).Scan(&holderXid); err != nil {
		t.Fatal(err)
	}
	type begun struct {
		tx  Tx
		err error
	}
	done := make(chan begun, 1)
	go func() {
		tx, err := src.Begin(ctx)
		done <- begun{tx, err}
	}()
	waitFor(t, "no slot created", func() bool { return len(l.snapSlots(src)) == 1 })
	// The source's sessions (its pool's role) that hold a snapshot without
	// a transaction id: the guard, and nothing else while the slot waits.
	const guards = `SELECT pid, backend_xmin::text::bigint FROM pg_stat_activity
		WHERE backend_type = 'client backend' AND usename = current_user AND pid <> pg_backend_pid()
		AND state = 'idle in transaction' AND backend_xid IS NULL AND backend_xmin IS NOT NULL`
	query := func() map[int32]int64 {
		// As the source's role: PostgreSQL shows a session's state only
		// to its own role (and superusers).
		rows, err := l.cdc.Query(ctx, guards)
		if err != nil {
			t.Fatal(err)
		}
		out := map[int32]int64{}
		for rows.Next() {
			var pid int32
			var xmin int64
			if err := rows.Scan(&pid, &xmin); err != nil {
				t.Fatal(err)
			}
			out[pid] = xmin
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		return out
	}
	during := query()
	if len(during) != 1 {
		t.Fatalf("while the slot is created, the source's sessions holding a snapshot are %v, want one (the horizon's guard)", during)
	}
	var guardPid int32
	var guardXmin int64
	for guardPid, guardXmin = range during {
	}
	// xids of this test's run stay far below 2^32: the 32-bit backend_xmin
	// compares with the low bits of the 64-bit ids.
	if guardXmin > holderXid%(1<<32) {
		t.Fatalf("the guard's xmin %d is past the running update's xid %d", guardXmin, holderXid)
	}
	if err := holder.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	b := <-done
	if b.err != nil {
		t.Fatal(b.err)
	}
	defer b.tx.Close(ctx)
	var snapXmin int64
	if err := b.tx.(*pgTx).tx.QueryRow(ctx, `SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint`).Scan(&snapXmin); err != nil {
		t.Fatal(err)
	}
	if guardXmin > snapXmin%(1<<32) {
		t.Errorf("the guard's xmin %d is past the imported snapshot's xmin %d: it did not cover the snapshot", guardXmin, snapXmin)
	}
	if after := query(); after[guardPid] != 0 {
		t.Errorf("the guard (pid %d) still holds a snapshot after the import: %v", guardPid, after)
	}
	t.Logf("guard pid %d held xmin %d during the slot's creation; the snapshot's xmin is %d", guardPid, guardXmin, snapXmin)
}
