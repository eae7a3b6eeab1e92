// Command dlq-handler stores every dead letter of the platform (the
// ecom.dlq.v1 topic) in PostgreSQL exactly once, keeps them under a
// retention policy, and reports what is stored; the API and console for
// inspecting, replaying and discarding them mount on its HTTP server.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ecomstream/platform/pkg/avroserde"
	"github.com/ecomstream/platform/pkg/config"
	"github.com/ecomstream/platform/pkg/httpserver"
	"github.com/ecomstream/platform/pkg/service"
	"github.com/ecomstream/platform/pkg/stream"
	protoavro "github.com/ecomstream/platform/proto/avro"
	"github.com/ecomstream/platform/services/dlq-handler/internal/api"
	"github.com/ecomstream/platform/services/dlq-handler/internal/auth"
	"github.com/ecomstream/platform/services/dlq-handler/internal/console"
	"github.com/ecomstream/platform/services/dlq-handler/internal/health"
	"github.com/ecomstream/platform/services/dlq-handler/internal/ingest"
	"github.com/ecomstream/platform/services/dlq-handler/internal/monitor"
	"github.com/ecomstream/platform/services/dlq-handler/internal/replay"
	"github.com/ecomstream/platform/services/dlq-handler/internal/retention"
	"github.com/ecomstream/platform/services/dlq-handler/internal/store"
)

const name = "dlq-handler"

var version = "dev" // set with -ldflags "-X main.version=..."

// localPassword is the local stack's password of the ecom role: the default
// URL's, accepted only for a database on a loopback address.
const localPassword = "ecom"

// Config is dlq-handler's configuration.
type Config struct {
	service.Base
	DatabaseURL   string        `env:"DLQ_DATABASE_URL" default:"postgres://ecom:ecom@127.0.0.1:15432/ecom?sslmode=disable" usage:"PostgreSQL URL of the dead-letter store; put the password in DLQ_DATABASE_PASSWORD outside the local stack"`
	DatabasePass  string        `env:"DLQ_DATABASE_PASSWORD" default:"" secret:"true" usage:"password of the URL's role (inject from a secret); overrides a password in DLQ_DATABASE_URL"`
	Schema        string        `env:"DLQ_SCHEMA" default:"dlq" usage:"PostgreSQL schema of the store (created and migrated at start; the connections' search_path)"`
	Topic         string        `env:"DLQ_TOPIC" default:"ecom.dlq.v1" usage:"dead-letter topic consumed (Avro DeadLetter envelopes)"`
	ConsumerGroup string        `env:"KAFKA_CONSUMER_GROUP" default:"dlq-handler" usage:"consumer group (positions are stored per group in PostgreSQL; Kafka's offsets only mirror them)"`
	PIIEntities   []string      `env:"DLQ_PII_ENTITIES" default:"customer_change,order" usage:"entities whose dead letters hold personal data (pii: shown redacted, originals purged after DLQ_RETENTION_PII); a dead letter whose original holds an email-like string, or that names a personal field (a reason's field such as client_ip, a top-level field of a JSON original), is pii too"`
	DBMaxConns    int           `env:"DLQ_DATABASE_MAX_CONNS" default:"8" usage:"PostgreSQL connections of the store's pool (consumer, replay, retention, gauges and readiness; the API and console have a pool of their own, DLQ_API_MAX_CONNS)"`
	APIMaxConns   int           `env:"DLQ_API_MAX_CONNS" default:"4" usage:"PostgreSQL connections the API and the console may hold, a pool of their own beside DLQ_DATABASE_MAX_CONNS: however many searches run at once, the consumer always gets a connection"`
	APITimeout    time.Duration `env:"DLQ_API_STATEMENT_TIMEOUT" default:"15s" usage:"statement_timeout of the API's and the console's connections: a query (a search, stats, a discard waiting for locks) running longer is cancelled and answered 503 timeout"`
	LagInterval   time.Duration `env:"LAG_REFRESH_INTERVAL" default:"15s" usage:"how often consumer lag and the store's gauges (counts by state and reason, oldest unresolved age) are refreshed"`
	TraceURL      string        `env:"DLQ_TRACE_URL_TEMPLATE" default:"" usage:"link to a dead letter's trace, {trace_id} replaced, e.g. http://127.0.0.1:16686/trace/{trace_id} (Jaeger); empty = no link"`
	Retention     retention.Config
	Auth          auth.Config
	Replay        replay.Config
	Health        health.Config
}

// entityRE is what a DLQ_PII_ENTITIES item may be (an entity name).
var entityRE = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

