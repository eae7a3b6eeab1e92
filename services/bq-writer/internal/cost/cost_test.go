package cost

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"cloud.google.com/go/bigquery"
	"cloud.google.com/go/bigquery/storage/apiv1/storagepb"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"

	"github.com/ecomstream/platform/pkg/config"
	"github.com/ecomstream/platform/pkg/telemetry"
	"github.com/ecomstream/platform/services/bq-writer/internal/warehouse"
)

func defaults(t *testing.T) Config {
	t.Helper()
	var c Config
	if err := config.LoadFrom(config.MapLookup(nil), &c); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestConfig(t *testing.T) {
	if got, want := defaults(t), (Config{StorageWritePerGiB: 0.025, StoragePerGiBMonth: 0.02, StorageInterval: 10 * time.Minute}); got != want {
		t.Fatalf("defaults = %+v, want %+v", got, want)
	}
	tests := []struct {
		name    string
		env     map[string]string
		wantErr string
	}{
		{name: "free", env: map[string]string{"BIGQUERY_PRICE_STORAGE_WRITE_USD_PER_GIB": "0", "BIGQUERY_PRICE_STORAGE_USD_PER_GIB_MONTH": "0"}},
		{name: "long-term storage price", env: map[string]string{"BIGQUERY_PRICE_STORAGE_USD_PER_GIB_MONTH": "0.01"}},
		{name: "negative write price", env: map[string]string{"BIGQUERY_PRICE_STORAGE_WRITE_USD_PER_GIB": "-0.025"}, wantErr: "BIGQUERY_PRICE_STORAGE_WRITE_USD_PER_GIB"},
		{name: "write price NaN", env: map[string]string{"BIGQUERY_PRICE_STORAGE_WRITE_USD_PER_GIB": "NaN"}, wantErr: "BIGQUERY_PRICE_STORAGE_WRITE_USD_PER_GIB"},
		{name: "write price infinite", env: map[string]string{"BIGQUERY_PRICE_STORAGE_WRITE_USD_PER_GIB": "+Inf"}, wantErr: "BIGQUERY_PRICE_STORAGE_WRITE_USD_PER_GIB"},
		{name: "storage price too high", env: map[string]string{"BIGQUERY_PRICE_STORAGE_USD_PER_GIB_MONTH": "20000"}, wantErr: "BIGQUERY_PRICE_STORAGE_USD_PER_GIB_MONTH"},
		{name: "storage price with a unit", env: map[string]string{"BIGQUERY_PRICE_STORAGE_USD_PER_GIB_MONTH": "$0.02"}, wantErr: "BIGQUERY_PRICE_STORAGE_USD_PER_GIB_MONTH"},
		{name: "refresh too often", env: map[string]string{"WAREHOUSE_STORAGE_REFRESH_INTERVAL": "1s"}, wantErr: "WAREHOUSE_STORAGE_REFRESH_INTERVAL"},
		{name: "refresh hourly", env: map[string]string{"WAREHOUSE_STORAGE_REFRESH_INTERVAL": "1h"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c Config
			err := config.LoadFrom(config.MapLookup(tt.env), &c)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("err = %v, want one line naming %s", err, tt.wantErr)
			}
		})
	}
}

// exposition is the Prometheus text of a registry as name{labels} -> value, without the
// otel_scope_* labels, so the tests see the names and labels exactly as Prometheus scrapes them.
type exposition map[string]float64

var scopeLabel = regexp.MustCompile(`otel_scope_[a-z_]+="[^"]*",?`)

func newMeter(t *testing.T, cfg Config) (*Meter, func() exposition) {
	t.Helper()
	tel, shutdown, err := telemetry.Setup(context.Background(), "bq-writer", "test", telemetry.Config{SampleRatio: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = shutdown(context.Background()) })
	m, err := New(tel.Meter, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return m, func() exposition {
		rec := httptest.NewRecorder()
		tel.MetricsHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
		out := exposition{}
		for _, line := range strings.Split(rec.Body.String(), "\n") {
			if !strings.HasPrefix(line, "ecom_") {
				continue
			}
			sp := strings.LastIndexByte(line, ' ')
			v, err := strconv.ParseFloat(line[sp+1:], 64)
			if err != nil {
				t.Fatalf("exposition line %q: %v", line, err)
			}
			key := strings.Replace(scopeLabel.ReplaceAllString(line[:sp], ""), ",}", "}", 1)
			out[strings.TrimSuffix(key, "{}")] = v
		}
		return out
	}
}

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-12+1e-9*math.Abs(b) }

