package main

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ecomstream/platform/pkg/avroserde"
	"github.com/ecomstream/platform/pkg/events"
	"github.com/ecomstream/platform/pkg/stream"
	protoavro "github.com/ecomstream/platform/proto/avro"
	"github.com/ecomstream/platform/services/catalog-sync/internal/cdc"
	"github.com/ecomstream/platform/services/catalog-sync/internal/runs"
	"github.com/ecomstream/platform/services/catalog-sync/internal/state"
	ddl "github.com/ecomstream/platform/sql"
)

// cdcRecord is a change record read back from Kafka.
type cdcRecord struct {
	table, key, op, source string
	lsn, ordinal           int64
	changedAt              time.Time
	name                   string
	price                  int64
	country                string
}

func (r cdcRecord) seq() state.Seq { return state.Seq{LSN: r.lsn, Ordinal: int(r.ordinal)} }

// cdcEnv is one test's schema, slot, topics and binary on the local stack.
type cdcEnv struct {
	t                  *testing.T
	ctx                context.Context
	owner, repl        *pgxpool.Pool
	schema, slot       string
	products, customer string
	stateTopic, bin    string
	dir, token         string
	cdcURL             string

	mu   sync.Mutex
	recs []cdcRecord
}

func newCDCEnv(t *testing.T, ctx context.Context) *cdcEnv {
	ownerURL, cdcURL := os.Getenv("DATABASE_URL"), os.Getenv("CATALOG_DATABASE_URL")
	if ownerURL == "" || cdcURL == "" {
		t.Fatal(`DATABASE_URL and CATALOG_DATABASE_URL are not set: start the local stack and eval "$(deploy/local/stack.sh env)"`)
	}
	return newCDCEnvAt(t, ctx, ownerURL, cdcURL)
}

// newCDCEnvAt is newCDCEnv on the database of ownerURL (a role that may run
// the DDL) and cdcURL (the ecom_cdc role).
func newCDCEnvAt(t *testing.T, ctx context.Context, ownerURL, cdcURL string) *cdcEnv {
	var b [4]byte
	_, _ = rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	prefix := "it-cdcwire-" + id
	e := &cdcEnv{t: t, ctx: ctx, cdcURL: cdcURL, schema: "sf_cdcw_" + id, slot: "it_cdcw_" + id, products: prefix + ".products",
		customer: prefix + ".customers", stateTopic: prefix + ".state", dir: t.TempDir(), token: "integration-operator-token"}
	var err error
	if e.owner, err = pgxpool.New(ctx, ownerURL); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.owner.Close)
	if e.repl, err = pgxpool.New(ctx, cdcURL); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.repl.Close)
	stmt, err := ddl.Storefront(e.schema, "ecom_cdc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		bg := context.Background()
		if err := cdc.DropSlot(bg, e.repl, e.slot); err != nil {
			t.Errorf("drop slot %s: %v", e.slot, err)
		}
		if _, err := e.owner.Exec(bg, fmt.Sprintf("DROP PUBLICATION IF EXISTS %s_catalog; DROP SCHEMA IF EXISTS %s CASCADE", e.schema, e.schema)); err != nil {
			t.Errorf("drop %s: %v", e.schema, err)
		}
	})
	if _, err := e.owner.Exec(ctx, stmt.SQL); err != nil {
		t.Fatalf("postgres (DATABASE_URL): %v", err)
	}

	brokers := strings.Split(cmp.Or(os.Getenv("KAFKA_BROKERS"), "127.0.0.1:19092"), ",")
	adm, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(adm.Close)
	if err := stream.EnsureTopics(ctx, kadm.NewClient(adm), stream.Config{TopicPartitions: 3, TopicReplication: 1},
		stream.TopicSpec{Name: e.products}, stream.TopicSpec{Name: e.customer}, state.Topic(e.stateTopic)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = kadm.NewClient(adm).DeleteTopics(context.Background(), e.products, e.customer, e.stateTopic)
	})

	e.bin = filepath.Join(e.dir, "catalog-sync")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", e.bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	e.consume(brokers)
	return e
}

