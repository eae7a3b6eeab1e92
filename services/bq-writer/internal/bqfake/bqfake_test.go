package bqfake_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"cloud.google.com/go/bigquery/storage/apiv1/storagepb"
	"cloud.google.com/go/bigquery/storage/managedwriter"
	"cloud.google.com/go/bigquery/storage/managedwriter/adapt"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/ecomstream/platform/services/bq-writer/internal/bqfake"
)

var tablePath = bqfake.TablePath("proj", "raw", "fact_events")

var schema = &storagepb.TableSchema{Fields: []*storagepb.TableFieldSchema{
	{Name: "event_id", Type: storagepb.TableFieldSchema_STRING, Mode: storagepb.TableFieldSchema_REQUIRED},
	{Name: "seq", Type: storagepb.TableFieldSchema_INT64, Mode: storagepb.TableFieldSchema_NULLABLE},
	{Name: "tags", Type: storagepb.TableFieldSchema_STRING, Mode: storagepb.TableFieldSchema_REPEATED},
	{Name: "geo", Type: storagepb.TableFieldSchema_STRUCT, Mode: storagepb.TableFieldSchema_NULLABLE,
		Fields: []*storagepb.TableFieldSchema{{Name: "country", Type: storagepb.TableFieldSchema_STRING, Mode: storagepb.TableFieldSchema_NULLABLE}}},
}}

// env is one fake with one table and a real managedwriter client on it.
type env struct {
	fake   *bqfake.Server
	client *managedwriter.Client
	md     protoreflect.MessageDescriptor
	dp     *descriptorpb.DescriptorProto
}

func descriptorFor(t *testing.T, s *storagepb.TableSchema) (protoreflect.MessageDescriptor, *descriptorpb.DescriptorProto) {
	t.Helper()
	d, err := adapt.StorageSchemaToProto2Descriptor(s, "root")
	if err != nil {
		t.Fatalf("descriptor: %v", err)
	}
	md := d.(protoreflect.MessageDescriptor)
	dp, err := adapt.NormalizeDescriptor(md)
	if err != nil {
		t.Fatalf("normalize: %v", err)
	}
	return md, dp
}

func newEnv(t *testing.T) *env {
	t.Helper()
	fake, err := bqfake.New()
	if err != nil {
		t.Fatal(err)
	}
	fake.CreateTable(tablePath, schema)
	client, err := managedwriter.NewClient(context.Background(), "proj", fake.ClientOptions()...)
	if err != nil {
		fake.Close()
		t.Fatalf("client: %v", err)
	}
	md, dp := descriptorFor(t, schema)
	t.Cleanup(func() {
		_ = client.Close()
		fake.Close()
	})
	return &env{fake: fake, client: client, md: md, dp: dp}
}

func (e *env) stream(t *testing.T, typ managedwriter.StreamType, retries bool) *managedwriter.ManagedStream {
	t.Helper()
	ms, err := e.client.NewManagedStream(context.Background(),
		managedwriter.WithDestinationTable(tablePath),
		managedwriter.WithType(typ),
		managedwriter.WithSchemaDescriptor(e.dp),
		managedwriter.EnableWriteRetries(retries))
	if err != nil {
		t.Fatalf("managed stream: %v", err)
	}
	t.Cleanup(func() { _ = ms.Close() })
	return ms
}

// rows serializes rows with event ids prefix-from .. prefix-(from+n-1).
func (e *env) rows(t *testing.T, from, n int) [][]byte {
	t.Helper()
	out := make([][]byte, n)
	for i := range n {
		m := dynamicpb.NewMessage(e.md)
		m.Set(e.md.Fields().ByName("event_id"), protoreflect.ValueOfString(fmt.Sprintf("e%d", from+i)))
		m.Set(e.md.Fields().ByName("seq"), protoreflect.ValueOfInt64(int64(from+i)))
		b, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = b
	}
	return out
}

func ids(rows []bqfake.Row) []string {
	out := make([]string, len(rows))
	for i, r := range rows {
		out[i], _ = r["event_id"].(string)
	}
	return out
}

func wantIDs(t *testing.T, got []bqfake.Row, from, n int) {
	t.Helper()
	g := ids(got)
	if len(g) != n {
		t.Fatalf("got %d rows %v, want %d from e%d", len(g), g, n, from)
	}
	for i := range n {
		if want := fmt.Sprintf("e%d", from+i); g[i] != want {
			t.Fatalf("row %d = %q, want %q (all: %v)", i, g[i], want, g)
		}
	}
}

