package catalogdb

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ecomstream/platform/deploy/local/seed"
)

// TestIntegrationCommitTimeIsLogicalReplications: the log's commit_time of
// every entry equals the commit timestamp logical decoding reports for its
// transaction (test_decoding's "COMMIT <xid> (at <time>)" with
// include-timestamp: the same txn->xact_time.commit_time that pgoutput puts in
// BEGIN), the commit record lies in [commit_lsn_min, commit_lsn_max], and each
// transaction decodes to as many row changes of the schema as the log has
// entries for it (a burst is one transaction).
//
// test_decoding's COMMIT row carries the END LSN of the commit record, not the
// commit LSN (the record's start) that pgoutput's BEGIN and source_lsn carry,
// and no row carries the start. What the slot shows is checked: the end LSN
// lies in (commit_lsn_min, commit_lsn_max] and every row change of the
// transaction lies before commit_lsn_min; the commit record follows the last
// change and ends at the end LSN, so it lies in the interval.
func TestIntegrationCommitTimeIsLogicalReplications(t *testing.T) {
	pool, schema, eps := testSchema(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ids := seed.Generate(seed.DefaultSeed, 50, 200)
	if _, err := Init(ctx, pool, schema, WithProducts(200), WithCustomers(50)); err != nil {
		t.Fatal(err)
	}

	// The replication role creates and reads the slot (ecom may not).
	cdc, err := pgx.Connect(ctx, eps.CatalogDatabaseURL)
	if err != nil {
		t.Fatalf("connect as the replication role (CATALOG_DATABASE_URL): %v", err)
	}
	t.Cleanup(func() { cdc.Close(context.Background()) }) // drops the temporary slot
	slot := schema + "_td"
	tempSlot(ctx, t, cdc, slot)

	script, err := Script(ids)
	if err != nil {
		t.Fatal(err)
	}
	entries, err := ApplyScript(ctx, pool, schema, script, nil)
	if err != nil {
		t.Fatal(err)
	}

	type commit struct {
		at         time.Time
		endLSN     uint64 // the COMMIT row's: the end of the commit record
		lastChange uint64 // the LSN of the transaction's last row change
		changes    int
	}
	commits := map[uint64]*commit{} // by the 32-bit xid
	if _, err := cdc.Exec(ctx, "SET TimeZone = 'UTC'"); err != nil {
		t.Fatal(err)
	}
	rows, err := cdc.Query(ctx, "SELECT lsn::text, xid::text, data FROM pg_logical_slot_get_changes($1, NULL, NULL, 'include-timestamp', 'on')", slot)
	if err != nil {
		t.Fatalf("read slot: %v", err)
	}
	commitRE := regexp.MustCompile(`^COMMIT \d+ \(at (.+)\)$`)
	tablePrefix := "table " + schema + "."
	for rows.Next() {
		var lsnText, xidText, data string
		if err := rows.Scan(&lsnText, &xidText, &data); err != nil {
			t.Fatal(err)
		}
		xid, err := strconv.ParseUint(xidText, 10, 32) // type xid: 32 bits
		if err != nil {
			t.Fatalf("xid %q: %v", xidText, err)
		}
		c := commits[xid]
		if c == nil {
			c = &commit{}
			commits[xid] = c
		}
		if strings.HasPrefix(data, tablePrefix) {
			c.changes++
			c.lastChange = max(c.lastChange, parseLSN(t, lsnText))
		}
		if m := commitRE.FindStringSubmatch(data); m != nil {
			if c.at, err = time.Parse("2006-01-02 15:04:05.999999-07", m[1]); err != nil {
				t.Fatalf("commit time %q: %v", m[1], err)
			}
			c.endLSN = parseLSN(t, lsnText)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}

	perTx := map[uint64]int{}
	for _, e := range entries {
		if uint64(e.Xid) != e.TxID%(1<<32) {
			t.Errorf("%s %s: xid %d is not txid %d %% 2^32", e.Kind, e.Key, e.Xid, e.TxID)
		}
		perTx[uint64(e.Xid)]++
		c := commits[uint64(e.Xid)]
		if c == nil || c.at.IsZero() {
			t.Errorf("%s %s: transaction %d (xid %d) not decoded from the slot", e.Kind, e.Key, e.TxID, e.Xid)
			continue
		}
		if !c.at.Equal(e.CommitTime) {
			t.Errorf("%s %s: log commit_time %s, logical replication %s", e.Kind, e.Key, e.CommitTime.Format(time.RFC3339Nano), c.at.Format(time.RFC3339Nano))
		}
		lo, hi := parseLSN(t, e.CommitLSNMin), parseLSN(t, e.CommitLSNMax)
		if c.endLSN <= lo || c.endLSN > hi {
			t.Errorf("%s %s: commit record's end LSN %s outside the log's (%s, %s]", e.Kind, e.Key, fmtLSN(c.endLSN), e.CommitLSNMin, e.CommitLSNMax)
		}
		if c.lastChange >= lo {
			t.Errorf("%s %s: a row change at %s, not before the log's commit_lsn_min %s", e.Kind, e.Key, fmtLSN(c.lastChange), e.CommitLSNMin)
		}
	}
	for xid, n := range perTx {
		if c := commits[xid]; c == nil {
			t.Errorf("transaction %d: %d entries in the log, not decoded from the slot", xid, n)
		} else if c.changes != n {
			t.Errorf("transaction %d: %d entries in the log, %d row changes decoded", xid, n, c.changes)
		}
	}
	if len(perTx) != len(script) {
		t.Errorf("%d transactions in the log, the script has %d", len(perTx), len(script))
	}
}

// tempSlot creates a TEMPORARY test_decoding slot on conn: PostgreSQL drops it
// when the session ends, also when the test run is killed (an abandoned slot
// holds WAL forever, and the stack has 16). Only conn's session can read it.
func tempSlot(ctx context.Context, t *testing.T, conn *pgx.Conn, name string) {
	t.Helper()
	if _, err := conn.Exec(ctx, "SELECT pg_create_logical_replication_slot($1, 'test_decoding', temporary => true)", name); err != nil {
		t.Fatalf("create slot %s: %v", name, err)
	}
}

// TestIntegrationTestSlotIsTemporary: the test's slot goes with its session.
func TestIntegrationTestSlotIsTemporary(t *testing.T) {
	_, schema, eps := testSchema(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin, err := pgx.Connect(ctx, eps.CatalogDatabaseURL)
	if err != nil {
		t.Fatalf("connect as the replication role (CATALOG_DATABASE_URL): %v", err)
	}
	defer admin.Close(context.Background())
	slot := schema + "_td"
	defer func() { // a slot left behind is dropped here, so even a failure leaves none
		_, _ = admin.Exec(context.Background(), "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1", slot)
	}()
	conn, err := pgx.Connect(ctx, eps.CatalogDatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	tempSlot(ctx, t, conn, slot)
	var temporary bool
	if err := admin.QueryRow(ctx, "SELECT temporary FROM pg_replication_slots WHERE slot_name = $1", slot).Scan(&temporary); err != nil || !temporary {
		t.Errorf("slot %s temporary = %v, %v; want true", slot, temporary, err)
	}
	conn.Close(ctx)
	gone := time.After(5 * time.Second)
	for {
		var n int
		if err := admin.QueryRow(ctx, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1", slot).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return
		}
		select {
		case <-gone:
			t.Fatalf("slot %s still there 5 s after its session ended", slot)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func fmtLSN(lsn uint64) string { return fmt.Sprintf("%X/%X", lsn>>32, uint32(lsn)) }

func parseLSN(t *testing.T, s string) uint64 {
	t.Helper()
	var hi, lo uint64
	if _, err := fmt.Sscanf(s, "%X/%X", &hi, &lo); err != nil {
		t.Fatalf("LSN %q: %v", s, err)
	}
	return hi<<32 | lo
}
