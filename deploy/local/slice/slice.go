// Package slice runs the clickstream slice (ingest-clickstream -> validator ->
// bq-writer) as three separate processes against the local stack, with its
// own topics, consumer groups and warehouse file so runs never interfere. The
// demo, the end-to-end tests and the benchmark all start it this way.
package slice

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ecomstream/platform/deploy/local/stacktest"
	"github.com/ecomstream/platform/deploy/local/svcrun"
	"github.com/ecomstream/platform/pkg/deadletter"
)

// Options configure a slice.
type Options struct {
	BinDir     string   // where Build put the binaries
	RunDir     string   // logs and the warehouse file go here
	Brokers    []string // Kafka bootstrap brokers
	Registry   string   // schema registry URL
	OTLP       string   // OTLP/HTTP endpoint for traces; "" = the stack's Jaeger (JAEGER_OTLP_ENDPOINT; none if unset), OTLPNone = none
	Prefix     string   // topic and group prefix, e.g. "e2e-1234."; "" = the production names
	QueryToken string   // bearer token of bq-writer's warehouse query endpoint
	LogLevel   string
	// PrometheusTargetsDir is the stack's Prometheus file_sd folder: the
	// slice writes <dir>/<ID>.json (one target per service, labels
	// job=<service> and slice=<ID>) as its services start and deletes it
	// at Stop. "" = PROMETHEUS_TARGETS_DIR; none when that is unset too.
	PrometheusTargetsDir string
	// ID names the slice in Prometheus (label slice, file <ID>.json); "" =
	// Prefix without its trailing dot, else RunDir's base name.
	ID string
	// Addrs fixes HTTP listen addresses per service; others get a free port.
	Addrs map[string]string
	// Env adds variables per service, e.g. {"bq-writer": {"DEDUP_WINDOW=1h"}}.
	Env map[string][]string
	// CollectorAddr fixes the HTTP collector's listen address; "" = a free port.
	CollectorAddr string
	// CollectorOrigins are the browser origins the collector allows for every key.
	CollectorOrigins []string
	// WriteKeys are the collector's write keys; none = one generated key of source "web".
	WriteKeys []WriteKey
	// Orders adds the orders path (the storefront simulator and ingest-orders in
	// front of the validator and bq-writer); nil = clickstream only.
	Orders *OrdersOptions
	// Catalog adds the catalog path (a PostgreSQL schema of the slice's own,
	// loaded at Start, and catalog-sync in front of the validator); nil = off.
	Catalog *CatalogOptions
	// DLQ adds the dead-letter store (dlq-handler, see DLQOptions); nil = off:
	// the tests that do not read the store, and the benchmark, do without
	// its process and its PostgreSQL schema.
	DLQ *DLQOptions
	// BigQuery runs bq-writer with WAREHOUSE=bigquery on the BigQuery emulator
	// (see BigQueryOptions); nil = DuckDB. The query endpoint then answers
	// 501: query through Slice.BigQuery.
	BigQuery *BigQueryOptions
}

// WriteKey is one entry of the collector's write-keys file (COLLECTOR_WRITE_KEYS_FILE).
type WriteKey struct {
	Source    string   `json:"source"`
	Key       string   `json:"key"`
	Origins   []string `json:"origins,omitempty"`
	RateLimit float64  `json:"rate_limit,omitempty"` // events per second; 0 = COLLECTOR_RATE_LIMIT
	Burst     int      `json:"burst,omitempty"`      // 0 = COLLECTOR_RATE_BURST
}

// Topics of a slice.
type Topics struct {
	Raw, Events, Valid string
	// Orders and OrdersValid are the validator's and bq-writer's order topics,
	// set with or without Options.Orders (a slice never reads the stack's own).
	Orders, OrdersValid string
	OrdersCursor        string // ingest-orders' cursor topic (with Options.Orders)
	// Products, Customers and their valid topics: the catalog entities' topics,
	// set always, for the same reason as Orders.
	Products, ProductsValid, Customers, CustomersValid string
	// SyncProducts and SyncCustomers are catalog-sync's output (with
	// Options.Catalog): Products and Customers, or with CatalogOptions.Relay
	// topics of their own that the caller relays to those.
	SyncProducts, SyncCustomers string
	// DLQ is what the slice's dlq-handler reads (with Options.DLQ): the
	// shared deadletter.Topic without a prefix, else "<prefix>ecom.dlq.v1",
	// fed by the slice's relay (DLQOptions).
	DLQ string
}