func result(t *testing.T, ms *managedwriter.ManagedStream, data [][]byte, opts ...managedwriter.AppendOption) (int64, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := ms.AppendRows(ctx, data, opts...)
	if err != nil {
		return 0, err
	}
	return res.GetResult(ctx)
}

func TestDefaultStream(t *testing.T) {
	e := newEnv(t)
	ms := e.stream(t, managedwriter.DefaultStream, false)
	for _, from := range []int{0, 3} {
		off, err := result(t, ms, e.rows(t, from, 3))
		if err != nil {
			t.Fatalf("append: %v", err)
		}
		if off != managedwriter.NoStreamOffset {
			t.Fatalf("default stream returned offset %d, want none", off)
		}
	}
	got := e.fake.Rows(tablePath)
	wantIDs(t, got, 0, 6)
	if got[4]["seq"] != int64(4) {
		t.Fatalf("seq of row 4 = %#v, want int64(4)", got[4]["seq"])
	}
	if _, ok := got[0]["geo"]; ok {
		t.Fatalf("unset struct column is present: %v", got[0])
	}
	// An offset on the default stream is a malformed request.
	if _, err := result(t, ms, e.rows(t, 6, 1), managedwriter.WithOffset(6)); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("offset on _default: %v, want InvalidArgument", err)
	}
}

func TestCommittedOffsets(t *testing.T) {
	e := newEnv(t)
	ms := e.stream(t, managedwriter.CommittedStream, false)
	tests := []struct {
		name      string
		from, n   int
		offset    int64
		wantCode  codes.Code
		wantStore storagepb.StorageError_StorageErrorCode
		wantOff   int64
		wantRows  int
	}{
		{name: "first append at 0", from: 0, n: 3, offset: 0, wantOff: 0, wantRows: 3},
		{name: "append at the end", from: 3, n: 2, offset: 3, wantOff: 3, wantRows: 5},
		{name: "replay of the first append", from: 0, n: 3, offset: 0, wantCode: codes.AlreadyExists, wantStore: storagepb.StorageError_OFFSET_ALREADY_EXISTS, wantRows: 5},
		{name: "replay cut differently, last row exists", from: 4, n: 2, offset: 4, wantCode: codes.AlreadyExists, wantStore: storagepb.StorageError_OFFSET_ALREADY_EXISTS, wantRows: 5},
		{name: "probe beyond the end", from: 6, n: 1, offset: 6, wantCode: codes.OutOfRange, wantStore: storagepb.StorageError_OFFSET_OUT_OF_RANGE, wantRows: 5},
		{name: "probe at the end", from: 5, n: 1, offset: 5, wantOff: 5, wantRows: 6},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			off, err := result(t, ms, e.rows(t, tt.from, tt.n), managedwriter.WithOffset(tt.offset))
			if got := status.Code(err); got != tt.wantCode {
				t.Fatalf("code %v (%v), want %v", got, err, tt.wantCode)
			}
			if tt.wantCode == codes.OK {
				if off != tt.wantOff {
					t.Fatalf("offset %d, want %d", off, tt.wantOff)
				}
			} else if se := bqfake.StorageErrorOf(err); se.GetCode() != tt.wantStore || se.GetEntity() != ms.StreamName() {
				t.Fatalf("storage error %v, want %v on %s", se, tt.wantStore, ms.StreamName())
			}
			wantIDs(t, e.fake.Rows(tablePath), 0, tt.wantRows)
		})
	}
	// The stream is still usable after the errors, and finalized it takes no more rows.
	if n, err := ms.Finalize(context.Background()); err != nil || n != 6 {
		t.Fatalf("finalize = %d, %v; want 6 rows", n, err)
	}
	_, err := result(t, ms, e.rows(t, 6, 1), managedwriter.WithOffset(6))
	if status.Code(err) != codes.InvalidArgument || bqfake.StorageErrorOf(err).GetCode() != storagepb.StorageError_STREAM_FINALIZED {
		t.Fatalf("append after finalize: %v, want InvalidArgument STREAM_FINALIZED", err)
	}
}