// TestExposedNames pins the contract's Prometheus names (CONTRACT11: ecom_warehouse_cost_usd_total
// {table,item}, ecom_warehouse_storage_cost_usd_per_day{table}, ecom_warehouse_api_calls_total{api})
// and the prices' arithmetic.
func TestExposedNames(t *testing.T) {
	cfg := defaults(t)
	m, scrape := newMeter(t, cfg)
	ctx := context.Background()
	m.Call(ctx, APIAppendRows)
	m.Call(ctx, APIAppendRows)
	m.Call(ctx, APIQuery)
	m.Appended(ctx, "fact_events", 3*GiB)
	m.Appended(ctx, "fact_orders", 0)
	m.SetStored(map[string]int64{"fact_events": 30 * GiB, "dim_users_changes": 0})
	got := scrape()
	want := exposition{
		`ecom_warehouse_api_calls_total{api="append_rows"}`:                       2,
		`ecom_warehouse_api_calls_total{api="query"}`:                             1,
		`ecom_warehouse_cost_usd_total{item="storage_write",table="fact_events"}`: 3 * 0.025,
		`ecom_warehouse_cost_usd_total{item="storage_write",table="fact_orders"}`: 0,
		`ecom_warehouse_storage_cost_usd_per_day{table="fact_events"}`:            30 * 0.02 / 30,
		`ecom_warehouse_storage_cost_usd_per_day{table="dim_users_changes"}`:      0,
		`ecom_warehouse_stored_bytes{table="fact_events"}`:                        30 * GiB,
		`ecom_warehouse_stored_bytes{table="dim_users_changes"}`:                  0,
	}
	for k, v := range want {
		if g, ok := got[k]; !ok || !near(g, v) {
			t.Errorf("%s = %v (present %v), want %v", k, g, ok, v)
		}
	}
	if len(got) != len(want) {
		t.Errorf("exposition has %d ecom_ series, want %d: %v", len(got), len(want), got)
	}
	// A refresh replaces the tables: one gone from the warehouse is no longer reported.
	m.SetStored(map[string]int64{"fact_orders": GiB})
	got = scrape()
	if _, ok := got[`ecom_warehouse_storage_cost_usd_per_day{table="fact_events"}`]; ok {
		t.Error("fact_events still reported after a refresh without it")
	}
	if g := got[`ecom_warehouse_storage_cost_usd_per_day{table="fact_orders"}`]; !near(g, 0.02/30) {
		t.Errorf("fact_orders per day = %v, want %v", g, 0.02/30)
	}
}

func TestRESTAPI(t *testing.T) {
	tests := []struct{ method, path, want string }{
		{"POST", "/bigquery/v2/projects/p/jobs", APIQuery},
		{"GET", "/bigquery/v2/projects/p/jobs/job_1", APIQuery},
		{"POST", "/bigquery/v2/projects/p/queries", APIQuery},
		{"GET", "/bigquery/v2/projects/p/queries/job_1", APIQuery},
		{"GET", "/bigquery/v2/projects/p/datasets/ecom_raw", APIDatasets},
		{"POST", "/bigquery/v2/projects/p/datasets", APIDatasets},
		{"GET", "/bigquery/v2/projects/p/datasets/ecom_raw/tables", APITablesList},
		{"GET", "/bigquery/v2/projects/p/datasets/ecom_raw/tables/fact_events", APITablesGet},
		{"PATCH", "/bigquery/v2/projects/p/datasets/ecom_raw/tables/fact_events", APITablesUpdate},
		{"PUT", "/projects/p/datasets/ecom_raw/tables/fact_events/", APITablesUpdate},
		{"GET", "/bigquery/v2/projects/p/datasets/ecom_raw/tables/fact_events/data", APIRESTOther},
		{"GET", "/bigquery/v2/projects", APIRESTOther},
		{"GET", "/token", APIRESTOther},
	}
	for _, tt := range tests {
		if got := RESTAPI(tt.method, tt.path); got != tt.want {
			t.Errorf("RESTAPI(%s %s) = %q, want %q", tt.method, tt.path, got, tt.want)
		}
	}
}

func TestTableOfStream(t *testing.T) {
	for give, want := range map[string]string{
		"projects/p/datasets/ecom_raw/tables/fact_events/streams/Cib4": "fact_events",
		"projects/p/datasets/ecom_raw/tables/fact_orders/_default":     "fact_orders",
		"projects/p/datasets/ecom_raw/tables/":                         "unknown",
		"":                                                             "unknown",
	} {
		if got := TableOfStream(give); got != want {
			t.Errorf("TableOfStream(%q) = %q, want %q", give, got, want)
		}
	}
}

