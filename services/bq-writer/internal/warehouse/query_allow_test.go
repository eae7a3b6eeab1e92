package warehouse

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestQueryRefusesStateChangingSelects sends statements that DuckDB parses as SELECT but that
// change the database, its configuration or the writer's future: on 79700c6 every one of them
// was accepted (enable_logging with file storage then made every later statement of the writer
// fail and the process abort on close). Each runs against its own warehouse, which must afterwards
// be unchanged (settings, WAL, rows, positions), still take a batch, and close cleanly.
func TestQueryRefusesStateChangingSelects(t *testing.T) {
	logDir := t.TempDir()
	tests := []struct {
		name  string
		query string
	}{
		{"checkpoint", `SELECT * FROM checkpoint()`},
		{"checkpoint of a database", `FROM checkpoint('warehouse')`},
		{"force checkpoint", `SELECT * FROM force_checkpoint()`},
		{"qualified", `SELECT * FROM system.main.checkpoint()`},
		{"quoted upper case", `SELECT * FROM "CHECKPOINT"()`},
		{"in a scalar subquery", `SELECT (SELECT count(*) FROM force_checkpoint()) AS n`},
		{"in a CTE", `WITH c AS MATERIALIZED (SELECT * FROM checkpoint()) SELECT * FROM c`},
		{"in EXISTS", `SELECT * FROM range(3) WHERE EXISTS (FROM force_checkpoint())`},
		{"in a union", `SELECT 1 AS x UNION ALL SELECT 2 FROM checkpoint()`},
		{"summarize a call", `SUMMARIZE SELECT * FROM checkpoint()`},
		{"describe a call", `DESCRIBE SELECT * FROM enable_logging()`},
		{"enable logging to memory", `SELECT * FROM enable_logging()`},
		{"enable logging to a file", `SELECT * FROM enable_logging(storage := 'file', storage_path := '` + logDir + `')`},
		{"disable logging", `SELECT * FROM disable_logging()`},
		{"truncate logs", `SELECT * FROM truncate_duckdb_logs()`},
		{"enable profiling", `SELECT * FROM enable_profiling()`},
		{"enable profiling to a file", `SELECT * FROM enable_profiling(save_location := '` + filepath.Join(logDir, "p.json") + `')`},
		{"disable profiling", `SELECT * FROM disable_profiling()`},
		{"switch the parser", `SELECT * FROM enable_peg_parser()`},
		{"query text", `SELECT * FROM query('SELECT * FROM checkpoint()')`},
		{"query_table", `SELECT * FROM query_table('fact_events')`},
		{"table macro over query_table", `SELECT * FROM histogram('fact_events', event_type)`},
		{"serialized sql", `SELECT * FROM json_execute_serialized_sql(json_serialize_sql('SELECT * FROM checkpoint()'))`},
		{"setseed", `SELECT setseed(0.5)`},
		{"nextval", `SELECT nextval('seq')`},
		{"currval", `SELECT currval('seq')`},
		{"write_log", `SELECT write_log('hello', level := 'error')`},
		{"write_log per row", `SELECT * FROM fact_events, LATERAL (SELECT write_log(event_id))`},
		{"sleep_ms", `SELECT sleep_ms(60000)`},
		{"pg_sleep macro", `SELECT pg_sleep(60)`},
		{"parameter", `SELECT $1`},
		{"read a file", `SELECT * FROM read_text('` + filepath.Join(logDir, "x") + `')`},
		{"glob", `SELECT * FROM glob('/*')`},
		{"statement-level pivot", `PIVOT fact_events ON event_type`},
		{"call", `CALL checkpoint()`},
		{"pragma", `PRAGMA force_checkpoint`},
		{"select then checkpoint", `SELECT 1; SELECT * FROM checkpoint()`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, path := openTest(t)
			mustWrite(t, d, batch(seq("a", 0, 0, 5)...))
			settings := snapshotSettings(t, d)
			wal := walSize(t, path)

			_, _, err := d.Query(context.Background(), tt.query, 10)
			if !errors.Is(err, ErrInvalidQuery) {
				// Not fatal: what follows shows what the statement did.
				t.Errorf("%s: got %v, want ErrInvalidQuery (refused before it runs)", tt.query, err)
			} else {
				t.Log(err)
			}

			if got := snapshotSettings(t, d); got != settings {
				t.Errorf("settings changed:\n%s", diffLines(settings, got))
			}
			if got := walSize(t, path); got != wal {
				t.Errorf("WAL size %d -> %d: something checkpointed", wal, got)
			}
			mustWrite(t, d, batch(seq("b", 0, 5, 5)...))
			if n := count(t, d, `SELECT count(*) FROM fact_events`); n != 10 {
				t.Errorf("fact_events has %d rows, want 10", n)
			}
			pos, err := d.Positions(context.Background(), testGroup)
			if err != nil || pos[Partition{"ecom.events.valid.v1", 0}].Next != 10 {
				t.Errorf("positions = %v, %v; want 10", pos, err)
			}
			if err := d.Close(); err != nil {
				t.Errorf("close: %v", err)
			}
			if entries, _ := os.ReadDir(logDir); len(entries) != 0 {
				t.Errorf("files written to %s: %v", logDir, entries)
			}
		})
	}
}

