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
		if !strings.Contains(s.SQL, "IF NOT EXISTS") && !strings.HasPrefix(s.Name, "duckdb/views_") {
			t.Errorf("%s: CREATE is not idempotent", s.Name)
		}
	}
	want := []string{"duckdb/dim_date.sql", "duckdb/dim_products.sql", "duckdb/dim_products_changes.sql", "duckdb/dim_users.sql",
		"duckdb/dim_users_changes.sql", "duckdb/fact_events.sql", "duckdb/fact_events_duplicates.sql", "duckdb/fact_order_items.sql",
		"duckdb/fact_orders.sql", "duckdb/stream_positions.sql", "duckdb/views_pit.sql"}
	if !slices.Equal(names, want) {
		t.Fatalf("names = %v, want %v", names, want)
	}
	again, _ := DuckDB()
	if !slices.Equal(stmts, again) {
		t.Fatal("DuckDB() is not deterministic")
	}
}

func TestBigQuery(t *testing.T) {
	tests := []struct {
		name    string
		project string
		dataset string
		wantErr bool
	}{
		{name: "ok", project: "ecom-prod-1234", dataset: "raw"},
		{name: "domain scoped", project: "example.com:ecom-prod", dataset: "raw_eu"},
		{name: "backquote in dataset", project: "ecom-prod", dataset: "raw`; DROP", wantErr: true},
		{name: "empty dataset", project: "ecom-prod", dataset: "", wantErr: true},
		{name: "upper-case project", project: "Ecom-Prod", dataset: "raw", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stmts, err := BigQuery(tt.project, Datasets{Raw: tt.dataset, Staging: tt.dataset, Prod: tt.dataset})
			if tt.wantErr {
				if err == nil {
					t.Fatal("want error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			sql := ""
			for _, s := range stmts {
				if strings.Contains(s.SQL, "${") {
					t.Errorf("%s: unresolved placeholder", s.Name)
				}
				if s.Name == "bigquery/fact_events.sql" {
					sql = s.SQL
				}
			}
			for _, want := range []string{
				"`" + tt.project + "." + tt.dataset + ".fact_events`",
				"PARTITION BY DATE(event_timestamp)",
				"CLUSTER BY user_id, event_type",
				"require_partition_filter = FALSE",
			} {
				if !strings.Contains(sql, want) {
					t.Errorf("fact_events DDL lacks %q", want)
				}
			}
		})
	}
}

// The DuckDB and BigQuery tables are the same model: same columns in the same order, for every
// table both dialects have.
func TestDialectsHaveSameColumns(t *testing.T) {
	duck, err := DuckDB()
	if err != nil {
		t.Fatal(err)
	}
	bq, err := BigQuery("ecom-test", Datasets{Raw: "raw", Staging: "staging", Prod: "prod"})
	if err != nil {
		t.Fatal(err)
	}
	byName := func(stmts []Statement) map[string]string {
		m := map[string]string{}
		for _, s := range stmts {
			m[strings.TrimSuffix(s.Name[strings.Index(s.Name, "/")+1:], ".sql")] = s.SQL
		}
		return m
	}
	d, b := byName(duck), byName(bq)
	for name := range d {
		if _, ok := b[name]; !ok && name != "stream_positions" && name != "fact_events_duplicates" {
			t.Errorf("duckdb/%s.sql has no BigQuery twin", name)
		}
	}
	tests := []struct {
		table string
		cols  int
	}{
		{"fact_events", 33},
		{"fact_orders", 29},
		{"fact_order_items", 10},
		{"dim_products", 18},
		{"dim_products_changes", 21},
		{"dim_users", 16},
		{"dim_users_changes", 19},
		{"dim_date", 9},
	}
	for _, tt := range tests {
		t.Run(tt.table, func(t *testing.T) {
			dc, bc := columns(t, d[tt.table]), columns(t, b[tt.table])
			if !slices.Equal(dc, bc) {
				t.Fatalf("columns differ:\nduckdb   %v\nbigquery %v", dc, bc)
			}
			if len(dc) != tt.cols {
				t.Fatalf("got %d columns, want %d: %v", len(dc), tt.cols, dc)
			}
		})
	}
}

func TestBigQueryOrders(t *testing.T) {
	stmts, err := BigQuery("ecom-test", Datasets{Raw: "raw", Staging: "staging", Prod: "prod"})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range stmts {
		if s.Name != "bigquery/fact_orders.sql" {
			continue
		}
		for _, want := range []string{"`ecom-test.raw.fact_orders`", "PARTITION BY DATE(order_timestamp)", "CLUSTER BY user_id, status"} {
			if !strings.Contains(s.SQL, want) {
				t.Errorf("fact_orders DDL lacks %q", want)
			}
		}
		return
	}
	t.Fatal("no bigquery/fact_orders.sql")
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
	var cols []string
	for _, line := range strings.Split(body, "\n")[1:] {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, ")") {
			break
		}
		if f := strings.Fields(line); len(f) > 0 {
			cols = append(cols, f[0])
		}
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
// dialects, and no dimension keeps the email in clear.
func TestDimensionsAndViews(t *testing.T) {
	duck, err := DuckDB()
	if err != nil {
		t.Fatal(err)
	}
	bq, err := BigQuery("ecom-test", Datasets{Raw: "raw", Staging: "staging", Prod: "prod"})
	if err != nil {
		t.Fatal(err)
	}
	for _, stmts := range [][]Statement{duck, bq} {
		for _, s := range stmts {
			if strings.Contains(s.Name, "dim_users") {
				for _, col := range columns(t, s.SQL) {
					if col == "email" || col == "name" {
						t.Errorf("%s has column %s", s.Name, col)
					}
				}
			}
			if !strings.HasSuffix(s.Name, "/views_pit.sql") {
				continue
			}
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
