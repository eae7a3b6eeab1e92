package bqcatalog

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"cloud.google.com/go/bigquery"
	"cloud.google.com/go/bigquery/storage/apiv1/storagepb"
	bq "google.golang.org/api/bigquery/v2"

	"github.com/ecomstream/platform/services/bq-writer/internal/bqfake"
	ddl "github.com/ecomstream/platform/sql"
)

const project = "ecom-test"

var datasets = ddl.Datasets{Raw: "t_raw", Staging: "t_staging", Prod: "t_prod"}

func newCatalog(t *testing.T, alterHidden bool) (*Catalog, *bqfake.REST) {
	t.Helper()
	f := bqfake.NewREST(alterHidden)
	t.Cleanup(f.Close)
	c, err := New(context.Background(), Config{Project: project, Datasets: datasets, Options: f.ClientOptions()})
	if err != nil {
		t.Fatal(err)
	}
	c.retryBase = time.Millisecond
	t.Cleanup(func() { _ = c.Close() })
	return c, f
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// fixed returns a statements source with these files.
func fixed(stmts ...ddl.Statement) func(string, ddl.Datasets) ([]ddl.Statement, error) {
	return func(string, ddl.Datasets) ([]ddl.Statement, error) { return stmts, nil }
}

var threeFiles = []ddl.Statement{
	{Name: "bigquery/raw/fact_events.sql", SQL: "CREATE TABLE IF NOT EXISTS `ecom-test.t_raw.fact_events` (event_id STRING NOT NULL, n INT64)"},
	{Name: "bigquery/staging/fact_events.sql", SQL: "CREATE OR REPLACE VIEW `ecom-test.t_staging.fact_events` AS SELECT * FROM `ecom-test.t_raw.fact_events`"},
	{Name: "bigquery/prod/fact_events.sql", SQL: "CREATE OR REPLACE VIEW `ecom-test.t_prod.fact_events` AS SELECT * FROM `ecom-test.t_staging.fact_events`"},
}

func TestNewRejectsBadConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{name: "no project", cfg: Config{Datasets: datasets}, want: "project is empty"},
		{name: "backquote in project", cfg: Config{Project: "ecom`x", Datasets: datasets}, want: "project id"},
		{name: "empty raw", cfg: Config{Project: project, Datasets: ddl.Datasets{Staging: "s", Prod: "p"}}, want: "raw dataset id"},
		{name: "backquote in prod", cfg: Config{Project: project, Datasets: ddl.Datasets{Raw: "r", Staging: "s", Prod: "p`x"}}, want: "prod dataset id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(context.Background(), tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New: %v, want %q", err, tt.want)
			}
		})
	}
}

func TestMigrateOrderAndIdempotence(t *testing.T) {
	ctx := testCtx(t)
	c, f := newCatalog(t, false)
	c.statements = fixed(threeFiles...)
	for i := 0; i < 2; i++ {
		if err := c.Migrate(ctx); err != nil {
			t.Fatalf("Migrate %d: %v", i+1, err)
		}
	}
	var want []string
	for i := 0; i < 2; i++ {
		for _, s := range threeFiles {
			want = append(want, s.SQL)
		}
	}
	if got := f.SQL(); !slices.Equal(got, want) {
		t.Fatalf("jobs\n%q\nwant\n%q", got, want)
	}
	if n := f.Count("POST datasets"); n != 3 {
		t.Fatalf("%d datasets.insert, want 3 (the second Migrate finds them)", n)
	}
	for _, d := range []string{datasets.Raw, datasets.Staging, datasets.Prod} {
		if md := f.Dataset(project, d); md == nil || md.Location != DefaultLocation {
			t.Fatalf("dataset %s: %+v, want location %s", d, md, DefaultLocation)
		}
	}
	if v := f.Table(project, datasets.Prod, "fact_events"); v == nil || v.Type != "VIEW" {
		t.Fatalf("prod.fact_events: %+v", v)
	}
	if err := c.Ping(ctx); err != nil {
		t.Fatalf("Ping after Migrate: %v", err)
	}
}

