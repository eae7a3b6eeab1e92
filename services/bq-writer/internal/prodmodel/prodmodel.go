// Package prodmodel describes the prod layer, the relations analysts query, as the BigQuery prod
// DDL (sql/bigquery/prod) defines it: their names and columns. DuckDB's prod schema
// (sql/duckdb/prod) must have the same; the tests of this package check both backends' prod SQL
// against the Go rules it models (warehouse.FirstCopy, the order rule, warehouse.History).
package prodmodel

import (
	"fmt"
	"regexp"
	"strings"

	ddl "github.com/ecomstream/platform/sql"
)

// Relation is one prod relation: a view, or the dim_date table.
type Relation struct {
	Name    string
	Columns []string
}

// The datasets the DDL is rendered with to be read; any valid names would do.
var readDatasets = ddl.Datasets{Raw: "raw", Staging: "staging", Prod: "prod"}

var (
	createRE = regexp.MustCompile("(?m)^CREATE (?:OR REPLACE )?(TABLE|VIEW)(?: IF NOT EXISTS)? `[^`]+\\.prod\\.(\\w+)`(?: \\(| AS)")
	sourceRE = regexp.MustCompile("(?:FROM|JOIN) `[^`]+\\.prod\\.(\\w+)` (\\w+)")
)

// Relations returns the prod relations in the order the DDL creates them, each with its columns
// in order. A table's and a view's columns are read from their column list (one a line); a view
// without one (the point-in-time views) selects "alias.*" and "alias.column" items from prod
// relations created before it, which are resolved.
func Relations() ([]Relation, error) {
	stmts, err := ddl.BigQuery("ecom-model", readDatasets)
	if err != nil {
		return nil, fmt.Errorf("prodmodel: %w", err)
	}
	var out []Relation
	known := map[string][]string{}
	for _, s := range stmts {
		if !strings.HasPrefix(s.Name, "bigquery/prod/") {
			continue
		}
		for _, stmt := range strings.Split(s.SQL, ";\n") {
			stmt = stripComments(stmt)
			m := createRE.FindStringSubmatchIndex(stmt)
			if m == nil {
				continue
			}
			name := stmt[m[4]:m[5]]
			rest := stmt[m[1]:]
			var cols []string
			if strings.HasSuffix(stmt[m[0]:m[1]], "(") {
				cols = columnList(rest)
			} else if cols, err = resolveSelect(rest, known); err != nil {
				return nil, fmt.Errorf("prodmodel: %s: %s: %w", s.Name, name, err)
			}
			if len(cols) == 0 {
				return nil, fmt.Errorf("prodmodel: %s: %s has no columns", s.Name, name)
			}
			known[name] = cols
			out = append(out, Relation{Name: name, Columns: cols})
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("prodmodel: no prod relation in the BigQuery DDL")
	}
	return out, nil
}

func stripComments(stmt string) string {
	var keep []string
	for _, line := range strings.Split(stmt, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "--") {
			keep = append(keep, line)
		}
	}
	return strings.TrimSpace(strings.Join(keep, "\n"))
}

// columnList reads "name [type] [OPTIONS ...]," lines up to the closing ")".
func columnList(body string) []string {
	var cols []string
	for _, line := range strings.Split(body, "\n")[1:] {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, ")") {
			break
		}
		if f := strings.Fields(line); len(f) > 0 {
			cols = append(cols, strings.TrimSuffix(f[0], ","))
		}
	}
	return cols
}

// resolveSelect reads "\nSELECT items\nFROM ..." with items of the form alias.* or alias.column.
func resolveSelect(body string, known map[string][]string) ([]string, error) {
	_, after, ok := strings.Cut(body, "SELECT ")
	items, from, ok2 := strings.Cut(after, "\nFROM ")
	if !ok || !ok2 {
		return nil, fmt.Errorf("want SELECT items FROM ...")
	}
	alias := map[string]string{}
	for _, m := range sourceRE.FindAllStringSubmatch("FROM "+from, -1) {
		alias[m[2]] = m[1]
	}
	var cols []string
	for _, item := range strings.Split(items, ",") {
		a, col, ok := strings.Cut(strings.TrimSpace(item), ".")
		if !ok {
			return nil, fmt.Errorf("select item %q is not alias.column", item)
		}
		if col != "*" {
			cols = append(cols, col)
			continue
		}
		rel, ok := known[alias[a]]
		if !ok {
			return nil, fmt.Errorf("%s.* reads %q, not a prod relation created before", a, alias[a])
		}
		cols = append(cols, rel...)
	}
	return cols, nil
}
