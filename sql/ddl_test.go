package ddl

import (
	"regexp"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
)

func TestDuckDBOrderAndContent(t *testing.T) {
	stmts, err := DuckDB()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range stmts {
		names = append(names, s.Name)
		isView := strings.HasPrefix(s.Name, "duckdb/views_") || strings.HasPrefix(s.Name, "duckdb/prod/")
		if !strings.Contains(s.SQL, "IF NOT EXISTS") && !isView {
			t.Errorf("%s: CREATE is not idempotent", s.Name)
		}
		if isView && strings.Contains(s.SQL, "CREATE VIEW") {
			t.Errorf("%s: a view must be CREATE OR REPLACE", s.Name)
		}
	}
	want := []string{"duckdb/dim_date.sql", "duckdb/dim_products.sql", "duckdb/dim_products_changes.sql", "duckdb/dim_users.sql",
		"duckdb/dim_users_changes.sql", "duckdb/fact_events.sql", "duckdb/fact_events_duplicates.sql", "duckdb/fact_order_items.sql",
		"duckdb/fact_orders.sql", "duckdb/stream_positions.sql", "duckdb/views_pit.sql",
		"duckdb/prod/dim_date.sql", "duckdb/prod/dim_products.sql", "duckdb/prod/dim_users.sql", "duckdb/prod/fact_events.sql",
		"duckdb/prod/fact_orders.sql", "duckdb/prod/views_pit.sql"}
	if !slices.Equal(names, want) {
		t.Fatalf("names = %v, want %v", names, want)
	}
	again, _ := DuckDB()
	if !slices.Equal(stmts, again) {
		t.Fatal("DuckDB() is not deterministic")
	}
}

var testDatasets = Datasets{Raw: "ecom_raw", Staging: "ecom_staging", Prod: "ecom_prod"}

func TestBigQuery(t *testing.T) {
	tests := []struct {
		name    string
		project string
		ds      Datasets
		wantErr string
	}{
		{name: "ok", project: "ecom-prod-1234", ds: testDatasets},
		{name: "domain scoped", project: "example.com:ecom-prod", ds: Datasets{Raw: "r_eu", Staging: "s_eu", Prod: "p_eu"}},
		{name: "backquote in raw", project: "ecom-prod", ds: Datasets{Raw: "raw`; DROP", Staging: "s", Prod: "p"}, wantErr: "raw dataset"},
		{name: "empty staging", project: "ecom-prod", ds: Datasets{Raw: "r", Prod: "p"}, wantErr: "staging dataset"},
		{name: "dot in prod", project: "ecom-prod", ds: Datasets{Raw: "r", Staging: "s", Prod: "x.p"}, wantErr: "prod dataset"},
		{name: "raw is prod", project: "ecom-prod", ds: Datasets{Raw: "same", Staging: "s", Prod: "same"}, wantErr: "distinct"},
		{name: "upper-case project", project: "Ecom-Prod", ds: testDatasets, wantErr: "project id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stmts, err := BigQuery(tt.project, tt.ds)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			sql := ""
			for _, s := range stmts {
				if strings.Contains(s.SQL, "${") || strings.Contains(s.SQL, "%{") {
					t.Errorf("%s: unresolved placeholder or template directive", s.Name)
				}
				if s.Name == "bigquery/raw/fact_events.sql" {
					sql = s.SQL
				}
			}
			for _, want := range []string{
				"`" + tt.project + "." + tt.ds.Raw + ".fact_events`",
				"PARTITION BY DATE(event_timestamp)",
				"CLUSTER BY user_id, event_type",
				"require_partition_filter = FALSE",
			} {
				if !strings.Contains(sql, want) {
					t.Errorf("raw fact_events DDL lacks %q", want)
				}
			}
		})
	}
}

