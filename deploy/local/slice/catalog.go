package slice

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ecomstream/platform/deploy/local/catalogdb"
	"github.com/ecomstream/platform/deploy/local/stacktest"
)

// CatalogOptions configure the catalog path of a slice: a PostgreSQL schema of
// its own (catalogdb.Init, loaded from the id seed) and catalog-sync in front
// of the validator, on the slice's products and customers topics.
type CatalogOptions struct {
	// DatabaseURL logs in as the schema owner ecom (DDL, seed, drop);
	// CDCDatabaseURL as the replication role catalog-sync uses. "" = the
	// local stack's (stacktest.FromEnv).
	DatabaseURL, CDCDatabaseURL string
	// Schema is the slice's catalog schema; "" = "sf_" + the sanitised prefix.
	Schema string
	// Init are catalogdb.Init's options (e.g. fewer products for a quick test).
	Init []catalogdb.InitOption
	// SnapshotSchedule is CATALOG_SNAPSHOT_SCHEDULE; "" = off (runs start with CatalogSync).
	SnapshotSchedule string
	// Relay puts a path of the caller's between catalog-sync and the
	// validator: catalog-sync writes to Topics.SyncProducts and
	// Topics.SyncCustomers (its own topics, "<prefix>ecom.products.sync.v1"
	// and "<prefix>ecom.customers.sync.v1"), and the caller moves their
	// records to Topics.Products and Topics.Customers, the validator's input,
	// as it likes (the end-to-end test holds some back: late, out-of-order
	// delivery). Without it the Sync topics are the validator's input.
	Relay bool
}

// CatalogRun is one run of catalog-sync as GET /v1/runs shows it.
type CatalogRun struct {
	ID          string     `json:"id"`
	Trigger     string     `json:"trigger"`
	Tables      []string   `json:"tables"`
	Full        bool       `json:"full"`
	Resumed     bool       `json:"resumed"`
	Outcome     string     `json:"outcome"` // running, succeeded, failed, cancelled
	Started     time.Time  `json:"started_at"`
	Finished    *time.Time `json:"finished_at,omitempty"`
	RowsRead    int64      `json:"rows_read"`
	ChangesSent int64      `json:"changes_sent"`
	Deletes     int64      `json:"deletes"`
	Error       string     `json:"error,omitempty"`
}

// Catalog is a slice's catalog path: its database, schema, slot and catalog-sync's API.
type Catalog struct {
	DatabaseURL, CDCDatabaseURL string
	Schema, Slot, Publication   string
	StateTopic                  string
	// OperatorToken is catalog-sync's HTTP_OPERATOR_TOKEN (POST /v1/sync, GET /v1/runs).
	OperatorToken string
	// EmailHashKey is bq-writer's USER_EMAIL_HASH_KEY (dim_users.email_hash).
	EmailHashKey string
	// Init is what catalogdb.Init loaded at the slice's first Start.
	Init catalogdb.InitResult
	// inited: Start ran Init (idempotent, but its result is the first one's).
	inited bool
}

// CatalogSchema names a prefix's catalog schema: "sf_" and the prefix in
// lower case with every other character than a-z, 0-9 and _ as _, short
// enough that "<schema>_catalog" and the slot "<schema>_slot" fit
// PostgreSQL's 63 bytes. "" = catalogdb.DefaultSchema (the stack's own).
func CatalogSchema(prefix string) string {
	if prefix == "" {
		return catalogdb.DefaultSchema
	}
	var b strings.Builder
	b.WriteString("sf_")
	for _, r := range strings.ToLower(prefix) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') || r == '_' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	s := strings.TrimRight(b.String(), "_")
	if len(s) > 48 {
		s = s[:48]
	}
	return s
}

// addCatalog adds catalog-sync's environment and bq-writer's email hash key.
func (s *Slice) addCatalog(env map[string][]string) {
	o, prefix := s.Opts.Catalog, s.Opts.Prefix
	eps := stacktest.FromEnv()
	c := &Catalog{DatabaseURL: o.DatabaseURL, CDCDatabaseURL: o.CDCDatabaseURL, Schema: o.Schema,
		StateTopic: prefix + "ecom.catalog-sync.state.v1", OperatorToken: "op_" + randomHex(16), EmailHashKey: randomHex(32)}
	if c.DatabaseURL == "" {
		c.DatabaseURL = eps.DatabaseURL
	}
	if c.CDCDatabaseURL == "" {
		c.CDCDatabaseURL = eps.CatalogDatabaseURL
	}
	if c.Schema == "" {
		c.Schema = CatalogSchema(prefix)
	}
	c.Publication, c.Slot = c.Schema+"_catalog", c.Schema+"_slot"
	if prefix == "" {
		c.Slot = "ecom_catalog_sync" // catalog-sync's default: the stack's own
	}
	s.Topics.SyncProducts, s.Topics.SyncCustomers = s.Topics.Products, s.Topics.Customers
	if o.Relay {
		s.Topics.SyncProducts, s.Topics.SyncCustomers = prefix+"ecom.products.sync.v1", prefix+"ecom.customers.sync.v1"
	}
	sched := o.SnapshotSchedule
	if sched == "" {
		sched = "off"
	}
	s.Catalog = c
	env["catalog-sync"] = []string{
		"CATALOG_DATABASE_URL=" + c.CDCDatabaseURL, "CATALOG_SCHEMA=" + c.Schema,
		"CATALOG_SLOT=" + c.Slot, "CATALOG_PUBLICATION=" + c.Publication,
		"CATALOG_STATE_TOPIC=" + c.StateTopic,
		"PRODUCTS_TOPIC=" + s.Topics.SyncProducts, "CUSTOMERS_TOPIC=" + s.Topics.SyncCustomers,
		"CATALOG_SNAPSHOT_SCHEDULE=" + sched, "HTTP_OPERATOR_TOKEN=" + c.OperatorToken,
	}
	// A key of the slice's own, so a test can compute email_hash (and the
	// development default, refused off loopback, is not needed).
	env["bq-writer"] = append(env["bq-writer"], "USER_EMAIL_HASH_KEY="+c.EmailHashKey)
}

