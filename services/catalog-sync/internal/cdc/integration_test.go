package cdc

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	gocmp "github.com/google/go-cmp/cmp"
	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"

	ddl "github.com/ecomstream/platform/sql"
)

// liveDB is a storefront schema of its own on the local stack's PostgreSQL,
// with its publication, and a slot name; the schema, the publication and the
// slot are dropped when the test ends, pass or fail.
type liveDB struct {
	ecom   *pgx.Conn // schema owner (DATABASE_URL): writes the rows
	cdc    *pgx.Conn // replication role (CATALOG_DATABASE_URL), normal connection
	cdcURL string
	schema string
	slot   string
}

func newLiveDB(t *testing.T) *liveDB {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: needs the local stack's PostgreSQL (deploy/local/stack.sh up); skipped under -short")
	}
	ecomURL := cmp.Or(os.Getenv("DATABASE_URL"), "postgres://ecom:ecom@127.0.0.1:15432/ecom?sslmode=disable")
	cdcURL := cmp.Or(os.Getenv("CATALOG_DATABASE_URL"), "postgres://ecom_cdc:ecom_cdc@127.0.0.1:15432/ecom?sslmode=disable")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	connect := func(url string) *pgx.Conn {
		c, err := pgx.Connect(ctx, url)
		if err != nil {
			t.Fatalf("PostgreSQL not reachable: %v\nstart the local stack with: deploy/local/stack.sh up   (then eval \"$(deploy/local/stack.sh env)\")", err)
		}
		t.Cleanup(func() { _ = c.Close(context.Background()) })
		return c
	}
	db := &liveDB{ecom: connect(ecomURL), cdc: connect(cdcURL), cdcURL: cdcURL}
	sweepOnce.Do(func() {
		dropped, err := sweepStale(ctx, db.ecom, db.cdc, time.Now().Add(-staleAfter))
		if err != nil {
			t.Fatalf("drop the stale objects of killed test runs: %v", err)
		}
		if len(dropped) > 0 {
			t.Logf("dropped the stale objects of killed test runs: %v", dropped)
		}
	})
	suffix := testSuffix(time.Now())
	db.schema, db.slot = "sf_cdc_"+suffix, "cdc_test_"+suffix
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := DropSlot(ctx, db.cdc, db.slot); err != nil {
			t.Errorf("cleanup: %v", err)
		}
		for _, q := range []string{"DROP PUBLICATION IF EXISTS " + db.publication(), "DROP SCHEMA IF EXISTS " + db.schema + " CASCADE"} {
			if _, err := db.ecom.Exec(ctx, q); err != nil {
				t.Errorf("cleanup: %s: %v", q, err)
			}
		}
	})
	st, err := ddl.Storefront(db.schema, "ecom_cdc")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.ecom.Exec(ctx, st.SQL); err != nil {
		t.Fatalf("apply %s: %v", st.Name, err)
	}
	return db
}

func (db *liveDB) publication() string { return db.schema + "_catalog" }

// A killed test run (timeout, ^C) never runs its t.Cleanup, and its slot
// would hold WAL forever. Slots have no creation time, so the test objects'
// names embed it: slot cdc_test_<unix>_<hex>, schema sf_cdc_<unix>_<hex>,
// publication sf_cdc_<unix>_<hex>_catalog. The first integration test of a
// run drops those older than staleAfter (no test runs that long) whose slot
// is not streaming.
const staleAfter = 10 * time.Minute

var (
	sweepOnce sync.Once
	staleRE   = regexp.MustCompile(`^(?:cdc_test|sf_cdc)_([0-9]+)_([0-9a-f]+)(?:_catalog)?$`)
)

func testSuffix(created time.Time) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%d_%s", created.Unix(), hex.EncodeToString(b[:]))
}

