// Command catalogdb sets up and changes the storefront's catalog database in
// the local stack's PostgreSQL (the source of catalog-sync); see
// deploy/local/README.md ("Catalog database and mutator").
//
//	eval "$(deploy/local/stack.sh env)"
//	go run ./cmd/catalogdb init                           # schema storefront, the default seed
//	go run ./cmd/catalogdb init -schema sf_bench -products 100000
//	go run ./cmd/catalogdb mutate -rate 30 -burst-every 2m -log /tmp/catalog.jsonl
//	go run ./cmd/catalogdb script -log /tmp/script.jsonl  # the end-to-end test's history
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ecomstream/platform/deploy/local/catalogdb"
	"github.com/ecomstream/platform/deploy/local/seed"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	err := run(ctx, os.Args[1:], os.Getenv, os.Stderr, log)
	stop()
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		log.Error("catalogdb failed", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, usage io.Writer, log *slog.Logger) error {
	cfg, err := parseConfig(args, getenv, usage)
	if err != nil {
		return err
	}
	pool, err := pgxpool.New(ctx, cfg.databaseURL)
	if err != nil {
		// pgx's parse errors can quote the URL; say which setting is wrong instead.
		return errors.New("-database-url (DATABASE_URL): not a valid PostgreSQL URL")
	}
	defer pool.Close()

	var logFile io.Writer
	if cfg.logFile != "" {
		f, err := os.OpenFile(cfg.logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return err
		}
		defer f.Close()
		logFile = f
	}

	switch cfg.cmd {
	case "init":
		opts := []catalogdb.InitOption{catalogdb.WithIDSeed(cfg.idSeed),
			catalogdb.WithProducts(cfg.products), catalogdb.WithCustomers(cfg.customers)}
		if cfg.reseed {
			opts = append(opts, catalogdb.WithReseed())
		}
		res, err := catalogdb.Init(ctx, pool, cfg.schema, opts...)
		if err != nil {
			return err
		}
		log.Info("catalog loaded", "schema", cfg.schema, "inserted_products", res.Products, "inserted_customers", res.Customers,
			"inserted_categories", res.Categories, "reseed", cfg.reseed, "took", res.Took.String())
	case "script":
		script, err := catalogdb.Script(seed.Generate(cfg.idSeed, cfg.customers, cfg.products))
		if err != nil {
			return err
		}
		entries, err := catalogdb.ApplyScript(ctx, pool, cfg.schema, script, logFile)
		if err != nil {
			return err
		}
		log.Info("script applied", "schema", cfg.schema, "transactions", len(script), "rows", len(entries))
	case "mutate":
		m, err := catalogdb.NewMutator(ctx, pool, catalogdb.MutatorConfig{
			Schema: cfg.schema, RatePerMinute: never(cfg.rate), BurstEvery: never(cfg.burstEvery), BadFraction: never(cfg.bad),
			Seed: cfg.seed, Log: logFile, Logger: log, MaxChanges: cfg.maxChanges,
		})
		if err != nil {
			return err
		}
		log.Info("mutating the catalog", "schema", cfg.schema, "rate_per_minute", cfg.rate, "burst_every", cfg.burstEvery.String(),
			"bad", cfg.bad, "log", cfg.logFile)
		err = m.Run(ctx)
		st := m.Stats()
		log.Info("mutator stopped", "transactions", st.Transactions, "rows", st.Rows, "bursts", st.Bursts, "failed", st.Failed, "unlogged", st.Unlogged,
			"kinds", fmt.Sprint(st.Kinds), "bad", fmt.Sprint(st.Bad))
		return err
	}
	return nil
}
