// Command bq-writer writes valid ClickEvents (and Orders, ProductChanges and
// CustomerChanges from their own topics) to the warehouse exactly once:
// the embedded DuckDB file by default (BigQuery in production, behind the
// same warehouse interface).
package main

import (
	"context"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/ecomstream/platform/pkg/avroserde"
	"github.com/ecomstream/platform/pkg/config"
	"github.com/ecomstream/platform/pkg/service"
	"github.com/ecomstream/platform/pkg/stream"
	protoavro "github.com/ecomstream/platform/proto/avro"
	"github.com/ecomstream/platform/services/bq-writer/internal/queryapi"
	"github.com/ecomstream/platform/services/bq-writer/internal/sink"
	"github.com/ecomstream/platform/services/bq-writer/internal/warehouse"
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
	Warehouse      string        `env:"WAREHOUSE" default:"duckdb" usage:"warehouse backend: duckdb"`
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
}

// Validate implements config.Validator.
func (c *Config) Validate() error {
	errs := []error{
		config.NotEmpty("INPUT_TOPIC", c.InputTopic),
		config.NotEmpty("KAFKA_CONSUMER_GROUP", c.ConsumerGroup),
		config.OneOf("WAREHOUSE", c.Warehouse, "duckdb"),
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
	wh, err := warehouse.OpenDuckDB(cfg.DuckDBPath, warehouse.WithDedupWindow(cfg.DedupWindow),
		warehouse.WithMemoryLimit(cfg.DuckDBMemory), warehouse.WithThreads(cfg.DuckDBThreads), warehouse.WithLogger(rt.Log),
		warehouse.WithMaxConcurrentQueries(cfg.QueryMaxConc))
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
		rt.HTTP.Router.Method("POST", "/v1/warehouse/query", &queryapi.Handler{Q: wh, Token: cfg.QueryToken, MaxRows: cfg.QueryMaxRows, Timeout: cfg.QueryTimeout})
	}
	return rt.RunConsumer(ctx, service.Consumer{Kafka: cfg.Kafka, Group: cfg.ConsumerGroup, LagInterval: cfg.LagInterval,
		Admin: s.Admin(), Ping: s.Ping, Run: s.Run,
		Topics: append(topics, stream.DeadLetterTopic(cfg.Kafka))})
}
