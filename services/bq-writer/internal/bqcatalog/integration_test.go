package bqcatalog

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/bigquery/storage/apiv1/storagepb"
	"cloud.google.com/go/bigquery/storage/managedwriter"
	"cloud.google.com/go/bigquery/storage/managedwriter/adapt"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/ecomstream/platform/services/bq-writer/internal/bqemu"
	ddl "github.com/ecomstream/platform/sql"
)

const emulatorProject = bqemu.Project

// TestIntegrationCatalogEmulator runs the catalog against bqemulator: Migrate twice on fresh
// datasets, the raw fact_events schema, a column added by AddColumns and carried by an append
// through a COMMITTED write stream, read back with Query.
func TestIntegrationCatalogEmulator(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs the BigQuery emulator")
	}
	emu := bqemu.Require(t)
	rest, grpcAddr := emu.REST, emu.GRPC
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	b := make([]byte, 4)
	_, _ = rand.Read(b)
	prefix := "itest_" + hex.EncodeToString(b)
	ds := ddl.Datasets{Raw: prefix + "_raw", Staging: prefix + "_staging", Prod: prefix + "_prod"}
	restOpts := []option.ClientOption{option.WithEndpoint(rest + "/bigquery/v2/"), option.WithoutAuthentication()}
	c, err := New(ctx, Config{Project: emulatorProject, Datasets: ds, Options: restOpts})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	t.Cleanup(func() {
		cctx, ccancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer ccancel()
		for _, d := range []string{ds.Prod, ds.Staging, ds.Raw} {
			if err := c.bq.Dataset(d).DeleteWithContents(cctx); err != nil {
				t.Errorf("drop dataset %s: %v", d, err)
			}
		}
	})

	for i := 1; i <= 2; i++ {
		start := time.Now()
		if err := c.Migrate(ctx); err != nil {
			t.Fatalf("Migrate %d: %v", i, err)
		}
		t.Logf("Migrate %d: %s", i, time.Since(start).Round(time.Millisecond))
	}
	if err := c.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	md, err := c.bq.Dataset(ds.Raw).Metadata(ctx)
	if err != nil || !strings.EqualFold(md.Location, DefaultLocation) {
		t.Fatalf("raw dataset: %+v, %v; want location %s", md, err, DefaultLocation)
	}

	ts, err := c.Schema(ctx, "fact_events")
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]*storagepb.TableFieldSchema{}
	for _, f := range ts.GetFields() {
		byName[f.GetName()] = f
	}
	for name, want := range map[string]storagepb.TableFieldSchema_Mode{
		"event_id": storagepb.TableFieldSchema_REQUIRED, "event_timestamp": storagepb.TableFieldSchema_REQUIRED,
		"user_id": storagepb.TableFieldSchema_NULLABLE, "dq_warnings": storagepb.TableFieldSchema_NULLABLE,
	} {
		if f := byName[name]; f == nil || f.GetMode() != want {
			t.Fatalf("fact_events.%s: %v, want mode %s", name, f, want)
		}
	}

	note := &storagepb.TableFieldSchema{Name: "itest_note", Type: storagepb.TableFieldSchema_STRING, Mode: storagepb.TableFieldSchema_NULLABLE}
	evolved, err := c.AddColumns(ctx, "fact_events", []*storagepb.TableFieldSchema{note})
	if err != nil {
		t.Fatal(err)
	}
	if got := evolved.GetFields()[len(evolved.GetFields())-1].GetName(); got != "itest_note" || len(evolved.GetFields()) != len(ts.GetFields())+1 {
		t.Fatalf("after AddColumns: last column %s, %d columns (was %d)", got, len(evolved.GetFields()), len(ts.GetFields()))
	}
	if again, err := c.AddColumns(ctx, "fact_events", []*storagepb.TableFieldSchema{note}); err != nil || len(again.GetFields()) != len(evolved.GetFields()) {
		t.Fatalf("AddColumns again: %d columns, %v", len(again.GetFields()), err)
	}

	n, err := appendEvents(ctx, grpcAddr, ds.Raw, evolved, []string{"e1", "e2"})
	if err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("append landed at offset %d, want 0 (a fresh stream)", n)
	}
	rows, err := c.Query(ctx, fmt.Sprintf("SELECT event_id, itest_note FROM `%s.%s.fact_events` ORDER BY event_id", emulatorProject, ds.Raw))
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 || rows[0]["event_id"] != "e1" || rows[1]["itest_note"] != "note-e2" {
		t.Fatalf("rows %v, want e1 and e2 with their notes", rows)
	}
	count, err := c.Query(ctx, fmt.Sprintf("SELECT COUNT(*) AS n, COUNT(itest_note) AS notes FROM `%s.%s.fact_events`", emulatorProject, ds.Raw))
	if err != nil {
		t.Fatal(err)
	}
	if len(count) != 1 || count[0]["n"] != int64(2) || count[0]["notes"] != int64(2) {
		t.Fatalf("counts %v, want n=2 notes=2", count)
	}
	days, err := c.Query(ctx, fmt.Sprintf("SELECT COUNT(*) AS n, COUNT(DISTINCT date_key) AS d FROM `%s.%s.dim_date`", emulatorProject, ds.Prod))
	if err != nil || len(days) != 1 || days[0]["n"] != days[0]["d"] || days[0]["n"].(int64) < 365 {
		t.Fatalf("dim_date: %v, %v; want the calendar, each day once after two Migrates", days, err)
	}
	if _, err := c.Query(ctx, fmt.Sprintf("SELECT * FROM `%s.%s.no_such_table`", emulatorProject, ds.Raw)); err == nil {
		t.Fatal("a query of a missing table: no error (the emulator's empty-result answer got through)")
	}
	// A statement the emulator refuses (two ADD COLUMN in one ALTER) fails Migrate, naming its
	// file: the failed job is noticed, not taken for an empty result.
	c.statements = fixed(ddl.Statement{Name: "bigquery/raw/zz_refused.sql", SQL: fmt.Sprintf(
		"ALTER TABLE `%s.%s.fact_events` ADD COLUMN IF NOT EXISTS itest_a STRING, ADD COLUMN IF NOT EXISTS itest_b STRING", emulatorProject, ds.Raw)})
	if err := c.Migrate(ctx); err == nil || !strings.Contains(err.Error(), "bigquery/raw/zz_refused.sql") {
		t.Fatalf("Migrate of a refused statement: %v, want an error naming bigquery/raw/zz_refused.sql", err)
	} else {
		t.Logf("refused statement: %v", err)
	}
}