// Slice is a running slice.
type Slice struct {
	Opts   Options // as given, with OTLP and PrometheusTargetsDir resolved
	ID     string  // the slice's name in Prometheus (Options.ID)
	Topics Topics
	Procs  map[string]*svcrun.Process
	// Names are the processes of Procs in pipeline order (upstream first):
	// svcrun.Services, with "catalog-sync" in front when Options.Catalog is
	// set, and "storefront" and "ingest-orders" (in that order) in front of
	// all when Options.Orders is, and "dlq-handler" last when Options.DLQ is
	// (it reads what every stage dead-letters: started first, stopped last). Start goes backwards through it, Stop forwards.
	Names  []string
	DuckDB string
	// CollectorAddr is ingest-clickstream's HTTP collector (host:port); POST /v1/events there.
	CollectorAddr string
	// WriteKey is the first write key (source "web" unless Options.WriteKeys says otherwise).
	WriteKey string
	// WriteKeysFile is the collector's write-keys file; rewrite it (WriteKeys) to rotate keys.
	WriteKeysFile string
	// Storefront is the simulator's API (with Options.Orders).
	Storefront *Storefront
	// Catalog is the catalog path (with Options.Catalog).
	Catalog *Catalog
	// DLQ is the dead-letter store (with Options.DLQ).
	DLQ *DLQ
	// BigQuery is the warehouse on the emulator (with Options.BigQuery).
	BigQuery *BigQuery

	targetsMu sync.Mutex
	targets   map[string]string // started services' HTTP addresses, for the targets file
}

