package bqwh

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"testing"
	"time"

	"cloud.google.com/go/bigquery"

	"github.com/ecomstream/platform/services/bq-writer/internal/bqcatalog"
	"github.com/ecomstream/platform/services/bq-writer/internal/bqemu"
	"github.com/ecomstream/platform/services/bq-writer/internal/warehouse"
	ddl "github.com/ecomstream/platform/sql"
)

const emulatorProject = bqemu.Project

// TestIntegrationTakeoverEmulator runs the claim protocol on bqemulator with bqcatalog: a
// brand-new partition's first writer commits a batch and dies after appending the next one; a
// claim dies before its commit (so the next claim finalizes the streams a second time); the next
// owner fences the old writer on every table and skips exactly the rows it left. Every raw table
// then holds one row per source record, read back with SQL (TestTakeover runs it on bqfake).
func TestIntegrationTakeoverEmulator(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs the BigQuery emulator")
	}
	emu := bqemu.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	prefix := "bqwh_" + hex.EncodeToString(b)
	ds := ddl.Datasets{Raw: prefix + "_raw", Staging: prefix + "_staging", Prod: prefix + "_prod"}
	restOpts := emu.RESTOptions()
	cat, err := bqcatalog.New(ctx, bqcatalog.Config{Project: emulatorProject, Datasets: ds, Options: restOpts})
	if err != nil {
		t.Fatal(err)
	}
	defer cat.Close()
	t.Cleanup(func() {
		cctx, ccancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer ccancel()
		bq, err := bigquery.NewClient(cctx, emulatorProject, restOpts...)
		if err != nil {
			t.Errorf("drop datasets: %v", err)
			return
		}
		defer bq.Close()
		for _, d := range []string{ds.Prod, ds.Staging, ds.Raw} {
			if err := bq.Dataset(d).DeleteWithContents(cctx); err != nil {
				t.Errorf("drop dataset %s: %v", d, err)
			}
		}
	})
	grpcOpts := emu.GRPCOptions()
	e := &env{commits: map[warehouse.Partition]warehouse.Commit{}}
	ddlDone := false
	open := func() *Warehouse {
		t.Helper()
		w, err := Open(ctx, Config{Project: emulatorProject, RawDataset: ds.Raw, Catalog: cat, ApplyDDL: !ddlDone, ClientOptions: grpcOpts})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = w.Close() })
		if err := w.Migrate(ctx); err != nil {
			t.Fatalf("migrate: %v", err)
		}
		ddlDone = true
		return w
	}

	takeover(t, e, open, func(table string) []map[string]any {
		cols := "source_topic, source_partition, source_offset"
		if table == TableOrderItems {
			cols += ", line_number"
		}
		rows, err := cat.Query(ctx, fmt.Sprintf("SELECT %s FROM `%s.%s.%s`", cols, emulatorProject, ds.Raw, table))
		if err != nil {
			t.Fatalf("%s: %v", table, err)
		}
		out := make([]map[string]any, len(rows))
		for i, r := range rows {
			out[i] = map[string]any{}
			for k, v := range r {
				out[i][k] = v
			}
		}
		return out
	})
}

// TestTakeover is TestIntegrationTakeoverEmulator's scenario on bqfake.
func TestTakeover(t *testing.T) {
	e := newEnv(t)
	takeover(t, e, func() *Warehouse { return e.openUnclaimed(t, Config{}) }, func(table string) []map[string]any {
		var out []map[string]any
		for _, r := range e.rows(table) {
			out = append(out, r)
		}
		return out
	})
}

// takeover: a brand-new partition's first writer commits a batch and appends the next one
// without committing it; a claim dies before its commit; the next owner claims (finalizing the
// streams a second time), fences the first writer and skips exactly the rows it left. rows reads
// a raw table back.
func takeover(t *testing.T, e *env, open func() *Warehouse, rows func(table string) []map[string]any) {
	t.Helper()
	ctx := context.Background()
	first := open()
	e.claim(t, first)
	e.commitClaim(t, first) // a brand-new partition: its streams are committed before any row
	write(t, e, first, 0, 10, true)
	write(t, e, first, 10, 20, false) // dies (or stalls) before this commit

	dead := open()
	e.claim(t, dead) // finalizes every stream, then dies before the claim commit
	if err := dead.Close(); err != nil {
		t.Fatal(err)
	}

	owner := open()
	e.claim(t, owner) // finalizes them again: bqemulator answers the row count again
	e.commitClaim(t, owner)
	if _, err := first.Write(ctx, group, batch(20, 25)); !errors.Is(err, ErrFenced) {
		t.Fatalf("the first writer after the takeover: %v, want ErrFenced", err)
	}
	res := write(t, e, owner, 10, total, true)
	if res.Stale != 10 || res.Orders.Stale != 10 || res.Products.Stale != 10 || res.Users.Stale != 10 || res.Inserted != total-20 {
		t.Errorf("owner's write: %+v, want 10 skipped and %d inserted per table", res, total-20)
	}

	for _, table := range Tables {
		want := total
		if table == TableOrderItems {
			want = 2 * total
		}
		rows := rows(table)
		per := map[string]int{}
		for _, r := range rows {
			per[fmt.Sprint(r["source_topic"], "/", r["source_partition"], "@", r["source_offset"], "#", r["line_number"])]++
		}
		if len(rows) != want || len(per) != want {
			t.Errorf("%s: %d rows of %d distinct records, want %d of %d", table, len(rows), len(per), want, want)
		}
	}
}