// appendEvents appends one row per id to raw.fact_events through a COMMITTED write stream with
// an explicit offset 0 (one append: the emulator serves one request per connection) and returns
// the offset BigQuery acknowledged.
func appendEvents(ctx context.Context, grpcAddr, dataset string, schema *storagepb.TableSchema, ids []string) (int64, error) {
	mw, err := managedwriter.NewClient(ctx, emulatorProject,
		option.WithEndpoint(grpcAddr), option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())))
	if err != nil {
		return 0, fmt.Errorf("managedwriter client: %w", err)
	}
	defer mw.Close()
	d, err := adapt.StorageSchemaToProto2Descriptor(schema, "root")
	if err != nil {
		return 0, fmt.Errorf("descriptor: %w", err)
	}
	md, ok := d.(protoreflect.MessageDescriptor)
	if !ok {
		return 0, fmt.Errorf("descriptor is %T", d)
	}
	dp, err := adapt.NormalizeDescriptor(md)
	if err != nil {
		return 0, fmt.Errorf("normalize descriptor: %w", err)
	}
	ms, err := mw.NewManagedStream(ctx,
		managedwriter.WithDestinationTable(managedwriter.TableParentFromParts(emulatorProject, dataset, "fact_events")),
		managedwriter.WithType(managedwriter.CommittedStream), managedwriter.WithSchemaDescriptor(dp))
	if err != nil {
		return 0, fmt.Errorf("committed stream: %w", err)
	}
	defer ms.Close()
	ts := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	rows := make([][]byte, len(ids))
	for i, id := range ids {
		m := dynamicpb.NewMessage(md)
		set := func(name string, v protoreflect.Value) {
			f := md.Fields().ByName(protoreflect.Name(name))
			if f == nil {
				panic("no field " + name) // the DDL's columns: a test bug
			}
			m.Set(f, v)
		}
		str := protoreflect.ValueOfString
		i64 := protoreflect.ValueOfInt64
		set("event_id", str(id))
		set("event_timestamp", i64(ts.UnixMicro()))
		set("event_date", protoreflect.ValueOfInt32(int32(ts.Unix()/86400)))
		set("date_key", i64(20261130))
		set("event_type", str("page_view"))
		set("session_id", str("s1"))
		set("page_url", str("https://shop.example/"))
		set("source", str("kafka"))
		set("received_at", i64(ts.UnixMicro()))
		set("source_topic", str("clicks.valid"))
		set("source_partition", i64(0))
		set("source_offset", i64(int64(i)))
		set("loaded_at", i64(time.Now().UnixMicro()))
		set("itest_note", str("note-"+id))
		if rows[i], err = proto.Marshal(m); err != nil {
			return 0, fmt.Errorf("marshal: %w", err)
		}
	}
	res, err := ms.AppendRows(ctx, rows, managedwriter.WithOffset(0))
	if err != nil {
		return 0, fmt.Errorf("append: %w", err)
	}
	off, err := res.GetResult(ctx)
	if err != nil {
		return 0, fmt.Errorf("append result: %w", err)
	}
	return off, nil
}
