// Command bq-writer writes valid ClickEvents (and Orders, ProductChanges and
// CustomerChanges from their own topics) to the warehouse exactly once:
// the embedded DuckDB file by default (BigQuery in production, behind the
// same warehouse interface; its configuration is the BIGQUERY_* variables).
package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"cloud.google.com/go/bigquery"
	"google.golang.org/api/option"
	htransport "google.golang.org/api/transport/http"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/ecomstream/platform/pkg/avroserde"
	"github.com/ecomstream/platform/pkg/config"
	"github.com/ecomstream/platform/pkg/service"
	"github.com/ecomstream/platform/pkg/stream"
	protoavro "github.com/ecomstream/platform/proto/avro"
	"github.com/ecomstream/platform/services/bq-writer/internal/bqcatalog"
	"github.com/ecomstream/platform/services/bq-writer/internal/bqwh"
	"github.com/ecomstream/platform/services/bq-writer/internal/cost"
	"github.com/ecomstream/platform/services/bq-writer/internal/queryapi"
	"github.com/ecomstream/platform/services/bq-writer/internal/sink"
	"github.com/ecomstream/platform/services/bq-writer/internal/warehouse"
	ddl "github.com/ecomstream/platform/sql"
)

const name = "bq-writer"

var version = "dev" // set with -ldflags "-X main.version=..."

// Config is bq-writer's configuration.
type Config struct {
	service.Base
	InputTopic     string        `env:"INPUT_TOPIC" default:"ecom.events.valid.v1" usage:"topic of valid ClickEvents"`
	OrdersTopic    string        `env:"ORDERS_INPUT_TOPIC" default:"ecom.orders.valid.v1" usage:"topic of valid Orders, read in the same group and written in the same transaction as INPUT_TOPIC (latest version per order in fact_orders, its lines in fact_order_items); empty: orders are not read"`
	ProductsTopic  string        `env:"PRODUCTS_INPUT_TOPIC" default:"ecom.products.valid.v1" usage:"topic of valid ProductChanges, read in the same group and written in the same transaction as INPUT_TOPIC into dim_products (SCD Type 2); empty: products are not read"`
	CustomersTopic string        `env:"CUSTOMERS_INPUT_TOPIC" default:"ecom.customers.valid.v1" usage:"topic of valid CustomerChanges, written likewise into dim_users (email only as USER_EMAIL_HASH_KEY's HMAC and domain, no name); empty: customers are not read"`
	EmailHashKey   string        `env:"USER_EMAIL_HASH_KEY" default:"dev-only-user-email-hash-key-not-secret" secret:"true" usage:"key of dim_users.email_hash = HMAC-SHA256(key, lower(trim(email))), at least 32 bytes (inject from a secret; changing it changes every hash); required with CUSTOMERS_INPUT_TOPIC; the default, a public development key, is refused unless every KAFKA_BROKERS host is a loopback address"`
	ConsumerGroup  string        `env:"KAFKA_CONSUMER_GROUP" default:"bq-writer" usage:"consumer group (positions are stored per group in the warehouse)"`
	Warehouse      string        `env:"WAREHOUSE" default:"duckdb" usage:"warehouse backend: duckdb (embedded file) or bigquery (the BIGQUERY_* variables)"`
	DuckDBPath     string        `env:"DUCKDB_PATH" default:"warehouse.duckdb" usage:"DuckDB database file"`
	DuckDBMemory   string        `env:"DUCKDB_MEMORY_LIMIT" default:"1GB" usage:"DuckDB memory limit"`
	DuckDBThreads  int           `env:"DUCKDB_THREADS" default:"2" usage:"DuckDB worker threads"`
	DedupWindow    time.Duration `env:"DEDUP_WINDOW" default:"1m" usage:"a copy of an event_id whose event_timestamp is within this window of the kept copy's is a source duplicate, stored in fact_events_duplicates (a resend keeps its timestamp, so it is caught however late it arrives)"`
	QueryToken     string        `env:"WAREHOUSE_QUERY_TOKEN" default:"" secret:"true" usage:"bearer token for POST /v1/warehouse/query; empty disables the endpoint"`
	QueryMaxRows   int           `env:"WAREHOUSE_QUERY_MAX_ROWS" default:"1000" usage:"row cap of the query endpoint"`
	QueryTimeout   time.Duration `env:"WAREHOUSE_QUERY_TIMEOUT" default:"30s" usage:"time cap of one query"`
	QueryMaxConc   int           `env:"WAREHOUSE_QUERY_MAX_CONCURRENT" default:"2" usage:"queries that may run at once; another is answered 429 with Retry-After"`
	LagInterval    time.Duration `env:"LAG_REFRESH_INTERVAL" default:"15s" usage:"how often consumer lag is refreshed"`
	Recovery       string        `env:"POSITION_RECOVERY" default:"refuse" usage:"what to do with a partition whose warehouse position does not fit the Kafka log: refuse (stop), earliest (start from the log start) or committed (start from the group's committed Kafka offset)"`
	BigQuery       BigQueryConfig
	Cost           cost.Config
}