// The repository's DDL, through the fake's DDL reading: every file applies, and the raw
// fact_events has the columns of the file.
func TestMigrateRepositoryDDL(t *testing.T) {
	ctx := testCtx(t)
	c, f := newCatalog(t, false)
	if err := c.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	stmts, err := ddl.BigQuery(project, datasets)
	if err != nil {
		t.Fatal(err)
	}
	if got := f.SQL(); len(got) != len(stmts) {
		t.Fatalf("%d jobs, want one per file (%d)", len(got), len(stmts))
	}
	ts, err := c.Schema(ctx, "fact_events")
	if err != nil {
		t.Fatal(err)
	}
	first, last := ts.GetFields()[0], ts.GetFields()[len(ts.GetFields())-1]
	if first.GetName() != "event_id" || first.GetMode() != storagepb.TableFieldSchema_REQUIRED || first.GetType() != storagepb.TableFieldSchema_STRING {
		t.Fatalf("first column %v", first)
	}
	if last.GetName() != "dq_warnings" || last.GetMode() != storagepb.TableFieldSchema_NULLABLE {
		t.Fatalf("last column %v", last)
	}
}

func TestMigrateFailures(t *testing.T) {
	tests := []struct {
		name    string
		hooks   func(*atomic.Int32) bqfake.RESTHooks
		setup   func(*bqfake.REST)
		wantErr []string // substrings; empty = success
		wantSQL int      // jobs sent
	}{
		{
			name: "a failed statement names its file",
			hooks: func(*atomic.Int32) bqfake.RESTHooks {
				return bqfake.RESTHooks{FailJob: func(sql string) *bq.ErrorProto {
					if strings.Contains(sql, "t_staging") && strings.HasPrefix(sql, "CREATE") {
						return bqfake.JobError("invalidQuery", "Syntax error: Unexpected keyword VIEW at [1:19]")
					}
					return nil
				}}
			},
			wantErr: []string{"bigquery/staging/fact_events.sql", "Unexpected keyword VIEW"},
			wantSQL: 2, // prod is not attempted
		},
		{
			name: "a job failed on a table-update quota is run again",
			hooks: func(n *atomic.Int32) bqfake.RESTHooks {
				return bqfake.RESTHooks{FailJob: func(sql string) *bq.ErrorProto {
					if strings.Contains(sql, "t_raw") && n.Add(1) <= 2 {
						return bqfake.JobError("rateLimitExceeded", "Exceeded rate limits: too many table update operations for this table")
					}
					return nil
				}}
			},
			wantSQL: 5, // raw three times, staging, prod
		},
		{
			name: "a job failing on concurrent DDL is run again",
			hooks: func(n *atomic.Int32) bqfake.RESTHooks {
				return bqfake.RESTHooks{FailJob: func(sql string) *bq.ErrorProto {
					if strings.Contains(sql, "VIEW `ecom-test.t_prod") && n.Add(1) == 1 {
						return bqfake.JobError("invalidQuery", "Transaction is aborted due to concurrent update against table ecom-test:t_prod.fact_events")
					}
					return nil
				}}
			},
			wantSQL: 4,
		},
		{
			name: "a transient failure that persists gives up after the attempts",
			hooks: func(*atomic.Int32) bqfake.RESTHooks {
				return bqfake.RESTHooks{FailJob: func(sql string) *bq.ErrorProto {
					return bqfake.JobError("backendError", "Backend error. Job aborted.")
				}}
			},
			wantErr: []string{"bigquery/raw/fact_events.sql", "Backend error"},
			wantSQL: maxJobAttempts,
		},
		{
			name: "one 500 on jobs.insert is retried (the client's job id makes it idempotent)",
			hooks: func(n *atomic.Int32) bqfake.RESTHooks {
				return bqfake.RESTHooks{HTTP: func(r *http.Request) int {
					if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/jobs") && n.Add(1) == 1 {
						return http.StatusInternalServerError
					}
					return 0
				}}
			},
			wantSQL: 3,
		},
		{
			name: "one 503 on datasets.get is retried by the client",
			hooks: func(n *atomic.Int32) bqfake.RESTHooks {
				return bqfake.RESTHooks{HTTP: func(r *http.Request) int {
					if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/datasets/") && n.Add(1) == 1 {
						return http.StatusServiceUnavailable
					}
					return 0
				}}
			},
			wantSQL: 3,
		},
		{
			name: "datasets.insert refused",
			hooks: func(*atomic.Int32) bqfake.RESTHooks {
				return bqfake.RESTHooks{HTTP: func(r *http.Request) int {
					if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/datasets") {
						return http.StatusForbidden
					}
					return 0
				}}
			},
			wantErr: []string{"create dataset ecom-test.t_raw in US", "403"},
		},
		{
			name: "a dataset in another location",
			setup: func(f *bqfake.REST) {
				c, err := bigquery.NewClient(context.Background(), project, f.ClientOptions()...)
				if err == nil {
					err = c.Dataset(datasets.Staging).Create(context.Background(), &bigquery.DatasetMetadata{Location: "EU"})
					_ = c.Close()
				}
				if err != nil {
					panic(err)
				}
			},
			wantErr: []string{"t_staging is in location \"EU\", want \"US\"", "BIGQUERY_LOCATION"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testCtx(t)
			c, f := newCatalog(t, false)
			c.statements = fixed(threeFiles...)
			if tt.setup != nil {
				tt.setup(f)
			}
			var n atomic.Int32
			if tt.hooks != nil {
				f.SetHooks(tt.hooks(&n))
			}
			err := c.Migrate(ctx)
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatalf("Migrate: %v", err)
				}
			} else {
				if err == nil {
					t.Fatal("Migrate: no error")
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Fatalf("Migrate: %v, want it to contain %q", err, w)
					}
				}
			}
			if got := len(f.SQL()); got != tt.wantSQL {
				t.Fatalf("%d jobs sent, want %d", got, tt.wantSQL)
			}
		})
	}
}

