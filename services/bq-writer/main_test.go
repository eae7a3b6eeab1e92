package main

import (
	"context"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"cloud.google.com/go/bigquery"
	"cloud.google.com/go/bigquery/storage/apiv1/storagepb"
	"cloud.google.com/go/bigquery/storage/managedwriter"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/ecomstream/platform/pkg/config"
	"github.com/ecomstream/platform/pkg/config/configtest"
	"github.com/ecomstream/platform/services/bq-writer/internal/queryapi"
)

// TestConfig: the service starts with no configuration at all, and its
// README documents every variable it reads.
func TestConfig(t *testing.T) { configtest.Check(t, &Config{}, "README.md") }

func TestConfigOrdersTopic(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		wantErr string
	}{
		{name: "default", env: nil},
		{name: "off", env: map[string]string{"ORDERS_INPUT_TOPIC": ""}},
		{name: "same as events", env: map[string]string{"INPUT_TOPIC": "t", "ORDERS_INPUT_TOPIC": "t"}, wantErr: "ORDERS_INPUT_TOPIC"},
		{name: "dimensions off", env: map[string]string{"PRODUCTS_INPUT_TOPIC": "", "CUSTOMERS_INPUT_TOPIC": "", "USER_EMAIL_HASH_KEY": ""}},
		{name: "products same as orders", env: map[string]string{"PRODUCTS_INPUT_TOPIC": "ecom.orders.valid.v1"}, wantErr: "PRODUCTS_INPUT_TOPIC"},
		{name: "customers same as products", env: map[string]string{"PRODUCTS_INPUT_TOPIC": "d", "CUSTOMERS_INPUT_TOPIC": "d"}, wantErr: "CUSTOMERS_INPUT_TOPIC"},
		{name: "customers same as events", env: map[string]string{"CUSTOMERS_INPUT_TOPIC": "ecom.events.valid.v1"}, wantErr: "CUSTOMERS_INPUT_TOPIC"},
		{name: "customers without key", env: map[string]string{"USER_EMAIL_HASH_KEY": ""}, wantErr: "USER_EMAIL_HASH_KEY"},
		{name: "short key", env: map[string]string{"USER_EMAIL_HASH_KEY": "short"}, wantErr: "USER_EMAIL_HASH_KEY"},
		{name: "dev key with a remote Kafka", env: map[string]string{"KAFKA_BROKERS": "kafka-0.prod:9092"}, wantErr: "USER_EMAIL_HASH_KEY"},
		{name: "dev key with one remote broker", env: map[string]string{"KAFKA_BROKERS": "127.0.0.1:9092,10.0.0.5:9092"}, wantErr: "USER_EMAIL_HASH_KEY"},
		{name: "dev key with a name like loopback", env: map[string]string{"KAFKA_BROKERS": "127.0.0.1.example.com:9092"}, wantErr: "USER_EMAIL_HASH_KEY"},
		{name: "dev key on localhost", env: map[string]string{"KAFKA_BROKERS": "localhost:19092,[::1]:19092"}},
		{name: "remote Kafka with its own key", env: map[string]string{"KAFKA_BROKERS": "kafka-0.prod:9092", "USER_EMAIL_HASH_KEY": "a-real-secret-of-at-least-32-bytes!!"}},
		{name: "remote Kafka, customers off", env: map[string]string{"KAFKA_BROKERS": "kafka-0.prod:9092", "CUSTOMERS_INPUT_TOPIC": ""}},
		// The prices are checked whatever the backend: DuckDB's figures are priced too.
		{name: "negative write price", env: map[string]string{"BIGQUERY_PRICE_STORAGE_WRITE_USD_PER_GIB": "-1"}, wantErr: "BIGQUERY_PRICE_STORAGE_WRITE_USD_PER_GIB"},
		{name: "storage price not a number", env: map[string]string{"BIGQUERY_PRICE_STORAGE_USD_PER_GIB_MONTH": "two cents"}, wantErr: "BIGQUERY_PRICE_STORAGE_USD_PER_GIB_MONTH"},
		{name: "free", env: map[string]string{"BIGQUERY_PRICE_STORAGE_WRITE_USD_PER_GIB": "0", "BIGQUERY_PRICE_STORAGE_USD_PER_GIB_MONTH": "0"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var cfg Config
			err := config.LoadFrom(config.MapLookup(tt.env), &cfg)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want one naming %s", err, tt.wantErr)
			}
		})
	}
}