// writeServer answers the Storage Write API calls the interceptors see.
type writeServer struct {
	storagepb.UnimplementedBigQueryWriteServer
	appends atomic.Int64
}

func (s *writeServer) CreateWriteStream(_ context.Context, r *storagepb.CreateWriteStreamRequest) (*storagepb.WriteStream, error) {
	return &storagepb.WriteStream{Name: r.GetParent() + "/streams/s1"}, nil
}

func (s *writeServer) FinalizeWriteStream(context.Context, *storagepb.FinalizeWriteStreamRequest) (*storagepb.FinalizeWriteStreamResponse, error) {
	return &storagepb.FinalizeWriteStreamResponse{RowCount: 3}, nil
}

func (s *writeServer) AppendRows(stream storagepb.BigQueryWrite_AppendRowsServer) error {
	for {
		if _, err := stream.Recv(); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		s.appends.Add(1)
		if err := stream.Send(&storagepb.AppendRowsResponse{}); err != nil {
			return err
		}
	}
}

func rowsOf(sizes ...int) *storagepb.AppendRowsRequest_ProtoRows {
	rows := make([][]byte, len(sizes))
	for i, n := range sizes {
		rows[i] = make([]byte, n)
	}
	return &storagepb.AppendRowsRequest_ProtoRows{ProtoRows: &storagepb.AppendRowsRequest_ProtoData{Rows: &storagepb.ProtoRows{SerializedRows: rows}}}
}