// Validate implements config.Validator.
func (c *Config) Validate() error {
	errs := []error{
		c.validateDatabase(),
		config.NotEmpty("DLQ_TOPIC", c.Topic),
		config.NotEmpty("KAFKA_CONSUMER_GROUP", c.ConsumerGroup),
		config.Between("DLQ_DATABASE_MAX_CONNS", c.DBMaxConns, 2, 1000),
		config.Between("DLQ_API_MAX_CONNS", c.APIMaxConns, 1, 1000),
		config.Between("DLQ_API_STATEMENT_TIMEOUT", c.APITimeout, time.Millisecond, 24*time.Hour),
		config.Positive("LAG_REFRESH_INTERVAL", c.LagInterval),
		api.CheckTraceTemplate("DLQ_TRACE_URL_TEMPLATE", c.TraceURL),
	}
	if !store.ValidSchema(c.Schema) {
		errs = append(errs, config.Errorf("DLQ_SCHEMA", "%q is not a schema name (lower case letters, digits and _, at most 51, not starting with a digit)", c.Schema))
	}
	for _, e := range c.PIIEntities {
		if !entityRE.MatchString(e) {
			errs = append(errs, config.Errorf("DLQ_PII_ENTITIES", "%q is not an entity name (e.g. customer_change)", e))
			break
		}
	}
	return config.First(errs...) // nested configs validate themselves
}

func (c *Config) validateDatabase() error {
	return config.PostgresURL("DLQ_DATABASE_URL", "DLQ_DATABASE_PASSWORD", c.DatabaseURL, c.DatabasePass, localPassword,
		func(u string) error { _, err := pgxpool.ParseConfig(u); return err })
}

func main() {
	var cfg Config
	service.Main(name, version, &cfg, func(ctx context.Context, rt *service.Runtime) error { return run(ctx, rt, &cfg) })
}

func run(ctx context.Context, rt *service.Runtime, cfg *Config) error {
	pool, err := connect(ctx, cfg, name, cfg.DBMaxConns, 0)
	if err != nil {
		return err
	}
	defer pool.Close()
	apiPool, err := connect(ctx, cfg, name+"-api", cfg.APIMaxConns, cfg.APITimeout)
	if err != nil {
		return err
	}
	defer apiPool.Close()
	mres, err := store.Migrate(ctx, pool, cfg.Schema)
	if err != nil {
		return err
	}
	rt.Log.InfoContext(ctx, "store ready", "schema", cfg.Schema, "schema_version", mres.Version, "applied", mres.Applied)
	st := store.New(pool)

	codec, err := rt.Registry.Codec(ctx, avroserde.SubjectFor(cfg.Topic), protoavro.DeadLetter)
	if err != nil {
		return err
	}
	consumer, err := ingest.New(ingest.Config{Kafka: cfg.Kafka, Service: name, Group: cfg.ConsumerGroup, Topic: cfg.Topic,
		PIIEntities: cfg.PIIEntities, Codec: codec, Meter: rt.Tel.Meter, Metrics: rt.Metrics, Tracer: rt.Tel.Tracer, Log: rt.Log}, st)
	if err != nil {
		return err
	}
	ret, err := retention.New(cfg.Retention, st.Purge, rt.Tel.Meter, rt.Log, nil)
	if err != nil {
		return err
	}
	mon, err := monitor.New(st.Stats, cfg.LagInterval, rt.Tel.Meter, rt.Log, nil)
	if err != nil {
		return err
	}
	tokens, err := auth.New(cfg.Auth, auth.WithLogger(rt.Log))
	if err != nil {
		return err
	}
	if !tokens.Configured() {
		rt.Log.WarnContext(ctx, "no API token configured (DLQ_TOKENS_FILE, DLQ_OPERATOR_TOKEN, DLQ_VIEWER_TOKEN): dead letters are stored, but the API refuses every request")
	}
	kopts, err := cfg.Kafka.ClientOpts(name)
	if err != nil {
		return err
	}
	rk, err := replay.NewKafka(append(kopts, kgo.WithLogger(stream.Logger(rt.Log))))
	if err != nil {
		return err
	}
	defer rk.Close()
	rep, err := replay.New(cfg.Replay, replay.Deps{Pool: pool, Kafka: rk, DLQ: replay.DLQ{Topic: cfg.Topic, Group: cfg.ConsumerGroup},
		Meter: rt.Tel.Meter, Log: rt.Log})
	if err != nil {
		return err
	}
	checker, err := health.New(cfg.Health, health.PGWaiting(apiPool), health.WithLogger(rt.Log))
	if err != nil {
		return err
	}
	routes(rt.HTTP, deps{pool: apiPool, store: st, registry: rt.Registry, retention: ret, log: rt.Log, tokens: tokens, traceURL: cfg.TraceURL, replay: rep,
		health: checker})
	// The dead-letter topic as the stages create it (long retention), under
	// this service's name for it.
	dlq := stream.DeadLetterTopic(cfg.Kafka)
	dlq.Name = cfg.Topic
	return rt.RunConsumer(ctx, service.Consumer{Kafka: cfg.Kafka, Group: cfg.ConsumerGroup, LagInterval: cfg.LagInterval,
		Admin: consumer.Admin(), Ping: consumer.Ping, Run: consumer.Run, Topics: []stream.TopicSpec{dlq},
		Parts: []func(context.Context) error{ret.Run, mon.Run, rep.Run, backfill(st, rt.Log)}})
}

