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
// fact_events.sql is a CREATE and one ALTER per added column (the emulator
// refuses several ADD COLUMN clauses in one), dim_date.sql a CREATE and an INSERT.
func TestSplitStatementsOfRepositoryFiles(t *testing.T) {
	stmts, err := ddl.BigQuery("ecom-local", ddl.Datasets{Raw: "probe", Staging: "probe", Prod: "probe"})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range stmts {
		parts := splitStatements(s.SQL)
		want := strings.Count(s.SQL, "CREATE ") + strings.Count(s.SQL, "ALTER TABLE") + strings.Count(s.SQL, "INSERT INTO")
		if len(parts) != want {
			t.Errorf("%s: %d statements, want %d (CREATE + ALTER TABLE + INSERT INTO count)", s.Name, len(parts), want)
		}
		for i, p := range parts {
			if n := strings.Count(p, "ADD COLUMN"); n > 1 {
				t.Errorf("%s: statement %d has %d ADD COLUMN clauses, want one per ALTER TABLE", s.Name, i+1, n)
			}
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