// The default key is the one the loopback rule refuses elsewhere: were they to drift apart, a
// public key would be accepted with a production Kafka.
func TestDefaultEmailHashKeyIsTheDevKey(t *testing.T) {
	var cfg Config
	if err := config.LoadFrom(config.MapLookup(nil), &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.EmailHashKey != DevEmailHashKey {
		t.Fatalf("default USER_EMAIL_HASH_KEY %q is not DevEmailHashKey", cfg.EmailHashKey)
	}
}

// The BigQuery settings are checked with WAREHOUSE=bigquery; each refusal names its variable.
func TestConfigBigQuery(t *testing.T) {
	emu := map[string]string{"BIGQUERY_PROJECT": "ecom-local", "BIGQUERY_EMULATOR": "true",
		"BIGQUERY_API_ENDPOINT": "http://127.0.0.1:19050", "BIGQUERY_STORAGE_ENDPOINT": "127.0.0.1:19060"}
	with := func(base map[string]string, kv ...string) map[string]string {
		m := maps.Clone(base)
		if m == nil {
			m = map[string]string{}
		}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	prod := map[string]string{"BIGQUERY_PROJECT": "shop-prod-42"}
	tests := []struct {
		name    string
		env     map[string]string
		wantErr string
	}{
		{name: "production, ADC, Google's endpoints", env: prod},
		{name: "emulator", env: emu},
		{name: "emulator on localhost", env: with(emu, "BIGQUERY_API_ENDPOINT", "http://localhost:19050/", "BIGQUERY_STORAGE_ENDPOINT", "localhost:19060")},
		{name: "domain-scoped project", env: with(prod, "BIGQUERY_PROJECT", "example.com:shop-prod")},
		{name: "no project", env: nil, wantErr: "BIGQUERY_PROJECT"},
		{name: "project with capitals", env: with(prod, "BIGQUERY_PROJECT", "Shop-Prod"), wantErr: "BIGQUERY_PROJECT"},
		{name: "project too short", env: with(prod, "BIGQUERY_PROJECT", "shop"), wantErr: "BIGQUERY_PROJECT"},
		{name: "project ends with a hyphen", env: with(prod, "BIGQUERY_PROJECT", "shop-prod-"), wantErr: "BIGQUERY_PROJECT"},
		{name: "dataset prefix with a hyphen", env: with(prod, "BIGQUERY_DATASET_PREFIX", "ecom-dev"), wantErr: "BIGQUERY_DATASET_PREFIX"},
		{name: "bad location", env: with(prod, "BIGQUERY_LOCATION", "europe west3"), wantErr: "BIGQUERY_LOCATION"},
		{name: "region location", env: with(prod, "BIGQUERY_LOCATION", "europe-west3")},
		{name: "emulator without the API endpoint", env: with(emu, "BIGQUERY_API_ENDPOINT", ""), wantErr: "BIGQUERY_API_ENDPOINT"},
		{name: "emulator without the storage endpoint", env: with(emu, "BIGQUERY_STORAGE_ENDPOINT", ""), wantErr: "BIGQUERY_STORAGE_ENDPOINT"},
		{name: "emulator API off loopback", env: with(emu, "BIGQUERY_API_ENDPOINT", "http://bq-emulator:19050"), wantErr: "BIGQUERY_API_ENDPOINT"},
		{name: "emulator storage off loopback", env: with(emu, "BIGQUERY_STORAGE_ENDPOINT", "10.0.0.5:19060"), wantErr: "BIGQUERY_STORAGE_ENDPOINT"},
		{name: "emulator storage not host:port", env: with(emu, "BIGQUERY_STORAGE_ENDPOINT", "127.0.0.1"), wantErr: "BIGQUERY_STORAGE_ENDPOINT"},
		{name: "plain http without the emulator", env: with(prod, "BIGQUERY_API_ENDPOINT", "http://127.0.0.1:19050"), wantErr: "BIGQUERY_API_ENDPOINT"},
		{name: "private endpoints", env: with(prod, "BIGQUERY_API_ENDPOINT", "https://bigquery-psc.p.googleapis.com", "BIGQUERY_STORAGE_ENDPOINT", "bigquerystorage-psc.p.googleapis.com:443")},
		{name: "API endpoint not a URL", env: with(prod, "BIGQUERY_API_ENDPOINT", "bigquery.googleapis.com"), wantErr: "BIGQUERY_API_ENDPOINT"},
		{name: "append bytes at 1 MiB", env: with(prod, "BIGQUERY_MAX_APPEND_BYTES", "1048576")},
		{name: "append bytes at 9 MiB", env: with(prod, "BIGQUERY_MAX_APPEND_BYTES", "9437184")},
		{name: "append bytes below 1 MiB", env: with(prod, "BIGQUERY_MAX_APPEND_BYTES", "1048575"), wantErr: "BIGQUERY_MAX_APPEND_BYTES"},
		{name: "append bytes over 9 MiB", env: with(prod, "BIGQUERY_MAX_APPEND_BYTES", "10000000"), wantErr: "BIGQUERY_MAX_APPEND_BYTES"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var cfg Config
			if err := config.LoadFrom(config.MapLookup(tt.env), &cfg); err != nil {
				t.Fatalf("load (WAREHOUSE=duckdb ignores BIGQUERY_*): %v", err)
			}
			err := cfg.BigQuery.validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("err = %v, want one line naming %s", err, tt.wantErr)
			}
			if _, _, oerr := bigQueryOptions(&cfg.BigQuery); oerr == nil {
				t.Fatal("bigQueryOptions accepted a config validate refuses")
			}
		})
	}
}

