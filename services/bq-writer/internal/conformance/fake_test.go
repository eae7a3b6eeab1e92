package conformance

import (
	"context"
	"fmt"
	"testing"
	"time"

	"cloud.google.com/go/bigquery/storage/apiv1/storagepb"

	"github.com/ecomstream/platform/services/bq-writer/internal/bqcatalog"
	"github.com/ecomstream/platform/services/bq-writer/internal/bqfake"
	"github.com/ecomstream/platform/services/bq-writer/internal/bqwh"
	"github.com/ecomstream/platform/services/bq-writer/internal/warehouse"
	ddl "github.com/ecomstream/platform/sql"
)

// fakeCatalog is bqcatalog on the REST fake (the repository's DDL, its schemas) that also
// creates each raw table in the Storage Write fake, which keeps tables of its own.
type fakeCatalog struct {
	*bqcatalog.Catalog
	fake         *bqfake.Server
	project, raw string
}

func (c *fakeCatalog) Migrate(ctx context.Context) error {
	if err := c.Catalog.Migrate(ctx); err != nil {
		return err
	}
	for _, table := range bqwh.Tables {
		s, err := c.Schema(ctx, table)
		if err != nil {
			return err
		}
		if path := bqfake.TablePath(c.project, c.raw, table); c.fake.Schema(path) == nil {
			c.fake.CreateTable(path, s)
		}
	}
	return nil
}

func (c *fakeCatalog) AddColumns(ctx context.Context, table string, cols []*storagepb.TableFieldSchema) (*storagepb.TableSchema, error) {
	s, err := c.Catalog.AddColumns(ctx, table, cols)
	if err == nil {
		c.fake.CreateTable(bqfake.TablePath(c.project, c.raw, table), s)
	}
	return s, err
}

// The BigQuery half of the sequence without servers, on the in-test fakes: the same Claim, kept
// commits, lost commit and restart as on the emulator, after which every raw table holds each
// Kafka record exactly once (its rows once per source coordinates): the replayed batch is below
// the positions and dropped as stale, as DuckDB drops it. The rows past the lost commit are
// found by the Claim after the restart and skipped when the consumer reads them again.
func TestConformanceBigQueryRawOnFake(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const project = "ecom-fake"
	ds := ddl.Datasets{Raw: "conf_raw", Staging: "conf_staging", Prod: "conf_prod"}
	rest := bqfake.NewREST(false)
	t.Cleanup(rest.Close)
	fake, err := bqfake.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fake.Close)
	cat, err := bqcatalog.New(ctx, bqcatalog.Config{Project: project, Datasets: ds, Options: rest.ClientOptions()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cat.Close() })
	steps := sequence()
	w := newBQWriter(t, ctx, bqwh.Config{Project: project, RawDataset: ds.Raw, ApplyDDL: true,
		Catalog: &fakeCatalog{Catalog: cat, fake: fake, project: project, raw: ds.Raw}}, fake.ProcessOptions)
	written := feed(t, ctx, w, steps)

	want := rawWant(steps, written)
	for _, table := range bqwh.Tables {
		got := map[string]int{}
		rows := fake.Rows(bqfake.TablePath(project, ds.Raw, table))
		for _, r := range rows {
			line := -1
			if table == bqwh.TableOrderItems {
				line = int(r["line_number"].(int64))
			}
			got[coords(r["source_topic"].(string), int32(r["source_partition"].(int64)), r["source_offset"].(int64), line)]++
		}
		if len(got) != len(want[table]) {
			t.Errorf("raw.%s: %d records, want %d", table, len(got), len(want[table]))
		}
		for k, n := range want[table] {
			if got[k] != n {
				t.Errorf("raw.%s: record %s has %d rows, want %d", table, k, got[k], n)
			}
		}
		t.Logf("raw.%s: %d rows", table, len(rows))
	}
}

// rawWant returns, per raw table and record (source coordinates, and line number for order
// items), how many rows bqwh appends for the written batches: one. A replayed batch (below the
// positions: stale) and the batch read again after the lost commit (its rows are the ones found
// at Claim) add none.
func rawWant(steps []step, written []warehouse.Batch) map[string]map[string]int {
	want := map[string]map[string]int{} // table -> coordinates -> rows
	add := func(table, key string, n int) {
		if want[table] == nil {
			want[table] = map[string]int{}
		}
		want[table][key] = n
	}
	const copies = 1
	for i := range steps {
		b := written[i]
		for _, r := range b.Events {
			add(bqwh.TableEvents, coords(r.SourceTopic, r.SourcePartition, r.SourceOffset, -1), copies)
		}
		for _, r := range b.Orders {
			add(bqwh.TableOrders, coords(r.SourceTopic, r.SourcePartition, r.SourceOffset, -1), copies)
			for n := range r.Items {
				add(bqwh.TableOrderItems, coords(r.SourceTopic, r.SourcePartition, r.SourceOffset, n), copies)
			}
		}
		for _, r := range b.Products {
			add(bqwh.TableProducts, coords(r.SourceTopic, r.SourcePartition, r.SourceOffset, -1), copies)
		}
		for _, r := range b.Users {
			add(bqwh.TableUsers, coords(r.SourceTopic, r.SourcePartition, r.SourceOffset, -1), copies)
		}
	}
	return want
}

func coords(topic string, part int32, off int64, line int) string {
	if line < 0 {
		return fmt.Sprintf("%s/%d/%d", topic, part, off)
	}
	return fmt.Sprintf("%s/%d/%d#%d", topic, part, off, line)
}

var _ bqwh.Catalog = (*fakeCatalog)(nil)