// BigQueryConfig is the BigQuery backend's configuration (WAREHOUSE=bigquery). Credentials are
// Application Default Credentials (workload identity in GKE): there is no key file variable.
type BigQueryConfig struct {
	Project         string `env:"BIGQUERY_PROJECT" default:"" usage:"Google Cloud project id of the datasets and of the jobs; required with WAREHOUSE=bigquery"`
	DatasetPrefix   string `env:"BIGQUERY_DATASET_PREFIX" default:"ecom" usage:"datasets <prefix>_raw, <prefix>_staging and <prefix>_prod"`
	Location        string `env:"BIGQUERY_LOCATION" default:"US" usage:"location of the datasets bq-writer creates (US, EU, a region)"`
	ApplyDDL        bool   `env:"BIGQUERY_APPLY_DDL" default:"true" usage:"create the datasets and apply sql/bigquery at start (idempotent); false where Terraform applies them"`
	APIEndpoint     string `env:"BIGQUERY_API_ENDPOINT" default:"" usage:"BigQuery REST root URL (bq-writer adds /bigquery/v2/); empty = Google's"`
	StorageEndpoint string `env:"BIGQUERY_STORAGE_ENDPOINT" default:"" usage:"Storage Write API gRPC host:port; empty = Google's"`
	Emulator        bool   `env:"BIGQUERY_EMULATOR" default:"false" usage:"talk to a local emulator: plaintext gRPC and no credentials; requires both endpoints, on loopback"`
	MaxAppendBytes  int    `env:"BIGQUERY_MAX_APPEND_BYTES" default:"8388608" usage:"most bytes of rows in one append request (1 MiB..9 MiB; the request limit is 10 MB)"`
}

// Warehouse backends (WAREHOUSE).
const (
	warehouseDuckDB   = "duckdb"
	warehouseBigQuery = "bigquery"
)

// projectID is a Google Cloud project id: 6 to 30 lower-case letters, digits and hyphens,
// starting with a letter and not ending with a hyphen; a legacy domain-scoped id has the domain
// and a colon before it.
var projectID = regexp.MustCompile(`^([a-z0-9][a-z0-9.-]*[a-z0-9]:)?[a-z][a-z0-9-]{4,28}[a-z0-9]$`)

// datasetPrefix leaves room for the longest suffix (_staging) in BigQuery's 1024-character
// dataset names, of letters, digits and underscores.
var datasetPrefix = regexp.MustCompile(`^[A-Za-z0-9_]{1,1000}$`)

