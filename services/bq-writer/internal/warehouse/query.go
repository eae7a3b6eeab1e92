package warehouse

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	duckdb "github.com/duckdb/duckdb-go/v2"
)

// DefaultMaxConcurrentQueries is how many Query calls may run at once by default.
const DefaultMaxConcurrentQueries = 2

// MaxConcurrentQueries is the highest WithMaxConcurrentQueries accepts. Each query slot is a pool
// connection, and DuckDB parallelises each query over its own threads: more slots only make
// operator queries compete with each other and with the writer for the same cores.
const MaxConcurrentQueries = 16

// ErrQueryBusy is returned by Query when WithMaxConcurrentQueries queries are already running.
// It is returned at once: a query is never queued.
var ErrQueryBusy = errors.New("warehouse: too many concurrent queries")

// WithMaxConcurrentQueries caps the Query calls that run at once (1..MaxConcurrentQueries, default
// DefaultMaxConcurrentQueries); another one fails at once with ErrQueryBusy.
//
// The pool has one connection per query slot, the writer's pinned connection, and one more that
// only Positions and Ping can use: operator queries, however slow, never make the writer wait for
// its positions or /readyz for its ping.
func WithMaxConcurrentQueries(n int) Option {
	return optionFunc(func(o *options) { o.maxQueries = n })
}

func (o options) validateQueries() error {
	if o.maxQueries < 1 || o.maxQueries > MaxConcurrentQueries {
		return fmt.Errorf("max concurrent queries %d is not in 1..%d", o.maxQueries, MaxConcurrentQueries)
	}
	return nil
}

// poolSize is the writer's connection, one per query slot, and one for Positions and Ping.
func poolSize(o options) int { return 1 + o.maxQueries + 1 }

// Query runs one read-only statement for an operator endpoint and returns its column names and at
// most maxRows rows. Values are as the DuckDB driver returns them (string, int64, float64 including
// NaN and infinities, time.Time, *big.Int, duckdb.Decimal, duckdb.OrderedMap, ...), except that a
// UUID column's values are duckdb.UUID rather than 16 bytes.
//
// In order, these keep it read-only:
//   - the text is parsed (not bound, not run) with json_serialize_sql, and refused unless it is one
//     SELECT statement built only from allowed parts: allowed query shapes, FROM items, table
//     functions and expressions, and only built-in functions without side effects (see
//     query_allow.go). This is the layer that refuses statements which parse as SELECT but change
//     state: SELECT * FROM checkpoint(), enable_logging(...), truncate_duckdb_logs(),
//     query('...'), SELECT nextval(...), write_log(...), ...;
//   - the text is then prepared (bound, not run) and must be of statement type SELECT, a second
//     opinion from the binder. database/sql's PrepareContext would run every statement but the
//     last of a multi-statement text, so the driver's single-statement Prepare is used;
//   - it runs in a transaction on its own connection that is always rolled back. This undoes
//     changes to tables and the catalog, but not a checkpoint, a setting or a sequence: those the
//     first layer must refuse;
//   - the database was opened with external access disabled, so nothing can read or write other
//     files (including DESCRIBE/SUMMARIZE of a file name, which would be a replacement scan).
//
// At most WithMaxConcurrentQueries run at once; another call fails at once with ErrQueryBusy.
//
// The row cap is pushed into the query (SELECT * FROM (query) LIMIT maxRows) because DuckDB
// materialises a result before the first row is read; the wrapped text is checked like the
// original, and a statement that cannot be wrapped runs as is and is cut at maxRows while
// reading. ctx cancellation interrupts the running statement, as does Close.
func (d *DuckDB) Query(ctx context.Context, query string, maxRows int) (columns []string, rows [][]any, err error) {
	defer func() { err = wrap("query", err) }()
	if maxRows < 1 {
		return nil, nil, fmt.Errorf("%w: maxRows %d must be positive", ErrInvalidQuery, maxRows)
	}
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.closed {
		return nil, nil, ErrClosed
	}
	select {
	case d.querySlots <- struct{}{}:
		defer func() { <-d.querySlots }()
	default:
		return nil, nil, fmt.Errorf("%w (%d running)", ErrQueryBusy, cap(d.querySlots))
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(d.closing, cancel)
	defer stop()

	conn, err := d.db.Conn(ctx)
	if err != nil {
		return nil, nil, err
	}
	defer conn.Close()

	q := trimStatement(query)
	if q == "" {
		return nil, nil, fmt.Errorf("%w: empty query", ErrInvalidQuery)
	}
	if err := checkAllowed(ctx, conn, q); err != nil {
		return nil, nil, err
	}
	if err := checkReadOnly(conn, q); err != nil {
		return nil, nil, err
	}
	limited := "SELECT * FROM (\n" + q + "\n) AS operator_query LIMIT " + strconv.Itoa(maxRows)
	if checkAllowed(ctx, conn, limited) == nil && checkReadOnly(conn, limited) == nil {
		q = limited
	}

	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return nil, nil, err
	}
	defer rollback(tx) // always: a read-only query has nothing to commit.

	r, err := tx.QueryContext(ctx, q)
	if err != nil {
		return nil, nil, err
	}
	defer r.Close()
	columns, err = r.Columns()
	if err != nil {
		return nil, nil, err
	}
	types, err := r.ColumnTypes()
	if err != nil {
		return nil, nil, err
	}
	rows = [][]any{}
	for len(rows) < maxRows && r.Next() {
		vals := make([]any, len(columns))
		ptrs := make([]any, len(columns))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := r.Scan(ptrs...); err != nil {
			return nil, nil, err
		}
		for i, t := range types {
			// The driver returns a UUID as its 16 bytes, which a caller cannot tell from a BLOB.
			if b, ok := vals[i].([]byte); ok && len(b) == 16 && t.DatabaseTypeName() == "UUID" {
				vals[i] = duckdb.UUID(b)
			}
		}
		rows = append(rows, vals)
	}
	if err := r.Err(); err != nil {
		return nil, nil, err
	}
	return columns, rows, nil
}

