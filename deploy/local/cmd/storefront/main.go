// Command storefront is the local stack's shop: an orders REST API with
// cursor pagination and fault injection, signed webhooks on every order
// change, on a simulated clock, over the shared id seed (deploy/local/seed).
// It is the source that ingest-orders polls; see deploy/local/README.md
// ("Storefront") and proto/openapi/storefront-orders.v1.yaml.
//
// Example (a day of shop life every 24 seconds, webhooks to ingest-orders):
//
//	go run ./cmd/storefront -speed 3600 -webhook-url http://127.0.0.1:8088/v1/webhooks/orders -webhook-secret s3cret
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/ecomstream/platform/deploy/local/seed"
	"github.com/ecomstream/platform/deploy/local/storefront"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	err := run(ctx, os.Args[1:], os.Getenv, os.Stderr, log, nil)
	stop()
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		log.Error("storefront failed", "err", err)
		os.Exit(1)
	}
}

// run serves until ctx ends. ready, when not nil, receives the listen address.
func run(ctx context.Context, args []string, getenv func(string) string, usage io.Writer, log *slog.Logger, ready chan<- string) error {
	cfg, err := parseConfig(args, getenv, usage)
	if err != nil {
		return err
	}
	clock := storefront.NewSimClock(cfg.start, cfg.speed)

	var versions *json.Encoder
	if cfg.versionsOut != "" {
		f, err := os.OpenFile(cfg.versionsOut, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return err
		}
		defer f.Close()
		versions = json.NewEncoder(f)
	}
	var hooks *storefront.Webhooks
	if cfg.webhookURL != "" {
		hooks, err = storefront.NewWebhooks(storefront.WebhookConfig{
			URL: cfg.webhookURL, Secret: []byte(cfg.webhookSecret), MaxAttempts: cfg.webhookAttempts,
			MaxBackoff: cfg.webhookBackoff, DuplicateFraction: fraction(cfg.webhookDup),
			ReorderFraction: fraction(cfg.webhookReorder), Seed: cfg.seed, Log: log,
		})
		if err != nil {
			return err
		}
	}
	// OnChange runs on the simulator's goroutine, one version at a time, so
	// the file needs no lock.
	onChange := func(v storefront.Version) {
		if v.Broken != "" && (v.Order.Version == 1 || v.Broken == storefront.BrokenIllegalTransition) {
			log.Info("broken order version", "order_id", v.Order.ID, "version", v.Order.Version, "broken", v.Broken)
		}
		if versions != nil {
			if err := versions.Encode(v); err != nil {
				log.Error("writing the versions file", "err", err)
			}
		}
		if hooks != nil {
			hooks.Enqueue(v)
		}
	}
	sim := storefront.NewSimulator(storefront.SimConfig{
		Seed: cfg.seed, IDs: seed.Generate(cfg.idSeed, cfg.customers, cfg.products), Clock: clock,
		RatePerMinute: cfg.rate, BurstFactor: cfg.burstFactor, BrokenFraction: fraction(cfg.broken),
		LateFraction: fraction(cfg.late), MaxLateness: cfg.maxLateness, MaxOrders: cfg.maxOrders, OnChange: onChange,
	})
	sim.SetBurst(cfg.burst)
	faults := storefront.NewFaults(cfg.seed, cfg.faultRate, cfg.faults, cfg.slowDelay, cfg.retryAfter)
	api, err := storefront.NewAPI(sim, storefront.APIConfig{
		Token: cfg.token, TokenSecret: []byte(cfg.pageTokenSecret), Faults: faults, Log: log,
	})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: api, ReadHeaderTimeout: 5 * time.Second}
	log.Info("storefront listening", "addr", ln.Addr().String(), "speed", cfg.speed, "rate_per_minute", cfg.rate,
		"webhooks", cfg.webhookURL != "", "fault_rate", cfg.faultRate, "max_orders", cfg.maxOrders, "shop_time", clock.Now())
	if ready != nil {
		ready <- ln.Addr().String()
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, 3)
	wg.Go(func() { errc <- sim.Run(ctx, cfg.tick) })
	if hooks != nil {
		wg.Go(func() { errc <- hooks.Run(ctx) })
	}
	wg.Go(func() {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			errc <- err
			cancel()
		}
	})
	<-ctx.Done()
	shutdownCtx, done := context.WithTimeout(context.Background(), 5*time.Second)
	defer done()
	err = srv.Shutdown(shutdownCtx)
	wg.Wait()
	close(errc)
	for e := range errc {
		err = errors.Join(err, e)
	}
	st := sim.Stats()
	attrs := []any{"orders", st.Orders, "placed", st.Placed, "open", st.Open, "versions", st.Versions}
	if hooks != nil {
		attrs = append(attrs, "webhooks", hooks.Stats())
	}
	log.Info("storefront stopped", attrs...)
	return err
}
