// Package ddl holds the warehouse DDL, one .sql file per table and dialect, embedded so the
// writer applies exactly the files that Terraform applies.
//
// The Go package is named ddl because "sql" would shadow database/sql in every importer:
//
//	import ddl "github.com/ecomstream/platform/sql"
//
// Files are returned in a deterministic apply order: by layer (DuckDB: the main-schema tables,
// then the prod views in duckdb/prod; BigQuery: raw, then staging, then prod), and in lexical
// order of their file names within a layer. A relation that must exist before another (a view)
// gets a name that sorts first: the point-in-time views (views_pit.sql) sort after the dim_ and
// fact_ relations they read.
package ddl

import (
	"embed"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

//go:embed duckdb/*.sql duckdb/prod/*.sql bigquery/raw/*.sql bigquery/staging/*.sql bigquery/prod/*.sql
//go:embed postgres/*.sql postgres/dlq/*.sql
var files embed.FS

// Statement is one DDL file. SQL may hold several statements separated by semicolons (DuckDB runs
// them in order; BigQuery runs the file as a multi-statement query).
type Statement struct {
	// Name is the file's path in this module, e.g. "duckdb/fact_events.sql".
	Name string
	SQL  string
}

// DuckDB returns the DuckDB DDL in apply order: duckdb/*.sql (the main-schema tables bq-writer
// writes), then duckdb/prod/*.sql (the prod schema's views over them). Every statement is
// idempotent (CREATE ... IF NOT EXISTS, CREATE OR REPLACE VIEW, COMMENT ON), so it is safe to
// apply at every start.
func DuckDB() ([]Statement, error) {
	return loadLayers("duckdb", "duckdb/prod")
}

// Datasets names the three BigQuery datasets of one environment.
type Datasets struct {
	// Raw holds the tables bq-writer appends to (bigquery/raw).
	Raw string
	// Staging holds the views that drop replays (bigquery/staging).
	Staging string
	// Prod holds what analysts query (bigquery/prod): views and the dim_date table.
	Prod string
}

// BigQuery returns the BigQuery DDL of the three datasets in apply order (bigquery/raw/*.sql,
// then staging, then prod), with the ${project}, ${raw}, ${staging} and ${prod} placeholders
// filled in. Terraform fills the same placeholders with templatefile(). The datasets must be
// distinct: the layers use the same table names.
func BigQuery(project string, ds Datasets) ([]Statement, error) {
	if !projectRE.MatchString(project) {
		return nil, fmt.Errorf("ddl: invalid BigQuery project id %q", project)
	}
	for _, d := range []struct{ layer, id string }{{"raw", ds.Raw}, {"staging", ds.Staging}, {"prod", ds.Prod}} {
		if len(d.id) > 1024 || !datasetRE.MatchString(d.id) {
			return nil, fmt.Errorf("ddl: invalid BigQuery %s dataset id %q", d.layer, d.id)
		}
	}
	if ds.Raw == ds.Staging || ds.Raw == ds.Prod || ds.Staging == ds.Prod {
		return nil, fmt.Errorf("ddl: BigQuery datasets raw %q, staging %q and prod %q must be distinct", ds.Raw, ds.Staging, ds.Prod)
	}
	stmts, err := loadLayers("bigquery/raw", "bigquery/staging", "bigquery/prod")
	if err != nil {
		return nil, err
	}
	vars := map[string]string{"project": project, "raw": ds.Raw, "staging": ds.Staging, "prod": ds.Prod}
	for i := range stmts {
		s, err := render(stmts[i].SQL, vars)
		if err != nil {
			return nil, fmt.Errorf("ddl: %s: %w", stmts[i].Name, err)
		}
		stmts[i].SQL = s
	}
	return stmts, nil
}

// Storefront returns the storefront's source schema in PostgreSQL
// (postgres/storefront.sql: categories, products, customers, the updated_at
// triggers, replica identity, the publication <schema>_catalog and the
// replication role's grants), for the schema and role named. Both are pasted
// into identifiers, so they must be lower-case SQL identifiers.
func Storefront(schema, cdcRole string) (Statement, error) {
	for _, id := range []string{schema, cdcRole} {
		if !pgIdentRE.MatchString(id) {
			return Statement{}, fmt.Errorf("ddl: invalid PostgreSQL identifier %q (want [a-z_][a-z0-9_]{0,50})", id)
		}
	}
	b, err := files.ReadFile("postgres/storefront.sql")
	if err != nil {
		return Statement{}, fmt.Errorf("ddl: %w", err)
	}
	text, err := render(string(b), map[string]string{"schema": schema, "cdc_role": cdcRole})
	if err != nil {
		return Statement{}, fmt.Errorf("ddl: postgres/storefront.sql: %w", err)
	}
	return Statement{Name: "postgres/storefront.sql", SQL: text}, nil
}

// Migration is one versioned schema change of dlq-handler's store.
type Migration struct {
	Version int    // from the file name's leading number: 1, 2, ...
	Name    string // the file's path in this module, e.g. "postgres/dlq/0001_init.sql"
	SQL     string
}

// DLQMigrations returns dlq-handler's store migrations (postgres/dlq/NNNN_name.sql) in version
// order. The versions must run 1, 2, 3, ... without a gap or a repeat, so that a file added on two
// branches at once is caught here rather than applied in an order that depends on the merge. The
// SQL names no schema: it runs with the store's schema as search_path.
func DLQMigrations() ([]Migration, error) { return migrations(files, "postgres/dlq") }

func migrations(fsys fs.FS, dir string) ([]Migration, error) {
	names, err := fs.Glob(fsys, dir+"/*.sql")
	if err != nil {
		return nil, fmt.Errorf("ddl: list postgres/dlq: %w", err)
	}
	sort.Strings(names)
	out := make([]Migration, 0, len(names))
	for i, name := range names {
		m := migrationRE.FindStringSubmatch(path.Base(name))
		if m == nil {
			return nil, fmt.Errorf("ddl: %s: want a name like 0001_init.sql", name)
		}
		v, _ := strconv.Atoi(m[1])
		if v != i+1 {
			return nil, fmt.Errorf("ddl: %s has version %d, want %d (versions run 1, 2, 3, ... without gaps or repeats)", name, v, i+1)
		}
		b, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, fmt.Errorf("ddl: read %s: %w", name, err)
		}
		text := strings.TrimSpace(string(b))
		if text == "" {
			return nil, fmt.Errorf("ddl: %s is empty", name)
		}
		out = append(out, Migration{Version: v, Name: name, SQL: text})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("ddl: no %s migrations embedded", dir)
	}
	return out, nil
}