// The layers are applied raw, then staging, then prod; every file names only its own dataset in
// what it creates, and reads only layers applied before it (or itself).
func TestBigQueryLayers(t *testing.T) {
	stmts, err := BigQuery("ecom-test", testDatasets)
	if err != nil {
		t.Fatal(err)
	}
	created := regexp.MustCompile("(?i)CREATE (?:OR REPLACE )?(?:TABLE|VIEW)(?: IF NOT EXISTS)? `ecom-test\\.([a-z_]+)\\.([a-z_]+)`")
	referenced := regexp.MustCompile("`ecom-test\\.([a-z_]+)\\.([a-z_]+)`")
	rank := map[string]int{testDatasets.Raw: 0, testDatasets.Staging: 1, testDatasets.Prod: 2}
	exists := map[string]bool{}
	lastLayer := 0
	for _, s := range stmts {
		layer := strings.Split(s.Name, "/")[1]
		want := map[string]string{"raw": testDatasets.Raw, "staging": testDatasets.Staging, "prod": testDatasets.Prod}[layer]
		if rank[want] < lastLayer {
			t.Errorf("%s comes after a later layer", s.Name)
		}
		lastLayer = rank[want]
		for _, stmt := range strings.Split(s.SQL, ";") {
			for _, m := range referenced.FindAllStringSubmatch(stmt, -1) {
				if !exists[m[1]+"."+m[2]] && !created.MatchString(stmt) {
					t.Errorf("%s reads %s.%s before it is created", s.Name, m[1], m[2])
				}
			}
			for _, m := range created.FindAllStringSubmatch(stmt, -1) {
				if m[1] != want {
					t.Errorf("%s creates %s.%s outside its dataset %s", s.Name, m[1], m[2], want)
				}
				exists[m[1]+"."+m[2]] = true
			}
		}
	}
	for _, rel := range []string{"ecom_raw.fact_events", "ecom_staging.fact_events", "ecom_prod.fact_events", "ecom_prod.fact_orders",
		"ecom_prod.fact_order_items", "ecom_prod.dim_products", "ecom_prod.dim_users", "ecom_prod.dim_date",
		"ecom_prod.fact_events_pit", "ecom_prod.fact_orders_pit", "ecom_prod.fact_order_items_pit",
		"ecom_staging.dim_products_changes", "ecom_staging.dim_users_changes", "ecom_staging.fact_orders", "ecom_staging.fact_order_items"} {
		if !exists[rel] {
			t.Errorf("no file creates %s", rel)
		}
	}
}

// The emulator runs one ADD COLUMN per ALTER TABLE only (sql/README.md); BigQuery runs either.
func TestBigQueryOneAddColumnPerAlter(t *testing.T) {
	stmts, err := BigQuery("ecom-test", testDatasets)
	if err != nil {
		t.Fatal(err)
	}
	alters := 0
	for _, s := range stmts {
		for _, stmt := range strings.Split(s.SQL, ";") {
			if strings.Contains(stmt, "ALTER TABLE") {
				alters++
				if n := strings.Count(stmt, "ADD COLUMN"); n != 1 {
					t.Errorf("%s: an ALTER TABLE with %d ADD COLUMN clauses", s.Name, n)
				}
			}
		}
	}
	if alters == 0 {
		t.Fatal("no ALTER TABLE found (raw/fact_events.sql adds three columns)")
	}
}

func byName(stmts []Statement) map[string]string {
	m := map[string]string{}
	for _, s := range stmts {
		m[strings.TrimSuffix(strings.SplitN(s.Name, "/", 2)[1], ".sql")] = s.SQL
	}
	return m
}

// The DuckDB tables and the BigQuery raw tables are the same model: same columns in the same
// order, except what raw adds for the prod views (the source coordinates of an order line, the
// surrogate key of a change).
func TestDialectsHaveSameColumns(t *testing.T) {
	duck, err := DuckDB()
	if err != nil {
		t.Fatal(err)
	}
	bq, err := BigQuery("ecom-test", testDatasets)
	if err != nil {
		t.Fatal(err)
	}
	d, b := byName(duck), byName(bq)
	tests := []struct {
		table    string
		cols     int
		rawExtra []string
	}{
		{"fact_events", 33, nil},
		{"fact_orders", 29, nil},
		{"fact_order_items", 10, []string{"source_topic", "source_partition", "source_offset"}},
		{"dim_products_changes", 21, []string{"product_key"}},
		{"dim_users_changes", 19, []string{"user_key"}},
	}
	for _, tt := range tests {
		t.Run(tt.table, func(t *testing.T) {
			dc, bc := columns(t, d[tt.table]), columns(t, b["raw/"+tt.table])
			if want := append(slices.Clone(dc), tt.rawExtra...); !slices.Equal(want, bc) {
				t.Fatalf("columns differ:\nduckdb + extra %v\nbigquery raw   %v", want, bc)
			}
			if len(dc) != tt.cols {
				t.Fatalf("got %d columns, want %d: %v", len(dc), tt.cols, dc)
			}
		})
	}
}

