// Package store is dlq-handler's PostgreSQL store: its schema migrations, the
// exactly-once writes of dead letters with the Kafka positions they cover,
// and the retention.
package store

import (
	"context"
	"fmt"
	"hash/fnv"
	"regexp"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	ddl "github.com/ecomstream/platform/sql"
)

// schemaRE is what DLQ_SCHEMA may be: it is pasted into identifiers unquoted.
var schemaRE = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,50}$`)

// ValidSchema reports whether s can be the store's schema.
func ValidSchema(s string) bool { return schemaRE.MatchString(s) }

// MigrateResult says what Migrate did.
type MigrateResult struct {
	Applied []int // versions applied now, in order
	Version int   // the schema's version afterwards
}

// Migrate creates the schema if needed and applies every migration of
// ddl.DLQMigrations not yet recorded in its schema_migrations table, each in
// a transaction of its own together with its record. Replicas starting at
// once take turns: a transaction-scoped advisory lock, keyed by the schema,
// serialises them, and the second finds the work done. A schema newer than
// this binary (a version it does not know) is an error: an older replica
// must not run against tables it does not understand.
func Migrate(ctx context.Context, pool *pgxpool.Pool, schema string) (MigrateResult, error) {
	var res MigrateResult
	if !ValidSchema(schema) {
		return res, fmt.Errorf("store: invalid schema name %q (want [a-z_][a-z0-9_]{0,50})", schema)
	}
	ms, err := ddl.DLQMigrations()
	if err != nil {
		return res, err
	}
	lock := lockKey(schema)
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", lock); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+schema+";\n"+
			"CREATE TABLE IF NOT EXISTS "+schema+".schema_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())")
		return err
	})
	if err != nil {
		return res, fmt.Errorf("store: create schema %s: %w", schema, err)
	}
	for _, m := range ms {
		applied := false
		err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", lock); err != nil {
				return err
			}
			var n int
			if err := tx.QueryRow(ctx, "SELECT count(*) FROM "+schema+".schema_migrations WHERE version = $1", m.Version).Scan(&n); err != nil {
				return err
			}
			if n > 0 {
				return nil
			}
			if _, err := tx.Exec(ctx, "SET LOCAL search_path TO "+schema); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, m.SQL); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, "INSERT INTO "+schema+".schema_migrations (version, name) VALUES ($1, $2)", m.Version, m.Name); err != nil {
				return err
			}
			applied = true
			return nil
		})
		if err != nil {
			return res, fmt.Errorf("store: migration %s: %w", m.Name, err)
		}
		if applied {
			res.Applied = append(res.Applied, m.Version)
		}
	}
	if err := pool.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM "+schema+".schema_migrations").Scan(&res.Version); err != nil {
		return res, fmt.Errorf("store: schema version: %w", err)
	}
	if last := ms[len(ms)-1].Version; res.Version > last {
		return res, fmt.Errorf("store: schema %s is at version %d, newer than this dlq-handler knows (%d): run a newer dlq-handler", schema, res.Version, last)
	}
	return res, nil
}

// lockKey is the advisory lock of a schema's migrations.
func lockKey(schema string) int64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte("dlq-handler migrate " + schema))
	return int64(h.Sum64())
}
