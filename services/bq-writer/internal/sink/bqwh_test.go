package sink

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/bigquery/storage/apiv1/storagepb"
	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/ecomstream/platform/services/bq-writer/internal/bqcatalog"
	"github.com/ecomstream/platform/services/bq-writer/internal/bqfake"
	"github.com/ecomstream/platform/services/bq-writer/internal/bqwh"
	"github.com/ecomstream/platform/services/bq-writer/internal/warehouse"
	ddl "github.com/ecomstream/platform/sql"
)

// bqCatalog is bqcatalog on the REST fake that also creates each raw table in the Storage Write
// fake, which keeps tables of its own.
type bqCatalog struct {
	*bqcatalog.Catalog
	fake         *bqfake.Server
	project, raw string
}

func (c *bqCatalog) Migrate(ctx context.Context) error {
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

func (c *bqCatalog) AddColumns(ctx context.Context, table string, cols []*storagepb.TableFieldSchema) (*storagepb.TableSchema, error) {
	s, err := c.Catalog.AddColumns(ctx, table, cols)
	if err == nil {
		c.fake.CreateTable(bqfake.TablePath(c.project, c.raw, table), s)
	}
	return s, err
}

// openBQ is bqwh on the fakes, migrated.
func openBQ(t *testing.T) (*bqwh.Warehouse, *bqfake.Server, string) {
	t.Helper()
	ctx := context.Background()
	const project = "ecom-fake"
	ds := ddl.Datasets{Raw: "sink_raw", Staging: "sink_staging", Prod: "sink_prod"}
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
	opts, err := fake.ProcessOptions()
	if err != nil {
		t.Fatal(err)
	}
	w, err := bqwh.Open(ctx, bqwh.Config{Project: project, RawDataset: ds.Raw, ApplyDDL: true, ClientOptions: opts,
		Catalog: &bqCatalog{Catalog: cat, fake: fake, project: project, raw: ds.Raw}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Close() })
	if err := w.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	return w, fake, bqfake.TablePath(project, ds.Raw, bqwh.TableEvents)
}

// A group that ran on DuckDB carries franz-go's default commit metadata (the member id), and one
// reset with the Kafka CLI empty metadata: neither is a BigQuery position. The sink on bqwh stops
// with a *PositionError naming the partition unless POSITION_RECOVERY allows a start (earliest:
// the log start; committed: the commit's offset, knowingly).
func TestBigQueryCommitWithoutPosition(t *testing.T) {
	tests := []struct {
		name     string
		metadata string
		recovery Recovery
		wantWhy  string // in the problem, when refused
		// fromCommit: partition 0 is written from the commit, not from the log start.
		fromCommit bool
	}{
		{name: "DuckDB's commit, refused", metadata: "kgo-5f1e-member", wantWhy: "is not a BigQuery position"},
		{name: "empty metadata, refused", metadata: "", wantWhy: "is empty"},
		{name: "DuckDB's commit, earliest", metadata: "kgo-5f1e-member", recovery: RecoveryEarliest},
		{name: "empty metadata, committed", metadata: "", recovery: RecoveryCommitted, fromCommit: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			const group = "bq"
			e.produce("d", 40)
			ends, err := e.adm.ListEndOffsets(context.Background(), e.topic)
			if err != nil {
				t.Fatal(err)
			}
			end0, _ := ends.Lookup(e.topic, 0)
			end1, _ := ends.Lookup(e.topic, 1)
			if end0.Offset < 2 {
				t.Fatalf("partition 0 holds %d records, want 2 or more", end0.Offset)
			}
			at := end0.Offset / 2
			var os kadm.Offsets
			os.Add(kadm.Offset{Topic: e.topic, Partition: 0, At: at, LeaderEpoch: -1, Metadata: tt.metadata})
			if resp, err := e.adm.CommitOffsets(context.Background(), group, os); err != nil || resp.Error() != nil {
				t.Fatalf("seed commit: %v %v", err, resp.Error())
			}
			w, fake, events := openBQ(t)
			cfg := e.config(group)
			cfg.Recovery = tt.recovery
			r := start(t, cfg, w)
			if tt.wantWhy != "" {
				err, ok := r.stopped(20 * time.Second)
				var perr *PositionError
				if !ok || !errors.As(err, &perr) || perr.Partition != 0 || !strings.Contains(perr.Problem, tt.wantWhy) {
					t.Fatalf("run = %v (returned %v), want a *PositionError of partition 0 saying %q", err, ok, tt.wantWhy)
				}
				if n := len(fake.Rows(events)); n != 0 {
					t.Errorf("%d events written, want none", n)
				}
				return
			}
			want := int(end0.Offset + end1.Offset)
			if tt.fromCommit {
				want -= int(at)
			}
			deadline := time.Now().Add(20 * time.Second)
			for len(fake.Rows(events)) < want && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			time.Sleep(200 * time.Millisecond) // nothing more comes
			if err := r.stop(); err != nil {
				t.Fatal(err)
			}
			rows := fake.Rows(events)
			var below int
			for _, row := range rows {
				if row["source_partition"] == int64(0) && row["source_offset"].(int64) < at {
					below++
				}
			}
			if len(rows) != want || (tt.fromCommit && below != 0) {
				t.Errorf("%d events written (%d of partition 0 below the commit %d), want %d", len(rows), below, at, want)
			}
		})
	}
}

var _ warehouse.Committer = (*bqwh.Warehouse)(nil)
