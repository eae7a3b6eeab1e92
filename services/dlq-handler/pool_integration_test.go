package main

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
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