func TestBigQueryDefaults(t *testing.T) {
	var cfg Config
	if err := config.LoadFrom(config.MapLookup(nil), &cfg); err != nil {
		t.Fatal(err)
	}
	want := BigQueryConfig{DatasetPrefix: "ecom", Location: "US", ApplyDDL: true, MaxAppendBytes: 8 << 20}
	if cfg.BigQuery != want {
		t.Fatalf("defaults = %+v, want %+v", cfg.BigQuery, want)
	}
}

func TestRESTEndpoint(t *testing.T) {
	for give, want := range map[string]string{
		"http://127.0.0.1:19050":                       "http://127.0.0.1:19050/bigquery/v2/",
		"http://127.0.0.1:19050/":                      "http://127.0.0.1:19050/bigquery/v2/",
		"https://bigquery.googleapis.com/bigquery/v2":  "https://bigquery.googleapis.com/bigquery/v2/",
		"https://bigquery.googleapis.com/bigquery/v2/": "https://bigquery.googleapis.com/bigquery/v2/",
	} {
		if got := restEndpoint(give); got != want {
			t.Errorf("restEndpoint(%q) = %q, want %q", give, got, want)
		}
	}
}

// With the emulator the clients reach the configured endpoints without credentials, gRPC in
// plaintext: proved against an in-test REST server and an in-test Storage Write gRPC server.
func TestBigQueryOptionsEmulator(t *testing.T) {
	ctx := context.Background()
	var mu sync.Mutex
	var restPath, restAuth string
	rest := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		restPath, restAuth = r.URL.Path, r.Header.Get("Authorization")
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"datasetReference":{"projectId":"ecom-local","datasetId":"ecom_raw"},"location":"US"}`))
	}))
	defer rest.Close()

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fake := &writeServer{}
	srv := grpc.NewServer()
	storagepb.RegisterBigQueryWriteServer(srv, fake)
	go func() { _ = srv.Serve(lis) }()
	defer srv.Stop()

	b := BigQueryConfig{Project: "ecom-local", DatasetPrefix: "ecom", Location: "US", Emulator: true,
		APIEndpoint: rest.URL, StorageEndpoint: lis.Addr().String(), MaxAppendBytes: 8 << 20}
	restOpts, grpcOpts, err := bigQueryOptions(&b)
	if err != nil {
		t.Fatal(err)
	}
	bq, err := bigquery.NewClient(ctx, b.Project, restOpts...)
	if err != nil {
		t.Fatal(err)
	}
	defer bq.Close()
	md, err := bq.Dataset("ecom_raw").Metadata(ctx)
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	if restPath != "/bigquery/v2/projects/ecom-local/datasets/ecom_raw" || restAuth != "" || md.Location != "US" {
		t.Errorf("REST request to %q with Authorization %q (location %q), want the emulator's path without credentials", restPath, restAuth, md.Location)
	}
	mu.Unlock()

	mw, err := managedwriter.NewClient(ctx, b.Project, grpcOpts...)
	if err != nil {
		t.Fatal(err)
	}
	defer mw.Close()
	const stream = "projects/ecom-local/datasets/ecom_raw/tables/fact_events/streams/_default"
	ws, err := mw.GetWriteStream(ctx, &storagepb.GetWriteStreamRequest{Name: stream})
	if err != nil {
		t.Fatal(err)
	}
	fake.mu.Lock()
	defer fake.mu.Unlock()
	if ws.GetName() != stream || fake.name != stream || fake.auth != nil {
		t.Errorf("gRPC GetWriteStream reached the server as %q with authorization %v", fake.name, fake.auth)
	}
}

// Without the emulator the options carry only the endpoints: credentials are Application
// Default Credentials, which the client looks up (and here, pointed at a missing file, fails to
// find: proof that authentication is not switched off).
func TestBigQueryOptionsProduction(t *testing.T) {
	b := BigQueryConfig{Project: "shop-prod-42", DatasetPrefix: "ecom", Location: "US", MaxAppendBytes: 8 << 20}
	rest, grpcOpts, err := bigQueryOptions(&b)
	if err != nil || len(rest) != 0 || len(grpcOpts) != 0 {
		t.Fatalf("options = %d REST, %d gRPC, err %v; want none: Google's endpoints and ADC", len(rest), len(grpcOpts), err)
	}
	b.APIEndpoint, b.StorageEndpoint = "https://bigquery-psc.p.googleapis.com", "bigquerystorage-psc.p.googleapis.com:443"
	if rest, grpcOpts, err = bigQueryOptions(&b); err != nil || len(rest) != 1 || len(grpcOpts) != 1 {
		t.Fatalf("options = %d REST, %d gRPC, err %v; want one endpoint each", len(rest), len(grpcOpts), err)
	}
	t.Setenv("GOOGLE_APPLICATION_CREDENTIALS", filepath.Join(t.TempDir(), "absent.json"))
	if _, err := bigquery.NewClient(context.Background(), b.Project, rest...); err == nil {
		t.Fatal("the REST client started without credentials: authentication is off")
	}
}

// The query endpoint answers 501 with BigQuery (analysts query it directly).
func TestQueryHandlerBigQuery(t *testing.T) {
	cfg := &Config{Warehouse: warehouseBigQuery, QueryToken: "local-query-token-0123", BigQuery: BigQueryConfig{DatasetPrefix: "ecom"}}
	rec := httptest.NewRecorder()
	queryHandler(cfg, nil).ServeHTTP(rec, httptest.NewRequest("POST", "/v1/warehouse/query", strings.NewReader("SELECT 1")))
	if rec.Code != http.StatusNotImplemented || !strings.Contains(rec.Body.String(), "ecom_prod") {
		t.Fatalf("status %d body %q, want 501 pointing at ecom_prod", rec.Code, rec.Body.String())
	}
	if h, ok := queryHandler(&Config{Warehouse: warehouseDuckDB, QueryToken: cfg.QueryToken}, nil).(*queryapi.Handler); !ok || h.Token != cfg.QueryToken {
		t.Fatalf("duckdb query handler = %T, want the queryapi handler", h)
	}
}

// writeServer is a Storage Write gRPC server that records GetWriteStream.
type writeServer struct {
	storagepb.UnimplementedBigQueryWriteServer
	mu   sync.Mutex
	name string
	auth []string
}

func (s *writeServer) GetWriteStream(ctx context.Context, req *storagepb.GetWriteStreamRequest) (*storagepb.WriteStream, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.name = req.GetName()
	md, _ := metadata.FromIncomingContext(ctx)
	s.auth = md.Get("authorization")
	return &storagepb.WriteStream{Name: req.GetName(), Type: storagepb.WriteStream_COMMITTED}, nil
}
