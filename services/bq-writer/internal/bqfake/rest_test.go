package bqfake_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"cloud.google.com/go/bigquery"
	bq "google.golang.org/api/bigquery/v2"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/iterator"

	"github.com/ecomstream/platform/services/bq-writer/internal/bqfake"
)

const restProject = "ecom-test"

func newRESTClient(t *testing.T, alterHidden bool) (*bqfake.REST, *bigquery.Client) {
	t.Helper()
	f := bqfake.NewREST(alterHidden)
	t.Cleanup(f.Close)
	c, err := bigquery.NewClient(context.Background(), restProject, f.ClientOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return f, c
}

func httpCode(err error) int {
	var e *googleapi.Error
	if errors.As(err, &e) {
		return e.Code
	}
	return 0
}

func run(ctx context.Context, c *bigquery.Client, sql string) error {
	job, err := c.Query(sql).Run(ctx)
	if err != nil {
		return err
	}
	st, err := job.Wait(ctx)
	if err != nil {
		return err
	}
	return st.Err()
}

func TestRESTDatasets(t *testing.T) {
	ctx := context.Background()
	f, c := newRESTClient(t, false)
	ds := c.Dataset("raw")
	if _, err := ds.Metadata(ctx); httpCode(err) != http.StatusNotFound {
		t.Fatalf("get of a missing dataset: %v, want 404", err)
	}
	if err := ds.Create(ctx, &bigquery.DatasetMetadata{Location: "EU"}); err != nil {
		t.Fatal(err)
	}
	if err := ds.Create(ctx, &bigquery.DatasetMetadata{Location: "EU"}); httpCode(err) != http.StatusConflict {
		t.Fatalf("second insert: %v, want 409", err)
	}
	md, err := ds.Metadata(ctx)
	if err != nil || md.Location != "EU" {
		t.Fatalf("get: %+v, %v; want location EU", md, err)
	}
	if got := f.Dataset(restProject, "raw"); got == nil || got.Location != "EU" {
		t.Fatalf("Dataset() = %+v", got)
	}
	if err := ds.DeleteWithContents(ctx); err != nil {
		t.Fatal(err)
	}
	if f.Dataset(restProject, "raw") != nil {
		t.Fatal("dataset still there after delete")
	}
}

func TestRESTTablesAndETag(t *testing.T) {
	ctx := context.Background()
	f, c := newRESTClient(t, false)
	if err := c.Dataset("raw").Create(ctx, nil); err != nil {
		t.Fatal(err)
	}
	tbl := c.Dataset("raw").Table("t")
	schema := bigquery.Schema{{Name: "id", Type: bigquery.IntegerFieldType, Required: true}}
	if err := tbl.Create(ctx, &bigquery.TableMetadata{Schema: schema, Clustering: &bigquery.Clustering{Fields: []string{"id"}}}); err != nil {
		t.Fatal(err)
	}
	md, err := tbl.Metadata(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(md.Schema) != 1 || !md.Schema[0].Required || md.Clustering == nil || md.ETag == "" {
		t.Fatalf("metadata %+v", md)
	}
	add := append(append(bigquery.Schema{}, md.Schema...), &bigquery.FieldSchema{Name: "note", Type: bigquery.StringFieldType})
	tests := []struct {
		name     string
		schema   bigquery.Schema
		etag     string
		wantCode int
	}{
		{name: "stale etag", schema: add, etag: `"not-it"`, wantCode: http.StatusPreconditionFailed},
		{name: "drops a column", schema: bigquery.Schema{{Name: "note", Type: bigquery.StringFieldType}}, etag: md.ETag, wantCode: http.StatusBadRequest},
		{name: "adds a required column", schema: append(bigquery.Schema{md.Schema[0]}, &bigquery.FieldSchema{Name: "x", Type: bigquery.StringFieldType, Required: true}), etag: md.ETag, wantCode: http.StatusBadRequest},
		{name: "adds a nullable column", schema: add, etag: md.ETag},
		{name: "old etag after the change", schema: add, etag: md.ETag, wantCode: http.StatusPreconditionFailed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tbl.Update(ctx, bigquery.TableMetadataToUpdate{Schema: tt.schema}, tt.etag)
			if code := httpCode(err); code != tt.wantCode {
				t.Fatalf("patch: %v (code %d), want code %d", err, code, tt.wantCode)
			}
			if tt.wantCode == 0 && (len(got.Schema) != 2 || got.ETag == md.ETag) {
				t.Fatalf("patched %d columns, etag %s (was %s)", len(got.Schema), got.ETag, md.ETag)
			}
		})
	}
	if p := f.Patches(); len(p) != 1 || p[0] != restProject+".raw.t" {
		t.Fatalf("Patches() = %v", p)
	}
}

func TestRESTDDL(t *testing.T) {
	tests := []struct {
		name        string
		alterHidden bool
		sql         []string
		wantErr     string
		wantCols    string // "name:TYPE:MODE ..." of raw.t after the statements
	}{
		{
			name: "create with comments, NOT NULL, arrays and a semicolon in a description",
			sql: []string{"-- a comment; with a semicolon\nCREATE TABLE IF NOT EXISTS `ecom-test.raw.t` (\n" +
				"  id INT64 NOT NULL OPTIONS (description = 'the id; it''s required'),\n  tags ARRAY<STRING>,\n" +
				"  s STRUCT<a INT64, b STRING>\n) PARTITION BY DATE(ts) OPTIONS (description = 'x');"},
			wantCols: "id:INTEGER:REQUIRED tags:STRING:REPEATED s:RECORD:NULLABLE",
		},
		{
			name: "create twice with IF NOT EXISTS, alter visible (BigQuery)",
			sql: []string{"CREATE TABLE IF NOT EXISTS `ecom-test.raw.t` (id INT64 NOT NULL)",
				"CREATE TABLE IF NOT EXISTS `ecom-test.raw.t` (other STRING)",
				"ALTER TABLE `ecom-test.raw.t` ADD COLUMN IF NOT EXISTS note STRING; ALTER TABLE `ecom-test.raw.t` ADD COLUMN IF NOT EXISTS note STRING"},
			wantCols: "id:INTEGER:REQUIRED note:STRING:NULLABLE",
		},
		{
			name:        "alter hidden (the emulator)",
			alterHidden: true,
			sql: []string{"CREATE TABLE `ecom-test.raw.t` (id INT64)",
				"ALTER TABLE `ecom-test.raw.t` ADD COLUMN IF NOT EXISTS note STRING"},
			wantCols: "id:INTEGER:NULLABLE",
		},
		{
			name:     "create without IF NOT EXISTS twice",
			sql:      []string{"CREATE TABLE `ecom-test.raw.t` (id INT64)", "CREATE TABLE `ecom-test.raw.t` (id INT64)"},
			wantErr:  "Already Exists",
			wantCols: "id:INTEGER:NULLABLE",
		},
		{
			name:    "missing dataset",
			sql:     []string{"CREATE TABLE `ecom-test.nope.t` (id INT64)"},
			wantErr: "Not found: Dataset ecom-test:nope",
		},
		{
			name:     "alter adding an existing column without IF NOT EXISTS",
			sql:      []string{"CREATE TABLE `ecom-test.raw.t` (id INT64)", "ALTER TABLE `ecom-test.raw.t` ADD COLUMN id INT64"},
			wantErr:  "Column already exists",
			wantCols: "id:INTEGER:NULLABLE",
		},
		{
			name:     "views are recorded",
			sql:      []string{"CREATE TABLE `ecom-test.raw.t` (id INT64)", "CREATE OR REPLACE VIEW `ecom-test.raw.v` AS SELECT 1; CREATE OR REPLACE VIEW `ecom-test.raw.v` AS SELECT 2"},
			wantCols: "id:INTEGER:NULLABLE",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			f, c := newRESTClient(t, tt.alterHidden)
			if err := c.Dataset("raw").Create(ctx, nil); err != nil {
				t.Fatal(err)
			}
			var err error
			for _, s := range tt.sql {
				if err = run(ctx, c, s); err != nil {
					break
				}
			}
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("error %v, want %q", err, tt.wantErr)
			}
			if got := f.SQL(); len(got) != len(tt.sql) && err == nil {
				t.Fatalf("recorded %d jobs, want %d", len(got), len(tt.sql))
			}
			tbl := f.Table(restProject, "raw", "t")
			if tt.wantCols == "" {
				if tbl != nil {
					t.Fatal("table created")
				}
				return
			}
			var cols []string
			for _, fs := range tbl.Schema.Fields {
				cols = append(cols, fs.Name+":"+fs.Type+":"+fs.Mode)
			}
			if got := strings.Join(cols, " "); got != tt.wantCols {
				t.Fatalf("columns %q, want %q", got, tt.wantCols)
			}
			if strings.Contains(tt.name, "views") {
				if v := f.Table(restProject, "raw", "v"); v == nil || v.Type != "VIEW" {
					t.Fatalf("view: %+v", v)
				}
			}
			if strings.Contains(tt.name, "semicolon") && tbl.Schema.Fields[0].Description != "the id; it's required" {
				t.Fatalf("description %q", tbl.Schema.Fields[0].Description)
			}
		})
	}
}

