package conformance

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"testing"
	"time"

	"cloud.google.com/go/bigquery"
	"google.golang.org/api/option"

	"github.com/ecomstream/platform/services/bq-writer/internal/bqcatalog"
	"github.com/ecomstream/platform/services/bq-writer/internal/bqemu"
	"github.com/ecomstream/platform/services/bq-writer/internal/bqwh"
	"github.com/ecomstream/platform/services/bq-writer/internal/warehouse"
	ddl "github.com/ecomstream/platform/sql"
)

const emulatorProject = bqemu.Project

// bqWriter is bqwh as the sink drives it: the Kafka commits the sink would make are kept in
// commits; Claim gets them at every open, every Write's Commits replace them (but a step whose
// commit is lost).
type bqWriter struct {
	cfg bqwh.Config
	// clientOptions, when set, gives the Storage Write options of each open (a process's own
	// connection); else cfg.ClientOptions.
	clientOptions func() ([]option.ClientOption, error)
	w             *bqwh.Warehouse
	commits       map[warehouse.Partition]warehouse.Commit
	claimed       map[warehouse.Partition]bool // claimed by the open process
}

func newBQWriter(t *testing.T, ctx context.Context, cfg bqwh.Config, clientOptions func() ([]option.ClientOption, error)) *bqWriter {
	t.Helper()
	b := &bqWriter{cfg: cfg, clientOptions: clientOptions, commits: map[warehouse.Partition]warehouse.Commit{}}
	b.open(t, ctx)
	t.Cleanup(func() {
		if b.w != nil {
			if err := b.w.Close(); err != nil {
				t.Errorf("close bqwh: %v", err)
			}
		}
	})
	return b
}

// open opens the writer (Migrate applies the DDL, idempotently at a restart) and Claims every
// partition with the kept commits, as the sink does on its first assignment.
func (b *bqWriter) open(t *testing.T, ctx context.Context) {
	t.Helper()
	cfg := b.cfg
	if b.clientOptions != nil {
		opts, err := b.clientOptions()
		if err != nil {
			t.Fatal(err)
		}
		cfg.ClientOptions = opts
	}
	w, err := bqwh.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	b.w = w
	start := time.Now()
	if err := w.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("bigquery: Migrate %s", time.Since(start).Round(time.Millisecond))
	b.claimed = map[warehouse.Partition]bool{}
}

// entityOf is the entity a fixture topic carries, as the sink's routing says.
func entityOf(topic string) warehouse.Entity {
	switch topic {
	case ordersTopic:
		return warehouse.EntityOrder
	case productsTopic:
		return warehouse.EntityProduct
	case usersTopic:
		return warehouse.EntityUser
	}
	return warehouse.EntityEvent
}

// claim claims the partitions of batch this process has not claimed yet, with their kept
// commits, and commits the claim (an empty Write of the start positions) before anything of
// them is written, as the sink does on an assignment.
func (b *bqWriter) claim(t *testing.T, ctx context.Context, batch warehouse.Batch) {
	t.Helper()
	as := map[warehouse.Partition]warehouse.Assignment{}
	for p := range batch.Positions {
		if b.claimed[p] {
			continue
		}
		a := warehouse.Assignment{Entity: entityOf(p.Topic)}
		if c, ok := b.commits[p]; ok {
			a.Commit = &c
		}
		as[p] = a
	}
	if len(as) == 0 {
		return
	}
	start := time.Now()
	claimed, err := b.w.Claim(ctx, group, as)
	if err != nil {
		t.Fatalf("claim: %v", err)
	}
	starts := map[warehouse.Partition]int64{}
	for p, a := range as {
		next := claimed[p].Next
		if a.Commit != nil && next != a.Commit.Next {
			t.Fatalf("claim %s/%d: position %d, the commit says %d", p.Topic, p.Partition, next, a.Commit.Next)
		}
		starts[p] = next
	}
	res, err := b.w.Write(ctx, group, warehouse.Batch{Positions: starts})
	if err != nil {
		t.Fatalf("claim commit: %v", err)
	}
	for p, next := range starts {
		md, ok := res.Commits[p]
		if !ok {
			t.Fatalf("claim commit: no metadata for %s/%d", p.Topic, p.Partition)
		}
		b.commits[p] = warehouse.Commit{Next: next, Metadata: md}
		b.claimed[p] = true
	}
	t.Logf("bigquery: Claim of %d partitions (%d committed) %s", len(as), countCommitted(as), time.Since(start).Round(time.Millisecond))
}

func countCommitted(as map[warehouse.Partition]warehouse.Assignment) int {
	n := 0
	for _, a := range as {
		if a.Commit != nil {
			n++
		}
	}
	return n
}

func (b *bqWriter) write(t *testing.T, ctx context.Context, s step, batch warehouse.Batch) (warehouse.WriteResult, error) {
	t.Helper()
	b.claim(t, ctx, batch)
	res, err := b.w.Write(ctx, group, batch)
	if err != nil || s.commitLost {
		return res, err
	}
	for p, next := range batch.Positions {
		md, ok := res.Commits[p]
		if !ok {
			t.Fatalf("step %q: no commit metadata for %s/%d", s.name, p.Topic, p.Partition)
		}
		b.commits[p] = warehouse.Commit{Next: next, Metadata: md}
	}
	return res, nil
}

func (b *bqWriter) restart(t *testing.T, ctx context.Context) {
	t.Helper()
	if err := b.w.Close(); err != nil {
		t.Fatal(err)
	}
	b.w = nil
	b.open(t, ctx)
}