// consume reads both topics (read_committed) into e.recs until the test ends.
func (e *cdcEnv) consume(brokers []string) {
	reg, err := avroserde.New(avroserde.Config{URL: cmp.Or(os.Getenv("SCHEMA_REGISTRY_URL"), "http://127.0.0.1:18081/apis/ccompat/v7"),
		AutoRegister: true, Timeout: 5 * time.Second})
	if err != nil {
		e.t.Fatal(err)
	}
	codecs := map[string]*avroserde.Codec{}
	for topic, entity := range map[string]string{e.products: protoavro.ProductChange, e.customer: protoavro.CustomerChange} {
		if codecs[topic], err = reg.Codec(e.ctx, avroserde.SubjectFor(topic), entity); err != nil {
			e.t.Fatal(err)
		}
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(e.products, e.customer),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(200*time.Millisecond))
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(e.ctx)
	done := make(chan struct{})
	e.t.Cleanup(func() { cancel(); <-done; cl.Close() })
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			fs := cl.PollFetches(ctx)
			fs.EachRecord(func(r *kgo.Record) {
				var g cdcRecord
				if r.Topic == e.products {
					var p events.ProductChange
					if _, err := codecs[r.Topic].Decode(ctx, r.Value, &p); err != nil {
						return
					}
					g = cdcRecord{table: "products", key: p.ProductID, op: p.Op, source: p.Source, lsn: p.SourceLsn,
						ordinal: p.SourceOrdinal, name: p.Name, price: p.PriceMinor}
					if p.ChangedAt != nil {
						g.changedAt = *p.ChangedAt
					}
				} else {
					var c events.CustomerChange
					if _, err := codecs[r.Topic].Decode(ctx, r.Value, &c); err != nil {
						return
					}
					g = cdcRecord{table: "customers", key: c.CustomerID, op: c.Op, source: c.Source, lsn: c.SourceLsn, ordinal: c.SourceOrdinal}
					if c.Country != nil {
						g.country = *c.Country
					}
					if c.ChangedAt != nil {
						g.changedAt = *c.ChangedAt
					}
				}
				e.mu.Lock()
				e.recs = append(e.recs, g)
				e.mu.Unlock()
			})
		}
	}()
}

