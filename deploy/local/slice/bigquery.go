package slice

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"cloud.google.com/go/bigquery"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/iterator"
	"google.golang.org/api/option"
)

// Emulator defaults: deploy/local/stack.sh's component bqemulator, whose
// addresses `stack.sh env` exports as BIGQUERY_EMULATOR_REST and
// BIGQUERY_EMULATOR_GRPC.
const (
	DefaultEmulatorREST    = "http://127.0.0.1:19050"
	DefaultEmulatorGRPC    = "127.0.0.1:19060"
	DefaultEmulatorProject = "ecom-local"
)

// EmulatorHint says how to get the emulator; it ends every "not reachable" error.
const EmulatorHint = "start the local stack (it runs the BigQuery emulator, component bqemulator) with: deploy/local/stack.sh up, " +
	"and export what `deploy/local/stack.sh env` prints (BIGQUERY_EMULATOR_REST, BIGQUERY_EMULATOR_GRPC); " +
	"if it runs but does not answer, it is deadlocked (a query met an append): deploy/local/stack.sh down bqemulator, then up bqemulator"

// BigQueryOptions run the slice's bq-writer with WAREHOUSE=bigquery against
// the BigQuery emulator, in datasets of the slice's own.
type BigQueryOptions struct {
	REST    string // the emulator's REST root, e.g. http://127.0.0.1:19050
	GRPC    string // its Storage Write API, host:port
	Project string // "" = DefaultEmulatorProject
	// DatasetPrefix names the datasets <prefix>_raw, _staging and _prod;
	// "" = a random one (bqslice_<hex>), so runs never share tables.
	DatasetPrefix string
}

// EmulatorFromEnv is the emulator of `stack.sh env` (BIGQUERY_EMULATOR_REST,
// BIGQUERY_EMULATOR_GRPC), defaulting to the stack's fixed ports.
func EmulatorFromEnv() BigQueryOptions {
	get := func(key, def string) string {
		if v := strings.TrimSpace(os.Getenv(key)); v != "" {
			return v
		}
		return def
	}
	return BigQueryOptions{REST: strings.TrimRight(get("BIGQUERY_EMULATOR_REST", DefaultEmulatorREST), "/"),
		GRPC: get("BIGQUERY_EMULATOR_GRPC", DefaultEmulatorGRPC), Project: DefaultEmulatorProject}
}

// CheckEmulator lists the project's datasets over REST and says how to start
// the emulator when that fails.
func CheckEmulator(ctx context.Context, o BigQueryOptions) error {
	if o.Project == "" {
		o.Project = DefaultEmulatorProject
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	url := strings.TrimRight(o.REST, "/") + "/bigquery/v2/projects/" + o.Project + "/datasets"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err == nil {
		err = getOK(req)
	}
	if err != nil {
		return fmt.Errorf("BigQuery emulator not reachable at %s (%v); %s", o.REST, err, EmulatorHint)
	}
	return nil
}

func getOK(req *http.Request) error {
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", req.URL, resp.Status)
	}
	return nil
}

// BigQuery is a running slice's warehouse on the emulator: its datasets and
// a query client on the emulator's REST endpoint, without credentials.
type BigQuery struct {
	Project            string
	Raw, Staging, Prod string // dataset names
	Client             *bigquery.Client
}

// bigQueryEnv is bq-writer's environment for o.
func bigQueryEnv(o BigQueryOptions) []string {
	return []string{"WAREHOUSE=bigquery", "BIGQUERY_EMULATOR=true", "BIGQUERY_PROJECT=" + o.Project,
		"BIGQUERY_DATASET_PREFIX=" + o.DatasetPrefix, "BIGQUERY_API_ENDPOINT=" + o.REST, "BIGQUERY_STORAGE_ENDPOINT=" + o.GRPC}
}

// addBigQuery fills the options' defaults, adds bq-writer's environment and
// opens the query client (no request is sent until a query).
func (s *Slice) addBigQuery(env map[string][]string) error {
	o := *s.Opts.BigQuery
	if o.Project == "" {
		o.Project = DefaultEmulatorProject
	}
	if o.DatasetPrefix == "" {
		o.DatasetPrefix = "bqslice_" + randomHex(6)
	}
	if o.REST == "" || o.GRPC == "" {
		return errors.New("slice: BigQueryOptions needs REST and GRPC (EmulatorFromEnv gives the stack's)")
	}
	o.REST = strings.TrimRight(o.REST, "/")
	s.Opts.BigQuery = &o
	cl, err := bigquery.NewClient(context.Background(), o.Project,
		option.WithEndpoint(o.REST+"/bigquery/v2/"), option.WithoutAuthentication())
	if err != nil {
		return fmt.Errorf("slice: bigquery client: %w", err)
	}
	s.BigQuery = &BigQuery{Project: o.Project, Raw: o.DatasetPrefix + "_raw", Staging: o.DatasetPrefix + "_staging",
		Prod: o.DatasetPrefix + "_prod", Client: cl}
	env["bq-writer"] = append(env["bq-writer"], bigQueryEnv(o)...)
	return nil
}