// initCatalog creates and loads the slice's schema (once; Init is idempotent).
func (s *Slice) initCatalog(ctx context.Context) error {
	c := s.Catalog
	if c == nil || c.inited {
		return nil
	}
	conn, err := pgx.Connect(ctx, c.DatabaseURL)
	if err != nil {
		return fmt.Errorf("slice: catalog database: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	res, err := catalogdb.Init(ctx, conn, c.Schema, s.Opts.Catalog.Init...)
	if err != nil {
		return fmt.Errorf("slice: %w", err)
	}
	c.Init, c.inited = res, true
	return nil
}

// CatalogSchema is the slice's catalog schema ("" without Options.Catalog).
func (s *Slice) CatalogSchema() string {
	if s.Catalog == nil {
		return ""
	}
	return s.Catalog.Schema
}

// DropCatalog stops catalog-sync, then drops its replication slot (an
// abandoned slot holds WAL forever), the publication and the schema. Tests
// call it in t.Cleanup; it is safe to call twice and before Start.
func (s *Slice) DropCatalog(ctx context.Context) error {
	c := s.Catalog
	if c == nil {
		return nil
	}
	var errs []error
	if err := s.Procs["catalog-sync"].Stop(30 * time.Second); err != nil {
		errs = append(errs, fmt.Errorf("stop catalog-sync: %w", err))
	}
	if err := dropSlot(ctx, c.CDCDatabaseURL, c.Slot); err != nil {
		errs = append(errs, err)
	}
	conn, err := pgx.Connect(ctx, c.DatabaseURL)
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("slice: catalog database: %w", err))...)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if err := catalogdb.Drop(ctx, conn, c.Schema); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// DropSlot drops catalog-sync's replication slot (stop catalog-sync first)
// and leaves the schema and the publication: for a caller that keeps its
// catalog across runs (the demo's is the stack's own) but must not leave an
// unread slot holding WAL. catalog-sync creates the slot again at its next
// start; the next snapshot sends whatever changed in between.
func (s *Slice) DropSlot(ctx context.Context) error {
	if s.Catalog == nil {
		return nil
	}
	return dropSlot(ctx, s.Catalog.CDCDatabaseURL, s.Catalog.Slot)
}

// dropSlot drops a replication slot if it exists, waiting a little for the
// walsender of a just-stopped catalog-sync to let go of it.
func dropSlot(ctx context.Context, url, slot string) error {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return fmt.Errorf("slice: drop slot %s: %w", slot, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err = conn.Exec(ctx, "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1", slot)
		if err == nil || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		time.Sleep(200 * time.Millisecond) // "slot is active": its session is ending
	}
	if err != nil {
		return fmt.Errorf("slice: drop slot %s: %w", slot, err)
	}
	return nil
}

// CatalogSync calls catalog-sync's POST /v1/sync: table "" = both, full =
// a backfill. joined says the request joined a run already active.
func (s *Slice) CatalogSync(ctx context.Context, table string, full bool) (run CatalogRun, joined bool, err error) {
	var out struct {
		Run    CatalogRun `json:"run"`
		Joined bool       `json:"joined"`
	}
	err = s.catalogDo(ctx, http.MethodPost, "/v1/sync", map[string]any{"table": table, "full": full}, &out)
	return out.Run, out.Joined, err
}

// CatalogRuns calls GET /v1/runs: the runs of this catalog-sync process, newest first.
func (s *Slice) CatalogRuns(ctx context.Context) ([]CatalogRun, error) {
	var out struct {
		Runs []CatalogRun `json:"runs"`
	}
	err := s.catalogDo(ctx, http.MethodGet, "/v1/runs", nil, &out)
	return out.Runs, err
}

// CatalogWait polls GET /v1/runs/{id} until the run is no longer running and
// returns it; a run that did not succeed is an error naming its outcome.
func (s *Slice) CatalogWait(ctx context.Context, id string) (CatalogRun, error) {
	for {
		var run CatalogRun
		if err := s.catalogDo(ctx, http.MethodGet, "/v1/runs/"+id, nil, &run); err != nil {
			return run, err
		}
		if run.Outcome != "running" {
			if run.Outcome != "succeeded" {
				return run, fmt.Errorf("catalog-sync run %s %s: %s", id, run.Outcome, run.Error)
			}
			return run, nil
		}
		select {
		case <-ctx.Done():
			return run, fmt.Errorf("catalog-sync run %s: %w", id, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (s *Slice) catalogDo(ctx context.Context, method, path string, body, out any) error {
	if s.Catalog == nil {
		return errors.New("slice: no catalog-sync (Options.Catalog is nil)")
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+s.Procs["catalog-sync"].HTTPAddr+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+s.Catalog.OperatorToken)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("catalog-sync %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("catalog-sync %s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(b))
	}
	return json.Unmarshal(b, out)
}
