// Command catalog-sync brings the storefront's catalog (products and
// customers in PostgreSQL) into Kafka as ProductChange and CustomerChange
// records: scheduled and on-demand snapshots that send only what changed
// since the last run, exactly once at the source (the changes, the state of
// what was sent and the run's progress commit in one Kafka transaction), and
// change data capture by logical replication beside them, on the same
// transactional producer.
package main

import (
	"context"
	"fmt"
	"net/url"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ecomstream/platform/pkg/avroserde"
	"github.com/ecomstream/platform/pkg/config"
	"github.com/ecomstream/platform/pkg/service"
	"github.com/ecomstream/platform/pkg/stream"
	protoavro "github.com/ecomstream/platform/proto/avro"
	"github.com/ecomstream/platform/services/catalog-sync/internal/capture"
	"github.com/ecomstream/platform/services/catalog-sync/internal/cdc"
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
	CDC            capture.Config
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
		c.validatePublication(),
	) // nested configs validate themselves
}

// validatePublication checks the publication derived from the schema (an
// explicit CATALOG_PUBLICATION is checked by capture.Config).
func (c *Config) validatePublication() error {
	if !c.CDC.Enabled || c.CDC.Publication != "" {
		return nil
	}
	probe := capture.Config{Slot: "x", Publication: c.CDC.PublicationFor(c.Schema), WALWarnBytes: 1, StatusInterval: 1}
	if probe.Validate() != nil {
		return config.Errorf("CATALOG_PUBLICATION", "the default <CATALOG_SCHEMA>_catalog (%q) is not a publication name; set CATALOG_PUBLICATION", probe.Publication)
	}
	return nil
}

func (c *Config) validateDatabase() error {
	return config.PostgresURL("CATALOG_DATABASE_URL", "CATALOG_DATABASE_PASSWORD", c.DatabaseURL, c.DatabasePass, localPassword,
		func(u string) error { _, err := pgxpool.ParseConfig(u); return err })
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
		Source: &snapshot.PG{Pool: pool, Schema: cfg.Schema, ReplicationURL: replicationURL(cfg), SlotPrefix: cfg.CDC.Slot, Log: rt.Log},
		Commit: snapshot.Transact(txn), State: st,
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
	if !cfg.CDC.Enabled {
		return rt.Run(ctx, mgr.Run)
	}
	// Change data capture beside the snapshots, on the same transactional
	// producer: the state's lock (state.State.Mu) serialises the two, so a
	// snapshot page and a CDC batch never share a transaction.
	cdcCfg := cdc.Config{URL: replicationURL(cfg), Slot: cfg.CDC.Slot, Publication: cfg.CDC.PublicationFor(cfg.Schema),
		StatusInterval: cfg.CDC.StatusInterval, MaxBatchChanges: cfg.Kafka.MaxPollRecords, Logger: rt.Log}
	if _, err := cdc.New(cdcCfg); err != nil {
		return err
	}
	sup := &capture.Supervisor{New: func() (*cdc.Stream, error) { return cdc.New(cdcCfg) }, Backoff: stream.NewBackoff(cfg.Kafka), Log: rt.Log}
	cm, err := capture.NewMetrics(rt.Tel.Meter, sup.Stats)
	if err != nil {
		return err
	}
	sup.Sink = &capture.Sink{Schema: cfg.Schema, State: st, StateTopic: cfg.StateTopic, Topics: runner.Topics, Codecs: codecs,
		Commit: runner.Commit, Backoff: stream.NewBackoff(cfg.Kafka), ConfirmDelay: cfg.CDC.ConfirmDelay,
		Metrics: cm, Tracer: rt.Tel.Tracer, Log: rt.Log}
	mon := &capture.Monitor{DB: pool, Slot: cfg.CDC.Slot, WarnBytes: cfg.CDC.WALWarnBytes,
		Streaming: func() bool { return sup.Stats().Streaming }, Log: rt.Log}
	if err := mon.Register(rt.Tel.Meter); err != nil {
		return err
	}
	rt.HTTP.AddCheck("cdc", mon.Ready)
	return rt.Run(ctx, mgr.Run, mon.Run, sup.Run)
}

// replicationURL is CATALOG_DATABASE_URL with CATALOG_DATABASE_PASSWORD,
// when set, in place of the URL's password (the replication connection
// takes a URL; it is never logged).
func replicationURL(cfg *Config) string {
	if cfg.DatabasePass == "" {
		return cfg.DatabaseURL
	}
	u, err := url.Parse(cfg.DatabaseURL)
	if err != nil { // Validate parsed it already
		return cfg.DatabaseURL
	}
	u.User = url.UserPassword(u.User.Username(), cfg.DatabasePass)
	return u.String()
}

// connect opens a small pool (a snapshot holds one connection; /readyz
// pings with another and reads the slot with a third; the slot monitor
// uses one every 30 s) and checks the database answers. The replication
// stream has a connection of its own.
func connect(ctx context.Context, cfg *Config) (*pgxpool.Pool, error) {
	pc, err := pgxpool.ParseConfig(cfg.DatabaseURL)
	if err != nil {
		return nil, config.Errorf("CATALOG_DATABASE_URL", "cannot be parsed as a PostgreSQL URL")
	}
	if cfg.DatabasePass != "" {
		pc.ConnConfig.Password = cfg.DatabasePass
	}
	pc.MaxConns = 4
	pc.ConnConfig.RuntimeParams["application_name"] = name
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	return pool, nil
}
