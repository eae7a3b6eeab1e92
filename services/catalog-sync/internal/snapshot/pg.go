package snapshot

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"github.com/jackc/pgx/v5/pgxpool"
)

// PG is the PostgreSQL source: the catalog tables of one schema.
//
// Each snapshot is the one a temporary logical replication slot exports
// when it is created: the slot's consistent point is the exact LSN boundary
// of that snapshot (every transaction whose commit record precedes it is
// visible, none after it), so it is the snapshot's source_lsn and the CDC
// changes of the slot CATALOG_SLOT order against it without a gap or an
// overlap. Reading pg_current_wal_lsn() inside a REPEATABLE READ
// transaction instead gives an LSN past commits the snapshot does not see
// (a commit whose record is written, while its session waits for the
// flush, is not yet visible): their CDC changes would be ordered before the
// snapshot's older view of the row (design 4.16).
type PG struct {
	Pool   *pgxpool.Pool // connected as the catalog-sync role (SELECT on the tables)
	Schema string
	// ReplicationURL is the database URL of the replication connection that
	// creates each snapshot's temporary slot (replication=database is
	// added); its role needs REPLICATION.
	ReplicationURL string
	// SlotPrefix begins the temporary slots' names (CATALOG_SLOT):
	// <SlotPrefix>_snap_<unix seconds>_<random hex>.
	SlotPrefix string
	// Log gets the slot of each snapshot and, every WaitLogEvery, that its
	// creation still waits for running transactions; nil = none.
	Log          *slog.Logger
	WaitLogEvery time.Duration // 0 = 10 s

	// dial opens the replication connection; nil = ReplicationURL (tests
	// give a fake server).
	dial func(ctx context.Context) (*pgconn.PgConn, error)
}

var _ Source = (*PG)(nil)

// SlotSuffix begins the part of a snapshot slot's name after SlotPrefix.
const SlotSuffix = "_snap_"

// SlotName is a snapshot slot's name: prefix (cut to fit PostgreSQL's 63
// bytes), SlotSuffix, the unix time and a random part, so every snapshot
// (each resumed run takes a new one) has a slot of its own and an operator
// sees which service made it and when.
func SlotName(prefix string, now time.Time) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	tail := SlotSuffix + strconv.FormatInt(now.Unix(), 10) + "_" + hex.EncodeToString(b[:])
	return prefix[:min(len(prefix), 63-len(tail))] + tail
}

// snapshotNameRE is the form of an exported snapshot's name (e.g.
// 00000003-0000001B-1); it is pasted into SET TRANSACTION SNAPSHOT, which
// takes no parameter.
var snapshotNameRE = regexp.MustCompile(`^[0-9A-F]+(-[0-9A-F]+)+$`)

// exported is a snapshot a slot exported, valid while conn stays open and
// idle.
type exported struct {
	conn     *pgconn.PgConn
	slot     string
	name     string
	lsn      pglogrepl.LSN
	waited   time.Duration
	released bool
}

// release closes the replication connection; the temporary slot goes with
// its session.
func (e *exported) release(ctx context.Context) {
	if !e.released {
		e.released = true
		_ = e.conn.Close(ctx)
	}
}

// export creates a temporary slot that exports its snapshot. Creating a
// logical slot waits until every transaction that has an xid at its start
// has ended; while it waits it is logged every WaitLogEvery, and ctx
// cancels it.
func (s *PG) export(ctx context.Context) (*exported, error) {
	conn, err := s.connect(ctx)
	if err != nil {
		return nil, err
	}
	e := &exported{conn: conn, slot: SlotName(s.SlotPrefix, time.Now())}
	start := time.Now()
	done := make(chan struct{})
	go s.logWait(ctx, e.slot, start, done)
	res, err := pglogrepl.CreateReplicationSlot(ctx, conn, e.slot, "pgoutput", pglogrepl.CreateReplicationSlotOptions{
		Temporary: true, Mode: pglogrepl.LogicalReplication, SnapshotAction: "EXPORT_SNAPSHOT"})
	close(done)
	e.waited = time.Since(start)
	if err != nil {
		e.release(context.WithoutCancel(ctx))
		if ctx.Err() != nil {
			return nil, fmt.Errorf("create snapshot slot %s (waited %s for running transactions): %w", e.slot, e.waited.Round(time.Millisecond), ctx.Err())
		}
		return nil, slotError(e.slot, err)
	}
	if e.lsn, err = pglogrepl.ParseLSN(res.ConsistentPoint); err != nil {
		e.release(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("snapshot slot %s: consistent point %q: %w", e.slot, res.ConsistentPoint, err)
	}
	if e.name = res.SnapshotName; !snapshotNameRE.MatchString(e.name) {
		e.release(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("snapshot slot %s: exported snapshot name %q is not one", e.slot, e.name)
	}
	return e, nil
}

// slotError says what to do about the errors an operator can fix.
func slotError(slot string, err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "53400": // configuration_limit_exceeded: all replication slots are in use
			return fmt.Errorf("create snapshot slot %s: no free replication slot: a snapshot needs one beside CATALOG_SLOT; raise max_replication_slots or drop an unused slot: %w", slot, err)
		case "42501": // insufficient_privilege
			return fmt.Errorf("create snapshot slot %s: the role of CATALOG_DATABASE_URL needs REPLICATION: %w", slot, err)
		}
	}
	return fmt.Errorf("create snapshot slot %s: %w", slot, err)
}