var (
	migrationRE = regexp.MustCompile(`^([0-9]{4})_[a-z0-9_]+\.sql$`)
	// PostgreSQL identifiers pasted unquoted: lower case, short enough that
	// "<schema>_catalog" stays within the 63-byte limit.
	pgIdentRE = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,50}$`)
	// Project ids are lower-case letters, digits and hyphens, optionally domain-scoped
	// ("example.com:project"). Dataset ids are letters, digits and underscores. Both are checked
	// because they are pasted into backquoted identifiers.
	projectRE     = regexp.MustCompile(`^([a-z0-9.-]+:)?[a-z][a-z0-9-]{4,28}[a-z0-9]$`)
	datasetRE     = regexp.MustCompile(`^[A-Za-z0-9_]+$`)
	placeholderRE = regexp.MustCompile(`\$\{([^}]*)\}`)
)

// render substitutes ${name} placeholders. An unknown placeholder is an error rather than being
// left in place, so a typo in a .sql file fails at start instead of creating an odd table name.
func render(text string, vars map[string]string) (string, error) {
	var unknown []string
	out := placeholderRE.ReplaceAllStringFunc(text, func(m string) string {
		name := placeholderRE.FindStringSubmatch(m)[1]
		v, ok := vars[name]
		if !ok {
			unknown = append(unknown, name)
			return m
		}
		return v
	})
	if len(unknown) > 0 {
		return "", fmt.Errorf("unknown placeholders %q", unknown)
	}
	return out, nil
}

func load(dialect string) ([]Statement, error) {
	names, err := fs.Glob(files, dialect+"/*.sql")
	if err != nil {
		return nil, fmt.Errorf("ddl: list %s: %w", dialect, err)
	}
	sort.Strings(names) // fs.Glob sorts today; the apply order must not depend on that.
	stmts := make([]Statement, 0, len(names))
	for _, name := range names {
		b, err := files.ReadFile(name)
		if err != nil {
			return nil, fmt.Errorf("ddl: read %s: %w", name, err)
		}
		text := strings.TrimSpace(string(b))
		if text == "" {
			return nil, fmt.Errorf("ddl: %s is empty", name)
		}
		stmts = append(stmts, Statement{Name: path.Clean(name), SQL: text})
	}
	if len(stmts) == 0 {
		return nil, fmt.Errorf("ddl: no %s files embedded", dialect)
	}
	return stmts, nil
}

// loadLayers loads each directory in turn: the layers' order, lexical order within one.
func loadLayers(dirs ...string) ([]Statement, error) {
	var out []Statement
	for _, dir := range dirs {
		stmts, err := load(dir)
		if err != nil {
			return nil, err
		}
		out = append(out, stmts...)
	}
	return out, nil
}
