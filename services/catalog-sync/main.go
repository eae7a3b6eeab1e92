// Command catalog-sync brings the storefront's catalog (products and
// customers in PostgreSQL) into Kafka as ProductChange and CustomerChange
// records: scheduled and on-demand snapshots that send only what changed
// since the last run, exactly once at the source (the changes, the state of
// what was sent and the run's progress commit in one Kafka transaction).
package main

import (
	"context"
	"fmt"
	"net"
	"net/url"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ecomstream/platform/pkg/avroserde"
	"github.com/ecomstream/platform/pkg/config"
	"github.com/ecomstream/platform/pkg/service"
	"github.com/ecomstream/platform/pkg/stream"
	protoavro "github.com/ecomstream/platform/proto/avro"
	"github.com/ecomstream/platform/services/catalog-sync/internal/runs"
	"github.com/ecomstream/platform/services/catalog-sync/internal/snapshot"
	"github.com/ecomstream/platform/services/catalog-sync/internal/state"
)

const name = "catalog-sync"

var version = "dev" // set with -ldflags "-X main.version=..."

// localPassword is the local stack's password of the ecom_cdc role: the
// default URL's, accepted only for a database on a loopback address.
const localPassword = "ecom_cdc"

// Config is catalog-sync's configuration.
type Config struct {
	service.Base
	ProductsTopic  string `env:"PRODUCTS_TOPIC" default:"ecom.products.v1" usage:"topic of Avro ProductChanges, keyed by product_id"`
	CustomersTopic string `env:"CUSTOMERS_TOPIC" default:"ecom.customers.v1" usage:"topic of Avro CustomerChanges, keyed by customer_id"`
	StateTopic     string `env:"CATALOG_STATE_TOPIC" default:"ecom.catalog-sync.state.v1" usage:"compacted topic of what was last sent (a content hash per row) and of the progress of the run in flight; written only by this service, its name is part of the fixed transactional id"`
	DatabaseURL    string `env:"CATALOG_DATABASE_URL" default:"postgres://ecom_cdc:ecom_cdc@127.0.0.1:15432/ecom?sslmode=disable" usage:"PostgreSQL URL of the storefront database, as the ecom_cdc role (SELECT on the catalog tables, REPLICATION); put the password in CATALOG_DATABASE_PASSWORD outside the local stack"`
	DatabasePass   string `env:"CATALOG_DATABASE_PASSWORD" default:"" secret:"true" usage:"password of the URL's role (inject from a secret); overrides a password in CATALOG_DATABASE_URL"`
	Schema         string `env:"CATALOG_SCHEMA" default:"storefront" usage:"PostgreSQL schema of the products and customers tables"`
	PageSize       int    `env:"CATALOG_SNAPSHOT_PAGE_SIZE" default:"1000" usage:"rows per keyset page; a page's changes, state and progress commit in one Kafka transaction"`
	Runs           runs.Config
}

// Validate implements config.Validator.
func (c *Config) Validate() error {
	return config.First(
		config.NotEmpty("PRODUCTS_TOPIC", c.ProductsTopic),
		config.NotEmpty("CUSTOMERS_TOPIC", c.CustomersTopic),
		config.NotEmpty("CATALOG_STATE_TOPIC", c.StateTopic),
		c.validateDatabase(),
		config.NotEmpty("CATALOG_SCHEMA", c.Schema),
		config.Between("CATALOG_SNAPSHOT_PAGE_SIZE", c.PageSize, 1, 10_000),
	) // nested configs validate themselves
}

func (c *Config) validateDatabase() error {
	u, err := url.Parse(c.DatabaseURL)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") || u.Host == "" {
		return config.Errorf("CATALOG_DATABASE_URL", "must be a postgres:// URL with a host")
	}
	if _, err := pgxpool.ParseConfig(c.DatabaseURL); err != nil {
		return config.Errorf("CATALOG_DATABASE_URL", "cannot be parsed as a PostgreSQL URL")
	}
	pw, _ := u.User.Password()
	if c.DatabasePass == "" && pw == localPassword && !loopback(u.Hostname()) {
		return config.Errorf("CATALOG_DATABASE_PASSWORD", "the local stack's password is only for a database on a loopback address; set CATALOG_DATABASE_PASSWORD from a secret")
	}
	return nil
}