func TestPendingBatchCommit(t *testing.T) {
	e := newEnv(t)
	a := e.stream(t, managedwriter.PendingStream, false)
	b := e.stream(t, managedwriter.PendingStream, false)
	if _, err := result(t, a, e.rows(t, 0, 2), managedwriter.WithOffset(0)); err != nil {
		t.Fatal(err)
	}
	if _, err := result(t, b, e.rows(t, 2, 3), managedwriter.WithOffset(0)); err != nil {
		t.Fatal(err)
	}
	if got := e.fake.Rows(tablePath); len(got) != 0 {
		t.Fatalf("pending rows visible before commit: %v", ids(got))
	}
	ctx := context.Background()
	req := &storagepb.BatchCommitWriteStreamsRequest{Parent: tablePath, WriteStreams: []string{a.StreamName(), b.StreamName()}}

	if _, err := a.Finalize(ctx); err != nil {
		t.Fatal(err)
	}
	// b is not finalized: nothing commits, not even a.
	resp, err := e.client.BatchCommitWriteStreams(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetCommitTime() != nil || len(resp.GetStreamErrors()) != 1 ||
		resp.GetStreamErrors()[0].GetCode() != storagepb.StorageError_INVALID_STREAM_STATE || resp.GetStreamErrors()[0].GetEntity() != b.StreamName() {
		t.Fatalf("commit with an open stream: %v", resp)
	}
	if got := e.fake.Rows(tablePath); len(got) != 0 {
		t.Fatalf("a partial commit made rows visible: %v", ids(got))
	}

	if n, err := b.Finalize(ctx); err != nil || n != 3 {
		t.Fatalf("finalize b = %d, %v", n, err)
	}
	resp, err = e.client.BatchCommitWriteStreams(ctx, req)
	if err != nil || resp.GetCommitTime() == nil || len(resp.GetStreamErrors()) != 0 {
		t.Fatalf("commit: %v, %v", resp, err)
	}
	wantIDs(t, e.fake.Rows(tablePath), 0, 5)

	resp, err = e.client.BatchCommitWriteStreams(ctx, req)
	if err != nil || resp.GetCommitTime() != nil || len(resp.GetStreamErrors()) != 2 ||
		resp.GetStreamErrors()[0].GetCode() != storagepb.StorageError_STREAM_ALREADY_COMMITTED {
		t.Fatalf("second commit: %v, %v", resp, err)
	}
	ws, err := e.client.GetWriteStream(ctx, &storagepb.GetWriteStreamRequest{Name: a.StreamName(), View: storagepb.WriteStreamView_FULL})
	if err != nil || ws.GetCommitTime() == nil || ws.GetType() != storagepb.WriteStream_PENDING || len(ws.GetTableSchema().GetFields()) != len(schema.GetFields()) {
		t.Fatalf("get write stream: %v, %v", ws, err)
	}
}

func TestBufferedFlush(t *testing.T) {
	e := newEnv(t)
	ms := e.stream(t, managedwriter.BufferedStream, false)
	if _, err := result(t, ms, e.rows(t, 0, 4), managedwriter.WithOffset(0)); err != nil {
		t.Fatal(err)
	}
	if got := e.fake.Rows(tablePath); len(got) != 0 {
		t.Fatalf("buffered rows visible before flush: %v", ids(got))
	}
	if off, err := ms.FlushRows(context.Background(), 1); err != nil || off != 1 {
		t.Fatalf("flush = %d, %v", off, err)
	}
	wantIDs(t, e.fake.Rows(tablePath), 0, 2)
	if _, err := ms.FlushRows(context.Background(), 4); status.Code(err) != codes.OutOfRange {
		t.Fatalf("flush beyond the end: %v, want OutOfRange", err)
	}
}

// TestFaults drives injected faults through the client: which ones it retries
// (with EnableWriteRetries) and which it surfaces.
func TestFaults(t *testing.T) {
	tests := []struct {
		name     string
		typ      managedwriter.StreamType
		retries  bool
		hooks    func(fail *int) bqfake.Hooks
		wantCode codes.Code
		wantRows int
	}{
		{name: "quota retried", typ: managedwriter.CommittedStream, retries: true,
			hooks: before(bqfake.Quota()), wantRows: 2},
		{name: "quota surfaced without retries", typ: managedwriter.CommittedStream,
			hooks: before(bqfake.Quota()), wantCode: codes.ResourceExhausted},
		{name: "other resource exhausted is not retried", typ: managedwriter.CommittedStream, retries: true,
			hooks: before(&bqfake.Fault{Code: codes.ResourceExhausted, Message: "too many connections"}), wantCode: codes.ResourceExhausted},
		{name: "unavailable response retried", typ: managedwriter.CommittedStream, retries: true,
			hooks: before(bqfake.Unavailable()), wantRows: 2},
		{name: "connection dropped before the append, retried", typ: managedwriter.CommittedStream, retries: true,
			hooks: before(bqfake.Drop()), wantRows: 2},
		{name: "connection dropped before the append, surfaced", typ: managedwriter.CommittedStream,
			hooks: before(bqfake.Drop()), wantCode: codes.Unavailable},
		// The crash point that makes offsets necessary: the rows are stored, the ack is lost.
		{name: "ack lost, offset replay answered already exists", typ: managedwriter.CommittedStream, retries: true,
			hooks: after(bqfake.Drop()), wantCode: codes.AlreadyExists, wantRows: 2},
		{name: "ack lost on the default stream duplicates", typ: managedwriter.DefaultStream, retries: true,
			hooks: after(bqfake.Drop()), wantRows: 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			var fails int
			e.fake.SetHooks(tt.hooks(&fails))
			ms := e.stream(t, tt.typ, tt.retries)
			var opts []managedwriter.AppendOption
			if tt.typ != managedwriter.DefaultStream {
				opts = append(opts, managedwriter.WithOffset(0))
			}
			_, err := result(t, ms, e.rows(t, 0, 2), opts...)
			if got := status.Code(err); got != tt.wantCode {
				t.Fatalf("code %v (%v), want %v", got, err, tt.wantCode)
			}
			if fails != 1 {
				t.Fatalf("fault injected %d times, want 1", fails)
			}
			if got := e.fake.Rows(tablePath); len(got) != tt.wantRows {
				t.Fatalf("%d rows %v, want %d", len(got), ids(got), tt.wantRows)
			}
		})
	}
}

