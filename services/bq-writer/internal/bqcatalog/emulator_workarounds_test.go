package bqcatalog

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/bigquery"
	"cloud.google.com/go/bigquery/storage/managedwriter"
	"cloud.google.com/go/bigquery/storage/managedwriter/adapt"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/ecomstream/platform/services/bq-writer/internal/bqemu"
)

// TestIntegrationEmulatorWorkarounds checks that the stack's emulator carries the workarounds of
// deploy/local/stack/bqemulator_workarounds.py, the two bqemulator 1.4.0 bugs bq-writer meets:
//   - every open AppendRows connection holds a server thread, 6 by default on 2 cores: an append
//     beyond that waits forever. Here 12 streams each keep a connection open, then all append.
//   - a REST job while an append inserts deadlocked the whole emulator. Here queries run in a loop
//     while the 12 streams append.
//
// Without the workarounds the appends hang and the per-call deadlines fail the test.
func TestIntegrationEmulatorWorkarounds(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs the BigQuery emulator")
	}
	emu := bqemu.Require(t)
	rest, grpcAddr := emu.REST, emu.GRPC
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	dataset := "itest_workarounds_" + hex.EncodeToString(b)
	bq, err := bigquery.NewClient(ctx, emulatorProject, option.WithEndpoint(rest+"/bigquery/v2/"), option.WithoutAuthentication())
	if err != nil {
		t.Fatal(err)
	}
	defer bq.Close()
	if err := bq.Dataset(dataset).Create(ctx, &bigquery.DatasetMetadata{Location: DefaultLocation}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cctx, ccancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer ccancel()
		if err := bq.Dataset(dataset).DeleteWithContents(cctx); err != nil {
			t.Errorf("drop dataset %s: %v", dataset, err)
		}
	})
	schema := bigquery.Schema{{Name: "id", Type: bigquery.IntegerFieldType, Required: true}, {Name: "note", Type: bigquery.StringFieldType}}
	if err := bq.Dataset(dataset).Table("t").Create(ctx, &bigquery.TableMetadata{Schema: schema}); err != nil {
		t.Fatal(err)
	}
	ts, err := adapt.BQSchemaToStorageTableSchema(schema)
	if err != nil {
		t.Fatal(err)
	}
	d, err := adapt.StorageSchemaToProto2Descriptor(ts, "root")
	if err != nil {
		t.Fatal(err)
	}
	md := d.(protoreflect.MessageDescriptor)
	dp, err := adapt.NormalizeDescriptor(md)
	if err != nil {
		t.Fatal(err)
	}
	mw, err := managedwriter.NewClient(ctx, emulatorProject, option.WithEndpoint(grpcAddr), option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())))
	if err != nil {
		t.Fatal(err)
	}
	defer mw.Close()
	rows := func(from, n int) [][]byte {
		out := make([][]byte, n)
		for i := range out {
			m := dynamicpb.NewMessage(md)
			m.Set(md.Fields().ByName("id"), protoreflect.ValueOfInt64(int64(from+i)))
			m.Set(md.Fields().ByName("note"), protoreflect.ValueOfString(fmt.Sprintf("row %d", from+i)))
			if out[i], err = proto.Marshal(m); err != nil {
				t.Fatal(err)
			}
		}
		return out
	}
	// appendAt appends n rows at offset off, resending once: the emulator answers every second
	// request of a connection NotFound and ends it (sql/README.md), and the resend at the same
	// offset goes on a new connection.
	appendAt := func(ms *managedwriter.ManagedStream, off int64, n int) error {
		var last error
		for attempt := 0; attempt < 3; attempt++ {
			actx, acancel := context.WithTimeout(ctx, 20*time.Second)
			res, err := ms.AppendRows(actx, rows(int(off), n), managedwriter.WithOffset(off))
			if err == nil {
				_, err = res.GetResult(actx)
			}
			acancel()
			if err == nil {
				return nil
			}
			last = err
		}
		return last
	}

	const streams, perStream = 12, 200
	var wg sync.WaitGroup
	all := make([]*managedwriter.ManagedStream, streams)
	for i := range all {
		if all[i], err = mw.NewManagedStream(ctx, managedwriter.WithDestinationTable(managedwriter.TableParentFromParts(emulatorProject, dataset, "t")),
			managedwriter.WithType(managedwriter.CommittedStream), managedwriter.WithSchemaDescriptor(dp)); err != nil {
			t.Fatal(err)
		}
		defer all[i].Close()
		// The first append of a stream leaves its connection open (a held server thread).
		if err := appendAt(all[i], 0, 1); err != nil {
			t.Fatalf("stream %d of %d, first append with %d connections held: %v", i+1, streams, i, err)
		}
	}
	stop := make(chan struct{})
	queries := 0
	var qerr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			qctx, qcancel := context.WithTimeout(ctx, 20*time.Second)
			it, err := bq.Query(fmt.Sprintf("SELECT COUNT(*) FROM `%s.%s.t`", emulatorProject, dataset)).Read(qctx)
			if err == nil {
				var row []bigquery.Value
				err = it.Next(&row)
			}
			qcancel()
			if err != nil {
				qerr = err
				return
			}
			queries++
		}
	}()
	errs := make([]error, streams)
	var aw sync.WaitGroup
	for i, ms := range all {
		aw.Add(1)
		go func() {
			defer aw.Done()
			for off := int64(1); off < 1+perStream; off += 20 {
				if err := appendAt(ms, off, 20); err != nil {
					errs[i] = fmt.Errorf("stream %d at %d: %w", i, off, err)
					return
				}
			}
		}()
	}
	aw.Wait()
	close(stop)
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatalf("appends while queries ran: %v (the emulator lacks deploy/local/stack/bqemulator_workarounds.py? restart it with stack.sh down/up bqemulator)", err)
		}
	}
	if qerr != nil {
		t.Fatalf("a query while appends ran: %v", qerr)
	}
	it, err := bq.Query(fmt.Sprintf("SELECT COUNT(*) FROM `%s.%s.t`", emulatorProject, dataset)).Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var row []bigquery.Value
	if err := it.Next(&row); err != nil || row[0] != int64(streams*(1+perStream)) {
		t.Fatalf("rows %v (%v), want %d", row, err, streams*(1+perStream))
	}
	t.Logf("%d streams x %d rows appended while %d queries ran", streams, 1+perStream, queries)
}