func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func main() {
	var cfg Config
	service.Main(name, version, &cfg, func(ctx context.Context, rt *service.Runtime) error { return run(ctx, rt, &cfg) })
}

func run(ctx context.Context, rt *service.Runtime, cfg *Config) error {
	pool, err := connect(ctx, cfg)
	if err != nil {
		return err
	}
	defer pool.Close()
	codecs := map[string]stream.Encoder{}
	for table, subject := range map[string]struct{ topic, entity string }{
		snapshot.Products:  {cfg.ProductsTopic, protoavro.ProductChange},
		snapshot.Customers: {cfg.CustomersTopic, protoavro.CustomerChange},
	} {
		c, err := rt.Registry.Codec(ctx, avroserde.SubjectFor(subject.topic), subject.entity)
		if err != nil {
			return err
		}
		codecs[table] = c
	}
	opts, err := cfg.Kafka.ClientOpts(name)
	if err != nil {
		return err
	}
	opts = append(opts, kgo.WithLogger(stream.Logger(rt.Log)))
	// The fixed transactional id of the state: every replica uses the same,
	// so the one that initialises last owns it (KIP-618 fencing).
	txn, err := kgo.NewClient(append(opts,
		kgo.TransactionalID(state.TransactionalID(name, cfg.StateTopic)),
		kgo.TransactionTimeout(cfg.Kafka.TransactionTimeout))...)
	if err != nil {
		return fmt.Errorf("kafka: %w", err)
	}
	defer txn.Close()
	if cfg.Kafka.CreateTopics {
		if err := stream.EnsureTopics(ctx, kadm.NewClient(txn), cfg.Kafka,
			stream.TopicSpec{Name: cfg.ProductsTopic}, stream.TopicSpec{Name: cfg.CustomersTopic}, state.Topic(cfg.StateTopic)); err != nil {
			return err
		}
	}
	if _, _, err := txn.ProducerID(ctx); err != nil {
		return fmt.Errorf("state: init transactional producer: %w", err)
	}
	st, err := state.Load(ctx, opts, cfg.StateTopic)
	if err != nil {
		return err
	}
	rt.Log.InfoContext(ctx, "state loaded", "products", len(st.Table(snapshot.Products)),
		"customers", len(st.Table(snapshot.Customers)), "interrupted_run", st.Progress != nil)
	runner := &snapshot.Runner{
		Source: &snapshot.PG{Pool: pool, Schema: cfg.Schema}, Commit: snapshot.Transact(txn), State: st,
		StateTopic: cfg.StateTopic, Topics: map[string]string{snapshot.Products: cfg.ProductsTopic, snapshot.Customers: cfg.CustomersTopic},
		Codecs: codecs, PageSize: cfg.PageSize, ProgressEvery: 10, Tracer: rt.Tel.Tracer,
	}
	mgr, err := runs.New(cfg.Runs, runs.Deps{
		Run: func(ctx context.Context, p state.Progress, onPage func(snapshot.Page)) error {
			runner.OnPage = onPage
			return runner.Run(ctx, p)
		},
		Pending: func() *state.Progress { return st.Progress },
		Meter:   rt.Tel.Meter, Log: rt.Log,
	})
	if err != nil {
		return err
	}
	mgr.Routes(rt.HTTP.Router, cfg.HTTP.OperatorToken)
	rt.HTTP.AddCheck("kafka", txn.Ping)
	rt.HTTP.AddCheck("postgres", pool.Ping)
	rt.HTTP.AddCheck("last_run", mgr.Ready)
	// Change data capture (internal/cdc, logical replication from the
	// publication) is the second part of this service: its stream will run
	// here beside the run manager, producing with a client of its own.
	return rt.Run(ctx, mgr.Run)
}

// connect opens a small pool (a snapshot holds one connection; /readyz
// pings with another) and checks the database answers.
func connect(ctx context.Context, cfg *Config) (*pgxpool.Pool, error) {
	pc, err := pgxpool.ParseConfig(cfg.DatabaseURL)
	if err != nil {
		return nil, config.Errorf("CATALOG_DATABASE_URL", "cannot be parsed as a PostgreSQL URL")
	}
	if cfg.DatabasePass != "" {
		pc.ConnConfig.Password = cfg.DatabasePass
	}
	pc.MaxConns = 3
	pc.ConnConfig.RuntimeParams["application_name"] = name
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	return pool, nil
}