// The prod relations have the same names and columns in both dialects: BigQuery's prod views name
// their columns in a column list, DuckDB's select them; both equal the DuckDB table's columns.
func TestProdColumns(t *testing.T) {
	duck, err := DuckDB()
	if err != nil {
		t.Fatal(err)
	}
	bq, err := BigQuery("ecom-test", testDatasets)
	if err != nil {
		t.Fatal(err)
	}
	d, b := byName(duck), byName(bq)
	tests := []struct {
		rel, file string
		cols      int
	}{
		{"fact_events", "fact_events", 33},
		{"fact_orders", "fact_orders", 29},
		{"fact_order_items", "fact_orders", 10},
		{"dim_products", "dim_products", 18},
		{"dim_users", "dim_users", 16},
		{"dim_date", "dim_date", 9},
	}
	for _, tt := range tests {
		t.Run(tt.rel, func(t *testing.T) {
			table := columns(t, d[tt.rel])
			var bc []string
			if tt.rel == "dim_date" {
				bc = columns(t, b["prod/dim_date"])
			} else {
				bc = viewColumns(t, b["prod/"+tt.file], "`ecom-test.ecom_prod."+tt.rel+"`")
			}
			dc := selectColumns(t, d["prod/"+tt.file], "prod."+tt.rel)
			if !slices.Equal(table, bc) || !slices.Equal(table, dc) {
				t.Fatalf("columns differ:\nduckdb table %v\nbigquery prod %v\nduckdb prod   %v", table, bc, dc)
			}
			if len(table) != tt.cols {
				t.Fatalf("got %d columns, want %d", len(table), tt.cols)
			}
		})
	}
}

// prod.fact_events orders copies exactly as compareCopies does, in both dialects, NULL first.
func TestProdFactEventsOrder(t *testing.T) {
	duck, _ := DuckDB()
	bq, _ := BigQuery("ecom-test", testDatasets)
	want := "event_timestamp, received_at, event_type, user_id NULLS FIRST, anonymous_id NULLS FIRST, session_id, page_url, " +
		"referrer NULLS FIRST, user_agent NULLS FIRST, device_type NULLS FIRST, os NULLS FIRST, browser NULLS FIRST, " +
		"country NULLS FIRST, region NULLS FIRST, city NULLS FIRST, product_id NULLS FIRST, search_query NULLS FIRST, " +
		"quantity NULLS FIRST, price_minor NULLS FIRST, currency NULLS FIRST, order_id NULLS FIRST, source, " +
		"client_ip NULLS FIRST, collector_source NULLS FIRST, trace_id NULLS FIRST, dq_warnings NULLS FIRST, " +
		"source_topic, source_partition, source_offset"
	for _, text := range []string{byName(duck)["prod/fact_events"], byName(bq)["prod/fact_events"]} {
		_, after, ok := strings.Cut(text, "ORDER BY")
		order, _, ok2 := strings.Cut(after, ") = 1")
		if !ok || !ok2 {
			t.Fatal("no ORDER BY ... ) = 1 in prod/fact_events.sql")
		}
		if got := strings.Join(strings.Fields(order), " "); got != want {
			t.Errorf("order =\n%s\nwant\n%s", got, want)
		}
	}
}

func TestBigQueryOrders(t *testing.T) {
	stmts, err := BigQuery("ecom-test", testDatasets)
	if err != nil {
		t.Fatal(err)
	}
	m := byName(stmts)
	for _, want := range []string{"`ecom-test.ecom_raw.fact_orders`", "PARTITION BY DATE(order_timestamp)", "CLUSTER BY order_id"} {
		if !strings.Contains(m["raw/fact_orders"], want) {
			t.Errorf("raw fact_orders DDL lacks %q", want)
		}
	}
	for _, want := range []string{"ORDER BY order_version DESC, updated_at DESC, source_topic, source_partition, source_offset",
		"o.source_topic = i.source_topic", "o.source_partition = i.source_partition AND o.source_offset = i.source_offset"} {
		if !strings.Contains(m["prod/fact_orders"], want) {
			t.Errorf("prod fact_orders lacks %q", want)
		}
	}
}

func TestRenderRejectsUnknownPlaceholder(t *testing.T) {
	if _, err := render("SELECT * FROM `${projet}.x`", map[string]string{"project": "p"}); err == nil {
		t.Fatal("want error for unknown placeholder")
	}
}