func TestRESTFaults(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	f, c := newRESTClient(t, false)
	if err := c.Dataset("raw").Create(ctx, nil); err != nil {
		t.Fatal(err)
	}
	var failed atomic.Int32
	f.SetHooks(bqfake.RESTHooks{
		HTTP: func(r *http.Request) int {
			if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/datasets/raw") && failed.Add(1) == 1 {
				return http.StatusServiceUnavailable
			}
			return 0
		},
		FailJob: func(sql string) *bq.ErrorProto {
			if strings.Contains(sql, "boom") {
				return bqfake.JobError("invalidQuery", "Syntax error: boom")
			}
			return nil
		},
	})
	// The client retries a 503 on a GET.
	if _, err := c.Dataset("raw").Metadata(ctx); err != nil {
		t.Fatalf("get after one 503: %v", err)
	}
	if n := f.Count("GET datasets"); n != 2 {
		t.Fatalf("GET datasets served %d times, want 2 (503, then the retry)", n)
	}
	// A failed job: DONE with errorResult; reading its results is an error, not empty rows.
	job, err := c.Query("SELECT boom").Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := job.Wait(ctx); err == nil || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("Wait of a failed job: %v, want the job's error", err)
	}
	st, err := job.Status(ctx)
	if err != nil || st.Err() == nil || !strings.Contains(st.Err().Error(), "boom") {
		t.Fatalf("status %+v, %v; want errorResult boom", st, err)
	}
	if _, err := c.Query("SELECT boom").Read(ctx); err == nil {
		t.Fatal("jobs.query of a failing query: no error")
	}
}

