package warehouse

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
)

// The operator query is checked against an allow-list before anything of it is bound or run.
//
// Why: in DuckDB a statement of type SELECT can change state. Table functions such as
// checkpoint(), force_checkpoint(), enable_logging(storage := 'file', ...), truncate_duckdb_logs()
// and enable_profiling() act when they run; query('...') runs SQL text no check has seen; scalar
// functions such as nextval() and write_log() have side effects. A rolled-back transaction does not
// undo a checkpoint or a logging configuration, and enable_logging with file storage (refused only
// when the log is written, because external access is off) makes every later statement of the
// writer fail and the process abort in DuckDB's destructor on close.
//
// How: json_serialize_sql parses the text (it neither binds nor runs it) and returns the syntax
// tree as JSON. Every node of that tree must be of a kind this file lists, so a construct DuckDB
// adds later is refused until someone reads it and adds it here:
//   - query nodes: SELECT, set operations (UNION, ...), CTEs and recursive CTEs;
//   - FROM items: tables and views, joins, subqueries, VALUES, PIVOT/UNPIVOT, DESCRIBE, SHOW and
//     SUMMARIZE, and the table functions of allowedTableFunctions (generators, JSON iterators and
//     read-only catalog listings);
//   - expressions of the kinds in allowedExpressionClasses, without parameters;
//   - scalar, aggregate and window functions that DuckDB's own catalog (duckdb_functions())
//     lists as built in and without side effects (has_side_effects = false), plus the few
//     flagged ones in volatileButHarmless; a built-in macro only when its definition passes the
//     same check. Everything else is refused, whatever its name.
//
// Base tables are not restricted by name: nothing a query may run can create a table, view or
// macro, so names resolve to the warehouse's tables and DuckDB's read-only system views; a name
// that looks like a file ('x.csv') would be a replacement scan, which the disabled external access
// refuses.

// allowedQueryNodes are the query node types (node.type) a statement may contain.
var allowedQueryNodes = nameSet("SELECT_NODE", "SET_OPERATION_NODE", "CTE_NODE", "RECURSIVE_CTE_NODE")

// allowedTableRefs are the FROM item types; TABLE_FUNCTION and SHOW_REF are checked further.
var allowedTableRefs = nameSet("BASE_TABLE", "JOIN", "SUBQUERY", "TABLE_FUNCTION", "EXPRESSION_LIST",
	"EMPTY", "SHOW_REF", "PIVOT")

// allowedShowTypes are DESCRIBE x, SUMMARIZE x and SHOW [ALL] TABLES / SHOW x (= DESCRIBE x). The
// binder expands them into reads of DuckDB's catalog functions.
var allowedShowTypes = nameSet("DESCRIBE", "SUMMARY", "SHOW_UNQUALIFIED")

// allowedOtherTypes are the other tagged objects of the tree: result modifiers and ORDER BY terms.
// Type descriptions (type_info, tagged "*_TYPE_INFO") are allowed by suffix.
var allowedOtherTypes = nameSet("ORDER_MODIFIER", "LIMIT_MODIFIER", "LIMIT_PERCENT_MODIFIER",
	"DISTINCT_MODIFIER", "ASCENDING", "DESCENDING", "ORDER_DEFAULT")

// allowedExpressionClasses are the expression classes; FUNCTION and WINDOW are checked further.
// PARAMETER is absent: a query has no parameters to bind. DEFAULT only makes sense in INSERT.
var allowedExpressionClasses = nameSet("CONSTANT", "COLUMN_REF", "FUNCTION", "WINDOW", "CASE", "CAST",
	"COMPARISON", "CONJUNCTION", "OPERATOR", "SUBQUERY", "STAR", "BETWEEN", "LAMBDA",
	"POSITIONAL_REFERENCE", "COLLATE")

// allowedTableFunctions are the table functions a query may call: generators, JSON iterators and
// read-only listings of the catalog. Deliberately absent, among others: checkpoint,
// force_checkpoint, enable_logging, disable_logging, truncate_duckdb_logs, enable_profiling,
// disable_profiling, enable/disable_peg_parser (change the database or its configuration),
// query, query_table, json_execute_serialized_sql (run SQL text that this check never sees),
// read_* and glob (files), duckdb_logs, duckdb_secrets, which_secret.
var allowedTableFunctions = nameSet("range", "generate_series", "unnest", "json_each", "json_tree",
	"duckdb_tables", "duckdb_columns", "duckdb_views", "duckdb_schemas", "duckdb_databases",
	"duckdb_constraints", "duckdb_indexes", "duckdb_types", "duckdb_functions", "duckdb_keywords",
	"duckdb_settings", "duckdb_memory", "duckdb_dependencies", "duckdb_sequences",
	"pragma_table_info", "pragma_show", "pragma_storage_info", "pragma_database_size", "pragma_version")