func col(name string, typ storagepb.TableFieldSchema_Type) *storagepb.TableFieldSchema {
	return &storagepb.TableFieldSchema{Name: name, Type: typ, Mode: storagepb.TableFieldSchema_NULLABLE}
}

func names(ts *storagepb.TableSchema) string {
	var out []string
	for _, f := range ts.GetFields() {
		out = append(out, f.GetName())
	}
	return strings.Join(out, ",")
}

func TestAddColumns(t *testing.T) {
	tests := []struct {
		name        string
		alterHidden bool
		conflicts   int32 // tables.patch calls preceded by a concurrent change
		cols        []*storagepb.TableFieldSchema
		wantErr     string
		wantCols    string
		wantPatches int
		wantAlters  int
	}{
		{name: "ALTER is enough (BigQuery)", cols: []*storagepb.TableFieldSchema{col("note", storagepb.TableFieldSchema_STRING), col("n2", storagepb.TableFieldSchema_INT64)},
			wantCols: "event_id,n,note,n2", wantAlters: 2},
		{name: "ALTER then patch (the emulator)", alterHidden: true, cols: []*storagepb.TableFieldSchema{col("note", storagepb.TableFieldSchema_STRING)},
			wantCols: "event_id,n,note", wantPatches: 1, wantAlters: 1},
		{name: "column there already, other case: nothing changed", cols: []*storagepb.TableFieldSchema{col("N", storagepb.TableFieldSchema_INT64)},
			wantCols: "event_id,n"},
		{name: "one new, one there: one ALTER", cols: []*storagepb.TableFieldSchema{col("n", storagepb.TableFieldSchema_INT64), col("note", storagepb.TableFieldSchema_STRING)},
			wantCols: "event_id,n,note", wantAlters: 1},
		{name: "etag conflict retried once", alterHidden: true, conflicts: 1, cols: []*storagepb.TableFieldSchema{col("note", storagepb.TableFieldSchema_STRING)},
			wantCols: "event_id,n,note", wantPatches: 1, wantAlters: 1},
		{name: "etag conflict twice fails", alterHidden: true, conflicts: 2, cols: []*storagepb.TableFieldSchema{col("note", storagepb.TableFieldSchema_STRING)},
			wantErr: "412", wantAlters: 1},
		{name: "existing column of another type", cols: []*storagepb.TableFieldSchema{col("n", storagepb.TableFieldSchema_STRING)},
			wantErr: "column n is NULLABLE INT64, want NULLABLE STRING"},
		{name: "required column refused", cols: []*storagepb.TableFieldSchema{{Name: "x", Type: storagepb.TableFieldSchema_STRING, Mode: storagepb.TableFieldSchema_REQUIRED}},
			wantErr: "must be NULLABLE or REPEATED"},
		{name: "bad column name refused", cols: []*storagepb.TableFieldSchema{col("x`; DROP", storagepb.TableFieldSchema_STRING)},
			wantErr: "invalid column name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testCtx(t)
			c, f := newCatalog(t, tt.alterHidden)
			c.statements = fixed(threeFiles...)
			if err := c.Migrate(ctx); err != nil {
				t.Fatal(err)
			}
			before := len(f.SQL())
			var conflicts atomic.Int32
			f.SetHooks(bqfake.RESTHooks{BeforePatch: func(path string) {
				if conflicts.Add(1) <= tt.conflicts {
					f.Touch(path)
				}
			}})
			ts, err := c.AddColumns(ctx, "fact_events", tt.cols)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("AddColumns: %v, want %q", err, tt.wantErr)
				}
			} else {
				if err != nil {
					t.Fatal(err)
				}
				if got := names(ts); got != tt.wantCols {
					t.Fatalf("schema %s, want %s", got, tt.wantCols)
				}
				again, err := c.Schema(ctx, "fact_events")
				if err != nil || names(again) != tt.wantCols {
					t.Fatalf("Schema after: %s, %v", names(again), err)
				}
			}
			if got := len(f.Patches()); got != tt.wantPatches {
				t.Fatalf("%d patches, want %d", got, tt.wantPatches)
			}
			alters := f.SQL()[before:]
			if len(alters) != tt.wantAlters {
				t.Fatalf("%d ALTER jobs %q, want %d", len(alters), alters, tt.wantAlters)
			}
			for _, a := range alters {
				if !strings.HasPrefix(a, "ALTER TABLE `ecom-test.t_raw.fact_events` ADD COLUMN IF NOT EXISTS `") {
					t.Fatalf("job %q", a)
				}
			}
			if tt.wantErr == "" {
				// A second call finds the columns: no ALTER, no patch.
				jobs := len(f.SQL())
				if _, err := c.AddColumns(ctx, "fact_events", tt.cols); err != nil {
					t.Fatal(err)
				}
				if got := len(f.Patches()); got != tt.wantPatches || len(f.SQL()) != jobs {
					t.Fatalf("second call changed the table: %d patches, %d new jobs", got, len(f.SQL())-jobs)
				}
			}
		})
	}
}

