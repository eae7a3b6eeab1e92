package main

import (
	"strings"
	"testing"

	ddl "github.com/ecomstream/platform/sql"
)

func TestSplitStatements(t *testing.T) {
	cases := []struct {
		name string
		sql  string
		want []string
	}{
		{"one statement", "CREATE TABLE t (a INT64);\n", []string{"CREATE TABLE t (a INT64)"}},
		{"two, comments between", "-- head\nCREATE TABLE t (a INT64);\n-- why\nALTER TABLE t ADD COLUMN b STRING;\n",
			[]string{"-- head\nCREATE TABLE t (a INT64)", "-- why\nALTER TABLE t ADD COLUMN b STRING"}},
		{"trailing comment only", "SELECT 1;\n-- end\n", []string{"SELECT 1"}},
		{"semicolon inside a line stays", "SELECT ';' AS x;\n", []string{"SELECT ';' AS x"}},
		{"no final newline", "SELECT 1;", []string{"SELECT 1;"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := splitStatements(tc.sql)
			if strings.Join(got, "\x00") != strings.Join(tc.want, "\x00") {
				t.Fatalf("splitStatements(%q) = %q, want %q", tc.sql, got, tc.want)
			}
		})
	}
}

// The repository's BigQuery files split into the statements they hold:
// raw/fact_events.sql is a CREATE and three one-column ALTERs,
// prod/dim_date.sql a CREATE and an INSERT.
func TestSplitStatementsOfRepositoryFiles(t *testing.T) {
	stmts, err := ddl.BigQuery("ecom-local", ddl.Datasets{Raw: "probe", Staging: "probe_staging", Prod: "probe_prod"})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range stmts {
		parts := splitStatements(s.SQL)
		want := strings.Count(s.SQL, "CREATE ") + strings.Count(s.SQL, "ALTER TABLE") + strings.Count(s.SQL, "INSERT INTO")
		if len(parts) != want {
			t.Errorf("%s: %d statements, want %d (CREATE + ALTER TABLE + INSERT INTO count)", s.Name, len(parts), want)
		}
		if s.Name == "bigquery/raw/fact_events.sql" && (len(parts) != 4 || !strings.Contains(parts[1], "ALTER TABLE")) {
			t.Errorf("raw/fact_events.sql: got %d parts, want the CREATE and three ALTERs", len(parts))
		}
	}
}

func TestCell(t *testing.T) {
	long := strings.Repeat("é", 200) // 400 bytes
	cases := []struct {
		name, in, want string
	}{
		{"plain", "ok", "ok"},
		{"pipe and newline", "a|b\nc", `a\|b c`},
		{"cut on a rune boundary", long, strings.Repeat("é", 150) + "…"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := cell(tc.in); got != tc.want {
				t.Fatalf("cell(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}