// QueryTimeout bounds one Query: the emulator answers in well under a second
// for a slice's tables, and a deadlocked one (see deploy/local/README.md,
// "Never query the emulator while bq-writer appends") never does.
const QueryTimeout = time.Minute

// Query runs sql on the emulator and returns every row. Tables are named
// `raw.t`, `staging.t`, `prod.t`: Query qualifies them with the slice's
// datasets (`project.<prefix>_raw.t`), so tests read like the contract.
func (b *BigQuery) Query(ctx context.Context, sql string) ([][]bigquery.Value, error) {
	ctx, cancel := context.WithTimeout(ctx, QueryTimeout)
	defer cancel()
	out, err := b.query(ctx, sql)
	if err != nil && ctx.Err() != nil {
		return nil, fmt.Errorf("%w (no answer within %s: is the emulator deadlocked by a query during appends? deploy/local/README.md)", err, QueryTimeout)
	}
	return out, err
}

func (b *BigQuery) query(ctx context.Context, sql string) ([][]bigquery.Value, error) {
	it, err := b.Client.Query(b.Qualify(sql)).Read(ctx)
	if err != nil {
		return nil, fmt.Errorf("bigquery query %q: %w", sql, err)
	}
	var out [][]bigquery.Value
	for {
		var row []bigquery.Value
		err := it.Next(&row)
		if errors.Is(err, iterator.Done) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("bigquery query %q: %w", sql, err)
		}
		out = append(out, row)
	}
}

// Qualify replaces the dataset names raw., staging. and prod. at the start of
// a table name (after FROM or JOIN and a space) by the slice's datasets.
func (b *BigQuery) Qualify(sql string) string {
	for _, ds := range []struct{ short, full string }{{"raw.", b.Raw}, {"staging.", b.Staging}, {"prod.", b.Prod}} {
		full := "`" + b.Project + "." + ds.full + "`."
		for _, kw := range []string{"FROM ", "JOIN ", "from ", "join "} {
			sql = strings.ReplaceAll(sql, kw+ds.short, kw+full)
		}
	}
	return sql
}

// Count runs a query that returns one integer. The emulator answers a failed
// query with no rows and no error, so anything but exactly one row of one
// integer is an error here, never a zero.
func (b *BigQuery) Count(ctx context.Context, sql string) (int64, error) {
	rows, err := b.Query(ctx, sql)
	if err != nil {
		return 0, err
	}
	if len(rows) != 1 || len(rows[0]) != 1 {
		return 0, fmt.Errorf("bigquery query %q: %d rows, want 1 (the emulator reports a failed query as no rows)", sql, len(rows))
	}
	n, ok := rows[0][0].(int64)
	if !ok {
		return 0, fmt.Errorf("bigquery query %q: %T, want an integer", sql, rows[0][0])
	}
	return n, nil
}

// Strings runs a query whose first column is a string and returns it per row.
func (b *BigQuery) Strings(ctx context.Context, sql string) ([]string, error) {
	rows, err := b.Query(ctx, sql)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(rows))
	for _, r := range rows {
		s, ok := r[0].(string)
		if !ok {
			return nil, fmt.Errorf("bigquery query %q: %T in the first column, want a string", sql, r[0])
		}
		out = append(out, s)
	}
	return out, nil
}

// Drop deletes the slice's three datasets with their tables and views (prod
// first: its views read the others), and closes the client; within
// QueryTimeout.
func (b *BigQuery) Drop(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, QueryTimeout)
	defer cancel()
	var errs []error
	for _, ds := range []string{b.Prod, b.Staging, b.Raw} {
		if err := b.Client.Dataset(ds).DeleteWithContents(ctx); err != nil && !isNotFound(err) {
			errs = append(errs, fmt.Errorf("drop dataset %s: %w", ds, err))
		}
	}
	errs = append(errs, b.Client.Close())
	return errors.Join(errs...)
}

func isNotFound(err error) bool {
	var ge *googleapi.Error
	return errors.As(err, &ge) && ge.Code == http.StatusNotFound
}
