package warehouse

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	duckdb "github.com/duckdb/duckdb-go/v2"
)

// Query runs one read-only statement for an operator endpoint and returns its column names and at
// most maxRows rows. Values are as the DuckDB driver returns them (string, int64, time.Time, ...).
//
// Three layers keep it read-only:
//   - the text must parse as exactly one statement of type SELECT (this includes WITH, VALUES,
//     FROM-first, DESCRIBE, SHOW and SUMMARIZE; it excludes INSERT, UPDATE, DELETE, CREATE, ATTACH,
//     COPY, PRAGMA, SET, CALL, EXPLAIN — EXPLAIN ANALYZE would execute its statement — and PIVOT,
//     which DuckDB expands into several statements). The check prepares without executing:
//     database/sql's PrepareContext would run every statement but the last of a multi-statement
//     text, so the driver's single-statement Prepare is used instead;
//   - it runs in a transaction on its own connection that is always rolled back;
//   - the database was opened with external access disabled, so no statement can read or write
//     other files.
//
// The row cap is pushed into the query (SELECT * FROM (query) LIMIT maxRows) because DuckDB
// materialises a result before the first row is read; a statement that cannot be wrapped runs as
// is and is cut at maxRows while reading. ctx cancellation interrupts the running statement, as
// does Close.
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
	if err := checkReadOnly(conn, q); err != nil {
		return nil, nil, err
	}
	limited := "SELECT * FROM (\n" + q + "\n) AS operator_query LIMIT " + strconv.Itoa(maxRows)
	if checkReadOnly(conn, limited) == nil {
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

// checkReadOnly prepares q without executing it and accepts exactly one SELECT statement.
func checkReadOnly(conn interface {
	Raw(func(driverConn any) error) error
}, q string) error {
	if q == "" {
		return fmt.Errorf("%w: empty query", ErrInvalidQuery)
	}
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