func TestRESTResults(t *testing.T) {
	ctx := context.Background()
	f, c := newRESTClient(t, false)
	f.AddResult(bqfake.Result{
		Match: "FROM x",
		Schema: &bq.TableSchema{Fields: []*bq.TableFieldSchema{
			{Name: "n", Type: "INTEGER"}, {Name: "s", Type: "STRING"},
		}},
		Rows: [][]any{{1, "a"}, {2, nil}},
	})
	for _, how := range []string{"jobs.query", "jobs.insert"} {
		t.Run(how, func(t *testing.T) {
			q := c.Query("SELECT n, s FROM x")
			var it *bigquery.RowIterator
			var err error
			if how == "jobs.query" {
				it, err = q.Read(ctx)
			} else {
				var job *bigquery.Job
				if job, err = q.Run(ctx); err == nil {
					it, err = job.Read(ctx)
				}
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for {
				var r []bigquery.Value
				err := it.Next(&r)
				if errors.Is(err, iterator.Done) {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, fmt.Sprint(r[0], " ", r[1]))
			}
			if strings.Join(got, ",") != "1 a,2 <nil>" {
				t.Fatalf("rows %q", got)
			}
		})
	}
	// A query without a registered result answers no rows.
	it, err := c.Query("SELECT 1 FROM elsewhere").Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var r []bigquery.Value
	if err := it.Next(&r); !errors.Is(err, iterator.Done) {
		t.Fatalf("unregistered query: %v %v, want no rows", r, err)
	}
	if n := f.Count("POST queries"); n != 2 {
		t.Fatalf("POST queries %d, want 2", n)
	}
}