// TestGRPC: every Storage Write API call is counted by method, and every append's row bytes are
// priced on the table of the stream named by the connection's last request that named one.
func TestGRPC(t *testing.T) {
	cfg := defaults(t)
	cfg.StorageWritePerGiB = 1 << 30 // 1 USD per byte, so the cost is the byte count
	m, scrape := newMeter(t, cfg)
	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer()
	ws := &writeServer{}
	storagepb.RegisterBigQueryWriteServer(srv, ws)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient("passthrough:///bufnet", append(m.GRPCDialOptions(),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	cl := storagepb.NewBigQueryWriteClient(conn)
	ctx := context.Background()
	const events = "projects/p/datasets/ecom_raw/tables/fact_events"
	if _, err := cl.CreateWriteStream(ctx, &storagepb.CreateWriteStreamRequest{Parent: events}); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.FinalizeWriteStream(ctx, &storagepb.FinalizeWriteStreamRequest{Name: events + "/streams/s0"}); err != nil {
		t.Fatal(err)
	}
	st, err := cl.AppendRows(ctx)
	if err != nil {
		t.Fatal(err)
	}
	reqs := []*storagepb.AppendRowsRequest{
		{WriteStream: events + "/streams/s1", Rows: rowsOf(10, 20)},
		{Rows: rowsOf(5)}, // same stream, not named again
		{WriteStream: "projects/p/datasets/ecom_raw/tables/fact_orders/streams/s2", Rows: rowsOf(7, 7, 7)}, // multiplexed
	}
	for _, r := range reqs {
		if err := st.Send(r); err != nil {
			t.Fatal(err)
		}
		if _, err := st.Recv(); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.CloseSend(); err != nil {
		t.Fatal(err)
	}
	got := scrape()
	for k, v := range map[string]float64{
		`ecom_warehouse_api_calls_total{api="create_write_stream"}`:               1,
		`ecom_warehouse_api_calls_total{api="finalize_write_stream"}`:             1,
		`ecom_warehouse_api_calls_total{api="append_rows"}`:                       3,
		`ecom_warehouse_cost_usd_total{item="storage_write",table="fact_events"}`: 35,
		`ecom_warehouse_cost_usd_total{item="storage_write",table="fact_orders"}`: 21,
	} {
		if g := got[k]; !near(g, v) {
			t.Errorf("%s = %v, want %v", k, g, v)
		}
	}
	if n := ws.appends.Load(); n != 3 {
		t.Errorf("server saw %d appends, want 3", n)
	}
}

// TestBigQuerySizer reads numBytes from tables.get through the counting transport.
func TestBigQuerySizer(t *testing.T) {
	sizes := map[string]int64{"fact_events": 5 << 30, "fact_orders": 1234}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		table := filepath.Base(r.URL.Path)
		n, ok := sizes[table]
		if !ok {
			http.Error(w, `{"error":{"code":404,"message":"Not found: Table","status":"NOT_FOUND"}}`, http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"tableReference":{"projectId":"p","datasetId":"ecom_raw","tableId":%q},"type":"TABLE","numBytes":"%d"}`, table, n)
	}))
	t.Cleanup(srv.Close)
	m, scrape := newMeter(t, defaults(t))
	client, err := bigquery.NewClient(context.Background(), "p", option.WithEndpoint(srv.URL+"/bigquery/v2/"),
		option.WithHTTPClient(&http.Client{Transport: m.Transport(nil)}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Close() })
	tests := []struct {
		name    string
		tables  []string
		want    map[string]int64
		wantErr string
	}{
		{name: "raw tables", tables: []string{"fact_events", "fact_orders"}, want: sizes},
		{name: "a table missing", tables: []string{"fact_events", "dim_users_changes"}, wantErr: "ecom_raw.dim_users_changes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := BigQuerySizer{Client: client, Dataset: "ecom_raw", Tables: tt.tables}.TableBytes(context.Background())
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one naming %s", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Fatalf("sizes = %v, want %v", got, tt.want)
			}
		})
	}
	if g := scrape()[`ecom_warehouse_api_calls_total{api="tables_get"}`]; g != 4 {
		t.Errorf("tables_get calls = %v, want 4", g)
	}
}

// fakeQuerier answers the DuckDB sizer's two queries.
type fakeQuerier struct {
	blockSize, used int64
	tables          [][]any
	err             error
}

func (f fakeQuerier) Query(_ context.Context, q string, _ int) ([]string, [][]any, error) {
	switch {
	case f.err != nil:
		return nil, nil, f.err
	case strings.Contains(q, "pragma_database_size"):
		return []string{"block_size", "used_blocks"}, [][]any{{f.blockSize, f.used}}, nil
	case strings.Contains(q, "duckdb_tables"):
		return []string{"schema_name", "table_name", "estimated_size", "column_count"}, f.tables, nil
	}
	return nil, nil, fmt.Errorf("unexpected query %q", q)
}

func TestDuckDBSizerShares(t *testing.T) {
	tests := []struct {
		name    string
		q       fakeQuerier
		want    map[string]int64
		wantErr string
	}{
		{name: "by rows x columns", q: fakeQuerier{blockSize: 1000, used: 10, tables: [][]any{
			{"main", "fact_events", int64(99), int64(4)},      // (99+1)*4 = 400
			{"main", "stream_positions", int64(9), int64(10)}, // 100
			{"ops", "log", int64(-1), int64(0)},               // 1*1 (never negative, never 0)
		}}, want: map[string]int64{"fact_events": 7984, "stream_positions": 1996, "ops.log": 19}},
		{name: "empty tables share evenly by columns", q: fakeQuerier{blockSize: 262144, used: 1, tables: [][]any{
			{"main", "a", int64(0), int64(1)}, {"main", "b", int64(0), int64(1)},
		}}, want: map[string]int64{"a": 131072, "b": 131072}},
		{name: "no tables", q: fakeQuerier{blockSize: 262144, used: 3}, want: map[string]int64{}},
		{name: "query refused", q: fakeQuerier{err: warehouse.ErrQueryBusy}, wantErr: "too many concurrent queries"},
		{name: "not an integer", q: fakeQuerier{blockSize: 1, used: 1, tables: [][]any{{"main", "a", "many", int64(1)}}}, wantErr: "not an integer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DuckDBSizer{Q: tt.q}.TableBytes(context.Background())
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Fatalf("sizes = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestDuckDBSizerRealFile runs the sizer's SQL on a real warehouse file through its operator
// Query (the allow-list must pass it): every table is reported, and the shares add up to the
// used blocks plus the WAL file.
func TestDuckDBSizerRealFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "w.duckdb")
	wh, err := warehouse.OpenDuckDB(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = wh.Close() })
	if err := wh.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	got, err := DuckDBSizer{Q: wh, Path: path}.TableBytes(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, table := range []string{"fact_events", "fact_orders", "stream_positions"} {
		if _, ok := got[table]; !ok {
			t.Errorf("no size for %s in %v", table, got)
		}
	}
	var sum int64
	for _, n := range got {
		sum += n
	}
	if sum <= 0 {
		t.Fatalf("sizes %v add up to %d, want the file's bytes", got, sum)
	}
	t.Logf("%d tables, %d bytes", len(got), sum)
}

func TestCountWrite(t *testing.T) {
	cfg := defaults(t)
	m, scrape := newMeter(t, cfg)
	ctx := context.Background()
	write := func(err error) func(context.Context, string, warehouse.Batch) (warehouse.WriteResult, error) {
		return func(context.Context, string, warehouse.Batch) (warehouse.WriteResult, error) {
			return warehouse.WriteResult{Bytes: 1 << 20}, err
		}
	}
	for range 3 {
		if _, err := m.countWrite(ctx, write(nil), "g", warehouse.Batch{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := m.countWrite(ctx, write(warehouse.ErrTransient), "g", warehouse.Batch{}); !errors.Is(err, warehouse.ErrTransient) {
		t.Fatalf("err = %v, want the warehouse's", err)
	}
	got := scrape()
	if g := got[`ecom_warehouse_api_calls_total{api="duckdb_write"}`]; g != 4 {
		t.Errorf("duckdb_write = %v, want 4 (failed transactions are calls too)", g)
	}
	if g, want := got[`ecom_warehouse_cost_usd_total{item="storage_write",table="all"}`], 3*float64(1<<20)/GiB*cfg.StorageWritePerGiB; !near(g, want) {
		t.Errorf("storage_write cost = %v, want %v (3 written MiB, the failed one not)", g, want)
	}
}

// TestCountedDuckDB: the wrapper writes through to DuckDB and hides none of its methods, so an
// optional interface the sink asserts on the warehouse (warehouse.Committer today, more later)
// sees the same methods as on *warehouse.DuckDB.
func TestCountedDuckDB(t *testing.T) {
	wh, err := warehouse.OpenDuckDB(":memory:")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = wh.Close() })
	ctx := context.Background()
	if err := wh.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	m, scrape := newMeter(t, defaults(t))
	c := m.CountWrites(wh)
	p := warehouse.Partition{Topic: "t", Partition: 0}
	if _, err := c.Write(ctx, "g", warehouse.Batch{Positions: map[warehouse.Partition]int64{p: 5}}); err != nil {
		t.Fatal(err)
	}
	pos, err := c.Positions(ctx, "g")
	if err != nil || pos[p].Next != 5 {
		t.Fatalf("positions = %v, %v; want the write's 5", pos, err)
	}
	if g := scrape()[`ecom_warehouse_api_calls_total{api="duckdb_write"}`]; g != 1 {
		t.Errorf("duckdb_write = %v, want 1", g)
	}
	inner, outer := reflect.TypeOf(wh), reflect.TypeOf(c)
	for i := range inner.NumMethod() {
		name := inner.Method(i).Name
		om, ok := outer.MethodByName(name)
		if !ok || om.Type.NumIn() != inner.Method(i).Type.NumIn() {
			t.Errorf("CountedDuckDB lacks or changes (*DuckDB).%s", name)
		}
	}
}

// sizerFunc adapts a function to Sizer.
type sizerFunc func(context.Context) (map[string]int64, error)

func (f sizerFunc) TableBytes(ctx context.Context) (map[string]int64, error) { return f(ctx) }

// TestRefresh: a read replaces the sizes; a failed one keeps the last.
func TestRefresh(t *testing.T) {
	tests := []struct {
		name  string
		sizes map[string]int64
		err   error
		want  map[string]int64
	}{
		{name: "read", sizes: map[string]int64{"fact_events": 7}, want: map[string]int64{"fact_events": 7}},
		{name: "a table dropped", sizes: map[string]int64{}, want: map[string]int64{}},
		{name: "failed", err: errors.New("backend unavailable"), want: map[string]int64{"old": 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, _ := newMeter(t, defaults(t))
			m.SetStored(map[string]int64{"old": 1})
			m.refresh(context.Background(), sizerFunc(func(context.Context) (map[string]int64, error) { return tt.sizes, tt.err }),
				time.Second, slog.New(slog.DiscardHandler))
			if got := m.Stored(); fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Fatalf("stored = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestRunStorage: the sizes are read at once and on every tick, each read bounded by the
// interval, until the context ends.
func TestRunStorage(t *testing.T) {
	m, _ := newMeter(t, defaults(t))
	var calls atomic.Int64
	reads := make(chan struct{}, 16)
	s := sizerFunc(func(ctx context.Context) (map[string]int64, error) {
		if _, ok := ctx.Deadline(); !ok {
			t.Error("a read without a deadline")
		}
		n := calls.Add(1)
		reads <- struct{}{}
		return map[string]int64{"t": n}, nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		m.RunStorage(ctx, s, 20*time.Millisecond, slog.New(slog.DiscardHandler))
	}()
	for range 3 {
		select {
		case <-reads:
		case <-time.After(5 * time.Second):
			t.Fatal("RunStorage stopped reading")
		}
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("RunStorage did not return after its context ended")
	}
	if got := m.Stored()["t"]; got < 3 {
		t.Fatalf("stored = %d, want the third read's or a later one", got)
	}
}