// bqBackend is bqwh on the emulator, with bqcatalog as its catalog, in fresh datasets.
type bqBackend struct {
	*bqWriter
	ds      ddl.Datasets
	restOpt []option.ClientOption
	cat     *bqcatalog.Catalog
}

func newBigQuery(t *testing.T, ctx context.Context) *bqBackend {
	t.Helper()
	emu := bqemu.Require(t)
	rest, grpcOpts := emu.RESTOptions(), emu.GRPCOptions()
	suffix := make([]byte, 4)
	if _, err := rand.Read(suffix); err != nil {
		t.Fatal(err)
	}
	base := "conformance_" + hex.EncodeToString(suffix)
	b := &bqBackend{ds: ddl.Datasets{Raw: base + "_raw", Staging: base + "_staging", Prod: base + "_prod"}, restOpt: rest}
	cat, err := bqcatalog.New(ctx, bqcatalog.Config{Project: emulatorProject, Datasets: b.ds, Options: rest})
	if err != nil {
		t.Fatal(err)
	}
	b.cat = cat
	t.Cleanup(func() { // after the writer's cleanup: cleanups run last first
		if err := b.cat.Close(); err != nil {
			t.Errorf("close catalog: %v", err)
		}
		b.drop(t)
	})
	b.bqWriter = newBQWriter(t, ctx, bqwh.Config{Project: emulatorProject, RawDataset: b.ds.Raw, Catalog: cat, ApplyDDL: true,
		ClientOptions: grpcOpts}, nil)
	return b
}

// drop deletes the test's datasets, prod first (its views read staging, which reads raw).
func (b *bqBackend) drop(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := bigquery.NewClient(ctx, emulatorProject, b.restOpt...)
	if err != nil {
		t.Errorf("drop datasets: %v", err)
		return
	}
	defer c.Close()
	for _, id := range []string{b.ds.Prod, b.ds.Staging, b.ds.Raw} {
		if err := c.Dataset(id).DeleteWithContents(ctx); err != nil {
			t.Errorf("drop dataset %s: %v", id, err)
		}
	}
}

func (b *bqBackend) read(t *testing.T, ctx context.Context, r relation) ([][]any, int64) {
	t.Helper()
	table := "`" + emulatorProject + "." + b.ds.Prod + "." + r.name + "`"
	maps, err := b.cat.Query(ctx, r.selectSQL(table))
	if err != nil {
		t.Fatalf("bigquery prod.%s: %v", r.name, err)
	}
	rows := make([][]any, len(maps))
	for i, m := range maps {
		if len(m) != len(r.cols) {
			t.Fatalf("bigquery prod.%s: a row with columns %v, want %v", r.name, keys(m), r.cols)
		}
		row := make([]any, len(r.cols))
		for j, c := range r.cols {
			v, ok := m[c]
			if !ok {
				t.Fatalf("bigquery prod.%s: no column %s in %v", r.name, c, keys(m))
			}
			row[j] = v
		}
		rows[i] = row
	}
	n, err := b.cat.Query(ctx, "SELECT COUNT(*) AS n FROM "+table)
	if err != nil || len(n) != 1 {
		t.Fatalf("bigquery count prod.%s: %v %v", r.name, n, err)
	}
	count, ok := n[0]["n"].(int64)
	if !ok {
		t.Fatalf("bigquery count prod.%s: %v", r.name, n)
	}
	return rows, count
}

// checkRaw counts each raw table's rows and its staging view's: want's rows (every copy bqwh
// appended) and want's records (one per source coordinates).
func (b *bqBackend) checkRaw(t *testing.T, ctx context.Context, want map[string]map[string]int) {
	t.Helper()
	for _, table := range bqwh.Tables {
		rows := 0
		for _, n := range want[table] {
			rows += n
		}
		for _, layer := range []struct {
			ds   string
			want int
		}{{b.ds.Raw, rows}, {b.ds.Staging, len(want[table])}} {
			n, err := b.cat.Query(ctx, "SELECT COUNT(*) AS n FROM `"+emulatorProject+"."+layer.ds+"."+table+"`")
			if err != nil || len(n) != 1 || n[0]["n"] != int64(layer.want) {
				t.Errorf("%s.%s: COUNT(*) %v (%v), want %d", layer.ds, table, n, err, layer.want)
			}
		}
	}
}

func keys(m map[string]bigquery.Value) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestIntegrationConformance feeds the same batches through DuckDB and through BigQuery (bqwh on
// the emulator, with a restart and a lost commit in the middle) and compares every prod relation
// row by row, every column but loaded_at.
func TestIntegrationConformance(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs the BigQuery emulator")
	}
	// Below go test's default 10m, so that a hung append fails the test and the cleanup still
	// drops the datasets.
	ctx, cancel := context.WithTimeout(context.Background(), 7*time.Minute)
	defer cancel()
	rels := relations(t)
	steps := sequence()

	start := time.Now()
	d := newDuck(t, ctx)
	feed(t, ctx, d, steps)
	duck := readAll(t, ctx, d, "duckdb", rels)
	t.Logf("duckdb: fed and read in %s", time.Since(start).Round(time.Millisecond))

	start = time.Now()
	b := newBigQuery(t, ctx)
	written := feed(t, ctx, b, steps)
	fed := time.Since(start)
	b.checkRaw(t, ctx, rawWant(steps, written))
	bq := readAll(t, ctx, b, "bigquery", rels)
	t.Logf("bigquery: fed in %s, read in %s", fed.Round(time.Millisecond), (time.Since(start) - fed).Round(time.Millisecond))

	compareTables(t, rels, duck, bq)
	total := 0
	for _, r := range rels {
		total += len(duck[r.name])
	}
	t.Logf("compared %d relations, %d rows each side", len(rels), total)
}
