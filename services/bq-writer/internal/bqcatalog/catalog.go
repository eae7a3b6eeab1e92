// Package bqcatalog is bq-writer's BigQuery catalog: the datasets and the DDL of sql/bigquery
// (applied at start when allowed), the raw tables' schemas as the Storage Write API wants them,
// and schema evolution (a nullable column added before the first row that carries it). It talks
// to BigQuery's REST API through cloud.google.com/go/bigquery; the appends themselves are the
// backend's (package bqwh).
//
// The same code runs against BigQuery and the local emulator (bqemulator 1.4.0, see
// sql/README.md): where they differ (an ALTER TABLE that the emulator's tables.get does not show,
// a failed query job that looks like an empty result) the catalog takes the path that is right
// on both.
package bqcatalog

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"time"

	"cloud.google.com/go/bigquery"
	"cloud.google.com/go/bigquery/storage/apiv1/storagepb"
	"cloud.google.com/go/bigquery/storage/managedwriter/adapt"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/iterator"
	"google.golang.org/api/option"

	ddl "github.com/ecomstream/platform/sql"
)

// DefaultLocation is where the datasets are created when Config.Location is empty.
const DefaultLocation = "US"

// Config says which project and datasets the catalog manages and how to reach the API.
type Config struct {
	Project  string
	Datasets ddl.Datasets
	Location string                // default "US"
	Options  []option.ClientOption // REST endpoint, credentials
}

// Catalog manages one environment's datasets. It is safe for concurrent use.
type Catalog struct {
	cfg Config
	bq  *bigquery.Client
	// statements is the DDL Migrate applies; ddl.BigQuery outside tests.
	statements func(project string, ds ddl.Datasets) ([]ddl.Statement, error)
	// retryBase is the first backoff of a retried query job.
	retryBase time.Duration
	// evolveMu serialises AddColumns.
	evolveMu sync.Mutex
}