// TestQueryAllowsOperatorQueries keeps the allow-list useful: the reads an operator runs against
// the warehouse must pass it.
func TestQueryAllowsOperatorQueries(t *testing.T) {
	d, _ := openTest(t)
	mustWrite(t, d, batch(seq("q", 0, 0, 20)...))
	tests := []string{
		`SELECT event_type, count(*) AS n FROM fact_events GROUP BY ALL ORDER BY n DESC`,
		`SELECT * FROM stream_positions`,
		`FROM fact_events SELECT event_id, source_offset WHERE source_offset BETWEEN 3 AND 5 ORDER BY 2`,
		`SELECT date_trunc('hour', event_timestamp) AS h, count(DISTINCT user_id) FROM fact_events GROUP BY 1`,
		`SELECT strftime(event_timestamp, '%Y-%m-%d'), epoch_ms(event_timestamp), event_timestamp + INTERVAL 1 DAY FROM fact_events`,
		`SELECT event_id, row_number() OVER (PARTITION BY session_id ORDER BY event_timestamp) AS rn,
			lag(source_offset) OVER w, sum(price_minor) OVER w FROM fact_events WINDOW w AS (ORDER BY source_offset)`,
		`SELECT event_id FROM fact_events QUALIFY row_number() OVER (PARTITION BY event_id ORDER BY source_offset) = 1`,
		`SELECT arg_max(event_id, source_offset), approx_count_distinct(event_id), string_agg(event_id, ',' ORDER BY event_id),
			count(*) FILTER (WHERE quantity > 1), quantile_cont(price_minor, 0.9), histogram(country), list(event_id)[1] FROM fact_events`,
		`SELECT country, city, count(*), grouping(country) FROM fact_events GROUP BY GROUPING SETS ((country), (country, city), ())`,
		`SELECT COALESCE(user_id, anonymous_id), CASE WHEN quantity > 1 THEN 'many' ELSE 'one' END, TRY_CAST(page_url AS INTEGER),
			page_url ILIKE '%sku%', regexp_extract(page_url, 'sku-(\d+)', 1), split_part(page_url, '/', 3), lower(city) FROM fact_events`,
		`SELECT [x * 2 FOR x IN [1, 2, 3] IF x > 1] AS l, list_transform([1, 2], lambda x: x + 1), {'a': 1, 'b': [2]} AS s,
			MAP {'k': 1} AS m, unnest([1, 2]) AS u`,
		`SELECT * FROM unnest([1, 2, 3]) AS t(x)`,
		`SELECT * FROM generate_series(1, 3), range(2)`,
		`SELECT json_extract(j, '$.a'), j->>'a', json_object('k', 1) FROM (SELECT '{"a": 1}'::JSON AS j)`,
		`SELECT * FROM json_each('{"a": 1, "b": 2}')`,
		`WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 5) SELECT * FROM r`,
		`WITH s AS (SELECT session_id, count(*) c FROM fact_events GROUP BY 1) SELECT * FROM s JOIN fact_events f USING (session_id) LIMIT 3`,
		`SELECT * FROM fact_events f WHERE EXISTS (SELECT 1 FROM stream_positions p WHERE p.topic = f.source_topic)`,
		`SELECT event_type FROM fact_events UNION SELECT 'x' EXCEPT SELECT 'y' INTERSECT SELECT 'x'`,
		`SELECT * FROM (VALUES (1, 'a'), (2, 'b')) AS v(n, s)`,
		`SELECT COLUMNS('source_.*') FROM fact_events`,
		`SELECT * EXCLUDE (user_agent) REPLACE (upper(country) AS country) FROM fact_events`,
		`SELECT * FROM fact_events USING SAMPLE 50%`,
		`SELECT random() < 2, gen_random_uuid() IS NOT NULL, current_setting('TimeZone'), version() IS NOT NULL, now() > TIMESTAMPTZ '2020-01-01'`,
		`SELECT * FROM (PIVOT fact_events ON event_type IN ('add_to_cart', 'page_view') USING count(*) GROUP BY country)`,
		`SELECT * FROM (UNPIVOT (SELECT 1 AS a, 2 AS b) ON a, b INTO NAME k VALUE v)`,
		`SELECT table_name, estimated_size FROM duckdb_tables()`,
		`SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'fact_events'`,
		`SELECT * FROM duckdb_columns() WHERE table_name = 'stream_positions'`,
		`SELECT * FROM pragma_table_info('fact_events')`,
		`SELECT name, value FROM duckdb_settings() WHERE name = 'threads'`,
		`SELECT * FROM duckdb_memory()`,
		`DESCRIBE fact_events`,
		`DESCRIBE SELECT event_id FROM fact_events`,
		`SUMMARIZE stream_positions`,
		`SHOW TABLES`,
		`SHOW ALL TABLES`,
		`SHOW fact_events`,
		`SELECT ifnull(NULL, 1), nullif(1, 1), greatest(1, 2), if(true, 1, 2), typeof(1), md5('x'), hash(1), bar(5, 0, 10)`,
		`SELECT 'nan'::DOUBLE AS nan, 'inf'::DOUBLE AS inf, '-inf'::FLOAT AS ninf`,
		`SELECT DISTINCT ON (event_type) * FROM fact_events ORDER BY ALL DESC NULLS LAST LIMIT 2 OFFSET 1`,
		`SELECT * FROM fact_events LIMIT 10%`,
		`WITH m AS MATERIALIZED (SELECT 1 AS a) SELECT a FROM m WHERE a > 0 AND (a < 5 OR NOT a = 3) ORDER BY a ASC`,
		`SELECT #1, event_id COLLATE nocase FROM fact_events`,
		`SELECT a.source_offset, b.source_offset FROM fact_events a ASOF JOIN fact_events b ON a.event_timestamp >= b.event_timestamp`,
		`SELECT * FROM fact_events POSITIONAL JOIN stream_positions`,
		`SELECT list_reduce([1, 2, 3], lambda a, b: a + b), ({'a': 1}).a, struct_pack(x := 1), [1, 2, 3][2:3]`,
		`SELECT count(*) FROM fact_events WHERE loaded_at < now() - INTERVAL 2 SECOND`,
		// The queries of make demo, make bench and the end-to-end test.
		`SELECT event_id, trace_id FROM fact_events WHERE loaded_at < now() - INTERVAL 2 SECOND ORDER BY loaded_at DESC LIMIT 1`,
		`SELECT CAST(epoch_us(max(loaded_at)) AS BIGINT) FROM fact_events`,
		`SELECT count(*), quantile_cont(epoch_us(loaded_at) - epoch_us(event_timestamp), 0.50) / 1000.0,
			quantile_cont(epoch_us(loaded_at) - epoch_us(event_timestamp), 0.99) / 1000.0,
			max(epoch_us(loaded_at) - epoch_us(event_timestamp)) / 1000.0 FROM fact_events WHERE source_offset >= 0`,
	}
	for _, q := range tests {
		t.Run(q[:min(len(q), 60)], func(t *testing.T) {
			if _, _, err := d.Query(context.Background(), q, 5); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		})
	}
}