// New prepares the processes without starting them.
func New(opts Options) (*Slice, error) {
	if opts.LogLevel == "" {
		opts.LogLevel = "info"
	}
	if len(opts.WriteKeys) == 0 {
		opts.WriteKeys = []WriteKey{{Source: "web", Key: "wk_web_" + randomHex(16)}}
	}
	opts.OTLP = resolveOTLP(opts.OTLP)
	if opts.PrometheusTargetsDir == "" {
		opts.PrometheusTargetsDir = strings.TrimSpace(os.Getenv(EnvPrometheusTargets))
	}
	id := opts.ID
	if id == "" {
		id = sliceID(opts.Prefix, opts.RunDir)
	}
	s := &Slice{
		Opts: opts, ID: id, targets: map[string]string{},
		Topics: Topics{Raw: opts.Prefix + "clickstream", Events: opts.Prefix + "ecom.events.v1", Valid: opts.Prefix + "ecom.events.valid.v1",
			Orders: opts.Prefix + "ecom.orders.v1", OrdersValid: opts.Prefix + "ecom.orders.valid.v1",
			Products: opts.Prefix + "ecom.products.v1", ProductsValid: opts.Prefix + "ecom.products.valid.v1",
			Customers: opts.Prefix + "ecom.customers.v1", CustomersValid: opts.Prefix + "ecom.customers.valid.v1"},
		Names:         append([]string{}, svcrun.Services...),
		Procs:         map[string]*svcrun.Process{},
		DuckDB:        filepath.Join(opts.RunDir, "warehouse.duckdb"),
		CollectorAddr: opts.CollectorAddr,
		WriteKey:      opts.WriteKeys[0].Key,
		WriteKeysFile: filepath.Join(opts.RunDir, "write-keys.json"),
	}
	if s.CollectorAddr == "" {
		var err error
		if s.CollectorAddr, err = svcrun.FreeAddr(); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(opts.RunDir, 0o755); err != nil {
		return nil, err
	}
	if err := s.WriteKeys(opts.WriteKeys); err != nil {
		return nil, err
	}
	common := []string{
		"KAFKA_BROKERS=" + strings.Join(opts.Brokers, ","),
		"SCHEMA_REGISTRY_URL=" + opts.Registry,
		"OTEL_EXPORTER_OTLP_ENDPOINT=" + opts.OTLP,
		"LOG_LEVEL=" + opts.LogLevel,
		"LAG_REFRESH_INTERVAL=5s",
	}
	env := map[string][]string{
		"ingest-clickstream": {"INPUT_TOPIC=" + s.Topics.Raw, "OUTPUT_TOPIC=" + s.Topics.Events, "KAFKA_CONSUMER_GROUP=" + opts.Prefix + "ingest-clickstream",
			"KAFKA_TRANSACTIONAL_ID=" + opts.Prefix + "ingest-clickstream-0",
			"COLLECTOR_ADDR=" + s.CollectorAddr, "COLLECTOR_WRITE_KEYS_FILE=" + s.WriteKeysFile,
			"COLLECTOR_ALLOWED_ORIGINS=" + strings.Join(opts.CollectorOrigins, ",")},
		"validator": {"INPUT_TOPIC=" + s.Topics.Events, "OUTPUT_TOPIC=" + s.Topics.Valid, "KAFKA_CONSUMER_GROUP=" + opts.Prefix + "validator",
			"KAFKA_TRANSACTIONAL_ID=" + opts.Prefix + "validator-0",
			// The validator also validates orders: keep the slice's off the stack's topics.
			"ORDERS_INPUT_TOPIC=" + s.Topics.Orders, "ORDERS_OUTPUT_TOPIC=" + s.Topics.OrdersValid,
			"PRODUCTS_INPUT_TOPIC=" + s.Topics.Products, "PRODUCTS_OUTPUT_TOPIC=" + s.Topics.ProductsValid,
			"CUSTOMERS_INPUT_TOPIC=" + s.Topics.Customers, "CUSTOMERS_OUTPUT_TOPIC=" + s.Topics.CustomersValid},
		"bq-writer": {"INPUT_TOPIC=" + s.Topics.Valid, "KAFKA_CONSUMER_GROUP=" + opts.Prefix + "bq-writer",
			"ORDERS_INPUT_TOPIC=" + s.Topics.OrdersValid,
			"PRODUCTS_INPUT_TOPIC=" + s.Topics.ProductsValid, "CUSTOMERS_INPUT_TOPIC=" + s.Topics.CustomersValid,
			"DUCKDB_PATH=" + s.DuckDB, "WAREHOUSE_QUERY_TOKEN=" + opts.QueryToken, "WAREHOUSE_QUERY_MAX_ROWS=1000000"},
	}
	if opts.Catalog != nil {
		s.Names = append(append([]string{}, svcrun.CatalogServices...), s.Names...)
	}
	if opts.Orders != nil {
		s.Names = append([]string{"storefront", "ingest-orders"}, s.Names...)
	}
	if opts.DLQ != nil {
		s.Names = append(s.Names, svcrun.DLQServices...)
		s.Topics.DLQ = deadletter.Topic
		if opts.Prefix != "" {
			s.Topics.DLQ = opts.Prefix + deadletter.Topic
		}
	}
	addrs := map[string]string{}
	for _, name := range s.Names {
		if addrs[name] = opts.Addrs[name]; addrs[name] == "" {
			var err error
			if addrs[name], err = svcrun.FreeAddr(); err != nil {
				return nil, err
			}
		}
	}
	if opts.Orders != nil {
		s.addOrders(env, addrs)
	}
	if opts.Catalog != nil {
		s.addCatalog(env)
	}
	if opts.DLQ != nil {
		s.addDLQ(env, addrs)
	}
	if opts.BigQuery != nil {
		if err := s.addBigQuery(env); err != nil {
			return nil, err
		}
	}
	for _, name := range s.Names {
		s.Procs[name] = &svcrun.Process{
			Name: name, Bin: filepath.Join(opts.BinDir, name), HTTPAddr: addrs[name],
			Env:     append(append(append([]string{}, common...), env[name]...), opts.Env[name]...),
			LogPath: filepath.Join(opts.RunDir, name+".log"),
		}
	}
	if opts.Orders != nil {
		s.Procs["storefront"].Args = opts.Orders.Args
	}
	return s, nil
}

// CollectorURL is the collector's events endpoint.
func (s *Slice) CollectorURL() string { return "http://" + s.CollectorAddr + "/v1/events" }

// WriteKeys replaces the collector's write-keys file atomically (write and rename, so the
// collector never reads half a file); a running collector picks the new keys up without a restart.
func (s *Slice) WriteKeys(keys []WriteKey) error {
	b, err := json.MarshalIndent(map[string][]WriteKey{"keys": keys}, "", "  ")
	if err != nil {
		return err
	}
	tmp := s.WriteKeysFile + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, s.WriteKeysFile)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}

