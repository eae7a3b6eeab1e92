package main

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ecomstream/platform/pkg/config"
	"github.com/ecomstream/platform/pkg/service"
	"github.com/ecomstream/platform/services/catalog-sync/internal/cdc"
	"github.com/ecomstream/platform/services/catalog-sync/internal/runs"
	ddl "github.com/ecomstream/platform/sql"
)

// TestIntegrationService runs the service as main wires it against the
// local stack: POST /v1/sync starts a run, GET /v1/runs/{id} shows it end,
// a second run sends nothing, /readyz is ready.
func TestIntegrationService(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs the local stack; skipped under -short")
	}
	ownerURL, cdcURL := os.Getenv("DATABASE_URL"), os.Getenv("CATALOG_DATABASE_URL")
	if ownerURL == "" || cdcURL == "" {
		t.Fatal(`DATABASE_URL and CATALOG_DATABASE_URL are not set: start the local stack and eval "$(deploy/local/stack.sh env)"`)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var b [4]byte
	_, _ = rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	schema, prefix := "sf_catsvc_"+id, "it-catsvc-"+id

	owner, err := pgxpool.New(ctx, ownerURL)
	if err != nil {
		t.Fatal(err)
	}
	defer owner.Close()
	stmt, err := ddl.Storefront(schema, "ecom_cdc")
	if err != nil {
		t.Fatal(err)
	}
	slot := "it_catsvc_" + id
	defer func() {
		if err := dropSlot(cdcURL, slot); err != nil {
			t.Errorf("drop slot %s: %v", slot, err)
		}
		if _, err := owner.Exec(context.Background(), fmt.Sprintf("DROP PUBLICATION IF EXISTS %s_catalog; DROP SCHEMA IF EXISTS %s CASCADE", schema, schema)); err != nil {
			t.Errorf("drop %s: %v", schema, err)
		}
	}()
	if _, err := owner.Exec(ctx, stmt.SQL); err != nil {
		t.Fatalf("postgres (DATABASE_URL): %v", err)
	}
	if _, err := owner.Exec(ctx, fmt.Sprintf(`INSERT INTO %s.products (product_id, sku, name, price_minor, currency)
		SELECT format('p-%%s', lpad(i::text, 5, '0')), 'SKU-' || i, 'P ' || i, i, 'EUR' FROM generate_series(1, 1500) i;
		INSERT INTO %s.customers (customer_id, email, name, country)
		SELECT format('u-%%s', lpad(i::text, 6, '0')), 'c' || i || '@example.com', 'C', 'DE' FROM generate_series(1, 200) i`, schema, schema)); err != nil {
		t.Fatal(err)
	}
	const token = "integration-operator-token"
	env := map[string]string{
		"HTTP_ADDR": "127.0.0.1:0", "HTTP_OPERATOR_TOKEN": token, "CATALOG_SNAPSHOT_SCHEDULE": "off",
		"CATALOG_DATABASE_URL": cdcURL, "CATALOG_SCHEMA": schema, "CATALOG_SNAPSHOT_PAGE_SIZE": "500", "CATALOG_SLOT": slot,
		"PRODUCTS_TOPIC": prefix + ".products", "CUSTOMERS_TOPIC": prefix + ".customers", "CATALOG_STATE_TOPIC": prefix + ".state",
		"KAFKA_BROKERS":       cmp.Or(os.Getenv("KAFKA_BROKERS"), "127.0.0.1:19092"),
		"SCHEMA_REGISTRY_URL": cmp.Or(os.Getenv("SCHEMA_REGISTRY_URL"), "http://127.0.0.1:18081/apis/ccompat/v7"),
		"LOG_LEVEL":           "warn",
	}
	var cfg Config
	if err := config.LoadFrom(config.MapLookup(env), &cfg); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cl, err := kgo.NewClient(kgo.SeedBrokers(cfg.Kafka.Brokers...))
		if err != nil {
			return
		}
		defer cl.Close()
		_, _ = kadm.NewClient(cl).DeleteTopics(context.Background(), cfg.ProductsTopic, cfg.CustomersTopic, cfg.StateTopic)
	}()
	rt, err := service.Start(ctx, name, "test", cfg.Base)
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	svcCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- run(svcCtx, rt, &cfg) }()
	defer func() {
		stop()
		if err := <-done; err != nil && svcCtx.Err() == nil {
			t.Errorf("run: %v", err)
		}
	}()
	addr, err := rt.HTTP.Addr(ctx)
	if err != nil {
		t.Fatal(err)
	}
	call := func(method, path, body string, v any) int {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, method, "http://"+addr+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if v != nil {
			if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
				t.Fatal(err)
			}
		}
		return resp.StatusCode
	}
	sync := func(wantChanges int64) {
		t.Helper()
		var started runs.SyncResponse
		if status := call(http.MethodPost, runs.SyncPath, "", &started); status != http.StatusAccepted {
			t.Fatalf("POST /v1/sync: %d", status)
		}
		var r runs.Run
		for r.Outcome == "" || r.Outcome == runs.Running {
			time.Sleep(100 * time.Millisecond)
			if status := call(http.MethodGet, runs.RunsPath+"/"+started.Run.ID, "", &r); status != http.StatusOK {
				t.Fatalf("GET run: %d", status)
			}
		}
		if r.Outcome != runs.Succeeded || r.RowsRead != 1700 || r.Changes != wantChanges {
			t.Fatalf("run = %+v, want succeeded, 1700 rows read, %d changes", r, wantChanges)
		}
	}
	// The HTTP server is up before the run manager accepts runs: wait for
	// /readyz, as a caller must (POST /v1/sync answers 503 until then).
	for deadline := time.Now().Add(15 * time.Second); ; {
		var rz struct {
			Status string `json:"status"`
		}
		if status := call(http.MethodGet, "/readyz", "", &rz); status == http.StatusOK && rz.Status == "ready" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("/readyz not ready after 15s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	sync(1700)
	sync(0)
	var ready struct {
		Status string `json:"status"`
	}
	if status := call(http.MethodGet, "/readyz", "", &ready); status != http.StatusOK || ready.Status != "ready" {
		t.Errorf("/readyz: %d %+v", status, ready)
	}
	http.DefaultClient.CloseIdleConnections()
}

// dropSlot drops a test's replication slot (an abandoned one holds WAL).
func dropSlot(url, slot string) error {
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		return err
	}
	defer pool.Close()
	return cdc.DropSlot(context.Background(), pool, slot)
}
