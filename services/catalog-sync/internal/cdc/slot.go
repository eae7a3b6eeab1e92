package cdc

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Connect opens a replication connection (replication=database) with the
// session settings the decoding assumes: DateStyle ISO and TimeZone UTC, so
// timestamptz values arrive as "2006-01-02 15:04:05.999999+00".
func Connect(ctx context.Context, url string) (*pgconn.PgConn, error) {
	cfg, err := pgconn.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("cdc: parse database URL: %w", err)
	}
	cfg.RuntimeParams["replication"] = "database"
	cfg.RuntimeParams["DateStyle"] = "ISO"
	cfg.RuntimeParams["TimeZone"] = "UTC"
	if cfg.RuntimeParams["application_name"] == "" {
		cfg.RuntimeParams["application_name"] = "catalog-sync-cdc"
	}
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("cdc: replication connection to %s:%d: %w", cfg.Host, cfg.Port, err)
	}
	return conn, nil
}

// SlotInfo describes the slot EnsureSlot found or created.
type SlotInfo struct {
	Created bool
	// ConfirmedFlushLSN is where streaming resumes.
	ConfirmedFlushLSN LSN
}

// CheckPublication returns an error naming CATALOG_PUBLICATION unless the
// publication exists in the connection's database (a replication or a
// normal connection). Call it before EnsureSlot: a slot created before its
// publication can never stream, because pgoutput looks the publication up
// as of each change's WAL position and fails with "publication does not
// exist" for the WAL written before CREATE PUBLICATION, and every restart
// replays that WAL (README.md: re-creating the publication means dropping
// the slot).
func CheckPublication(ctx context.Context, conn *pgconn.PgConn, publication string) error {
	if !identRE.MatchString(publication) {
		return fmt.Errorf("CATALOG_PUBLICATION: %q is not a publication name", publication)
	}
	// publication is a checked identifier; the replication protocol's
	// simple queries take no parameters.
	res, err := conn.Exec(ctx, `SELECT current_database(), EXISTS (SELECT 1 FROM pg_publication WHERE pubname = '`+publication+`')`).ReadAll()
	if err != nil {
		return fmt.Errorf("cdc: look up publication %s: %w", publication, err)
	}
	if len(res) != 1 || len(res[0].Rows) != 1 {
		return fmt.Errorf("cdc: look up publication %s: unexpected result", publication)
	}
	if row := res[0].Rows[0]; string(row[1]) != "t" {
		return fmt.Errorf("CATALOG_PUBLICATION: publication %q does not exist in database %s; create it before catalog-sync creates its slot", publication, row[0])
	}
	return nil
}

// EnsureSlot creates the logical slot (pgoutput, persistent, no exported
// snapshot) on a replication connection unless it exists, and checks an
// existing one is a pgoutput slot of this database. Check the publication
// first (CheckPublication; Run does).
func EnsureSlot(ctx context.Context, conn *pgconn.PgConn, slot string) (SlotInfo, error) {
	if !identRE.MatchString(slot) {
		return SlotInfo{}, fmt.Errorf("cdc: invalid slot name %q", slot)
	}
	var info SlotInfo
	_, err := pglogrepl.CreateReplicationSlot(ctx, conn, slot, "pgoutput", pglogrepl.CreateReplicationSlotOptions{
		Mode: pglogrepl.LogicalReplication, SnapshotAction: "NOEXPORT_SNAPSHOT",
	})
	var pgErr *pgconn.PgError
	switch {
	case err == nil:
		info.Created = true
	case errors.As(err, &pgErr) && pgErr.Code == "42710": // duplicate_object: it exists
	default:
		return SlotInfo{}, fmt.Errorf("cdc: create replication slot %s: %w", slot, err)
	}
	// slot is a checked identifier, so it can be pasted; the replication
	// protocol's simple queries take no parameters.
	res, err := conn.Exec(ctx, `SELECT plugin, slot_type, database = current_database(), confirmed_flush_lsn
FROM pg_replication_slots WHERE slot_name = '`+slot+`'`).ReadAll()
	if err != nil {
		return SlotInfo{}, fmt.Errorf("cdc: read slot %s: %w", slot, err)
	}
	if len(res) != 1 || len(res[0].Rows) != 1 {
		return SlotInfo{}, fmt.Errorf("cdc: slot %s vanished after creation", slot)
	}
	row := res[0].Rows[0]
	if string(row[0]) != "pgoutput" || string(row[1]) != "logical" || string(row[2]) != "t" {
		return SlotInfo{}, fmt.Errorf("cdc: slot %s exists but is not a pgoutput logical slot of this database (plugin %q, type %q)", slot, row[0], row[1])
	}
	if info.ConfirmedFlushLSN, err = pglogrepl.ParseLSN(string(row[3])); err != nil {
		return SlotInfo{}, fmt.Errorf("cdc: slot %s confirmed_flush_lsn %q: %w", slot, row[3], err)
	}
	return info, nil
}