func (s *PG) logWait(ctx context.Context, slot string, start time.Time, done <-chan struct{}) {
	if s.Log == nil {
		return
	}
	every := s.WaitLogEvery
	if every <= 0 {
		every = 10 * time.Second
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-done:
			return
		case <-ctx.Done():
			return
		case <-tick.C:
			s.Log.WarnContext(ctx, "snapshot waits for the transactions running when its slot was created (a long open transaction with writes delays it)",
				"slot", slot, "waited", time.Since(start).Round(time.Second).String())
		}
	}
}

// connect opens the replication connection. A cancelled ctx sends a cancel
// request first, which stops a slot creation waiting for a transaction at
// once (a closed socket alone goes unnoticed until the wait ends).
func (s *PG) connect(ctx context.Context) (*pgconn.PgConn, error) {
	if s.dial != nil {
		return s.dial(ctx)
	}
	cfg, err := pgconn.ParseConfig(s.ReplicationURL)
	if err != nil {
		return nil, fmt.Errorf("parse the replication URL: %w", err)
	}
	cfg.RuntimeParams["replication"] = "database"
	if cfg.RuntimeParams["application_name"] == "" {
		cfg.RuntimeParams["application_name"] = "catalog-sync-snapshot"
	}
	cfg.BuildContextWatcherHandler = func(c *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.CancelRequestContextWatcherHandler{Conn: c, DeadlineDelay: 5 * time.Second}
	}
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "53300" { // too_many_connections
			return nil, fmt.Errorf("replication connection to %s:%d: a snapshot needs a WAL sender beside the CDC stream's; raise max_wal_senders: %w", cfg.Host, cfg.Port, err)
		}
		return nil, fmt.Errorf("replication connection to %s:%d: %w", cfg.Host, cfg.Port, err)
	}
	return conn, nil
}