var (
	// Project and dataset ids are pasted into backquoted identifiers; table and column names too.
	projectRE = regexp.MustCompile(`^([a-z0-9.-]+:)?[a-z][a-z0-9-]{4,28}[a-z0-9]$`)
	datasetRE = regexp.MustCompile(`^[A-Za-z0-9_]+$`)
	identRE   = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,299}$`)
)

// New checks cfg and creates the REST client. It makes no call: Ping or Migrate do.
func New(ctx context.Context, cfg Config) (*Catalog, error) {
	if cfg.Project == "" {
		return nil, errors.New("bqcatalog: project is empty")
	}
	if !projectRE.MatchString(cfg.Project) {
		return nil, fmt.Errorf("bqcatalog: project id %q: want lower-case letters, digits and hyphens (optionally domain:project)", cfg.Project)
	}
	for _, d := range []struct{ name, id string }{
		{"raw", cfg.Datasets.Raw}, {"staging", cfg.Datasets.Staging}, {"prod", cfg.Datasets.Prod},
	} {
		if len(d.id) > 1024 || !datasetRE.MatchString(d.id) {
			return nil, fmt.Errorf("bqcatalog: %s dataset id %q: want letters, digits and underscores", d.name, d.id)
		}
	}
	if cfg.Location == "" {
		cfg.Location = DefaultLocation
	}
	bq, err := bigquery.NewClient(ctx, cfg.Project, cfg.Options...)
	if err != nil {
		return nil, fmt.Errorf("bqcatalog: BigQuery client: %w", err)
	}
	bq.Location = cfg.Location
	return &Catalog{cfg: cfg, bq: bq, statements: ddl.BigQuery, retryBase: time.Second}, nil
}

// Close releases the client.
func (c *Catalog) Close() error {
	if err := c.bq.Close(); err != nil {
		return fmt.Errorf("bqcatalog: close: %w", err)
	}
	return nil
}

// Ping reads the raw dataset's metadata: one cheap call that needs the endpoint, the credentials
// and the dataset.
func (c *Catalog) Ping(ctx context.Context) error {
	if _, err := c.bq.Dataset(c.cfg.Datasets.Raw).Metadata(ctx); err != nil {
		return fmt.Errorf("bqcatalog: ping (dataset %s.%s): %w", c.cfg.Project, c.cfg.Datasets.Raw, err)
	}
	return nil
}

// Migrate creates the three datasets in the configured location where they are absent, then
// applies the DDL (raw, staging, prod, each in lexical order) one file per query job, waiting for
// each. Every file is idempotent, so Migrate runs at every start.
func (c *Catalog) Migrate(ctx context.Context) error {
	for _, id := range []string{c.cfg.Datasets.Raw, c.cfg.Datasets.Staging, c.cfg.Datasets.Prod} {
		if err := c.ensureDataset(ctx, id); err != nil {
			return err
		}
	}
	stmts, err := c.statements(c.cfg.Project, c.cfg.Datasets)
	if err != nil {
		return fmt.Errorf("bqcatalog: DDL: %w", err)
	}
	for _, s := range stmts {
		if err := c.exec(ctx, s.SQL); err != nil {
			return fmt.Errorf("bqcatalog: apply %s: %w", s.Name, err)
		}
	}
	return nil
}

func (c *Catalog) ensureDataset(ctx context.Context, id string) error {
	ds := c.bq.Dataset(id)
	md, err := ds.Metadata(ctx)
	if err == nil {
		if !strings.EqualFold(md.Location, c.cfg.Location) {
			return fmt.Errorf("bqcatalog: dataset %s.%s is in location %q, want %q (BIGQUERY_LOCATION)", c.cfg.Project, id, md.Location, c.cfg.Location)
		}
		return nil
	}
	if !isStatus(err, http.StatusNotFound) {
		return fmt.Errorf("bqcatalog: dataset %s.%s: %w", c.cfg.Project, id, err)
	}
	err = ds.Create(ctx, &bigquery.DatasetMetadata{Location: c.cfg.Location})
	if err != nil && !isStatus(err, http.StatusConflict) { // 409: another writer created it first
		return fmt.Errorf("bqcatalog: create dataset %s.%s in %s: %w", c.cfg.Project, id, c.cfg.Location, err)
	}
	return nil
}

// Query jobs that fail for a reason that passes (quota on table updates when several writers
// evolve one table at once, concurrent DDL on one table, a backend error) are run again, up to
// maxJobAttempts times with capped, jittered backoff: every statement the catalog runs is
// idempotent.
const maxJobAttempts = 5

var transientReasons = map[string]bool{
	"backendError": true, "internalError": true, "rateLimitExceeded": true, "jobRateLimitExceeded": true,
}

// exec runs one query job (a statement or a script) and waits for it.
func (c *Catalog) exec(ctx context.Context, sql string) error {
	_, err := c.run(ctx, sql)
	return err
}

// run starts a query job and waits until it is done, retrying transient failures. The wait
// polls jobs.get rather than using Job.Wait: Wait polls jobs.getQueryResults, which the client
// retries on a job failed with rateLimitExceeded until the context ends, and a job's failure is
// in its status anyway. The emulator may report errors without an errorResult, so both are
// checked.
func (c *Catalog) run(ctx context.Context, sql string) (*bigquery.Job, error) {
	backoff := c.retryBase
	for attempt := 1; ; attempt++ {
		job, err := c.bq.Query(sql).Run(ctx)
		if err != nil {
			return nil, fmt.Errorf("start query job: %w", err)
		}
		err = c.await(ctx, job)
		if err == nil {
			return job, nil
		}
		if attempt == maxJobAttempts || !transientJobErr(err) {
			return nil, err
		}
		d := backoff/2 + rand.N(backoff/2+1)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w (retry abandoned: %w)", err, ctx.Err())
		case <-time.After(d):
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

const maxBackoff = 8 * time.Second

func (c *Catalog) await(ctx context.Context, job *bigquery.Job) error {
	poll := 20 * time.Millisecond
	for {
		st, err := job.Status(ctx)
		if err != nil {
			return fmt.Errorf("query job %s: %w", job.ID(), err)
		}
		if st.Done() {
			if err := jobErr(st); err != nil {
				return fmt.Errorf("query job %s: %w", job.ID(), err)
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("query job %s: %w", job.ID(), ctx.Err())
		case <-time.After(poll):
		}
		poll = min(2*poll, time.Second)
	}
}

func jobErr(st *bigquery.JobStatus) error {
	if err := st.Err(); err != nil {
		return err
	}
	if len(st.Errors) > 0 {
		errs := make([]error, len(st.Errors))
		for i, e := range st.Errors {
			errs[i] = e
		}
		return fmt.Errorf("job finished with errors: %w", errors.Join(errs...))
	}
	return nil
}

func transientJobErr(err error) bool {
	var e *bigquery.Error
	if errors.As(err, &e) {
		return transientReasons[e.Reason] || strings.Contains(e.Message, "concurrent update")
	}
	return false
}

// Query runs sql (a SELECT) as a query job and returns its rows as column-name maps. The job's
// status is checked before rows are read, so a failed query is an error, never an empty result.
func (c *Catalog) Query(ctx context.Context, sql string) ([]map[string]bigquery.Value, error) {
	job, err := c.run(ctx, sql)
	if err != nil {
		return nil, fmt.Errorf("bqcatalog: query: %w", err)
	}
	it, err := job.Read(ctx)
	if err != nil {
		return nil, fmt.Errorf("bqcatalog: read query job %s: %w", job.ID(), err)
	}
	var rows []map[string]bigquery.Value
	for {
		r := map[string]bigquery.Value{}
		err := it.Next(&r)
		if errors.Is(err, iterator.Done) {
			return rows, nil
		}
		if err != nil {
			return nil, fmt.Errorf("bqcatalog: read query job %s: %w", job.ID(), err)
		}
		rows = append(rows, r)
	}
}

// Schema returns a raw table's columns in the Storage Write API's form.
func (c *Catalog) Schema(ctx context.Context, table string) (*storagepb.TableSchema, error) {
	md, err := c.tableMetadata(ctx, table)
	if err != nil {
		return nil, err
	}
	return toStorage(table, md.Schema)
}

func (c *Catalog) tableMetadata(ctx context.Context, table string) (*bigquery.TableMetadata, error) {
	if !identRE.MatchString(table) {
		return nil, fmt.Errorf("bqcatalog: invalid table name %q", table)
	}
	md, err := c.bq.Dataset(c.cfg.Datasets.Raw).Table(table).Metadata(ctx)
	if err != nil {
		return nil, fmt.Errorf("bqcatalog: table %s.%s.%s: %w", c.cfg.Project, c.cfg.Datasets.Raw, table, err)
	}
	return md, nil
}

func toStorage(table string, s bigquery.Schema) (*storagepb.TableSchema, error) {
	ts, err := adapt.BQSchemaToStorageTableSchema(s)
	if err != nil {
		return nil, fmt.Errorf("bqcatalog: schema of %s: %w", table, err)
	}
	return ts, nil
}

// isStatus says whether err is a REST error with that HTTP status.
func isStatus(err error, code int) bool {
	var e *googleapi.Error
	return errors.As(err, &e) && e.Code == code
}