// sweepStale drops the test slots, publications and schemas created before
// cutoff (slots only when inactive; a schema or publication is kept while
// the slot of the same name is active) and returns what it dropped. only,
// if not nil, limits it to those name suffixes (<unix>_<hex>).
func sweepStale(ctx context.Context, ecom, cdc *pgx.Conn, cutoff time.Time, only ...string) ([]string, error) {
	type obj struct{ kind, name string }
	rows, err := ecom.Query(ctx, `SELECT 'slot', slot_name::text, active FROM pg_replication_slots WHERE slot_name LIKE 'cdc\_test\_%'
UNION ALL SELECT 'publication', pubname::text, false FROM pg_publication WHERE pubname LIKE 'sf\_cdc\_%'
UNION ALL SELECT 'schema', nspname::text, false FROM pg_namespace WHERE nspname LIKE 'sf\_cdc\_%'`)
	if err != nil {
		return nil, err
	}
	var stale []obj
	active := map[string]bool{} // suffix -> its slot streams
	for rows.Next() {
		var o obj
		var act bool
		if err := rows.Scan(&o.kind, &o.name, &act); err != nil {
			return nil, err
		}
		m := staleRE.FindStringSubmatch(o.name)
		if m == nil || (only != nil && !slices.Contains(only, m[1]+"_"+m[2])) {
			continue
		}
		if act {
			active[m[1]+"_"+m[2]] = true
		}
		if unix, err := strconv.ParseInt(m[1], 10, 64); err == nil && time.Unix(unix, 0).Before(cutoff) {
			stale = append(stale, o)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	var dropped []string
	// Slots first, publications before their schemas.
	for _, kind := range []string{"slot", "publication", "schema"} {
		for _, o := range stale {
			m := staleRE.FindStringSubmatch(o.name)
			if o.kind != kind || active[m[1]+"_"+m[2]] {
				continue
			}
			switch kind {
			case "slot":
				err = DropSlot(ctx, cdc, o.name)
			case "publication":
				_, err = ecom.Exec(ctx, "DROP PUBLICATION IF EXISTS "+o.name)
			case "schema":
				_, err = ecom.Exec(ctx, "DROP SCHEMA IF EXISTS "+o.name+" CASCADE")
			}
			if err != nil {
				return dropped, fmt.Errorf("drop %s %s: %w", kind, o.name, err)
			}
			dropped = append(dropped, kind+" "+o.name)
		}
	}
	return dropped, nil
}

// wal returns pg_current_wal_lsn().
func (db *liveDB) wal(t *testing.T) LSN {
	t.Helper()
	var s string
	if err := db.ecom.QueryRow(context.Background(), "SELECT pg_current_wal_lsn()::text").Scan(&s); err != nil {
		t.Fatal(err)
	}
	lsn, err := pglogrepl.ParseLSN(s)
	if err != nil {
		t.Fatal(err)
	}
	return lsn
}

// exec runs statements in one transaction ({schema} is the test's schema)
// and returns the WAL positions before and after it.
func (db *liveDB) exec(t *testing.T, stmts ...string) (before, after LSN) {
	t.Helper()
	ctx := context.Background()
	before = db.wal(t)
	err := pgx.BeginFunc(ctx, db.ecom, func(tx pgx.Tx) error {
		for _, s := range stmts {
			if _, err := tx.Exec(ctx, fmt.Sprintf(s, db.schema)); err != nil {
				return fmt.Errorf("%s: %w", s, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return before, db.wal(t)
}

// rowCommit returns the commit timestamp and xid of the transaction that
// last wrote a product.
func (db *liveDB) rowCommit(t *testing.T, productID string) (time.Time, uint32) {
	t.Helper()
	var ts time.Time
	var xid int64
	err := db.ecom.QueryRow(context.Background(), fmt.Sprintf(
		"SELECT pg_xact_commit_timestamp(xmin), xmin::text::bigint FROM %s.products WHERE product_id = $1", db.schema), productID).Scan(&ts, &xid)
	if err != nil {
		t.Fatal(err)
	}
	return ts.UTC(), uint32(xid)
}

func (db *liveDB) health(t *testing.T) SlotHealth {
	t.Helper()
	h, err := CheckSlot(context.Background(), db.cdc, db.slot)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// waitFor polls cond for up to 15s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// consumer runs a Stream whose handler hands every transaction to txs.
type consumer struct {
	s      *Stream
	txs    chan Tx
	cancel context.CancelFunc
	done   chan error
}

func (db *liveDB) start(t *testing.T, setup ...func(*Stream)) *consumer {
	t.Helper()
	s, err := New(Config{
		URL: db.cdcURL, Slot: db.slot, Publication: db.publication(),
		StatusInterval: 200 * time.Millisecond,
		Logger:         slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range setup {
		f(s)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &consumer{s: s, txs: make(chan Tx, 100), cancel: cancel, done: make(chan error, 1)}
	go func() {
		c.done <- s.Run(ctx, func(ctx context.Context, txs []Tx) error {
			for _, tx := range txs {
				select {
				case c.txs <- tx:
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			return nil
		})
	}()
	t.Cleanup(func() { c.stop(t) })
	waitFor(t, "the slot to be streamed from", func() bool {
		select {
		case err := <-c.done:
			c.done <- err
			t.Fatalf("Run: %v", err)
		default:
		}
		// Active alone is also true while Run's CREATE_REPLICATION_SLOT runs.
		h := db.health(t)
		return s.Stats().Streaming && h.Exists && h.Active
	})
	return c
}

func (c *consumer) next(t *testing.T) Tx {
	t.Helper()
	select {
	case tx := <-c.txs:
		return tx
	case err := <-c.done:
		c.done <- err
		t.Fatalf("Run ended: %v", err)
	case <-time.After(15 * time.Second):
		t.Fatal("no transaction within 15s")
	}
	return Tx{}
}

// stop ends Run (it returns nil after its last status update); idempotent.
func (c *consumer) stop(t *testing.T) {
	t.Helper()
	if c.cancel == nil {
		return
	}
	c.cancel()
	c.cancel = nil
	select {
	case err := <-c.done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Error("Run did not return within 15s of its context ending")
	}
}

func (c *consumer) expectNone(t *testing.T, within time.Duration) {
	t.Helper()
	select {
	case tx := <-c.txs:
		t.Fatalf("unexpected transaction xid %d at %s: %+v", tx.Xid, tx.CommitLSN, tx.Changes)
	case <-time.After(within):
	}
}

const insertProduct = `INSERT INTO %%s.products (product_id, sku, name, category, brand, price_minor, currency)
VALUES ('%s', 'SKU-%s', '%s', 'kitchen', 'Acme', %d, 'EUR')`

// TestIntegrationStream: changes of several transactions arrive whole, in
// order, with their ordinals, commit LSN, commit timestamp and xid; an
// unconfirmed transaction is delivered again after a restart, a confirmed
// one is not; the slot's flush position never passes what was confirmed; an
// unchanged TOASTed column is filled; the slot survives the consumer.
func TestIntegrationStream(t *testing.T) {
	db := newLiveDB(t)
	if h := db.health(t); h.Exists {
		t.Fatalf("slot %s exists before the first Run", db.slot)
	}
	// CDC_RECORD_TESTDATA=1 rewrites testdata/storefront.pgoutput with this
	// test's messages for TestDecodeRecorded (the schema name is in them).
	var recorded [][]byte
	c1 := db.start(t, func(s *Stream) {
		if os.Getenv("CDC_RECORD_TESTDATA") != "" {
			s.onWAL = func(b []byte) { recorded = append(recorded, bytes.Clone(b)) }
		}
	})

	// 8 kB of random hex compresses to well over the 2 kB TOAST threshold,
	// so the value is stored out of line and an update of another column
	// leaves it "unchanged TOAST" in the new tuple.
	big := make([]byte, 4096)
	_, _ = rand.Read(big)
	bigName := hex.EncodeToString(big)

	type want struct {
		before, after LSN
		commit        time.Time
		xid           uint32
	}
	var w [3]want
	w[0].before, w[0].after = db.exec(t,
		fmt.Sprintf(insertProduct, "p-1", "1", "Mug", 1299),
		fmt.Sprintf(insertProduct, "p-2", "2", "Pen", 250),
		`INSERT INTO %s.customers (customer_id, email, name, country) VALUES ('u-1', 'a@example.com', 'Ann', 'DE')`)
	w[0].commit, w[0].xid = db.rowCommit(t, "p-1")
	w[1].before, w[1].after = db.exec(t,
		`UPDATE %s.products SET price_minor = 999 WHERE product_id = 'p-1'`,
		`DELETE FROM %s.products WHERE product_id = 'p-2'`,
		`UPDATE %s.customers SET country = 'FR' WHERE customer_id = 'u-1'`,
		`INSERT INTO %s.categories (slug, name) VALUES ('kitchen', 'Kitchen')`, // not published
		fmt.Sprintf(insertProduct, "p-big", "3", bigName, 5000))
	w[1].commit, w[1].xid = db.rowCommit(t, "p-1")
	w[2].before, w[2].after = db.exec(t, `UPDATE %s.products SET price_minor = 4500 WHERE product_id = 'p-big'`)
	w[2].commit, w[2].xid = db.rowCommit(t, "p-big")

	var got [3]Tx
	for i := range got {
		got[i] = c1.next(t)
		tx := got[i]
		if tx.Xid != w[i].xid || !tx.CommitTime.Equal(w[i].commit) {
			t.Errorf("tx %d: xid %d commit %s, want xid %d commit %s (pg_xact_commit_timestamp)", i+1, tx.Xid, tx.CommitTime, w[i].xid, w[i].commit)
		}
		if tx.CommitLSN <= w[i].before || tx.CommitLSN > w[i].after || tx.EndLSN <= tx.CommitLSN {
			t.Errorf("tx %d: commit LSN %s end %s, want within (%s, %s]", i+1, tx.CommitLSN, tx.EndLSN, w[i].before, w[i].after)
		}
		for j, ch := range tx.Changes {
			if ch.LSN != tx.CommitLSN || ch.Ordinal != j+1 || !ch.CommitTime.Equal(tx.CommitTime) || ch.Xid != tx.Xid {
				t.Errorf("tx %d change %d: LSN %s ordinal %d time %s xid %d, want the transaction's and ordinal %d", i+1, j, ch.LSN, ch.Ordinal, ch.CommitTime, ch.Xid, j+1)
			}
		}
	}
	type brief struct {
		Table, Op, ID, Price, Country string
	}
	summary := func(tx Tx) []brief {
		var out []brief
		for _, ch := range tx.Changes {
			id := ch.Row["product_id"].Text + ch.Row["customer_id"].Text
			out = append(out, brief{ch.Table[len(db.schema)+1:], string(ch.Op), id, ch.Row["price_minor"].Text, ch.Row["country"].Text})
		}
		return out
	}
	wantBriefs := [][]brief{
		{{"products", "upsert", "p-1", "1299", ""}, {"products", "upsert", "p-2", "250", ""}, {"customers", "upsert", "u-1", "", "DE"}},
		{{"products", "upsert", "p-1", "999", ""}, {"products", "delete", "p-2", "250", ""}, {"customers", "upsert", "u-1", "", "FR"}, {"products", "upsert", "p-big", "5000", ""}},
		{{"products", "upsert", "p-big", "4500", ""}},
	}
	for i := range got {
		if diff := gocmp.Diff(wantBriefs[i], summary(got[i])); diff != "" {
			t.Errorf("tx %d changes (-want +got):\n%s", i+1, diff)
		}
	}
	// The delete carries the whole old row (REPLICA IDENTITY FULL).
	if del := got[1].Changes[1].Row; del["name"].Text != "Pen" || del["sku"].Text != "SKU-2" || del["currency"].Text != "EUR" {
		t.Errorf("deleted row = %+v, want the complete old row", del)
	}
	// The unchanged TOASTed name is filled from the old tuple.
	if name := got[2].Changes[0].Row["name"]; name.Null || name.Text != bigName {
		t.Errorf("p-big name after a price update: %d bytes (null %v), want the unchanged %d bytes", len(name.Text), name.Null, len(bigName))
	}
	// Typed values decode to what PostgreSQL holds.
	var updatedAt time.Time
	var active bool
	if err := db.ecom.QueryRow(context.Background(), fmt.Sprintf("SELECT updated_at, is_active FROM %s.products WHERE product_id = 'p-big'", db.schema)).Scan(&updatedAt, &active); err != nil {
		t.Fatal(err)
	}
	row := got[2].Changes[0].Row
	if ts, err := row["updated_at"].Time(); err != nil || !ts.Equal(updatedAt) {
		t.Errorf("updated_at = %v (%v), want %s", ts, err, updatedAt)
	}
	if b, err := row["is_active"].Bool(); err != nil || b != active {
		t.Errorf("is_active = %v (%v), want %v", b, err, active)
	}
	if v, err := row["price_minor"].Int64(); err != nil || v != 4500 {
		t.Errorf("price_minor = %v (%v), want 4500", v, err)
	}
	if v, err := row["deleted_at"].Any(); err != nil || v != nil {
		t.Errorf("deleted_at = %v (%v), want NULL", v, err)
	}

	// Nothing confirmed: after several status intervals (keepalives
	// included) the slot still stands before the first transaction, and
	// keeps the WAL.
	time.Sleep(time.Second)
	if h := db.health(t); h.ConfirmedFlushLSN >= got[0].CommitLSN || h.RetainedWALBytes <= 0 || !h.Active || h.WALStatus == "lost" {
		t.Fatalf("unconfirmed slot: %+v, want confirmed_flush_lsn < %s, retained WAL > 0, active", h, got[0].CommitLSN)
	}
	st := c1.s.Stats()
	if !st.Streaming || st.Transactions != 3 || st.Changes != 8 || st.Unconfirmed != 3 || !st.LastCommitTime.Equal(got[2].CommitTime) || st.Flushed >= got[0].CommitLSN {
		t.Errorf("Stats = %+v, want streaming, 3 transactions, 8 changes, 3 unconfirmed, flushed before tx 1", st)
	}
	if st.ToastFilled < 1 {
		t.Errorf("unchanged TOAST values filled = %d, want >= 1 (the test did not exercise the 'u' path)", st.ToastFilled)
	}
	c1.stop(t)
	if c1.s.Stats().Streaming {
		t.Error("Stats().Streaming after Run returned")
	}
	if recorded != nil {
		if err := writeRecording("testdata/storefront.pgoutput", recorded); err != nil {
			t.Fatal(err)
		}
	}

	// Restart without confirming: all three again, identical.
	c2 := db.start(t)
	for i := range got {
		if diff := gocmp.Diff(got[i], c2.next(t)); diff != "" {
			t.Fatalf("re-delivered tx %d differs (-first +again):\n%s", i+1, diff)
		}
	}
	c2.s.Confirm(got[0].CommitLSN)
	c2.stop(t)
	// The walsender applies the last status update as it reads it, a moment
	// after the consumer is gone.
	waitFor(t, "confirmed_flush_lsn at the end of tx 1", func() bool { return db.health(t).ConfirmedFlushLSN == got[0].EndLSN })

	// Restart after confirming the first: the other two only.
	c3 := db.start(t)
	for i := 1; i < len(got); i++ {
		if again := c3.next(t); again.CommitLSN != got[i].CommitLSN {
			t.Fatalf("after confirming tx 1: got the tx at %s, want tx %d at %s", again.CommitLSN, i+1, got[i].CommitLSN)
		}
	}
	c3.s.Confirm(got[2].CommitLSN)
	// Nothing is pending now, so a keepalive may legitimately carry the slot
	// past tx 3 (other tests' WAL on the shared server): this unpublished
	// write makes that happen here every time.
	_, unpublished := db.exec(t, `UPDATE %s.categories SET name = 'Kitchenware' WHERE slug = 'kitchen'`)
	waitFor(t, "the confirmed consumer to move past unpublished WAL", func() bool { return c3.s.Stats().Flushed >= unpublished })
	c3.stop(t)
	waitFor(t, "the stopped consumer's slot kept, inactive, at or after the end of tx 3", func() bool {
		h := db.health(t)
		return h.Exists && !h.Active && h.ConfirmedFlushLSN >= got[2].EndLSN
	})

	// Restart after confirming everything: nothing old, the new change next.
	c4 := db.start(t)
	c4.expectNone(t, 500*time.Millisecond)
	before, after := db.exec(t, `UPDATE %s.customers SET email = 'b@example.com' WHERE customer_id = 'u-1'`)
	tx4 := c4.next(t)
	if tx4.CommitLSN <= before || tx4.CommitLSN > after || len(tx4.Changes) != 1 || tx4.Changes[0].Row["email"].Text != "b@example.com" {
		t.Fatalf("new change after restart: %+v", tx4)
	}
	c4.s.Confirm(tx4.CommitLSN)

	// Idle: WAL of tables outside the publication does not stay retained;
	// the keepalives move the slot past it once nothing is unconfirmed.
	_, after = db.exec(t, `UPDATE %s.categories SET name = 'Kitchen & Dining' WHERE slug = 'kitchen'`)
	waitFor(t, "the idle slot to move past unpublished WAL", func() bool { return db.health(t).ConfirmedFlushLSN >= after })
	c4.expectNone(t, 200*time.Millisecond)
	c4.stop(t)
}

// TestIntegrationSlot: EnsureSlot creates the slot once and then finds it;
// CheckSlot reports a missing slot without an error; DropSlot removes it,
// also while a session streams from it.
func TestIntegrationSlot(t *testing.T) {
	db := newLiveDB(t)
	ctx := context.Background()
	conn, err := Connect(ctx, db.cdcURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	first, err := EnsureSlot(ctx, conn, db.slot)
	if err != nil {
		t.Fatal(err)
	}
	second, err := EnsureSlot(ctx, conn, db.slot)
	if err != nil {
		t.Fatal(err)
	}
	if !first.Created || second.Created || first.ConfirmedFlushLSN == 0 || second.ConfirmedFlushLSN != first.ConfirmedFlushLSN {
		t.Fatalf("EnsureSlot: first %+v, second %+v; want created once, same position", first, second)
	}
	var persistent bool
	if err := db.cdc.QueryRow(ctx, "SELECT NOT temporary FROM pg_replication_slots WHERE slot_name = $1", db.slot).Scan(&persistent); err != nil || !persistent {
		t.Fatalf("slot persistent = %v (%v), want a persistent slot", persistent, err)
	}
	if h := db.health(t); !h.Exists || h.Active || h.RestartLSN == 0 {
		t.Fatalf("health of an idle slot: %+v", h)
	}
	if _, err := EnsureSlot(ctx, conn, "bad'name"); err == nil {
		t.Error("EnsureSlot accepted an invalid name")
	}

	c := db.start(t) // streams from the slot EnsureSlot made
	if err := DropSlot(ctx, db.cdc, db.slot); err != nil {
		t.Fatalf("DropSlot of an active slot: %v", err)
	}
	select {
	case err := <-c.done:
		if err == nil {
			t.Error("Run returned nil after its slot was dropped under it, want an error")
		}
		c.cancel = nil
	case <-time.After(15 * time.Second):
		t.Fatal("Run kept going after its session was terminated")
	}
	if h := db.health(t); h.Exists {
		t.Fatalf("slot after DropSlot: %+v", h)
	}
	if err := DropSlot(ctx, db.cdc, db.slot); err != nil {
		t.Errorf("DropSlot of a missing slot: %v", err)
	}
}

// TestIntegrationHandlerError: a handler error (Kafka down) ends Run with
// that error, and the next Run delivers the transaction again.
func TestIntegrationHandlerError(t *testing.T) {
	db := newLiveDB(t)
	c1 := db.start(t)
	c1.stop(t) // the slot exists now; the change below waits in it

	db.exec(t, fmt.Sprintf(insertProduct, "p-1", "1", "Mug", 1299))
	s, err := New(Config{URL: db.cdcURL, Slot: db.slot, Publication: db.publication(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	errKafka := errors.New("kafka unavailable")
	var seen Tx
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err = s.Run(ctx, func(_ context.Context, txs []Tx) error {
		seen = txs[0]
		return errKafka
	})
	if !errors.Is(err, errKafka) {
		t.Fatalf("Run = %v, want the handler's error", err)
	}
	if err := s.Run(ctx, nil); err == nil {
		t.Error("a second Run of one Stream: no error")
	}
	c2 := db.start(t)
	if again := c2.next(t); again.CommitLSN != seen.CommitLSN || again.Changes[0].Row["product_id"].Text != "p-1" {
		t.Fatalf("after a handler error: got %+v, want the failed transaction at %s again", again, seen.CommitLSN)
	}
}

// TestIntegrationPublicationMissing: Run refuses to stream (and creates no
// slot) when the publication does not exist, with an error naming
// CATALOG_PUBLICATION: a slot made before its publication could never
// stream the WAL written before CREATE PUBLICATION.
func TestIntegrationPublicationMissing(t *testing.T) {
	db := newLiveDB(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := Connect(ctx, db.cdcURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if err := CheckPublication(ctx, conn, db.publication()); err != nil {
		t.Fatalf("CheckPublication of an existing publication: %v", err)
	}
	if _, err := db.ecom.Exec(ctx, "DROP PUBLICATION "+db.publication()); err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{URL: db.cdcURL, Slot: db.slot, Publication: db.publication(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	err = s.Run(ctx, func(context.Context, []Tx) error { return nil })
	if err == nil || ctx.Err() != nil || !strings.Contains(err.Error(), "CATALOG_PUBLICATION") || !strings.Contains(err.Error(), db.publication()) {
		t.Fatalf("Run without the publication = %v (context %v), want an error naming CATALOG_PUBLICATION and %s", err, ctx.Err(), db.publication())
	}
	if h := db.health(t); h.Exists {
		t.Errorf("Run created slot %s although the publication is missing", db.slot)
	}
}

// TestIntegrationKeyChange: an update of a product's key (REPLICA IDENTITY
// FULL) arrives as a delete of the old row, then the upsert of the new one.
func TestIntegrationKeyChange(t *testing.T) {
	db := newLiveDB(t)
	c := db.start(t)
	db.exec(t, fmt.Sprintf(insertProduct, "p-1", "1", "Mug", 1299))
	if tx := c.next(t); len(tx.Changes) != 1 {
		t.Fatalf("insert: %+v", tx)
	}
	db.exec(t, `UPDATE %s.products SET product_id = 'p-9', price_minor = 999 WHERE product_id = 'p-1'`)
	tx := c.next(t)
	var got []string
	for _, ch := range tx.Changes {
		got = append(got, fmt.Sprintf("%d %s %s %s %s", ch.Ordinal, ch.Op, ch.Row["product_id"].Text, ch.Row["name"].Text, ch.Row["price_minor"].Text))
	}
	want := []string{"1 delete p-1 Mug 1299", "2 upsert p-9 Mug 999"}
	if diff := gocmp.Diff(want, got); diff != "" {
		t.Errorf("key-changing update (-want +got):\n%s", diff)
	}
}

// TestIntegrationSweepStale: the objects of a test run killed more than
// staleAfter ago (slot, publication, schema) are dropped; a recent run's
// and a streaming slot's are kept.
func TestIntegrationSweepStale(t *testing.T) {
	db := newLiveDB(t)
	ctx := context.Background()
	old, recent := testSuffix(time.Now().Add(-staleAfter-time.Minute)), testSuffix(time.Now().Add(-time.Minute))
	for _, suffix := range []string{old, recent} {
		t.Cleanup(func() {
			_ = DropSlot(context.Background(), db.cdc, "cdc_test_"+suffix)
			_, _ = db.ecom.Exec(context.Background(), "DROP PUBLICATION IF EXISTS sf_cdc_"+suffix+"_catalog")
			_, _ = db.ecom.Exec(context.Background(), "DROP SCHEMA IF EXISTS sf_cdc_"+suffix+" CASCADE")
		})
		st, err := ddl.Storefront("sf_cdc_"+suffix, "ecom_cdc")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.ecom.Exec(ctx, st.SQL); err != nil {
			t.Fatal(err)
		}
		if _, err := db.cdc.Exec(ctx, "SELECT pg_create_logical_replication_slot($1, 'pgoutput')", "cdc_test_"+suffix); err != nil {
			t.Fatal(err)
		}
	}
	c := db.start(t) // this test's slot streams
	count := func(suffix string) (slots, pubs, schemas int) {
		t.Helper()
		err := db.ecom.QueryRow(ctx, `SELECT (SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1),
  (SELECT count(*) FROM pg_publication WHERE pubname = $2), (SELECT count(*) FROM pg_namespace WHERE nspname = $3)`,
			"cdc_test_"+suffix, "sf_cdc_"+suffix+"_catalog", "sf_cdc_"+suffix).Scan(&slots, &pubs, &schemas)
		if err != nil {
			t.Fatal(err)
		}
		return slots, pubs, schemas
	}
	sweep := func(cutoff time.Time, only ...string) map[string]bool {
		t.Helper()
		dropped, err := sweepStale(ctx, db.ecom, db.cdc, cutoff, only...)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]bool{} // other runs' stale objects may be among them
		for _, d := range dropped {
			got[d] = true
		}
		return got
	}

	got := sweep(time.Now().Add(-staleAfter))
	for _, want := range []string{"slot cdc_test_" + old, "publication sf_cdc_" + old + "_catalog", "schema sf_cdc_" + old} {
		if !got[want] {
			t.Errorf("sweep dropped %v, want %s among them", got, want)
		}
	}
	if sl, pu, sc := count(old); sl+pu+sc != 0 {
		t.Errorf("the stale run's objects after the sweep: %d slots, %d publications, %d schemas, want none", sl, pu, sc)
	}
	if sl, pu, sc := count(recent); sl != 1 || pu != 1 || sc != 1 {
		t.Errorf("the recent run's objects after the sweep: %d slots, %d publications, %d schemas, want one each", sl, pu, sc)
	}

	// A cutoff in the future makes every test object stale (limited to this
	// test's: other runs share the server): the streaming slot's objects are
	// kept all the same.
	got = sweep(time.Now().Add(time.Second), recent, strings.TrimPrefix(db.slot, "cdc_test_"))
	for _, keep := range []string{"slot " + db.slot, "publication " + db.publication(), "schema " + db.schema} {
		if got[keep] {
			t.Errorf("sweep dropped %s, whose slot streams", keep)
		}
	}
	if !got["slot cdc_test_"+recent] {
		t.Errorf("sweep with a future cutoff dropped %v, want the inactive slot cdc_test_%s among them", got, recent)
	}
	c.stop(t)
}

// TestStaleNames: the sweep matches the test objects' names only, never the
// temporary slot a snapshot names after a test slot (it goes with its
// session, and dropping one in use would break that snapshot).
func TestStaleNames(t *testing.T) {
	tests := []struct {
		name string
		want bool
	}{
		{"cdc_test_1796136960_0a1b2c3d", true},
		{"sf_cdc_1796136960_0a1b2c3d", true},
		{"sf_cdc_1796136960_0a1b2c3d_catalog", true},
		{"cdc_test_1796136960_0a1b2c3d_snap_1796136961_deadbeef", false},
		{"ecom_catalog_sync", false},
		{"ecom_catalog_sync_snap_1796136961_deadbeef", false},
	}
	for _, tt := range tests {
		if got := staleRE.MatchString(tt.name); got != tt.want {
			t.Errorf("staleRE.MatchString(%q) = %v, want %v", tt.name, got, tt.want)
		}
	}
}
