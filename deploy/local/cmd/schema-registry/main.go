// Command schema-registry serves a Confluent-compatible schema registry API
// for the LOCAL STACK AND TESTS ONLY.
//
// No Confluent Schema Registry can be installed from the package registries
// this project builds from, so deploy/local/stack.sh runs this stand-in
// instead: franz-go's in-memory srfake registry (github.com/twmb/franz-go/pkg/sr/srfake)
// behind a real HTTP server, made durable by a journal file that is replayed
// on start so that schema ids never change across restarts (Kafka records
// carry schema ids). It has no authentication, no compatibility checking
// (srfake answers "compatible" to everything) and no clustering.
//
// Production points SCHEMA_REGISTRY_URL at a real Confluent-compatible
// registry; nothing in the services depends on this program.
//
// Configuration (a flag wins over its environment variable):
//
//	-listen  SCHEMA_REGISTRY_LISTEN   address to serve on (default 127.0.0.1:18081)
//	-journal SCHEMA_REGISTRY_JOURNAL  journal file (default .run/schema-registry/journal.jsonl)
//
// Besides the registry API it serves GET /healthz.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/ecomstream/platform/deploy/local/cmd/schema-registry/internal/registry"
)

// Config is the program's whole configuration.
type Config struct {
	Listen  string
	Journal string
}

// Validate reports the first invalid setting, naming its variable.
func (c Config) Validate() error {
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("SCHEMA_REGISTRY_LISTEN=%q: want host:port: %w", c.Listen, err)
	}
	if c.Journal == "" {
		return errors.New("SCHEMA_REGISTRY_JOURNAL is empty: want a file path")
	}
	return nil
}

func parseConfig(args []string, getenv func(string) string, stderr io.Writer) (Config, error) {
	envOr := func(key, def string) string {
		if v := getenv(key); v != "" {
			return v
		}
		return def
	}
	var c Config
	fs := flag.NewFlagSet("schema-registry", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.Listen, "listen", envOr("SCHEMA_REGISTRY_LISTEN", "127.0.0.1:18081"), "address to serve on (env SCHEMA_REGISTRY_LISTEN)")
	fs.StringVar(&c.Journal, "journal", envOr("SCHEMA_REGISTRY_JOURNAL", ".run/schema-registry/journal.jsonl"), "journal file (env SCHEMA_REGISTRY_JOURNAL)")
	if err := fs.Parse(args); err != nil {
		return Config{}, err
	}
	return c, c.Validate()
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	err := run(ctx, log, os.Args[1:], os.Getenv)
	stop()
	if err != nil {
		log.Error("schema-registry stopped", "error", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, log *slog.Logger, args []string, getenv func(string) string) error {
	cfg, err := parseConfig(args, getenv, os.Stderr)
	if err != nil {
		return err
	}
	reg, err := registry.Open(cfg.Journal, log)
	if err != nil {
		return err
	}
	defer reg.Close()

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	srv := &http.Server{
		Handler:           reg.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
	}
	log.Info("schema registry (local stand-in) serving", "addr", ln.Addr().String(),
		"journal", cfg.Journal, "replayed_entries", reg.Replayed())

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	log.Info("schema registry stopped")
	return nil
}