// backfill fills message_redacted of rows stored before it existed
// (store.BackfillSearch) beside the consumer, so an upgrade on a large
// store does not hold up ingestion; until it is done a search by a caller
// without the PII right misses those rows (never shows more). A failure is
// retried a minute later.
func backfill(st *store.Store, log *slog.Logger) func(context.Context) error {
	return func(ctx context.Context) error {
		for {
			n, err := st.BackfillSearch(ctx)
			if err == nil {
				if n > 0 {
					log.InfoContext(ctx, "search column backfilled", "rows", n)
				}
				return nil
			}
			if ctx.Err() != nil {
				return nil
			}
			log.WarnContext(ctx, "search column backfill failed; retrying in 1m", "rows", n, "err", err)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(time.Minute):
			}
		}
	}
}

// deps are what the HTTP routes are built from.
type deps struct {
	pool      *pgxpool.Pool // the API's and console's (DLQ_API_MAX_CONNS, DLQ_API_STATEMENT_TIMEOUT)
	store     *store.Store
	registry  *avroserde.Registry
	retention *retention.Runner
	log       *slog.Logger
	tokens    *auth.Tokens
	traceURL  string
	replay    *replay.Service
	health    *health.Checker // nil: no health page (tests of the other routes)
}

// routes mounts dlq-handler's own HTTP surface on srv, beside the
// /healthz, /readyz and /metrics every service has (httpserver.New; /readyz
// also checks schema_registry, added by service.Start, and kafka, added by
// RunConsumer).
// The API (internal/api) serves /v1/*, the console (internal/console)
// /console/, and / redirects to the console. The health report
// (internal/health) is GET /v1/health (JSON, viewer token) and the
// console's /console/health page, where GET /health leads (the session
// cookie is scoped to /console/).
func routes(srv *httpserver.Server, d deps) {
	srv.AddCheck("postgres", d.store.Ping)
	detail := api.Config{Pool: d.pool, Auth: d.tokens, Registry: d.registry.Generic(), Log: d.log,
		TraceURLTemplate: d.traceURL,
		Retention:        func(ctx context.Context) (any, error) { return d.retention.Purge(ctx, retention.TriggerAPI) }}
	ccfg := console.Config{Store: console.PGStore{Pool: d.pool}, Tokens: d.tokens, Detail: detail, Log: d.log}
	if d.health != nil {
		ccfg.Health = d.health
		srv.Router.With(d.tokens.Bearer, auth.Require(auth.Viewer)).Get("/v1/health", d.health.Handler().ServeHTTP)
		srv.Router.Get("/health", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, console.HealthPath, http.StatusSeeOther)
		})
	}
	if d.replay != nil { // nil: the API answers 503 and the console shows replay as unavailable
		detail.Replay, ccfg.Replay = d.replay, d.replay
	}
	srv.Router.Handle("/v1/*", api.New(detail))
	ui := console.New(ccfg)
	srv.Router.Handle(console.Prefix, ui)
	srv.Router.Handle(console.Prefix+"/*", ui)
	srv.Router.Get("/", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, console.Prefix+"/", http.StatusSeeOther)
	})
}

// connect opens a pool of at most maxConns connections to the store, named
// app in pg_stat_activity: every
// connection's search_path is the store's schema (its SQL is unqualified),
// its statement_timeout timeout (0 = the server's), and
// DLQ_DATABASE_PASSWORD, when set, replaces the URL's password. The store
// and the API get one each, so the API cannot take the consumer's
// connections.
func connect(ctx context.Context, cfg *Config, app string, maxConns int, timeout time.Duration) (*pgxpool.Pool, error) {
	pc, err := pgxpool.ParseConfig(cfg.DatabaseURL)
	if err != nil {
		return nil, config.Errorf("DLQ_DATABASE_URL", "cannot be parsed as a PostgreSQL URL")
	}
	if cfg.DatabasePass != "" {
		pc.ConnConfig.Password = cfg.DatabasePass
	}
	pc.MaxConns = int32(maxConns)
	pc.ConnConfig.RuntimeParams["application_name"] = app
	pc.ConnConfig.RuntimeParams["search_path"] = cfg.Schema
	if timeout > 0 {
		pc.ConnConfig.RuntimeParams["statement_timeout"] = strconv.FormatInt(max(timeout.Milliseconds(), 1), 10)
	}
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	return pool, nil
}
