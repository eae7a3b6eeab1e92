// Package stacktest connects integration tests to the local stack started by
// deploy/local/stack.sh (Apache Kafka, PostgreSQL, schema registry).
//
// A test that needs the stack calls Require first. If a component is not
// reachable the test fails (never skips) and says how to start the stack, so
// a CI run without the stack cannot pass by testing nothing.
package stacktest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// Defaults match deploy/local/stack.sh on its default ports; a second stack
// instance on other ports is reached by exporting what `stack.sh env` prints.
const (
	DefaultKafkaBrokers      = "127.0.0.1:19092"
	DefaultSchemaRegistryURL = "http://127.0.0.1:18081/apis/ccompat/v7"
	DefaultDatabaseURL       = "postgres://ecom:ecom@127.0.0.1:15432/ecom?sslmode=disable"
	// DefaultCatalogDatabaseURL is catalog-sync's replication role (stack.sh creates it).
	DefaultCatalogDatabaseURL = "postgres://ecom_cdc:ecom_cdc@127.0.0.1:15432/ecom?sslmode=disable"
)

// StartHint is how to start the stack; it ends every failure message.
const StartHint = "start the local stack with: deploy/local/stack.sh up   (or: make stack-up)"

// requireTimeout bounds all reachability checks together: a stack that is up
// answers in milliseconds.
const requireTimeout = 5 * time.Second

// Endpoints are the addresses of the local stack's components.
type Endpoints struct {
	KafkaBrokers      []string // KAFKA_BROKERS, comma separated
	SchemaRegistryURL string   // SCHEMA_REGISTRY_URL
	DatabaseURL       string   // DATABASE_URL
	// CatalogDatabaseURL logs in as the replication role ecom_cdc (CATALOG_DATABASE_URL).
	CatalogDatabaseURL string
}

// FromEnv reads the endpoints from the environment, defaulting to the local
// stack's fixed addresses.
func FromEnv() Endpoints {
	get := func(key, def string) string {
		if v := strings.TrimSpace(os.Getenv(key)); v != "" {
			return v
		}
		return def
	}
	var brokers []string
	for _, b := range strings.Split(get("KAFKA_BROKERS", DefaultKafkaBrokers), ",") {
		if b = strings.TrimSpace(b); b != "" {
			brokers = append(brokers, b)
		}
	}
	return Endpoints{
		KafkaBrokers:       brokers,
		SchemaRegistryURL:  strings.TrimRight(get("SCHEMA_REGISTRY_URL", DefaultSchemaRegistryURL), "/"),
		DatabaseURL:        get("DATABASE_URL", DefaultDatabaseURL),
		CatalogDatabaseURL: get("CATALOG_DATABASE_URL", DefaultCatalogDatabaseURL),
	}
}

// Require returns the stack's endpoints after checking that Kafka answers a
// metadata request, the schema registry lists its subjects and PostgreSQL
// accepts a login. Otherwise it fails the test with what is unreachable and
// how to start the stack.
func Require(tb testing.TB) Endpoints {
	tb.Helper()
	eps := FromEnv()
	ctx, cancel := context.WithTimeout(context.Background(), requireTimeout)
	defer cancel()

	checks := []struct {
		name string
		fn   func(context.Context) error
	}{
		{"kafka " + strings.Join(eps.KafkaBrokers, ","), func(ctx context.Context) error { return CheckKafka(ctx, eps.KafkaBrokers) }},
		{"schema registry " + eps.SchemaRegistryURL, func(ctx context.Context) error { return CheckSchemaRegistry(ctx, eps.SchemaRegistryURL) }},
		{"postgres " + redact(eps.DatabaseURL), func(ctx context.Context) error { return CheckPostgres(ctx, eps.DatabaseURL) }},
	}
	errs := make([]error, len(checks))
	var wg sync.WaitGroup
	for i, c := range checks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = c.fn(ctx)
		}()
	}
	wg.Wait()

	var failed []string
	for i, err := range errs {
		if err != nil {
			failed = append(failed, fmt.Sprintf("  %s: %v", checks[i].name, err))
		}
	}
	if len(failed) > 0 {
		tb.Fatalf("local stack not reachable:\n%s\n%s", strings.Join(failed, "\n"), StartHint)
	}
	return eps
}

// UniqueName returns a Kafka-safe name (topic, consumer group, transactional
// id, registry subject) made of prefix, the test's name and a random suffix,
// so tests and repeated runs against the same long-lived stack never collide.
func UniqueName(tb testing.TB, prefix string) string {
	tb.Helper()
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		tb.Fatalf("stacktest.UniqueName: %v", err)
	}
	// Underscores (t.Run turns spaces into them) become dashes: Kafka warns
	// about topic names mixing '.' and '_', and prefixes often contain '.'.
	name := strings.ReplaceAll(sanitize(tb.Name()), "_", "-")
	const maxTestPart = 120 // topic names may not exceed 249 characters
	if len(name) > maxTestPart {
		name = name[:maxTestPart]
	}
	return sanitize(prefix) + "-" + name + "-" + hex.EncodeToString(b[:])
}

// sanitize keeps the characters Kafka allows in topic names ([a-zA-Z0-9._-]).
func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '_', r == '-':
			return r
		default:
			return '-'
		}
	}, s)
}

// redact hides the password of a postgres:// URL in messages.
func redact(dsn string) string {
	at := strings.LastIndex(dsn, "@")
	scheme := strings.Index(dsn, "://")
	if at < 0 || scheme < 0 || at < scheme {
		return dsn
	}
	userinfo := dsn[scheme+3 : at]
	if i := strings.Index(userinfo, ":"); i >= 0 {
		return dsn[:scheme+3] + userinfo[:i] + ":***" + dsn[at:]
	}
	return dsn
}