// trimStatement drops surrounding white space and trailing semicolons, so "SELECT 1;" can be
// wrapped in a subquery.
func trimStatement(q string) string {
	for {
		t := strings.TrimRight(strings.TrimSpace(q), ";")
		if t == q {
			return q
		}
		q = t
	}
}

// checkReadOnly prepares q without executing it and accepts exactly one SELECT statement. Only a
// text that checkAllowed accepted may be prepared: binding can already act (query('...') binds
// the SQL it is given).
func checkReadOnly(conn interface {
	Raw(func(driverConn any) error) error
}, q string) error {
	return conn.Raw(func(dc any) error {
		// (*duckdb.Conn).Prepare refuses a multi-statement text without running any of it.
		st, err := dc.(*duckdb.Conn).Prepare(q)
		if err != nil {
			if strings.Contains(err.Error(), "multi-statement") {
				return fmt.Errorf("%w: exactly one statement is allowed", ErrInvalidQuery)
			}
			return fmt.Errorf("%w: %w", ErrInvalidQuery, err)
		}
		defer st.Close()
		typ, err := st.(*duckdb.Stmt).StatementType()
		if err != nil {
			return err
		}
		if typ != duckdb.STATEMENT_TYPE_SELECT {
			return fmt.Errorf("%w: only read statements (SELECT) are allowed, got %s", ErrInvalidQuery, stmtTypeName(typ))
		}
		return nil
	})
}

func stmtTypeName(t duckdb.StmtType) string {
	switch t {
	case duckdb.STATEMENT_TYPE_INSERT:
		return "INSERT"
	case duckdb.STATEMENT_TYPE_UPDATE:
		return "UPDATE"
	case duckdb.STATEMENT_TYPE_DELETE:
		return "DELETE"
	case duckdb.STATEMENT_TYPE_CREATE, duckdb.STATEMENT_TYPE_CREATE_FUNC:
		return "CREATE"
	case duckdb.STATEMENT_TYPE_ALTER:
		return "ALTER"
	case duckdb.STATEMENT_TYPE_DROP:
		return "DROP"
	case duckdb.STATEMENT_TYPE_COPY:
		return "COPY"
	case duckdb.STATEMENT_TYPE_ATTACH:
		return "ATTACH"
	case duckdb.STATEMENT_TYPE_DETACH:
		return "DETACH"
	case duckdb.STATEMENT_TYPE_PRAGMA:
		return "PRAGMA"
	case duckdb.STATEMENT_TYPE_SET, duckdb.STATEMENT_TYPE_VARIABLE_SET:
		return "SET"
	case duckdb.STATEMENT_TYPE_EXPLAIN:
		return "EXPLAIN"
	case duckdb.STATEMENT_TYPE_TRANSACTION:
		return "transaction control"
	case duckdb.STATEMENT_TYPE_CALL:
		return "CALL"
	case duckdb.STATEMENT_TYPE_EXPORT:
		return "EXPORT"
	case duckdb.STATEMENT_TYPE_LOAD:
		return "LOAD"
	case duckdb.STATEMENT_TYPE_VACUUM:
		return "VACUUM"
	case duckdb.STATEMENT_TYPE_PREPARE, duckdb.STATEMENT_TYPE_EXECUTE:
		return "PREPARE/EXECUTE"
	default:
		return "statement type " + strconv.Itoa(int(t))
	}
}