// TestHang: a hung connection answers nothing until the client gives it up; a new connection to
// the same stream then works, and finds the rows a hang after the append applied.
func TestHang(t *testing.T) {
	tests := []struct {
		name     string
		hooks    func(fail *int) bqfake.Hooks
		wantRows int        // rows stored by the hung append
		wantCode codes.Code // the resend's answer on a new connection
	}{
		{name: "hang before the append", hooks: before(bqfake.Hang()), wantRows: 0, wantCode: codes.OK},
		{name: "hang after the append, before the ack", hooks: after(bqfake.Hang()), wantRows: 2, wantCode: codes.AlreadyExists},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			var fails int
			e.fake.SetHooks(tt.hooks(&fails))
			ms := e.stream(t, managedwriter.CommittedStream, false)
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			res, err := ms.AppendRows(ctx, e.rows(t, 0, 2), managedwriter.WithOffset(0))
			if err == nil {
				_, err = res.GetResult(ctx)
			}
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("append on a hung connection: %v, want the caller's deadline", err)
			}
			if fails != 1 {
				t.Fatalf("fault injected %d times, want 1", fails)
			}
			if got := e.fake.Rows(tablePath); len(got) != tt.wantRows {
				t.Fatalf("%d rows stored by the hung append, want %d", len(got), tt.wantRows)
			}
			// Give the connection up (closing the writer ends its connection) and resend on a
			// new one.
			_ = ms.Close()
			again, err := e.client.NewManagedStream(context.Background(), managedwriter.WithStreamName(ms.StreamName()),
				managedwriter.WithSchemaDescriptor(e.dp), managedwriter.EnableWriteRetries(false))
			if err != nil {
				t.Fatalf("reopen: %v", err)
			}
			t.Cleanup(func() { _ = again.Close() })
			if _, err := result(t, again, e.rows(t, 0, 2), managedwriter.WithOffset(0)); status.Code(err) != tt.wantCode {
				t.Fatalf("resend on a new connection: %v, want %v", err, tt.wantCode)
			}
			wantIDs(t, e.fake.Rows(tablePath), 0, 2)
		})
	}
}