// location is a BigQuery location: a multi-region (US, EU) or a region (europe-west3).
var location = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9-]{1,62}$`)

const (
	mib = 1 << 20
	// minAppendBytes and maxAppendBytes bound BIGQUERY_MAX_APPEND_BYTES: appends of 1-10 MB
	// are what the Storage Write API is sized for, and 9 MiB of rows leaves room for the
	// request's other fields under its 10 MB limit.
	minAppendBytes = 1 * mib
	maxAppendBytes = 9 * mib
)

// validate checks the BigQuery settings; Config.Validate calls it with WAREHOUSE=bigquery only
// (not named Validate: the loader would call that whatever the backend).
func (b *BigQueryConfig) validate() error {
	errs := []error{config.NotEmpty("BIGQUERY_PROJECT", b.Project)}
	if b.Project != "" && !projectID.MatchString(b.Project) {
		errs = append(errs, config.Errorf("BIGQUERY_PROJECT", "%q is not a project id (6-30 lower-case letters, digits and hyphens, starting with a letter)", b.Project))
	}
	if !datasetPrefix.MatchString(b.DatasetPrefix) {
		errs = append(errs, config.Errorf("BIGQUERY_DATASET_PREFIX", "%q must be 1-1000 letters, digits and underscores", b.DatasetPrefix))
	}
	if !location.MatchString(b.Location) {
		errs = append(errs, config.Errorf("BIGQUERY_LOCATION", "%q is not a BigQuery location (e.g. US, EU, europe-west3)", b.Location))
	}
	errs = append(errs, b.checkEndpoints(),
		config.Between("BIGQUERY_MAX_APPEND_BYTES", b.MaxAppendBytes, minAppendBytes, maxAppendBytes))
	return config.First(errs...)
}

// checkEndpoints: an endpoint must be an http(s) URL (REST) or host:port (gRPC). With the
// emulator both are required and must be on loopback, because credentials are switched off and
// gRPC is plaintext; without it the REST endpoint must be https, because the requests carry
// credentials.
func (b *BigQueryConfig) checkEndpoints() error {
	var apiHost string
	if b.APIEndpoint != "" {
		if err := config.HTTPURL("BIGQUERY_API_ENDPOINT", b.APIEndpoint); err != nil {
			return err
		}
		u, _ := url.Parse(b.APIEndpoint)
		apiHost = u.Hostname()
		if !b.Emulator && u.Scheme != "https" {
			return config.Errorf("BIGQUERY_API_ENDPOINT", "must be https (requests carry credentials); plain http only with BIGQUERY_EMULATOR=true")
		}
	}
	var storageHost string
	if b.StorageEndpoint != "" {
		if err := config.HostPort("BIGQUERY_STORAGE_ENDPOINT", b.StorageEndpoint); err != nil {
			return err
		}
		storageHost, _, _ = net.SplitHostPort(b.StorageEndpoint)
	}
	if !b.Emulator {
		return nil
	}
	switch {
	case b.APIEndpoint == "":
		return config.Errorf("BIGQUERY_API_ENDPOINT", "is required with BIGQUERY_EMULATOR=true (e.g. http://127.0.0.1:19050)")
	case b.StorageEndpoint == "":
		return config.Errorf("BIGQUERY_STORAGE_ENDPOINT", "is required with BIGQUERY_EMULATOR=true (e.g. 127.0.0.1:19060)")
	case !config.LoopbackHost(apiHost):
		return config.Errorf("BIGQUERY_API_ENDPOINT", "must be on a loopback address with BIGQUERY_EMULATOR=true (no credentials are sent)")
	case !config.LoopbackHost(storageHost):
		return config.Errorf("BIGQUERY_STORAGE_ENDPOINT", "must be on a loopback address with BIGQUERY_EMULATOR=true (plaintext gRPC, no credentials)")
	}
	return nil
}

// Datasets are the environment's three datasets, <prefix>_raw, _staging and _prod.
func (b *BigQueryConfig) Datasets() ddl.Datasets {
	return ddl.Datasets{Raw: b.DatasetPrefix + "_raw", Staging: b.DatasetPrefix + "_staging", Prod: b.DatasetPrefix + "_prod"}
}

// restEndpoint is the BigQuery client's endpoint for BIGQUERY_API_ENDPOINT: its REST root with
// the API's base path, /bigquery/v2/, added unless it is there.
func restEndpoint(api string) string {
	api = strings.TrimRight(api, "/")
	if !strings.HasSuffix(api, "/bigquery/v2") {
		api += "/bigquery/v2"
	}
	return api + "/"
}

// bigQueryOptions returns the client options of the BigQuery REST client (DDL, reads; for
// bqcatalog) and of the Storage Write API client (managedwriter; for bqwh). With the emulator:
// its endpoints, no credentials and plaintext gRPC. Otherwise only the endpoints that are set:
// the clients find Application Default Credentials (workload identity in GKE) themselves.
func bigQueryOptions(b *BigQueryConfig) (rest, grpcOpts []option.ClientOption, err error) {
	if err := b.validate(); err != nil {
		return nil, nil, err
	}
	if b.APIEndpoint != "" {
		rest = append(rest, option.WithEndpoint(restEndpoint(b.APIEndpoint)))
	}
	if b.StorageEndpoint != "" {
		grpcOpts = append(grpcOpts, option.WithEndpoint(b.StorageEndpoint))
	}
	if b.Emulator {
		rest = append(rest, option.WithoutAuthentication())
		grpcOpts = append(grpcOpts, option.WithoutAuthentication(),
			option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())))
	}
	return rest, grpcOpts, nil
}

// Validate implements config.Validator.
func (c *Config) Validate() error {
	errs := []error{
		config.NotEmpty("INPUT_TOPIC", c.InputTopic),
		config.NotEmpty("KAFKA_CONSUMER_GROUP", c.ConsumerGroup),
		config.OneOf("WAREHOUSE", c.Warehouse, warehouseDuckDB, warehouseBigQuery),
		config.NotEmpty("DUCKDB_PATH", c.DuckDBPath),
		config.Between("DUCKDB_THREADS", c.DuckDBThreads, 1, 256),
		config.Positive("DEDUP_WINDOW", c.DedupWindow),
		config.Between("WAREHOUSE_QUERY_MAX_ROWS", c.QueryMaxRows, 1, 1_000_000),
		config.Positive("WAREHOUSE_QUERY_TIMEOUT", c.QueryTimeout),
		config.Between("WAREHOUSE_QUERY_MAX_CONCURRENT", c.QueryMaxConc, 1, warehouse.MaxConcurrentQueries),
		config.Positive("LAG_REFRESH_INTERVAL", c.LagInterval),
		config.OneOf("POSITION_RECOVERY", c.Recovery, string(sink.RecoveryRefuse), string(sink.RecoveryEarliest), string(sink.RecoveryCommitted)),
	}
	// Every input topic is one entity's: two variables naming one topic would route it to one
	// of them only.
	inputs := []struct{ name, topic string }{{"INPUT_TOPIC", c.InputTopic}, {"ORDERS_INPUT_TOPIC", c.OrdersTopic},
		{"PRODUCTS_INPUT_TOPIC", c.ProductsTopic}, {"CUSTOMERS_INPUT_TOPIC", c.CustomersTopic}}
	for i, a := range inputs {
		for _, b := range inputs[:i] {
			if a.topic != "" && a.topic == b.topic {
				errs = append(errs, fmt.Errorf("%s: %q is also %s", a.name, a.topic, b.name))
			}
		}
	}
	if c.CustomersTopic != "" {
		errs = append(errs, checkEmailHashKey(c.EmailHashKey, c.Kafka.Brokers))
	}
	if c.Warehouse == warehouseBigQuery {
		errs = append(errs, c.BigQuery.validate())
	}
	errs = append(errs, c.HTTP.CheckToken("WAREHOUSE_QUERY_TOKEN", c.QueryToken))
	return config.First(errs...)
}

// DevEmailHashKey is USER_EMAIL_HASH_KEY's default: public, so accepted only with a Kafka on
// this host (the local stack), where no real customer's email can be.
const DevEmailHashKey = "dev-only-user-email-hash-key-not-secret"

// minEmailHashKey is the shortest USER_EMAIL_HASH_KEY accepted: HMAC-SHA256's block-sized
// security needs a key of at least the hash's 32 bytes.
const minEmailHashKey = 32

func checkEmailHashKey(key string, brokers []string) error {
	switch {
	case key == "":
		return config.Errorf("USER_EMAIL_HASH_KEY", "is required with CUSTOMERS_INPUT_TOPIC (set it from a secret, or set CUSTOMERS_INPUT_TOPIC empty)")
	case len(key) < minEmailHashKey:
		return config.Errorf("USER_EMAIL_HASH_KEY", "must be at least %d bytes", minEmailHashKey)
	case key == DevEmailHashKey && !allLoopback(brokers):
		return config.Errorf("USER_EMAIL_HASH_KEY", "is the public development key, refused with a Kafka that is not on this host (KAFKA_BROKERS); set it from a secret")
	}
	return nil
}

// allLoopback reports whether every broker address is on a loopback address (or localhost).
func allLoopback(brokers []string) bool {
	for _, b := range brokers {
		host, _, err := net.SplitHostPort(b)
		if err != nil {
			host = b
		}
		if strings.EqualFold(host, "localhost") {
			continue
		}
		if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
			return false
		}
	}
	return len(brokers) > 0
}

func main() {
	var cfg Config
	service.Main(name, version, &cfg, func(ctx context.Context, rt *service.Runtime) error { return run(ctx, rt, &cfg) })
}

func run(ctx context.Context, rt *service.Runtime, cfg *Config) error {
	meter, err := cost.New(rt.Tel.Meter, cfg.Cost)
	if err != nil {
		return err
	}
	wh, q, sizer, err := openWarehouse(ctx, rt, cfg, meter)
	if err != nil {
		return err
	}
	defer func() {
		if err := wh.Close(); err != nil {
			rt.Log.Error("closing warehouse", "err", err)
		}
	}()
	if err := wh.Migrate(ctx); err != nil {
		return err
	}
	// The storage cost's sizes are read beside the consumer and stop before the warehouse closes.
	sizeCtx, stopSizes := context.WithCancel(ctx)
	sized := make(chan struct{})
	go func() {
		defer close(sized)
		meter.RunStorage(sizeCtx, sizer, cfg.Cost.StorageInterval, rt.Log)
	}()
	defer func() { stopSizes(); <-sized }()
	codec, err := rt.Registry.Codec(ctx, avroserde.SubjectFor(cfg.InputTopic), protoavro.ClickEvent)
	if err != nil {
		return err
	}
	topics := []stream.TopicSpec{{Name: cfg.InputTopic}}
	var orderCodec *avroserde.Codec
	if cfg.OrdersTopic != "" {
		if orderCodec, err = rt.Registry.Codec(ctx, avroserde.SubjectFor(cfg.OrdersTopic), protoavro.Order); err != nil {
			return err
		}
		topics = append(topics, stream.TopicSpec{Name: cfg.OrdersTopic})
	}
	var productCodec, customerCodec *avroserde.Codec
	if cfg.ProductsTopic != "" {
		if productCodec, err = rt.Registry.Codec(ctx, avroserde.SubjectFor(cfg.ProductsTopic), protoavro.ProductChange); err != nil {
			return err
		}
		topics = append(topics, stream.TopicSpec{Name: cfg.ProductsTopic})
	}
	var emailKey []byte
	if cfg.CustomersTopic != "" {
		if customerCodec, err = rt.Registry.Codec(ctx, avroserde.SubjectFor(cfg.CustomersTopic), protoavro.CustomerChange); err != nil {
			return err
		}
		topics = append(topics, stream.TopicSpec{Name: cfg.CustomersTopic})
		emailKey = []byte(cfg.EmailHashKey)
	}
	dlq, err := rt.DeadLetterCodec(ctx)
	if err != nil {
		return err
	}
	s, err := sink.New(sink.Config{
		Kafka: cfg.Kafka, Group: cfg.ConsumerGroup, Topic: cfg.InputTopic, Stage: name,
		DLQ: dlq, Codec: codec, OrdersTopic: cfg.OrdersTopic, OrderCodec: orderCodec,
		ProductsTopic: cfg.ProductsTopic, ProductCodec: productCodec, CustomersTopic: cfg.CustomersTopic, CustomerCodec: customerCodec,
		EmailHashKey: emailKey, Tracer: rt.Tel.Tracer, Meter: rt.Tel.Meter, Metrics: rt.Metrics,
		Log: rt.Log, Prom: rt.Tel.Registry,
		Recovery: sink.Recovery(cfg.Recovery),
	}, wh)
	if err != nil {
		return err
	}
	rt.HTTP.AddCheck("warehouse", wh.Ping)
	if cfg.QueryToken != "" {
		rt.HTTP.Router.Method("POST", "/v1/warehouse/query", queryHandler(cfg, q))
	}
	return rt.RunConsumer(ctx, service.Consumer{Kafka: cfg.Kafka, Group: cfg.ConsumerGroup, LagInterval: cfg.LagInterval,
		Admin: s.Admin(), Ping: s.Ping, Run: s.Run,
		Topics: append(topics, stream.DeadLetterTopic(cfg.Kafka))})
}

// openWarehouse opens the backend WAREHOUSE names, the querier of the query endpoint (nil
// with BigQuery, which analysts query directly) and the sizer of the storage cost. Its API
// calls and appended bytes are counted by meter: DuckDB's writes by a wrapper, BigQuery's calls
// on the wire (a gRPC interceptor and an HTTP transport).
func openWarehouse(ctx context.Context, rt *service.Runtime, cfg *Config, meter *cost.Meter) (warehouse.Warehouse, queryapi.Querier, cost.Sizer, error) {
	if cfg.Warehouse != warehouseBigQuery {
		wh, err := warehouse.OpenDuckDB(cfg.DuckDBPath, warehouse.WithDedupWindow(cfg.DedupWindow),
			warehouse.WithMemoryLimit(cfg.DuckDBMemory), warehouse.WithThreads(cfg.DuckDBThreads), warehouse.WithLogger(rt.Log),
			warehouse.WithMaxConcurrentQueries(cfg.QueryMaxConc))
		if err != nil {
			return nil, nil, nil, err
		}
		return meter.CountWrites(wh), wh, cost.DuckDBSizer{Q: wh, Path: cfg.DuckDBPath}, nil
	}
	b := &cfg.BigQuery
	rest, grpcOpts, err := bigQueryOptions(b)
	if err != nil {
		return nil, nil, nil, err
	}
	// The REST client's transport is built here so that it can count the calls: an explicit
	// HTTP client bypasses the client library's credentials, so htransport adds them (or none,
	// with the emulator) over the counting transport.
	tr, err := htransport.NewTransport(ctx, meter.Transport(http.DefaultTransport.(*http.Transport).Clone()),
		append([]option.ClientOption{option.WithScopes(bigquery.Scope)}, rest...)...)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("bigquery transport: %w", err)
	}
	rest = append(rest, option.WithHTTPClient(&http.Client{Transport: tr}))
	for _, o := range meter.GRPCDialOptions() {
		grpcOpts = append(grpcOpts, option.WithGRPCDialOption(o))
	}
	ds := b.Datasets()
	cat, err := bqcatalog.New(ctx, bqcatalog.Config{Project: b.Project, Datasets: ds, Location: b.Location, Options: rest})
	if err != nil {
		return nil, nil, nil, fmt.Errorf("bigquery catalog: %w", err)
	}
	sizes, err := bigquery.NewClient(ctx, b.Project, rest...)
	if err != nil {
		_ = cat.Close()
		return nil, nil, nil, fmt.Errorf("bigquery client: %w", err)
	}
	wh, err := bqwh.Open(ctx, bqwh.Config{Project: b.Project, RawDataset: ds.Raw, Catalog: cat, ApplyDDL: b.ApplyDDL,
		ClientOptions: grpcOpts, MaxAppendBytes: b.MaxAppendBytes, PricePerGiB: cfg.Cost.StorageWritePerGiB,
		Meter: rt.Tel.Meter, Log: rt.Log})
	if err != nil {
		_ = cat.Close()
		_ = sizes.Close()
		return nil, nil, nil, fmt.Errorf("bigquery: %w", err)
	}
	return closeAll{wh, cat, sizes}, nil, cost.BigQuerySizer{Client: sizes, Dataset: ds.Raw, Tables: bqwh.Tables}, nil
}

// closeAll is the BigQuery warehouse, closing its catalog's client and the storage sizes'
// client after it.
type closeAll struct {
	*bqwh.Warehouse
	cat   *bqcatalog.Catalog
	sizes *bigquery.Client
}

func (c closeAll) Close() error {
	return errors.Join(c.Warehouse.Close(), c.cat.Close(), c.sizes.Close())
}

// queryHandler serves POST /v1/warehouse/query: read-only SQL over DuckDB. With BigQuery it
// answers 501: analysts query BigQuery directly, with their own identity and its access control.
func queryHandler(cfg *Config, q queryapi.Querier) http.Handler {
	if cfg.Warehouse == warehouseBigQuery {
		return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotImplemented)
			_, _ = w.Write([]byte(`{"error":"the warehouse is BigQuery: query it directly (datasets ` + cfg.BigQuery.DatasetPrefix + `_prod and ` + cfg.BigQuery.DatasetPrefix + `_staging)"}` + "\n"))
		})
	}
	return &queryapi.Handler{Q: q, Token: cfg.QueryToken, MaxRows: cfg.QueryMaxRows, Timeout: cfg.QueryTimeout}
}
