package snapshot

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// PG is the PostgreSQL source: the catalog tables of one schema.
type PG struct {
	Pool   *pgxpool.Pool // connected as the catalog-sync role (SELECT on the tables)
	Schema string
}

var _ Source = (*PG)(nil)

// Begin opens a REPEATABLE READ, read-only transaction whose first statement
// reads the WAL position: the snapshot is taken at that statement, so every
// change committed before the LSN is in it (the records' source_lsn).
func (s *PG) Begin(ctx context.Context) (Tx, error) {
	tx, err := s.Pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, err
	}
	t := &pgTx{tx: tx, schema: s.Schema}
	if err := tx.QueryRow(ctx, `SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint, now()`).Scan(&t.lsn, &t.readAt); err != nil {
		_ = tx.Rollback(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("read WAL position: %w", err)
	}
	return t, nil
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