// before injects f into the first append before it is applied.
func before(f *bqfake.Fault) func(*int) bqfake.Hooks {
	return func(fails *int) bqfake.Hooks {
		nth := bqfake.OnNth(1, f)
		return bqfake.Hooks{BeforeAppend: func(a bqfake.Append) *bqfake.Fault {
			got := nth(a)
			if got != nil {
				*fails++
			}
			return got
		}}
	}
}

// after injects f into the first append after it is applied, before the ack.
func after(f *bqfake.Fault) func(*int) bqfake.Hooks {
	return func(fails *int) bqfake.Hooks {
		nth := bqfake.OnNth(1, f)
		return bqfake.Hooks{AfterAppend: func(a bqfake.Append) *bqfake.Fault {
			got := nth(a)
			if got != nil {
				*fails++
			}
			return got
		}}
	}
}

func TestSchemaChecks(t *testing.T) {
	e := newEnv(t)
	wider := proto.CloneOf(schema)
	wider.Fields = append(wider.Fields, &storagepb.TableFieldSchema{Name: "coupon", Type: storagepb.TableFieldSchema_STRING, Mode: storagepb.TableFieldSchema_NULLABLE})
	md, dp := descriptorFor(t, wider)
	ms, err := e.client.NewManagedStream(context.Background(),
		managedwriter.WithDestinationTable(tablePath),
		managedwriter.WithType(managedwriter.DefaultStream),
		managedwriter.WithSchemaDescriptor(dp))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ms.Close() })
	m := dynamicpb.NewMessage(md)
	m.Set(md.Fields().ByName("event_id"), protoreflect.ValueOfString("e0"))
	m.Set(md.Fields().ByName("coupon"), protoreflect.ValueOfString("X"))
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}

	_, err = result(t, ms, [][]byte{b})
	if status.Code(err) != codes.InvalidArgument || bqfake.StorageErrorOf(err).GetCode() != storagepb.StorageError_SCHEMA_MISMATCH_EXTRA_FIELDS {
		t.Fatalf("extra field: %v, want InvalidArgument SCHEMA_MISMATCH_EXTRA_FIELDS", err)
	}
	// Once the column exists (tables.patch on the real service), the same append succeeds.
	e.fake.CreateTable(tablePath, wider)
	if _, err := result(t, ms, [][]byte{b}); err != nil {
		t.Fatalf("after adding the column: %v", err)
	}
	if got := e.fake.Rows(tablePath); len(got) != 1 || got[0]["coupon"] != "X" {
		t.Fatalf("rows %v", got)
	}

	// A row without a REQUIRED column is a row error; the whole request is rejected.
	noID := dynamicpb.NewMessage(md)
	noID.Set(md.Fields().ByName("seq"), protoreflect.ValueOfInt64(1))
	nb, err := proto.MarshalOptions{AllowPartial: true}.Marshal(noID)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	res, err := ms.AppendRows(ctx, [][]byte{b, nb})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := res.FullResponse(ctx)
	if status.Code(err) != codes.InvalidArgument || len(resp.GetRowErrors()) != 1 || resp.GetRowErrors()[0].GetIndex() != 1 {
		t.Fatalf("row error: %v, %v", resp, err)
	}
	if got := e.fake.Rows(tablePath); len(got) != 1 {
		t.Fatalf("a rejected request wrote rows: %v", got)
	}
}

func TestUnknownTableAndStream(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	_, err := e.client.NewManagedStream(ctx,
		managedwriter.WithDestinationTable(bqfake.TablePath("proj", "raw", "missing")),
		managedwriter.WithType(managedwriter.CommittedStream),
		managedwriter.WithSchemaDescriptor(e.dp))
	if status.Code(err) != codes.NotFound || bqfake.StorageErrorOf(err).GetCode() != storagepb.StorageError_TABLE_NOT_FOUND {
		t.Fatalf("stream on a missing table: %v, want NotFound TABLE_NOT_FOUND", err)
	}
	_, err = e.client.GetWriteStream(ctx, &storagepb.GetWriteStreamRequest{Name: tablePath + "/streams/gone"})
	if status.Code(err) != codes.NotFound || bqfake.StorageErrorOf(err).GetCode() != storagepb.StorageError_STREAM_NOT_FOUND {
		t.Fatalf("missing stream: %v, want NotFound STREAM_NOT_FOUND", err)
	}
	// A writer reopening a stream by name (the recovery path) gets its type and table.
	ms := e.stream(t, managedwriter.CommittedStream, false)
	if _, err := result(t, ms, e.rows(t, 0, 1), managedwriter.WithOffset(0)); err != nil {
		t.Fatal(err)
	}
	again, err := e.client.NewManagedStream(ctx, managedwriter.WithStreamName(ms.StreamName()), managedwriter.WithSchemaDescriptor(e.dp))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = again.Close() })
	if again.StreamType() != managedwriter.CommittedStream {
		t.Fatalf("reopened stream type %q", again.StreamType())
	}
	if off, err := result(t, again, e.rows(t, 1, 1), managedwriter.WithOffset(1)); err != nil || off != 1 {
		t.Fatalf("append on the reopened stream = %d, %v", off, err)
	}
	wantIDs(t, e.fake.Rows(tablePath), 0, 2)
}

