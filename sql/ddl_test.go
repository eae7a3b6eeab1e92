package ddl

import (
	"slices"
	"strings"
	"testing"
)

func TestDuckDBOrderAndContent(t *testing.T) {
	stmts, err := DuckDB()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range stmts {
		names = append(names, s.Name)
		if !strings.Contains(s.SQL, "IF NOT EXISTS") {
			t.Errorf("%s: CREATE is not idempotent", s.Name)
		}
	}
	want := []string{"duckdb/fact_events.sql", "duckdb/fact_events_duplicates.sql", "duckdb/stream_positions.sql"}
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
			stmts, err := BigQuery(tt.project, tt.dataset)
			if tt.wantErr {
				if err == nil {
					t.Fatal("want error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(stmts) == 0 || stmts[0].Name != "bigquery/fact_events.sql" {
				t.Fatalf("unexpected files %+v", stmts)
			}
			for _, s := range stmts {
				if strings.Contains(s.SQL, "${") {
					t.Errorf("%s: unresolved placeholder", s.Name)
				}
			}
			sql := stmts[0].SQL
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

// The DuckDB and BigQuery tables are the same model: same columns in the same order.
func TestDialectsHaveSameColumns(t *testing.T) {
	duck, err := DuckDB()
	if err != nil {
		t.Fatal(err)
	}
	bq, err := BigQuery("ecom-test", "raw")
	if err != nil {
		t.Fatal(err)
	}
	d, b := columns(t, duck[0].SQL), columns(t, bq[0].SQL)
	if !slices.Equal(d, b) {
		t.Fatalf("columns differ:\nduckdb   %v\nbigquery %v", d, b)
	}
	if len(d) != 33 {
		t.Fatalf("got %d columns, want 33: %v", len(d), d)
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