// Querier is what the slot functions need from a normal (not replication)
// connection: *pgx.Conn, *pgxpool.Pool and pgx.Tx have it.
type Querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// SlotHealth is the slot's state as pg_replication_slots reports it.
type SlotHealth struct {
	Slot   string
	Exists bool
	// Active: a session is streaming from the slot now.
	Active bool
	// RetainedWALBytes is pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn):
	// the WAL the server keeps for this slot. It grows while no consumer
	// confirms; alert on it (README.md).
	RetainedWALBytes  int64
	RestartLSN        LSN
	ConfirmedFlushLSN LSN
	// WALStatus is reserved, extended, unreserved or lost (lost: the WAL the
	// slot needs is gone and the slot must be re-created).
	WALStatus string
}

// CheckSlot reports the slot's health. A missing slot is not an error
// (Exists false): Run creates it.
func CheckSlot(ctx context.Context, db Querier, slot string) (SlotHealth, error) {
	h := SlotHealth{Slot: slot}
	var restart, confirmed *string
	var retained *int64
	var walStatus *string
	err := db.QueryRow(ctx, `SELECT active,
  pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint,
  restart_lsn::text, confirmed_flush_lsn::text, wal_status
FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&h.Active, &retained, &restart, &confirmed, &walStatus)
	if errors.Is(err, pgx.ErrNoRows) {
		return h, nil
	}
	if err != nil {
		return h, fmt.Errorf("cdc: read slot %s health: %w", slot, err)
	}
	h.Exists = true
	if retained != nil {
		h.RetainedWALBytes = *retained
	}
	if walStatus != nil {
		h.WALStatus = *walStatus
	}
	for _, p := range []struct {
		text *string
		lsn  *LSN
	}{{restart, &h.RestartLSN}, {confirmed, &h.ConfirmedFlushLSN}} {
		if p.text == nil {
			continue
		}
		if *p.lsn, err = pglogrepl.ParseLSN(*p.text); err != nil {
			return h, fmt.Errorf("cdc: slot %s LSN %q: %w", slot, *p.text, err)
		}
	}
	return h, nil
}

// DropSlot drops the slot (the recovery in README.md), terminating a
// session that still streams from it. A missing slot is not an error. The
// role needs REPLICATION.
func DropSlot(ctx context.Context, db Querier, slot string) error {
	_, err := db.Exec(ctx, `SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots
WHERE slot_name = $1 AND active_pid IS NOT NULL`, slot)
	if err != nil {
		return fmt.Errorf("cdc: stop the session on slot %s: %w", slot, err)
	}
	// pg_drop_replication_slot fails while the terminated session is still
	// exiting; it waits for nothing, so retry briefly.
	for attempt := 0; ; attempt++ {
		_, err = db.Exec(ctx, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1`, slot)
		var pgErr *pgconn.PgError
		if err == nil {
			return nil
		}
		if !errors.As(err, &pgErr) || pgErr.Code != "55006" || attempt >= 50 {
			return fmt.Errorf("cdc: drop slot %s: %w", slot, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