// Start starts every service in StartOrder and waits until each is ready.
// With Options.Catalog it first creates and loads the slice's catalog schema;
// with Options.DLQ and a prefix it starts the dead-letter relay once
// dlq-handler is ready, from where the shared topic ended before.
func (s *Slice) Start(ctx context.Context) error {
	if err := s.initCatalog(ctx); err != nil {
		return err
	}
	if err := s.prepareRelay(ctx); err != nil {
		return err
	}
	for _, name := range s.StartOrder() {
		if err := s.StartOne(ctx, name); err != nil {
			return err
		}
		if name == "dlq-handler" {
			if err := s.startRelay(ctx); err != nil {
				return err
			}
		}
	}
	return nil
}

// StartOrder is the order Start starts the services in: downstream first
// (Names reversed), so every service's output already has a reader.
//
// On the orders path that puts ingest-orders before the storefront, on
// purpose. ingest-orders becomes ready without the API (its last_poll check
// passes before the first round), and until the storefront answers its
// poller sees a refused connection or two, retried with backoff. The other
// way round, every order the simulator makes while ingest-orders is still
// starting (Kafka, schema registry, the transactional producer's init: a
// few seconds) is a failed webhook delivery the storefront retries: one
// spurious error per order instead of one per poll attempt.
func (s *Slice) StartOrder() []string {
	order := slices.Clone(s.Names)
	slices.Reverse(order)
	return order
}

// StartOne starts one service and waits until it is ready; then it is in
// the slice's Prometheus targets file (with a targets folder), at its
// current address.
func (s *Slice) StartOne(ctx context.Context, name string) error {
	p := s.Procs[name]
	if err := p.Start(); err != nil {
		return err
	}
	if err := p.WaitReady(ctx, 60*time.Second); err != nil {
		return err
	}
	s.targetsMu.Lock()
	defer s.targetsMu.Unlock()
	return s.registerTarget(name)
}

// Restart stops one service gracefully and starts it again with env added
// to its environment (a later KEY=VALUE wins over an earlier one): a
// changed setting, such as a relaxed validator rule. It waits until the
// service is ready.
func (s *Slice) Restart(ctx context.Context, name string, env ...string) error {
	p, ok := s.Procs[name]
	if !ok {
		return fmt.Errorf("slice: no process %s", name)
	}
	if err := p.Stop(30 * time.Second); err != nil {
		return fmt.Errorf("slice: stop %s: %w", name, err)
	}
	p.Env = append(p.Env, env...)
	return s.StartOne(ctx, name)
}