// waitFor waits until at least n records match f and returns them.
func (e *cdcEnv) waitFor(what string, n int, f func(cdcRecord) bool) []cdcRecord {
	e.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		var out []cdcRecord
		e.mu.Lock()
		for _, r := range e.recs {
			if f(r) {
				out = append(out, r)
			}
		}
		e.mu.Unlock()
		if len(out) >= n {
			return out
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%s: %d records of %d after 60s", what, len(out), n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (e *cdcEnv) count() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.recs)
}

// proc is one catalog-sync process.
type proc struct {
	cmd  *exec.Cmd
	addr string
	log  string
	done chan error
}

func (e *cdcEnv) start(name string, extra ...string) *proc {
	e.t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		e.t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	p := &proc{addr: addr, log: filepath.Join(e.dir, name+".log"), done: make(chan error, 1)}
	out, err := os.Create(p.log)
	if err != nil {
		e.t.Fatal(err)
	}
	p.cmd = exec.Command(e.bin)
	p.cmd.Stdout, p.cmd.Stderr = out, out
	p.cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"),
		"HTTP_ADDR=" + addr, "HTTP_OPERATOR_TOKEN=" + e.token, "CATALOG_SNAPSHOT_SCHEDULE=off",
		"CATALOG_DATABASE_URL=" + e.cdcURL, "CATALOG_SCHEMA=" + e.schema, "CATALOG_SLOT=" + e.slot,
		"PRODUCTS_TOPIC=" + e.products, "CUSTOMERS_TOPIC=" + e.customer, "CATALOG_STATE_TOPIC=" + e.stateTopic,
		"KAFKA_BROKERS=" + cmp.Or(os.Getenv("KAFKA_BROKERS"), "127.0.0.1:19092"), "KAFKA_COMMIT_INTERVAL=0s",
		"SCHEMA_REGISTRY_URL=" + cmp.Or(os.Getenv("SCHEMA_REGISTRY_URL"), "http://127.0.0.1:18081/apis/ccompat/v7"),
		"CATALOG_CDC_STATUS_INTERVAL=1s"}, extra...)
	if err := p.cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait(); out.Close() }()
	e.t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if e.t.Failed() {
			b, _ := os.ReadFile(p.log)
			e.t.Logf("%s log:\n%s", name, b)
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		var ready struct {
			Status string `json:"status"`
		}
		status := e.call(p, http.MethodGet, "/readyz", "", &ready)
		if status == http.StatusOK && ready.Status == "ready" {
			return p
		}
		select {
		case err := <-p.done:
			b, _ := os.ReadFile(p.log)
			e.t.Fatalf("%s exited: %v\n%s", name, err, b)
		default:
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%s not ready after 60s (last %d %+v)", name, status, ready)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// call returns the status, 0 when the process does not answer.
func (e *cdcEnv) call(p *proc, method, path, body string, v any) int {
	req, _ := http.NewRequestWithContext(e.ctx, method, "http://"+p.addr+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+e.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	if v != nil {
		_ = json.NewDecoder(resp.Body).Decode(v)
	}
	return resp.StatusCode
}

// snapshot runs a snapshot through the API and returns it once ended.
func (e *cdcEnv) snapshot(p *proc) runs.Run {
	e.t.Helper()
	var started runs.SyncResponse
	if status := e.call(p, http.MethodPost, runs.SyncPath, "", &started); status != http.StatusAccepted {
		e.t.Fatalf("POST /v1/sync: %d", status)
	}
	var r runs.Run
	for r.Outcome == "" || r.Outcome == runs.Running {
		time.Sleep(100 * time.Millisecond)
		if status := e.call(p, http.MethodGet, runs.RunsPath+"/"+started.Run.ID, "", &r); status != http.StatusOK {
			e.t.Fatalf("GET run: %d", status)
		}
	}
	return r
}

func (e *cdcEnv) exec(sql string) {
	e.t.Helper()
	if _, err := e.owner.Exec(e.ctx, strings.ReplaceAll(sql, "$S", e.schema)); err != nil {
		e.t.Fatalf("%s: %v", sql, err)
	}
}

// commitOf returns (commit LSN, commit time) of the transaction that last
// wrote the row: pg_xact_commit_timestamp(xmin), and the LSN from
// pg_last_committed_xact is not per row, so the LSN is checked by the
// records' agreement instead.
func (e *cdcEnv) commitTime(table, keyCol, key string) time.Time {
	e.t.Helper()
	var at time.Time
	if err := e.owner.QueryRow(e.ctx, fmt.Sprintf(`SELECT pg_xact_commit_timestamp(xmin) FROM %s.%s WHERE %s = $1`, e.schema, table, keyCol), key).Scan(&at); err != nil {
		e.t.Fatal(err)
	}
	return at.UTC()
}

func (e *cdcEnv) confirmedFlush() int64 {
	e.t.Helper()
	var lsn int64
	if err := e.owner.QueryRow(e.ctx, `SELECT (confirmed_flush_lsn - '0/0'::pg_lsn)::bigint FROM pg_replication_slots WHERE slot_name = $1`, e.slot).Scan(&lsn); err != nil {
		e.t.Fatalf("slot %s: %v", e.slot, err)
	}
	return lsn
}

// TestIntegrationCDC runs the catalog-sync binary against the local stack:
// (a) changes made in PostgreSQL arrive as cdc records with their commit
// LSN, ordinals and commit time, and a snapshot after them sends nothing;
// (c) the slot survives a restart of catalog-sync (a change made while it
// is down arrives after the restart); (b) kill -9 after the Kafka commit but
// before the LSN is confirmed: the restarted process re-delivers the change
// with the same (lsn, ordinal). A restart of PostgreSQL is not tested here:
// the local PostgreSQL is shared by every engineer's tests.
func TestIntegrationCDC(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs the local stack; skipped under -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	e := newCDCEnv(t, ctx)
	e.exec(`INSERT INTO $S.products (product_id, sku, name, price_minor, currency)
		SELECT format('p-%s', lpad(i::text, 5, '0')), 'SKU-' || i, 'P ' || i, i, 'EUR' FROM generate_series(1, 20) i`)
	p1 := e.start("first")
	// The rows before the slot existed come from a snapshot.
	if r := e.snapshot(p1); r.Outcome != runs.Succeeded || r.Changes != 20 {
		t.Fatalf("first snapshot %+v, want 20 changes", r)
	}

	// (a) two transactions of several statements.
	e.exec(`BEGIN;
		UPDATE $S.products SET price_minor = 111 WHERE product_id = 'p-00001';
		INSERT INTO $S.customers (customer_id, email, name, country) VALUES ('u-000001', 'a@example.com', 'A', 'DE');
		UPDATE $S.products SET is_active = false, deleted_at = now() WHERE product_id = 'p-00002';
		COMMIT`)
	e.exec(`BEGIN;
		DELETE FROM $S.products WHERE product_id = 'p-00003';
		INSERT INTO $S.products (product_id, sku, name, price_minor, currency) VALUES ('p-00100', 'SKU-100', 'New', 5, 'EUR');
		COMMIT`)
	got := e.waitFor("cdc records", 5, func(r cdcRecord) bool { return r.source == "cdc" })
	bySeq := map[string]cdcRecord{}
	for _, r := range got {
		bySeq[r.table+"/"+r.key] = r
	}
	a, u, s, d, n := bySeq["products/p-00001"], bySeq["customers/u-000001"], bySeq["products/p-00002"], bySeq["products/p-00003"], bySeq["products/p-00100"]
	if a.lsn == 0 || a.lsn != u.lsn || u.lsn != s.lsn || a.ordinal != 1 || u.ordinal != 2 || s.ordinal != 3 {
		t.Errorf("first transaction: %+v %+v %+v, want one commit LSN, ordinals 1..3", a, u, s)
	}
	if d.lsn <= a.lsn || d.lsn != n.lsn || d.ordinal != 1 || n.ordinal != 2 || d.op != "delete" {
		t.Errorf("second transaction: %+v %+v, want a later commit LSN, ordinals 1..2, a delete", d, n)
	}
	if a.price != 111 || s.op != "upsert" {
		t.Errorf("records %+v %+v: want the new price, the soft delete as an upsert", a, s)
	}
	for _, c := range []struct {
		r              cdcRecord
		table, col, id string
	}{{a, "products", "product_id", "p-00001"}, {u, "customers", "customer_id", "u-000001"}, {n, "products", "product_id", "p-00100"}} {
		if want := e.commitTime(c.table, c.col, c.id); !c.r.changedAt.Equal(want) {
			t.Errorf("%s changed_at %v, want the commit time %v", c.id, c.r.changedAt, want)
		}
	}
	resp, err := http.Get("http://" + p1.addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, m := range []string{`ecom_catalog_cdc_changes_total{op="upsert"`, "ecom_catalog_cdc_transactions_total",
		"ecom_catalog_cdc_commit_latency_seconds_bucket", "ecom_catalog_cdc_lag_seconds", "ecom_catalog_cdc_slot_retained_wal_bytes",
		"ecom_catalog_cdc_slot_active", "ecom_catalog_cdc_slot_wal_over_threshold", "ecom_catalog_cdc_unconfirmed"} {
		if !strings.Contains(string(metrics), m) {
			t.Errorf("/metrics lacks %s:\n%s", m, grepLines(string(metrics), "ecom_catalog_cdc"))
		}
	}
	// A snapshot after them sends nothing: the CDC state entries cover them.
	if r := e.snapshot(p1); r.Outcome != runs.Succeeded || r.Changes != 0 {
		t.Errorf("snapshot after CDC: %+v, want 0 changes", r)
	}

	// (c) a graceful stop; a change while catalog-sync is down; the slot
	// keeps it.
	_ = p1.cmd.Process.Signal(syscall.SIGTERM)
	if err := <-p1.done; err != nil {
		t.Fatalf("first process: %v", err)
	}
	e.exec(`UPDATE $S.products SET name = 'while down' WHERE product_id = 'p-00004'`)
	down := e.commitTime("products", "product_id", "p-00004")

	// (b) a process that holds every batch 10 minutes between its Kafka
	// commit and its confirm.
	p2 := e.start("second", "CATALOG_CDC_CONFIRM_DELAY=10m")
	wd := e.waitFor("the change made while down", 1, func(r cdcRecord) bool { return r.key == "p-00004" && r.source == "cdc" })[0]
	if wd.name != "while down" || !wd.changedAt.Equal(down) {
		t.Errorf("change while down: %+v, want its name and commit time %v", wd, down)
	}
	time.Sleep(1500 * time.Millisecond) // a status interval passes: still not confirmed
	if flushed := e.confirmedFlush(); flushed >= wd.lsn {
		t.Fatalf("slot confirmed %d, at or past the unconfirmed commit %d", flushed, wd.lsn)
	}
	_ = p2.cmd.Process.Kill() // kill -9: committed to Kafka, not confirmed
	<-p2.done

	p3 := e.start("third")
	again := e.waitFor("the re-delivered change", 2, func(r cdcRecord) bool { return r.key == "p-00004" && r.source == "cdc" })
	if again[1].seq() != wd.seq() || again[1].name != "while down" {
		t.Errorf("re-delivered %+v, want the same sequence as %+v", again[1], wd)
	}
	deadline := time.Now().Add(30 * time.Second)
	for e.confirmedFlush() < wd.lsn {
		if time.Now().After(deadline) {
			t.Fatalf("slot never confirmed the re-delivered commit %d", wd.lsn)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// Nothing lost after the restart either.
	e.exec(`UPDATE $S.customers SET country = 'FR' WHERE customer_id = 'u-000001'`)
	e.waitFor("a change after the restart", 1, func(r cdcRecord) bool { return r.key == "u-000001" && r.country == "FR" })
	before := e.count()
	if r := e.snapshot(p3); r.Outcome != runs.Succeeded || r.Changes != 0 {
		t.Errorf("snapshot after the restart: %+v, want 0 changes", r)
	}
	_ = p3.cmd.Process.Signal(syscall.SIGTERM)
	if err := <-p3.done; err != nil {
		t.Errorf("third process: %v", err)
	}
	if e.count() != before {
		t.Errorf("records after the last snapshot: %d more", e.count()-before)
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
