package catalogdb

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Apply runs the changes of tx in one transaction and returns a log entry per
// changed row, filled in after COMMIT. A change that matches no row (an update
// of a product deleted meanwhile) changes nothing and logs nothing.
func Apply(ctx context.Context, db DB, schema string, tx Tx) ([]Entry, error) {
	if len(tx.Changes) == 0 {
		return nil, nil
	}
	t, err := db.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("catalogdb: begin: %w", err)
	}
	defer t.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // a no-op after Commit
	// The id is assigned here, so it is known even for a delete; every row the
	// transaction writes carries it as xmin.
	var xid string
	if err := t.QueryRow(ctx, "SELECT pg_current_xact_id()::text").Scan(&xid); err != nil {
		return nil, fmt.Errorf("catalogdb: txid: %w", err)
	}
	var entries []Entry
	for _, c := range tx.Changes {
		sql, args, err := c.statement(schema)
		if err != nil {
			return nil, err
		}
		rows, err := t.Query(ctx, sql, args...)
		if err != nil {
			return nil, fmt.Errorf("catalogdb: %s %s: %w", c.Kind, c.Key, err)
		}
		base := Entry{Table: c.Kind.Table(), Op: c.Kind.Op(), Kind: c.Kind, Bad: c.Bad, TxName: tx.Name}
		if base.Table == "products" {
			got, err := pgx.CollectRows(rows, pgx.RowToAddrOfStructByName[ProductRow])
			if err != nil {
				return nil, fmt.Errorf("catalogdb: %s %s: %w", c.Kind, c.Key, err)
			}
			for _, p := range got {
				e := base
				p.CreatedAt, p.UpdatedAt, p.DeletedAt = p.CreatedAt.UTC(), p.UpdatedAt.UTC(), utcPtr(p.DeletedAt)
				e.Key, e.Product = p.ProductID, p
				if e.Op != "delete" {
					e.Defects = ProductDefects(*p)
				}
				entries = append(entries, e)
			}
		} else {
			got, err := pgx.CollectRows(rows, pgx.RowToAddrOfStructByName[CustomerRow])
			if err != nil {
				return nil, fmt.Errorf("catalogdb: %s %s: %w", c.Kind, c.Key, err)
			}
			for _, u := range got {
				e := base
				u.CreatedAt, u.UpdatedAt, u.DeletedAt = u.CreatedAt.UTC(), u.UpdatedAt.UTC(), utcPtr(u.DeletedAt)
				e.Key, e.Customer = u.CustomerID, u
				if e.Op != "delete" {
					e.Defects = CustomerDefects(*u)
				}
				entries = append(entries, e)
			}
		}
	}
	var lsnMin string
	if err := t.QueryRow(ctx, "SELECT pg_current_wal_insert_lsn()::text").Scan(&lsnMin); err != nil {
		return nil, fmt.Errorf("catalogdb: wal position: %w", err)
	}
	// From COMMIT on, an interrupt must not cut the log line of a committed
	// transaction: finish without ctx's cancellation, within a bound.
	done, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := t.Commit(done); err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) || errors.Is(err, pgx.ErrTxCommitRollback) {
			// The server answered COMMIT with an error: it rolled back.
			return nil, fmt.Errorf("catalogdb: commit: %w", err)
		}
		// No answer (a timeout, a broken connection): it may have committed.
		return nil, &UnloggedCommitError{TxID: xid, Err: fmt.Errorf("commit: %w", err)}
	}
	// After COMMIT, from any session: the commit timestamp is recorded
	// (track_commit_timestamp=on) with the commit record.
	var (
		commitTime *time.Time
		lsnMax     string
	)
	if err := db.QueryRow(done, "SELECT pg_xact_commit_timestamp($1::xid8::xid), pg_current_wal_insert_lsn()::text", xid).Scan(&commitTime, &lsnMax); err != nil {
		return nil, &UnloggedCommitError{TxID: xid, Committed: true, Err: fmt.Errorf("commit timestamp: %w", err)}
	}
	if commitTime == nil {
		return nil, &UnloggedCommitError{TxID: xid, Committed: true, Err: errors.New("no commit timestamp: is track_commit_timestamp on?")}
	}
	id, xid32, err := parseTxID(xid)
	if err != nil {
		return nil, &UnloggedCommitError{TxID: xid, Committed: true, Err: err}
	}
	for i := range entries {
		entries[i].TxID, entries[i].Xid, entries[i].Ordinal, entries[i].TxChanges = id, xid32, i+1, len(entries)
		entries[i].CommitTime, entries[i].CommitLSNMin, entries[i].CommitLSNMax = commitTime.UTC(), lsnMin, lsnMax
	}
	return entries, nil
}

// parseTxID reads pg_current_xact_id()'s text: the 64-bit xid8 and its low
// 32 bits, the xid logical replication reports.
func parseTxID(s string) (uint64, uint32, error) {
	id, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("txid %q: %w", s, err)
	}
	return id, uint32(id % (1 << 32)), nil
}

// UnloggedCommitError is Apply's error once COMMIT was sent and the
// transaction committed (Committed) or may have (no answer to COMMIT), but its
// log entries could not be made: its changes reach CDC and are missing from
// the log. A caller that keeps a log must stop (Mutator.Run does), not retry:
// the log would silently differ from the database.
type UnloggedCommitError struct {
	TxID      string // pg_current_xact_id() of the transaction
	Committed bool   // false: the outcome of COMMIT is unknown
	Err       error
}

func (e *UnloggedCommitError) Error() string {
	state := "may have committed"
	if e.Committed {
		state = "committed"
	}
	return fmt.Sprintf("catalogdb: transaction %s %s but is not logged: %v", e.TxID, state, e.Err)
}

func (e *UnloggedCommitError) Unwrap() error { return e.Err }

// WriteLog appends entries to w as JSON Lines.
func WriteLog(w io.Writer, entries []Entry) error {
	enc := json.NewEncoder(w)
	for _, e := range entries {
		if err := enc.Encode(e); err != nil {
			return fmt.Errorf("catalogdb: log: %w", err)
		}
	}
	return nil
}

// ReadLog reads a log written by WriteLog.
func ReadLog(r io.Reader) ([]Entry, error) {
	dec := json.NewDecoder(r)
	var out []Entry
	for {
		var e Entry
		if err := dec.Decode(&e); err == io.EOF {
			return out, nil
		} else if err != nil {
			return out, fmt.Errorf("catalogdb: log line %d: %w", len(out)+1, err)
		}
		out = append(out, e)
	}
}

func utcPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}