// columns returns the column names of the first CREATE TABLE in text: the first word of each line
// between the opening "(" line and the closing ")".
func columns(t *testing.T, text string) []string {
	t.Helper()
	_, body, ok := strings.Cut(text, "CREATE TABLE")
	if !ok {
		t.Fatal("no CREATE TABLE")
	}
	return firstWords(body)
}

// viewColumns returns the column list of CREATE OR REPLACE VIEW name (...), one column a line.
func viewColumns(t *testing.T, text, name string) []string {
	t.Helper()
	_, body, ok := strings.Cut(text, "CREATE OR REPLACE VIEW "+name+" (")
	if !ok {
		t.Fatalf("no CREATE OR REPLACE VIEW %s (", name)
	}
	return firstWords(body)
}

func firstWords(body string) []string {
	var cols []string
	for _, line := range strings.Split(body, "\n")[1:] {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, ")") {
			break
		}
		if f := strings.Fields(strings.TrimSuffix(line, ",")); len(f) > 0 {
			cols = append(cols, strings.TrimSuffix(f[0], ","))
		}
	}
	return cols
}

// selectColumns returns the select list of CREATE OR REPLACE VIEW name AS SELECT <list> FROM.
func selectColumns(t *testing.T, text, name string) []string {
	t.Helper()
	_, body, ok := strings.Cut(text, "CREATE OR REPLACE VIEW "+name+" AS\nSELECT\n")
	list, _, ok2 := strings.Cut(body, "\nFROM ")
	if !ok || !ok2 {
		t.Fatalf("no CREATE OR REPLACE VIEW %s AS SELECT ... FROM", name)
	}
	var cols []string
	for _, c := range strings.Split(list, ",") {
		cols = append(cols, strings.TrimSpace(c))
	}
	return cols
}

func TestStorefront(t *testing.T) {
	st, err := Storefront("sf_e2e_1", "ecom_cdc")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"CREATE TABLE IF NOT EXISTS sf_e2e_1.products", "CREATE PUBLICATION sf_e2e_1_catalog",
		"ALTER PUBLICATION sf_e2e_1_catalog SET TABLE sf_e2e_1.products, sf_e2e_1.customers", "REPLICA IDENTITY FULL", "TO ecom_cdc"} {
		if !strings.Contains(st.SQL, want) {
			t.Errorf("storefront DDL lacks %q", want)
		}
	}
	if strings.Contains(st.SQL, "${") {
		t.Error("a placeholder is left")
	}
	for _, bad := range []string{"", "Storefront", "sf; DROP TABLE x", "1sf", strings.Repeat("a", 52)} {
		if _, err := Storefront(bad, "ecom_cdc"); err == nil {
			t.Errorf("schema %q accepted", bad)
		}
		if _, err := Storefront("sf", bad); err == nil {
			t.Errorf("role %q accepted", bad)
		}
	}
}

// The point-in-time views resolve both dimensions by the half-open validity interval, in both
// dialects and layers, and no dimension keeps the email in clear.
func TestDimensionsAndViews(t *testing.T) {
	duck, err := DuckDB()
	if err != nil {
		t.Fatal(err)
	}
	bq, err := BigQuery("ecom-test", testDatasets)
	if err != nil {
		t.Fatal(err)
	}
	pits := 0
	for _, stmts := range [][]Statement{duck, bq} {
		for _, s := range stmts {
			if strings.Contains(s.Name, "dim_users") {
				for _, col := range regexp.MustCompile(`(?m)^\s+(\w+)\b`).FindAllStringSubmatch(s.SQL, -1) {
					if col[1] == "email" || col[1] == "name" {
						t.Errorf("%s has column %s", s.Name, col[1])
					}
				}
			}
			if !strings.HasSuffix(s.Name, "/views_pit.sql") {
				continue
			}
			pits++
			for _, want := range []string{"fact_events_pit", "fact_orders_pit", "fact_order_items_pit",
				"p.valid_from <= e.event_timestamp AND (p.valid_to IS NULL OR e.event_timestamp < p.valid_to)",
				"u.valid_from <= e.event_timestamp AND (u.valid_to IS NULL OR e.event_timestamp < u.valid_to)",
				"u.valid_from <= o.order_timestamp AND (u.valid_to IS NULL OR o.order_timestamp < u.valid_to)"} {
				if !strings.Contains(s.SQL, want) {
					t.Errorf("%s lacks %q", s.Name, want)
				}
			}
		}
	}
	if pits != 3 {
		t.Errorf("%d views_pit.sql files, want 3 (duckdb, duckdb/prod, bigquery/prod)", pits)
	}
}