// snapshotSettings renders every DuckDB setting: enable_logging, profiling and the parser switch
// all show up here.
func snapshotSettings(t *testing.T, d *DuckDB) string {
	t.Helper()
	rows, err := d.db.QueryContext(context.Background(), `SELECT name, coalesce(value, '') FROM duckdb_settings() ORDER BY name`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var b strings.Builder
	for rows.Next() {
		var name, value string
		if err := rows.Scan(&name, &value); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s=%s\n", name, value)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func walSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path + ".wal")
	if errors.Is(err, os.ErrNotExist) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

func diffLines(a, b string) string {
	old := map[string]bool{}
	for _, l := range strings.Split(a, "\n") {
		old[l] = true
	}
	var out []string
	for _, l := range strings.Split(b, "\n") {
		if !old[l] {
			out = append(out, "  now "+l)
		}
	}
	return strings.Join(out, "\n")
}

// TestQueryAllowListCoversTheCatalog checks the allow-list against this DuckDB build's whole
// function catalog rather than against names someone thought of: every table function, table
// macro and pragma not on the list is refused, and so is every scalar function DuckDB flags with
// side effects (except the harmless few). It also fails when an allow-listed table function no
// longer exists, so a DuckDB upgrade that renames one is noticed.
func TestQueryAllowListCoversTheCatalog(t *testing.T) {
	d, _ := openTest(t)
	names := func(where string) []string {
		t.Helper()
		rows, err := d.db.QueryContext(context.Background(),
			`SELECT DISTINCT function_name FROM duckdb_functions() WHERE `+where+` ORDER BY 1`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var out []string
		for rows.Next() {
			var n string
			if err := rows.Scan(&n); err != nil {
				t.Fatal(err)
			}
			out = append(out, n)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		return out
	}
	refused := func(q string) {
		t.Helper()
		if _, _, err := d.Query(context.Background(), q, 1); !errors.Is(err, ErrInvalidQuery) {
			t.Errorf("%s: %v, want ErrInvalidQuery", q, err)
		}
	}

	tableFuncs := names(`function_type IN ('table', 'table_macro')`)
	present := map[string]bool{}
	for _, n := range tableFuncs {
		present[n] = true
		if !allowedTableFunctions[n] {
			refused(`SELECT * FROM "` + n + `"()`)
		}
	}
	for n := range allowedTableFunctions {
		if !present[n] {
			t.Errorf("allow-listed table function %s is not in this DuckDB", n)
		}
	}
	for _, n := range names(`function_type = 'pragma'`) {
		refused(`PRAGMA "` + n + `"`)
	}
	flagged := names(`function_type = 'scalar' AND has_side_effects`)
	if len(flagged) == 0 {
		t.Fatal("no scalar function flagged with side effects: has the catalog changed?")
	}
	for _, n := range flagged {
		if !volatileButHarmless[n] {
			refused(`SELECT "` + n + `"()`)
		}
	}
	t.Logf("%d table functions and macros (%d allowed), %d flagged scalar functions (%d allowed)",
		len(tableFuncs), len(allowedTableFunctions), len(flagged), len(volatileButHarmless))
}

// BenchmarkQuery measures what the checks add to a small operator query: "checked" is Query,
// "unchecked" the same statement run directly on a pooled connection.
func BenchmarkQuery(b *testing.B) {
	d, _ := openTest(b)
	mustWrite(b, d, batch(seq("b", 0, 0, 100)...))
	const q = `SELECT event_type, count(*) AS n FROM fact_events WHERE source_offset > 10 GROUP BY 1 ORDER BY 2 DESC`
	b.Run("checked", func(b *testing.B) {
		for b.Loop() {
			if _, _, err := d.Query(context.Background(), q, 100); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("unchecked", func(b *testing.B) {
		for b.Loop() {
			rows, err := d.db.QueryContext(context.Background(), q)
			if err != nil {
				b.Fatal(err)
			}
			for rows.Next() {
			}
			if err := rows.Close(); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestReadmeListsTheAllowedTableFunctions keeps the operator docs true to the code.
func TestReadmeListsTheAllowedTableFunctions(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	start := strings.Index(doc, "table functions: only ")
	end := strings.Index(doc, "Any other table function is refused")
	if start < 0 || end < start {
		t.Fatal("README.md: the list of allowed table functions is missing")
	}
	listed := map[string]bool{}
	for _, m := range regexp.MustCompile("`([a-z_]+)`").FindAllStringSubmatch(doc[start:end], -1) {
		listed[m[1]] = true
	}
	for n := range allowedTableFunctions {
		if !listed[n] {
			t.Errorf("README.md does not list the allowed table function %s", n)
		}
	}
	for n := range listed {
		if !allowedTableFunctions[n] {
			t.Errorf("README.md lists %s, which is not allowed", n)
		}
	}
}