func TestColumnType(t *testing.T) {
	tests := []struct {
		name    string
		give    *storagepb.TableFieldSchema
		want    string
		wantErr string
	}{
		{name: "string", give: col("a", storagepb.TableFieldSchema_STRING), want: "STRING"},
		{name: "double", give: col("a", storagepb.TableFieldSchema_DOUBLE), want: "FLOAT64"},
		{name: "repeated", give: &storagepb.TableFieldSchema{Name: "a", Type: storagepb.TableFieldSchema_INT64, Mode: storagepb.TableFieldSchema_REPEATED}, want: "ARRAY<INT64>"},
		{name: "struct", give: &storagepb.TableFieldSchema{Name: "a", Type: storagepb.TableFieldSchema_STRUCT, Fields: []*storagepb.TableFieldSchema{
			col("x", storagepb.TableFieldSchema_TIMESTAMP), {Name: "y", Type: storagepb.TableFieldSchema_BOOL, Mode: storagepb.TableFieldSchema_REPEATED},
		}}, want: "STRUCT<`x` TIMESTAMP, `y` ARRAY<BOOL>>"},
		{name: "struct with a required field", give: &storagepb.TableFieldSchema{Name: "a", Type: storagepb.TableFieldSchema_STRUCT, Fields: []*storagepb.TableFieldSchema{
			{Name: "x", Type: storagepb.TableFieldSchema_STRING, Mode: storagepb.TableFieldSchema_REQUIRED},
		}}, wantErr: "a.column x is REQUIRED"},
		{name: "empty struct", give: col("a", storagepb.TableFieldSchema_STRUCT), wantErr: "STRUCT without fields"},
		{name: "unknown type", give: col("a", storagepb.TableFieldSchema_TYPE_UNSPECIFIED), wantErr: "which ADD COLUMN cannot take"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := columnType(tt.give)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("columnType: %q, %v; want error %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("columnType = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestQuery(t *testing.T) {
	ctx := testCtx(t)
	c, f := newCatalog(t, false)
	f.AddResult(bqfake.Result{
		Match:  "FROM `ecom-test.t_prod.fact_events`",
		Schema: &bq.TableSchema{Fields: []*bq.TableFieldSchema{{Name: "event_id", Type: "STRING"}, {Name: "n", Type: "INTEGER"}}},
		Rows:   [][]any{{"e1", 1}, {"e2", nil}},
	})
	f.SetHooks(bqfake.RESTHooks{FailJob: func(sql string) *bq.ErrorProto {
		if strings.Contains(sql, "missing") {
			return bqfake.JobError("notFound", "Not found: Table ecom-test:t_prod.missing")
		}
		return nil
	}})
	rows, err := c.Query(ctx, "SELECT event_id, n FROM `ecom-test.t_prod.fact_events` ORDER BY event_id")
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 || rows[0]["event_id"] != "e1" || rows[0]["n"] != int64(1) || rows[1]["n"] != nil {
		t.Fatalf("rows %v", rows)
	}
	rows, err = c.Query(ctx, "SELECT * FROM `ecom-test.t_prod.missing`")
	if err == nil || !strings.Contains(err.Error(), "Not found: Table") {
		t.Fatalf("a failing query: %v, %v; want its error, not an empty result", rows, err)
	}
}

func TestPingAndSchemaErrors(t *testing.T) {
	ctx := testCtx(t)
	c, _ := newCatalog(t, false)
	if err := c.Ping(ctx); err == nil || !strings.Contains(err.Error(), "ping (dataset ecom-test.t_raw)") {
		t.Fatalf("Ping before Migrate: %v", err)
	}
	c.statements = fixed(threeFiles...)
	if err := c.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	tests := []struct{ table, want string }{
		{table: "nope", want: "404"},
		{table: "a.b", want: "invalid table name"},
	}
	for _, tt := range tests {
		if _, err := c.Schema(ctx, tt.table); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Fatalf("Schema(%q): %v, want %q", tt.table, err, tt.want)
		}
	}
}

// The contract's bqwh.Catalog (package bqwh imports this one's users, not this package, so the
// interface is restated here).
var _ interface {
	Migrate(ctx context.Context) error
	Ping(ctx context.Context) error
	Schema(ctx context.Context, table string) (*storagepb.TableSchema, error)
	AddColumns(ctx context.Context, table string, cols []*storagepb.TableFieldSchema) (*storagepb.TableSchema, error)
} = (*Catalog)(nil)

// Partitions that discover the same new field at once cost one ALTER and one patch.
func TestAddColumnsConcurrent(t *testing.T) {
	ctx := testCtx(t)
	c, f := newCatalog(t, true)
	c.statements = fixed(threeFiles...)
	if err := c.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	before := len(f.SQL())
	errs := make(chan error, 8)
	for range 8 {
		go func() {
			ts, err := c.AddColumns(ctx, "fact_events", []*storagepb.TableFieldSchema{col("note", storagepb.TableFieldSchema_STRING)})
			if err == nil && names(ts) != "event_id,n,note" {
				err = fmt.Errorf("schema %s", names(ts))
			}
			errs <- err
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if alters, patches := len(f.SQL())-before, len(f.Patches()); alters != 1 || patches != 1 {
		t.Fatalf("%d ALTERs and %d patches, want 1 and 1", alters, patches)
	}
}