func TestDLQMigrations(t *testing.T) {
	ms, err := DLQMigrations()
	if err != nil {
		t.Fatal(err)
	}
	if ms[0].Version != 1 || ms[0].Name != "postgres/dlq/0001_init.sql" || !strings.Contains(ms[0].SQL, "CREATE TABLE dead_letters") {
		t.Errorf("first migration = %d %s, want 1 postgres/dlq/0001_init.sql creating dead_letters", ms[0].Version, ms[0].Name)
	}
	for _, m := range ms {
		if qualifiedRE.MatchString(m.SQL) || strings.Contains(m.SQL, "${") {
			t.Errorf("%s names a schema or a placeholder: migrations run with the store's schema as search_path", m.Name)
		}
	}
}

// qualifiedRE finds a schema-qualified name after the keywords that take a table.
var qualifiedRE = regexp.MustCompile(`(?i)\b(TABLE|INDEX|ON|REFERENCES|INTO|FROM|UPDATE)\s+[a-z_][a-z0-9_]*\.[a-z_]`)

func TestMigrationVersions(t *testing.T) {
	file := &fstest.MapFile{Data: []byte("SELECT 1;")}
	tests := []struct {
		name  string
		files []string
		want  string // "" = ok
	}{
		{"in order", []string{"0001_a.sql", "0002_b.sql"}, ""},
		{"gap", []string{"0001_a.sql", "0003_c.sql"}, "has version 3, want 2"},
		{"repeat", []string{"0001_a.sql", "0001_b.sql"}, "has version 1, want 2"},
		{"bad name", []string{"0001_a.sql", "2_b.sql"}, "want a name like"},
		{"none", nil, "no m migrations"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fsys := fstest.MapFS{}
			for _, f := range tt.files {
				fsys["m/"+f] = file
			}
			ms, err := migrations(fsys, "m")
			switch {
			case tt.want == "" && (err != nil || len(ms) != len(tt.files)):
				t.Errorf("migrations = %d, %v; want %d", len(ms), err, len(tt.files))
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("migrations: %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

// prod.dim_date must be idempotent when two replicas migrate a fresh dataset at once: one
// statement that creates the table with its rows (IF NOT EXISTS ... AS SELECT), not a create
// followed by an INSERT that both replicas run against the empty table (every day twice). The
// query's columns are the column list's, in its order.
func TestBigQueryDimDateCreatedWithItsRows(t *testing.T) {
	stmts, err := BigQuery("ecom-test", Datasets{Raw: "ecom_raw", Staging: "ecom_staging", Prod: "ecom_prod"})
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(stmts, func(s Statement) bool { return s.Name == "bigquery/prod/dim_date.sql" })
	if i < 0 {
		t.Fatal("no bigquery/prod/dim_date.sql")
	}
	var code []string
	for _, line := range strings.Split(stmts[i].SQL, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "--") {
			code = append(code, line)
		}
	}
	sql := strings.TrimSpace(strings.Join(code, "\n"))
	_, query, hasQuery := strings.Cut(sql, "\nAS\nSELECT ")
	aliases := regexp.MustCompile(`\bAS ([a-z_]+)\b`).FindAllStringSubmatch(query, -1)
	var got []string
	for _, a := range aliases {
		got = append(got, a[1])
	}
	tests := []struct {
		name string
		ok   bool
	}{
		{"one statement", strings.Count(regexp.MustCompile(`'(?:[^']|'')*'`).ReplaceAllString(sql, "''"), ";") == 1 && strings.HasSuffix(sql, ";")},
		{"creates only if absent", strings.HasPrefix(sql, "CREATE TABLE IF NOT EXISTS `ecom-test.ecom_prod.dim_date` (")},
		{"with its rows", hasQuery && strings.Contains(query, "FROM UNNEST(GENERATE_DATE_ARRAY('2020-01-01', '2035-12-31')) AS d;")},
		{"no DML", !regexp.MustCompile(`(?i)\b(INSERT|MERGE|UPDATE|DELETE)\b`).MatchString(sql)},
		{"the query's columns are the table's, then the day variable", slices.Equal(got, append(columns(t, sql), "d"))},
	}
	for _, tt := range tests {
		if !tt.ok {
			t.Errorf("dim_date: %s: no\n%s", tt.name, sql)
		}
	}
}