// Begin opens a REPEATABLE READ, read-only transaction on the snapshot a new
// temporary slot exported; its LSN is the slot's consistent point. The
// replication connection stays idle until the transaction has imported the
// snapshot, then closes (and the slot with it).
func (s *PG) Begin(ctx context.Context) (Tx, error) {
	guard, err := s.holdHorizon(ctx)
	if err != nil {
		return nil, err
	}
	// Rollback after Rollback is a no-op: this covers the error paths.
	defer func() { _ = guard.Rollback(context.WithoutCancel(ctx)) }()
	e, err := s.export(ctx)
	if err != nil {
		return nil, err
	}
	defer e.release(context.WithoutCancel(ctx))
	tx, err := s.Pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, fmt.Errorf("begin the snapshot's transaction: %w", err)
	}
	t := &pgTx{tx: tx, schema: s.Schema, lsn: int64(e.lsn)}
	if _, err := tx.Exec(ctx, `SET TRANSACTION SNAPSHOT '`+e.name+`'`); err != nil {
		_ = tx.Rollback(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("import snapshot %s of slot %s: %w", e.name, e.slot, err)
	}
	// The imported snapshot's xmin is this session's now, and holds the
	// horizon itself.
	_ = guard.Rollback(context.WithoutCancel(ctx))
	if err := settle(ctx, tx); err != nil {
		_ = tx.Rollback(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("snapshot %s of slot %s: %w", e.name, e.slot, err)
	}
	if err := tx.QueryRow(ctx, `SELECT now()`).Scan(&t.readAt); err != nil {
		_ = tx.Rollback(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("read the snapshot's time: %w", err)
	}
	e.release(context.WithoutCancel(ctx))
	if s.Log != nil {
		s.Log.InfoContext(ctx, "snapshot taken", "slot", e.slot, "consistent_point", e.lsn.String(),
			"waited", e.waited.Round(time.Millisecond).String())
	}
	return t, nil
}

// holdHorizon opens a read-only REPEATABLE READ transaction and takes its
// snapshot, whose xmin then holds back the horizon below which rows may be
// pruned or vacuumed away, until Begin has imported the slot's snapshot.
//
// Without it, a row version the exported snapshot still sees can be pruned
// before the import: at the end of CREATE_REPLICATION_SLOT, PostgreSQL
// (ReplicationSlotRelease, 15 and later releases alike) first drops the
// slot's temporary data xmin and only then clears the WAL sender's
// PROC_IN_LOGICAL_DECODING flag, and the horizon computation skips a
// backend with that flag, so for that moment nothing holds the horizon at
// the exported snapshot's xmin. A concurrent update's HOT pruning can then
// remove the version the snapshot would read while its successor is still
// invisible to it: a product missing from the snapshot (seen once in CI
// under four writers updating at full speed: TestIntegrationSnapshotLSNBoundary).
// This snapshot's xmin is the oldest transaction running now, and the slot's
// snapshot, built from a later running-transactions record, cannot have an
// older xmin, so the guard covers it. It has no transaction id, so the
// slot's creation does not wait for it.
func (s *PG) holdHorizon(ctx context.Context) (pgx.Tx, error) {
	tx, err := s.Pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, fmt.Errorf("hold the row-removal horizon for the snapshot: %w", err)
	}
	// The first statement takes the transaction's snapshot.
	if _, err := tx.Exec(ctx, `SELECT 1`); err != nil {
		_ = tx.Rollback(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("hold the row-removal horizon for the snapshot: %w", err)
	}
	return tx, nil
}

// unsettledSQL counts the transactions the current snapshot treats as
// finished (below its xmax, not in its running list) that the commit log
// does not mark finished yet.
const unsettledSQL = `SELECT count(*) FROM pg_current_snapshot() s,
  generate_series(pg_snapshot_xmin(s)::text::bigint, pg_snapshot_xmax(s)::text::bigint - 1) x
WHERE pg_visible_in_snapshot(x::text::xid8, s) AND pg_xact_status(x::text::xid8) = 'in progress'`

// settle waits, before the transaction reads any row, until the commit log
// marks finished every transaction its imported snapshot treats as
// finished. The slot builds that snapshot from the WAL: a transaction whose
// commit record is flushed counts as committed although its session has not
// yet written the commit to the commit log (it does so right after the
// flush), and a row it wrote read in that moment looks aborted, so the
// snapshot would miss a commit before its LSN (seen on PostgreSQL 15 under
// a steady write load: TestIntegrationSnapshotLSNBoundary). The wait is
// that of a commit's flush: microseconds to milliseconds.
func settle(ctx context.Context, tx pgx.Tx) error {
	for delay := 200 * time.Microsecond; ; delay = min(2*delay, 20*time.Millisecond) {
		var n int
		if err := tx.QueryRow(ctx, unsettledSQL).Scan(&n); err != nil {
			return fmt.Errorf("check the snapshot's finished transactions: %w", err)
		}
		if n == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %d committed transactions to reach the commit log: %w", n, ctx.Err())
		case <-time.After(delay):
		}
	}
}

type pgTx struct {
	tx     pgx.Tx
	schema string
	lsn    int64
	readAt time.Time
}

func (t *pgTx) LSN() int64        { return t.lsn }
func (t *pgTx) ReadAt() time.Time { return t.readAt }

// Page is keyset pagination on the primary key: each page is an index range
// scan, whatever the table's size.
func (t *pgTx) Page(ctx context.Context, tb *Table, after string, first bool, limit int) ([]Row, error) {
	from := pgx.Identifier{t.schema, tb.Name}.Sanitize()
	key := pgx.Identifier{tb.Key}.Sanitize()
	quoted := make([]string, len(tb.Columns))
	for i, c := range tb.Columns {
		quoted[i] = pgx.Identifier{c}.Sanitize()
	}
	cols := strings.Join(quoted, ", ")
	var rows pgx.Rows
	var err error
	if first {
		rows, err = t.tx.Query(ctx, fmt.Sprintf(`SELECT %s FROM %s ORDER BY %s LIMIT $1`, cols, from, key), limit)
	} else {
		rows, err = t.tx.Query(ctx, fmt.Sprintf(`SELECT %s FROM %s WHERE %s > $1 ORDER BY %s LIMIT $2`, cols, from, key, key), after, limit)
	}
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Row, error) {
		vals, err := r.Values()
		if err != nil {
			return Row{}, err
		}
		return tb.RowOf(vals)
	})
}

func (t *pgTx) Existing(ctx context.Context, tb *Table, keys []string) (map[string]bool, error) {
	return existing(ctx, t.tx, t.schema, tb, keys)
}

var _ Rechecker = (*PG)(nil)

// ExistingNow is Existing outside the snapshot (a statement of its own).
func (s *PG) ExistingNow(ctx context.Context, tb *Table, keys []string) (map[string]bool, error) {
	return existing(ctx, s.Pool, s.Schema, tb, keys)
}

type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

func existing(ctx context.Context, db querier, schema string, tb *Table, keys []string) (map[string]bool, error) {
	key := pgx.Identifier{tb.Key}.Sanitize()
	rows, err := db.Query(ctx, fmt.Sprintf(`SELECT %s FROM %s WHERE %s = ANY($1)`, key, pgx.Identifier{schema, tb.Name}.Sanitize(), key), keys)
	if err != nil {
		return nil, err
	}
	found, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, err
	}
	out := make(map[string]bool, len(found))
	for _, k := range found {
		out[k] = true
	}
	return out, nil
}

// Close ends the read-only transaction (nothing to commit).
func (t *pgTx) Close(ctx context.Context) error { return t.tx.Rollback(ctx) }