// Stop stops every service gracefully, upstream first (Names' order): the
// storefront before ingest-orders, so no webhook is posted to a receiver
// that is gone, and each service before the ones reading its output. It
// deletes the slice's Prometheus targets file first: a slice that is gone
// is not a service that is down.
func (s *Slice) Stop() error {
	var errs []string
	if dir := s.Opts.PrometheusTargetsDir; dir != "" {
		s.targetsMu.Lock()
		if err := removeTargets(dir, s.ID); err != nil {
			errs = append(errs, err.Error())
		}
		clear(s.targets)
		s.targetsMu.Unlock()
	}
	for _, name := range s.Names {
		if name == "dlq-handler" {
			// Every stage has stopped: relay what they wrote, then stop.
			if err := s.DLQ.stopRelay(context.Background()); err != nil {
				errs = append(errs, err.Error())
			}
		}
		if err := s.Procs[name].Stop(30 * time.Second); err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", name, err))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("stop: %s", strings.Join(errs, "; "))
	}
	return nil
}

// Query runs read-only SQL on the warehouse through bq-writer's endpoint.
func (s *Slice) Query(ctx context.Context, sql string) ([]string, [][]any, error) {
	return Query(ctx, s.Procs["bq-writer"].HTTPAddr, s.Opts.QueryToken, sql)
}

// QueryInt runs a query returning one integer.
func (s *Slice) QueryInt(ctx context.Context, sql string) (int64, error) {
	_, rows, err := s.Query(ctx, sql)
	if err != nil {
		return 0, err
	}
	if len(rows) != 1 || len(rows[0]) != 1 {
		return 0, fmt.Errorf("query %q returned %d rows", sql, len(rows))
	}
	switch v := rows[0][0].(type) {
	case float64:
		return int64(v), nil
	case nil:
		return 0, nil
	default:
		return 0, fmt.Errorf("query %q returned %T", sql, v)
	}
}

// Query runs read-only SQL through a bq-writer at addr.
func Query(ctx context.Context, addr, token, sql string) ([]string, [][]any, error) {
	body, _ := json.Marshal(map[string]any{"sql": sql, "max_rows": 1_000_000})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/v1/warehouse/query", bytes.NewReader(body))
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out struct {
		Columns []string `json:"columns"`
		Rows    [][]any  `json:"rows"`
		Error   string   `json:"error"`
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, nil, fmt.Errorf("query: %s: %s", resp.Status, b)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, nil, fmt.Errorf("query: %s: %s", resp.Status, out.Error)
	}
	return out.Columns, out.Rows, nil
}

// Env is what a command needs before it starts a slice.
type Env struct {
	Root   string              // repository root
	BinDir string              // built service binaries
	Stack  stacktest.Endpoints // the local stack
}

// Prepare finds the repository, checks that the local stack answers (or says
// how to start it) and builds the services.
func Prepare(ctx context.Context) (Env, error) { return PrepareWith(ctx, "") }

// CheckStack finds the repository and checks that the local stack's Kafka and
// schema registry answer, saying how to start the stack when they do not.
func CheckStack(ctx context.Context) (root string, eps stacktest.Endpoints, err error) {
	if root, err = svcrun.RepoRoot(); err != nil {
		return "", eps, err
	}
	eps = stacktest.FromEnv()
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := errors.Join(stacktest.CheckKafka(cctx, eps.KafkaBrokers), stacktest.CheckSchemaRegistry(cctx, eps.SchemaRegistryURL)); err != nil {
		return "", eps, fmt.Errorf("local stack not reachable (%v); %s", err, stacktest.StartHint)
	}
	return root, eps, nil
}

// PrepareWith is Prepare with the service binaries already in binDir (the
// benchmark's comparison builds another revision's there); "" builds this
// tree's into <repo>/.cache/bin.
func PrepareWith(ctx context.Context, binDir string) (Env, error) {
	root, eps, err := CheckStack(ctx)
	if err != nil {
		return Env{}, err
	}
	if binDir != "" {
		for _, name := range svcrun.Services {
			if _, err := os.Stat(filepath.Join(binDir, name)); err != nil {
				return Env{}, fmt.Errorf("service binary: %w", err)
			}
		}
		return Env{Root: root, BinDir: binDir, Stack: eps}, nil
	}
	fmt.Println("building services…")
	if _, binDir, _, err = svcrun.BuildTree(ctx); err != nil {
		return Env{}, err
	}
	return Env{Root: root, BinDir: binDir, Stack: eps}, nil
}