// volatileButHarmless are the scalar functions DuckDB flags as having side effects whose only
// effect is a fresh value (random numbers, ids) or an error. The other flagged ones stay refused:
// setseed (changes the connection's random state), nextval and currval (sequences), write_log
// (writes to the log, which may be a file), sleep_ms (holds a connection) and stats.
var volatileButHarmless = nameSet("random", "gen_random_uuid", "uuid", "uuidv4", "uuidv7", "error",
	"current_query", "current_connection_id", "current_query_id", "current_transaction_id")

// binderFunctions are function names the binder handles itself rather than through the function
// catalog (unnest in a select list, GROUPING SETS helpers).
var binderFunctions = nameSet("unnest", "unlist", "grouping", "grouping_id")

func nameSet(names ...string) map[string]bool {
	m := make(map[string]bool, len(names))
	for _, n := range names {
		m[n] = true
	}
	return m
}

type functionEntry struct {
	kind        string // scalar, aggregate, macro
	internal    bool
	sideEffects bool
	macro       any // parsed "SELECT <definition>" of a macro
}

var (
	catalogMu sync.Mutex
	catalog   *judge
)

// loadFunctionCatalog reads the function catalog once per process; a failed load is retried by
// the next query.
func loadFunctionCatalog(ctx context.Context, conn *sql.Conn) (*judge, error) {
	catalogMu.Lock()
	defer catalogMu.Unlock()
	if catalog != nil {
		return catalog, nil
	}
	entries := map[string][]functionEntry{}
	rows, err := conn.QueryContext(ctx, `SELECT lower(function_name), function_type, internal,
		coalesce(has_side_effects, false),
		CASE WHEN function_type = 'macro' THEN json_serialize_sql('SELECT ' || macro_definition)::VARCHAR END
		FROM duckdb_functions() WHERE function_type IN ('scalar', 'aggregate', 'macro')`)
	if err != nil {
		return nil, fmt.Errorf("read function catalog: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var name string
		var e functionEntry
		var def sql.NullString
		if err := rows.Scan(&name, &e.kind, &e.internal, &e.sideEffects, &def); err != nil {
			return nil, fmt.Errorf("read function catalog: %w", err)
		}
		if def.Valid {
			if err := json.Unmarshal([]byte(def.String), &e.macro); err != nil {
				e.macro = nil // judged as not allowed
			}
		}
		entries[name] = append(entries[name], e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read function catalog: %w", err)
	}
	j := &judge{entries: entries, verdict: map[string]bool{}}
	for name := range entries {
		j.allowed(name)
	}
	catalog = j
	return catalog, nil
}

// judge answers whether a scalar, aggregate or window function name may be called. It is built
// from duckdb_functions(), which is the same for every database of this DuckDB build, and
// considers only built-in (internal) functions. It decides each name once (macros by their
// definitions); loadFunctionCatalog decides them all, so the finished judge is read-only and safe
// for concurrent queries.
type judge struct {
	entries map[string][]functionEntry
	verdict map[string]bool
}

// scalarAllowed is the catalog's answer for name; functions the binder adds are not in it.
func (j *judge) scalarAllowed(name string) bool {
	if _, known := j.entries[name]; !known {
		return binderFunctions[name]
	}
	return j.allowed(name)
}

func (j *judge) allowed(name string) bool {
	if ok, seen := j.verdict[name]; seen {
		return ok // false while in progress: a macro that reaches itself is refused
	}
	j.verdict[name] = false
	ok := true
	for _, e := range j.entries[name] {
		switch {
		case !e.internal:
			ok = false
		case e.kind == "scalar" || e.kind == "aggregate":
			ok = ok && (!e.sideEffects || volatileButHarmless[name])
		case e.kind == "macro":
			ok = ok && e.macro != nil && (&allowCheck{cat: j}).statements(e.macro) == nil
		default:
			ok = false
		}
	}
	j.verdict[name] = ok
	return ok
}

// parseTree returns DuckDB's syntax tree of q as decoded JSON. q travels as a bound parameter, so
// nothing of it is executed.
func parseTree(ctx context.Context, conn *sql.Conn, q string) (any, error) {
	var js string
	if err := conn.QueryRowContext(ctx, `SELECT json_serialize_sql(?::VARCHAR)::VARCHAR`, q).Scan(&js); err != nil {
		return nil, err
	}
	var tree any
	if err := json.Unmarshal([]byte(js), &tree); err != nil {
		return nil, fmt.Errorf("decode syntax tree: %w", err)
	}
	return tree, nil
}

// checkAllowed parses q and refuses it unless it is one statement built only of allowed parts.
func checkAllowed(ctx context.Context, conn *sql.Conn, q string) error {
	cat, err := loadFunctionCatalog(ctx, conn)
	if err != nil {
		return err
	}
	tree, err := parseTree(ctx, conn, q)
	if err != nil {
		return err
	}
	return (&allowCheck{cat: cat}).statements(tree)
}

// allowCheck walks a json_serialize_sql tree.
type allowCheck struct {
	cat interface{ scalarAllowed(name string) bool }
}

func (a *allowCheck) statements(tree any) error {
	top, ok := tree.(map[string]any)
	if !ok {
		return fmt.Errorf("%w: unexpected syntax tree", ErrInvalidQuery)
	}
	if failed, _ := top["error"].(bool); failed {
		msg, _ := top["error_message"].(string)
		if strings.Contains(msg, "Only SELECT statements") {
			return fmt.Errorf("%w: only read statements (SELECT) are allowed", ErrInvalidQuery)
		}
		return fmt.Errorf("%w: %s", ErrInvalidQuery, msg)
	}
	stmts, _ := top["statements"].([]any)
	switch {
	case len(stmts) == 0:
		return fmt.Errorf("%w: empty query", ErrInvalidQuery)
	case len(stmts) > 1:
		return fmt.Errorf("%w: exactly one statement is allowed", ErrInvalidQuery)
	}
	return a.walk(stmts[0])
}

// walk checks every object of the tree. An object with a "class" is an expression; one with a
// string "type" is a query node, FROM item, modifier or type description; the rest (statements,
// CTE maps, pivot entries, constants' values) are containers whose members are walked.
func (a *allowCheck) walk(v any) error {
	switch v := v.(type) {
	case []any:
		for _, x := range v {
			if err := a.walk(x); err != nil {
				return err
			}
		}
		return nil
	case map[string]any:
		if class, ok := v["class"].(string); ok {
			return a.expression(class, v)
		}
		if typ, ok := v["type"].(string); ok {
			return a.tagged(typ, v)
		}
		return a.members(v, "")
	default:
		return nil
	}
}

// members walks the values of m except the one under the key skip.
func (a *allowCheck) members(m map[string]any, skip string) error {
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if k == skip {
			continue
		}
		if err := a.walk(m[k]); err != nil {
			return err
		}
	}
	return nil
}

func (a *allowCheck) tagged(typ string, m map[string]any) error {
	switch {
	case allowedQueryNodes[typ], allowedOtherTypes[typ], strings.HasSuffix(typ, "_TYPE_INFO"):
		return a.members(m, "")
	case !allowedTableRefs[typ]:
		return fmt.Errorf("%w: %s is not allowed in a query", ErrInvalidQuery, strings.ToLower(strings.ReplaceAll(typ, "_", " ")))
	case typ == "SHOW_REF":
		if st, _ := m["show_type"].(string); !allowedShowTypes[st] {
			return fmt.Errorf("%w: SHOW of type %s is not allowed", ErrInvalidQuery, st)
		}
		return a.members(m, "")
	case typ == "TABLE_FUNCTION":
		fn, _ := m["function"].(map[string]any)
		if fn == nil {
			return fmt.Errorf("%w: table function without a function", ErrInvalidQuery)
		}
		name, err := functionName(fn)
		if err != nil {
			return err
		}
		if !allowedTableFunctions[name] {
			return fmt.Errorf("%w: table function %s is not allowed (allowed: %s)", ErrInvalidQuery, name, strings.Join(slices.Sorted(maps.Keys(allowedTableFunctions)), ", "))
		}
		// The arguments, filter and ORDER BY of the call are expressions like any other.
		if err := a.members(fn, ""); err != nil {
			return err
		}
		return a.members(m, "function")
	default:
		return a.members(m, "")
	}
}

func (a *allowCheck) expression(class string, m map[string]any) error {
	if !allowedExpressionClasses[class] {
		return fmt.Errorf("%w: expression of kind %s is not allowed", ErrInvalidQuery, strings.ToLower(class))
	}
	switch class {
	case "FUNCTION": // scalar and aggregate calls, and operators (+, ~~, ...)
		name, err := functionName(m)
		if err != nil {
			return err
		}
		if !a.cat.scalarAllowed(name) {
			return fmt.Errorf("%w: function %s is not allowed (only built-in functions without side effects)", ErrInvalidQuery, name)
		}
	case "WINDOW":
		// Ranking and offset window functions (row_number, lag, ...) are aggregates in the
		// catalog; an aggregate used as a window function is checked the same way.
		name, err := functionName(m)
		if err != nil {
			return err
		}
		if !a.cat.scalarAllowed(name) {
			return fmt.Errorf("%w: window function %s is not allowed", ErrInvalidQuery, name)
		}
	}
	return a.members(m, "")
}

// functionName returns the lower-case name of a call, refusing qualified names outside DuckDB's
// system catalog (a function elsewhere would not be built in).
func functionName(m map[string]any) (string, error) {
	name, _ := m["function_name"].(string)
	catalog, _ := m["catalog"].(string)
	schema, _ := m["schema"].(string)
	name = strings.ToLower(name)
	catalog, schema = strings.ToLower(catalog), strings.ToLower(schema)
	if (catalog != "" && catalog != "system") || (schema != "" && schema != "main" && schema != "pg_catalog") {
		return "", fmt.Errorf("%w: function %s.%s.%s is not a built-in function", ErrInvalidQuery, catalog, schema, name)
	}
	return name, nil
}
