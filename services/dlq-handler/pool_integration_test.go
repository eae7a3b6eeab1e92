package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ecomstream/platform/services/dlq-handler/internal/store"
)

// TestIntegrationAPIPool: the API's pool (DLQ_API_MAX_CONNS,
// DLQ_API_STATEMENT_TIMEOUT) is the API's own: its statements are cancelled
// after the timeout, and with every connection it may hold busy the
// store's pool still gives the consumer one at once.
func TestIntegrationAPIPool(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: runs without -short, against the local stack")
	}
	url := os.Getenv("DATABASE_URL")
	if url == "" {
		t.Fatal(`DATABASE_URL is not set: start the local stack and eval "$(deploy/local/stack.sh env)"`)
	}
	ctx := context.Background()
	cfg := Config{DatabaseURL: url, Schema: "public", DBMaxConns: 2, APIMaxConns: 2, APITimeout: 150 * time.Millisecond}
	st, err := connect(ctx, &cfg, name, cfg.DBMaxConns, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	apiPool, err := connect(ctx, &cfg, name+"-api", cfg.APIMaxConns, cfg.APITimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer apiPool.Close()

	var pe *pgconn.PgError
	if _, err := apiPool.Exec(ctx, "SELECT pg_sleep(2)"); !errors.As(err, &pe) || pe.Code != "57014" {
		t.Errorf("a 2s statement on the API's pool: %v, want SQLSTATE 57014 (statement timeout)", err)
	}
	if _, err := st.Exec(ctx, "SELECT pg_sleep(0.3)"); err != nil {
		t.Errorf("the store's pool has no statement timeout: %v", err)
	}

	var held []*pgxpool.Conn
	for range cfg.APIMaxConns {
		c, err := apiPool.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	defer func() {
		for _, c := range held {
			c.Release()
		}
	}()
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if c, err := apiPool.Acquire(short); err == nil {
		c.Release()
		t.Errorf("the API's pool gave a connection beyond DLQ_API_MAX_CONNS=%d", cfg.APIMaxConns)
	}
	quick, cancel2 := context.WithTimeout(ctx, 2*time.Second)
	defer cancel2()
	c, err := st.Acquire(quick)
	if err != nil {
		t.Fatalf("with the API's connections busy the store's pool gives none: %v", err)
	}
	c.Release()
}

// TestIntegrationBackfillPart: the part main runs beside the consumer
// fills message_redacted of a row stored without it (an older version's)
// and ends.
func TestIntegrationBackfillPart(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: runs without -short, against the local stack")
	}
	url := os.Getenv("DATABASE_URL")
	if url == "" {
		t.Fatal(`DATABASE_URL is not set: start the local stack and eval "$(deploy/local/stack.sh env)"`)
	}
	ctx := context.Background()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	cfg := Config{DatabaseURL: url, Schema: "dlq_test_" + hex.EncodeToString(b)}
	pool, err := connect(ctx, &cfg, name, 2, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	defer func() { _, _ = pool.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+cfg.Schema+" CASCADE") }()
	if _, err := store.Migrate(ctx, pool, cfg.Schema); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `INSERT INTO dead_letters (dead_letter_id, stage, source_topic, source_partition, source_offset,
		source_timestamp, reasons, codes, rule_ids, message, attempt, failed_at, dlq_partition, dlq_offset)
		VALUES ('old', 'validator', 't', 0, 0, now(), '[{"code": "X", "rule_id": null, "field": "note", "message": "to ann@shop.example"}]',
		'{X}', '{}', 'to ann@shop.example', 1, now(), 0, 0)`); err != nil {
		t.Fatal(err)
	}
	done, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := backfill(store.New(pool), slog.New(slog.DiscardHandler))(done); err != nil || done.Err() != nil {
		t.Fatalf("backfill part: %v (ctx %v)", err, done.Err())
	}
	var got *string
	if err := pool.QueryRow(ctx, "SELECT message_redacted FROM dead_letters WHERE dead_letter_id = 'old'").Scan(&got); err != nil {
		t.Fatal(err)
	}
	if got == nil || *got != "to [redacted]" {
		t.Errorf("message_redacted after the backfill part = %v, want %q", got, "to [redacted]")
	}
}