// TestHookPoints checks what each hook sees: before the append nothing is
// stored, after it the rows are in the stream, and Acked runs once the
// acknowledgement went out.
func TestHookPoints(t *testing.T) {
	e := newEnv(t)
	type seen struct {
		point string
		a     bqfake.Append
	}
	ch := make(chan seen, 3)
	e.fake.SetHooks(bqfake.Hooks{
		BeforeAppend: func(a bqfake.Append) *bqfake.Fault { ch <- seen{"before", a}; return nil },
		AfterAppend:  func(a bqfake.Append) *bqfake.Fault { ch <- seen{"after", a}; return nil },
		Acked:        func(a bqfake.Append) { ch <- seen{"acked", a} },
	})
	ms := e.stream(t, managedwriter.CommittedStream, false)
	if _, err := result(t, ms, e.rows(t, 0, 2), managedwriter.WithOffset(0)); err != nil {
		t.Fatal(err)
	}
	want := []seen{
		{"before", bqfake.Append{Seq: 1, Stream: ms.StreamName(), Offset: 0, Rows: 2, End: 0}},
		{"after", bqfake.Append{Seq: 1, Stream: ms.StreamName(), Offset: 0, Rows: 2, End: 2}},
		{"acked", bqfake.Append{Seq: 1, Stream: ms.StreamName(), Offset: 0, Rows: 2, End: 2}},
	}
	for _, w := range want {
		select {
		case got := <-ch:
			if got != w {
				t.Fatalf("hook %+v, want %+v", got, w)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("hook %s not called", w.point)
		}
	}
	if end, ok := e.fake.StreamEnd(ms.StreamName()); !ok || end != 2 {
		t.Fatalf("stream end %d, %v; want 2", end, ok)
	}
	// A rejected append runs no after/acked hook.
	if _, err := result(t, ms, e.rows(t, 0, 1), managedwriter.WithOffset(0)); status.Code(err) != codes.AlreadyExists {
		t.Fatalf("replay: %v", err)
	}
	if got := <-ch; got.point != "before" || got.a.Seq != 2 {
		t.Fatalf("hook %+v, want before of append 2", got)
	}
	select {
	case got := <-ch:
		t.Fatalf("hook %+v ran for a rejected append", got)
	case <-time.After(100 * time.Millisecond):
	}
}

// TestZombieWriter: after a rebalance the new owner reopens the stream and
// continues at its end; the old owner's late append at the offset it
// believed next is answered ALREADY_EXISTS and writes nothing.
func TestZombieWriter(t *testing.T) {
	e := newEnv(t)
	old := e.stream(t, managedwriter.CommittedStream, false)
	if _, err := result(t, old, e.rows(t, 0, 2), managedwriter.WithOffset(0)); err != nil {
		t.Fatal(err)
	}
	owner, err := e.client.NewManagedStream(context.Background(), managedwriter.WithStreamName(old.StreamName()), managedwriter.WithSchemaDescriptor(e.dp))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = owner.Close() })
	if _, err := result(t, owner, e.rows(t, 2, 2), managedwriter.WithOffset(2)); err != nil {
		t.Fatal(err)
	}
	if _, err := result(t, old, e.rows(t, 2, 2), managedwriter.WithOffset(2)); status.Code(err) != codes.AlreadyExists {
		t.Fatalf("zombie append: %v, want AlreadyExists", err)
	}
	wantIDs(t, e.fake.Rows(tablePath), 0, 4)
}
