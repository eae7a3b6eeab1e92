// Package bqfake is an in-process fake of the BigQuery Storage Write API
// (google.cloud.bigquery.storage.v1.BigQueryWrite) for tests. It serves the
// real gRPC service over bufconn, so the real managedwriter client talks to
// it unchanged, and follows the documented semantics: the _default stream
// and COMMITTED, PENDING and BUFFERED streams, explicit offsets answered
// ALREADY_EXISTS / OUT_OF_RANGE in the append response, finalisation,
// atomic BatchCommitWriteStreams and FlushRows. Rows are decoded with the
// writer schema the client sends (dynamicpb) and kept per table, so a test
// reads back exactly what became visible. Hooks inject faults (an error
// response, a dropped connection, a connection that never answers) before
// an append is applied or after it is applied and before it is
// acknowledged: the crash points of a writer.
//
// It is test-support code; nothing outside _test files imports it.
package bqfake

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"cloud.google.com/go/bigquery/storage/apiv1/storagepb"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// QuotaMessage is the message the real service puts on the RESOURCE_EXHAUSTED
// it returns for the AppendRows throughput quota; managedwriter retries a
// RESOURCE_EXHAUSTED only when the message starts with it.
const QuotaMessage = "Exceeds 'AppendRows throughput' quota, user_id: fake"

// MaxRequestBytes is the largest request the fake accepts, the service's documented limit of
// 10 MB per AppendRows request (gRPC's default of 4 MiB would reject what BigQuery accepts).
const MaxRequestBytes = 10_000_000

// Location is the location every stream reports.
const Location = "US"

// Fault is what a hook injects into one append.
type Fault struct {
	// Code and Message make the append's response carry this error status
	// (nothing is written when injected before the append).
	Code    codes.Code
	Message string
	// Drop ends the AppendRows connection with UNAVAILABLE instead of
	// answering, as a broken connection does. Code is ignored.
	Drop bool
	// Hang neither answers nor ends the connection, as a hung connection
	// does: the request (and every later one on the connection) waits until
	// the client gives the connection up. Code is ignored.
	Hang bool
	// Storage, when set, adds a StorageError detail with this code (the
	// entity is the stream) to the status.
	Storage storagepb.StorageError_StorageErrorCode
}

// status is the fault's status for stream name.
func (f *Fault) status(name string) *status.Status {
	if f.Drop || f.Hang {
		return status.New(codes.Unavailable, "bqfake: connection dropped")
	}
	if f.Storage != storagepb.StorageError_STORAGE_ERROR_CODE_UNSPECIFIED {
		return storageErr(f.Code, f.Storage, name, f.Message)
	}
	return status.New(f.Code, f.Message)
}

// Quota is the RESOURCE_EXHAUSTED fault of the AppendRows throughput quota.
func Quota() *Fault { return &Fault{Code: codes.ResourceExhausted, Message: QuotaMessage} }

// Unavailable is an UNAVAILABLE error response.
func Unavailable() *Fault {
	return &Fault{Code: codes.Unavailable, Message: "bqfake: service unavailable"}
}

// Drop is a dropped connection.
func Drop() *Fault { return &Fault{Drop: true} }

// Hang is a connection that never answers.
func Hang() *Fault { return &Fault{Hang: true} }

// Append describes one AppendRows request to a hook.
type Append struct {
	Seq    int    // 1-based number of the append across the server
	Stream string // full stream name
	Offset int64  // requested offset, -1 when none was given
	Rows   int    // number of rows in the request
	End    int64  // the stream's row count when the hook runs
}

// Hooks are called for every AppendRows request. A nil hook or a nil
// *Fault lets the append go on.
type Hooks struct {
	// BeforeAppend runs before the append is checked and applied.
	BeforeAppend func(Append) *Fault
	// AfterAppend runs after a successful append is applied (the rows are
	// in the stream) and before its acknowledgement is sent: a fault here
	// is an acknowledgement lost after the write became durable.
	AfterAppend func(Append) *Fault
	// Acked runs after the acknowledgement of a successful append was sent:
	// the point where a writer may crash before committing its Kafka offset.
	Acked func(Append)
	// Finalize runs before a FinalizeWriteStream of an existing stream is
	// applied; a fault is its answer (Code and Message; Drop and Hang are
	// UNAVAILABLE) and nothing changes. bqfake, like bqemulator, answers the
	// row count again when a finalized stream is finalized again; BigQuery
	// does not document that answer, and FinalizedAgain is the other one it
	// may give.
	Finalize func(Finalize) *Fault
}

// Finalize describes one FinalizeWriteStream request to a hook.
type Finalize struct {
	Stream    string // full stream name
	Finalized bool   // the stream is already finalized
	End       int64  // the stream's row count
}

// FinalizedAgain is the answer STREAM_FINALIZED without a row count, for a
// Finalize hook to give to a second finalize of a stream.
func FinalizedAgain() *Fault {
	return &Fault{Code: codes.InvalidArgument, Message: "Stream is already finalized.", Storage: storagepb.StorageError_STREAM_FINALIZED}
}

// OnNth returns a hook that injects f into the n-th append (Append.Seq == n)
// and lets every other append through.
func OnNth(n int, f *Fault) func(Append) *Fault {
	return func(a Append) *Fault {
		if a.Seq == n {
			return f
		}
		return nil
	}
}

// Server is the fake. Create it with New and stop it with Close.
type Server struct {
	storagepb.UnimplementedBigQueryWriteServer

	lis  *bufconn.Listener
	grpc *grpc.Server
	conn *grpc.ClientConn

	mu      sync.Mutex
	tables  map[string]*table  // by "projects/p/datasets/d/tables/t"
	streams map[string]*stream // by full stream name
	nextID  int
	seq     int
	hooks   Hooks
	now     func() time.Time
}

type table struct {
	schema *storagepb.TableSchema
	rows   []Row
}

type stream struct {
	name      string
	table     string
	typ       storagepb.WriteStream_Type
	created   time.Time
	committed time.Time // commit time of a committed PENDING stream
	finalized bool
	rows      []Row // rows appended and not yet visible in the table (PENDING, BUFFERED)
	end       int64 // rows appended
	flushed   int64 // BUFFERED: rows made visible
}

// Row is one stored row: column name to value. Values are those of
// protoreflect.Value.Interface() for scalars (int64, string, []byte, bool,
// float64, protoreflect.EnumNumber ...), Row for nested records and []any
// for repeated fields. A column the row did not set is absent (NULL).
type Row map[string]any

// New starts the fake on an in-memory listener.
func New() (*Server, error) {
	s := &Server{
		lis:     bufconn.Listen(1 << 20),
		grpc:    grpc.NewServer(grpc.MaxRecvMsgSize(MaxRequestBytes)),
		tables:  map[string]*table{},
		streams: map[string]*stream{},
		now:     time.Now,
	}
	storagepb.RegisterBigQueryWriteServer(s.grpc, s)
	go func() { _ = s.grpc.Serve(s.lis) }()
	conn, err := grpc.NewClient("passthrough:///bqfake",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return s.lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		s.grpc.Stop()
		return nil, fmt.Errorf("bqfake: dial: %w", err)
	}
	s.conn = conn
	return s, nil
}

// ClientOptions are the options that point a Google client (managedwriter.NewClient)
// at the fake, without authentication.
func (s *Server) ClientOptions() []option.ClientOption {
	return []option.ClientOption{option.WithGRPCConn(s.conn), option.WithoutAuthentication()}
}

// ProcessOptions are like ClientOptions on a connection of its own, as a separate writer process
// has: closing the client built on them (managedwriter.Client.Close closes its connection) leaves
// the fake and every other connection up.
func (s *Server) ProcessOptions() ([]option.ClientOption, error) {
	conn, err := grpc.NewClient("passthrough:///bqfake",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return s.lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("bqfake: dial: %w", err)
	}
	return []option.ClientOption{option.WithGRPCConn(conn), option.WithoutAuthentication()}, nil
}

// Close stops the server and closes the client connection.
func (s *Server) Close() {
	_ = s.conn.Close()
	s.grpc.Stop()
}

// SetHooks replaces the fault hooks.
func (s *Server) SetHooks(h Hooks) {
	s.mu.Lock()
	s.hooks = h
	s.mu.Unlock()
}

// TablePath is the resource name of a table.
func TablePath(project, dataset, tbl string) string {
	return fmt.Sprintf("projects/%s/datasets/%s/tables/%s", project, dataset, tbl)
}

// CreateTable creates a table (or replaces its schema, keeping its rows).
// Column names are matched case-insensitively, as in BigQuery.
func (s *Server) CreateTable(path string, schema *storagepb.TableSchema) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t, ok := s.tables[path]; ok {
		t.schema = proto.CloneOf(schema)
		return
	}
	s.tables[path] = &table{schema: proto.CloneOf(schema)}
}

// Schema returns a table's schema, or nil if there is no such table.
func (s *Server) Schema(path string) *storagepb.TableSchema {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t, ok := s.tables[path]; ok {
		return proto.CloneOf(t.schema)
	}
	return nil
}

// StreamEnd returns the number of rows appended to a stream (its next
// offset) and whether the stream exists.
func (s *Server) StreamEnd(name string) (int64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.streams[name]
	if !ok {
		return 0, false
	}
	return st.end, true
}

// Rows returns the rows visible in a table (committed), in append order.
func (s *Server) Rows(path string) []Row {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tables[path]
	if !ok {
		return nil
	}
	return append([]Row(nil), t.rows...)
}

func storageErr(c codes.Code, sc storagepb.StorageError_StorageErrorCode, entity, msg string) *status.Status {
	st := status.New(c, msg)
	if d, err := st.WithDetails(&storagepb.StorageError{Code: sc, Entity: entity, ErrorMessage: msg}); err == nil {
		return d
	}
	return st
}

func (s *Server) lookupStream(name string) (*stream, *table, *status.Status) {
	if st, ok := s.streams[name]; ok {
		return st, s.tables[st.table], nil
	}
	if tp, ok := strings.CutSuffix(name, "/streams/_default"); ok {
		if t, ok := s.tables[tp]; ok {
			st := &stream{name: name, table: tp, typ: storagepb.WriteStream_COMMITTED, created: s.now()}
			s.streams[name] = st
			return st, t, nil
		}
		return nil, nil, storageErr(codes.NotFound, storagepb.StorageError_TABLE_NOT_FOUND, tp, "Table not found: "+tp)
	}
	return nil, nil, storageErr(codes.NotFound, storagepb.StorageError_STREAM_NOT_FOUND, name, "Stream not found: "+name)
}

func isDefault(name string) bool { return strings.HasSuffix(name, "/streams/_default") }

func (s *Server) info(st *stream, full bool) *storagepb.WriteStream {
	ws := &storagepb.WriteStream{
		Name:       st.name,
		Type:       st.typ,
		CreateTime: timestamppb.New(st.created),
		WriteMode:  storagepb.WriteStream_INSERT,
		Location:   Location,
	}
	if !st.committed.IsZero() {
		ws.CommitTime = timestamppb.New(st.committed)
	}
	if full {
		ws.TableSchema = proto.CloneOf(s.tables[st.table].schema)
	}
	return ws
}

// CreateWriteStream implements storagepb.BigQueryWriteServer.
func (s *Server) CreateWriteStream(_ context.Context, req *storagepb.CreateWriteStreamRequest) (*storagepb.WriteStream, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.tables[req.GetParent()]; !ok {
		return nil, storageErr(codes.NotFound, storagepb.StorageError_TABLE_NOT_FOUND, req.GetParent(), "Table not found: "+req.GetParent()).Err()
	}
	typ := req.GetWriteStream().GetType()
	switch typ {
	case storagepb.WriteStream_COMMITTED, storagepb.WriteStream_PENDING, storagepb.WriteStream_BUFFERED:
	default:
		return nil, status.Errorf(codes.InvalidArgument, "bqfake: unsupported write stream type %v", typ)
	}
	s.nextID++
	st := &stream{
		name:    fmt.Sprintf("%s/streams/fake%06d", req.GetParent(), s.nextID),
		table:   req.GetParent(),
		typ:     typ,
		created: s.now(),
	}
	s.streams[st.name] = st
	return s.info(st, true), nil
}

// GetWriteStream implements storagepb.BigQueryWriteServer.
func (s *Server) GetWriteStream(_ context.Context, req *storagepb.GetWriteStreamRequest) (*storagepb.WriteStream, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, _, serr := s.lookupStream(req.GetName())
	if serr != nil {
		return nil, serr.Err()
	}
	return s.info(st, req.GetView() == storagepb.WriteStreamView_FULL), nil
}

// FinalizeWriteStream implements storagepb.BigQueryWriteServer.
func (s *Server) FinalizeWriteStream(_ context.Context, req *storagepb.FinalizeWriteStreamRequest) (*storagepb.FinalizeWriteStreamResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if isDefault(req.GetName()) {
		return nil, status.Error(codes.InvalidArgument, "FinalizeWriteStream is not supported on the _default stream")
	}
	st, _, serr := s.lookupStream(req.GetName())
	if serr != nil {
		return nil, serr.Err()
	}
	if h := s.hooks.Finalize; h != nil {
		if f := h(Finalize{Stream: st.name, Finalized: st.finalized, End: st.end}); f != nil {
			return nil, f.status(st.name).Err()
		}
	}
	st.finalized = true
	return &storagepb.FinalizeWriteStreamResponse{RowCount: st.end}, nil
}

// BatchCommitWriteStreams implements storagepb.BigQueryWriteServer. Either
// every stream commits or none does; the reasons come back as stream_errors
// with no commit_time, as the real service answers.
func (s *Server) BatchCommitWriteStreams(_ context.Context, req *storagepb.BatchCommitWriteStreamsRequest) (*storagepb.BatchCommitWriteStreamsResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tables[req.GetParent()]
	if !ok {
		return nil, storageErr(codes.NotFound, storagepb.StorageError_TABLE_NOT_FOUND, req.GetParent(), "Table not found: "+req.GetParent()).Err()
	}
	if len(req.GetWriteStreams()) == 0 {
		return nil, status.Error(codes.InvalidArgument, "no write streams to commit")
	}
	var errs []*storagepb.StorageError
	var commit []*stream
	for _, name := range req.GetWriteStreams() {
		st, ok := s.streams[name]
		switch {
		case !ok || st.table != req.GetParent():
			errs = append(errs, &storagepb.StorageError{Code: storagepb.StorageError_STREAM_NOT_FOUND, Entity: name, ErrorMessage: "Stream not found in " + req.GetParent()})
		case st.typ != storagepb.WriteStream_PENDING:
			errs = append(errs, &storagepb.StorageError{Code: storagepb.StorageError_INVALID_STREAM_TYPE, Entity: name, ErrorMessage: "Stream is not PENDING"})
		case !st.committed.IsZero():
			errs = append(errs, &storagepb.StorageError{Code: storagepb.StorageError_STREAM_ALREADY_COMMITTED, Entity: name, ErrorMessage: "Stream is already committed"})
		case !st.finalized:
			errs = append(errs, &storagepb.StorageError{Code: storagepb.StorageError_INVALID_STREAM_STATE, Entity: name, ErrorMessage: "Stream is not finalized"})
		default:
			commit = append(commit, st)
		}
	}
	if len(errs) > 0 {
		return &storagepb.BatchCommitWriteStreamsResponse{StreamErrors: errs}, nil
	}
	now := s.now()
	for _, st := range commit {
		t.rows = append(t.rows, st.rows...)
		st.rows = nil
		st.committed = now
	}
	return &storagepb.BatchCommitWriteStreamsResponse{CommitTime: timestamppb.New(now)}, nil
}

// FlushRows implements storagepb.BigQueryWriteServer for BUFFERED streams:
// rows up to and including offset become visible.
func (s *Server) FlushRows(_ context.Context, req *storagepb.FlushRowsRequest) (*storagepb.FlushRowsResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, t, serr := s.lookupStream(req.GetWriteStream())
	if serr != nil {
		return nil, serr.Err()
	}
	if st.typ != storagepb.WriteStream_BUFFERED {
		return nil, storageErr(codes.InvalidArgument, storagepb.StorageError_INVALID_STREAM_TYPE, st.name, "FlushRows needs a BUFFERED stream").Err()
	}
	off := req.GetOffset().GetValue()
	if off >= st.end {
		return nil, storageErr(codes.OutOfRange, storagepb.StorageError_OFFSET_OUT_OF_RANGE, st.name,
			fmt.Sprintf("flush offset %d is beyond the end of stream %d", off, st.end)).Err()
	}
	if n := off + 1 - st.flushed; n > 0 {
		t.rows = append(t.rows, st.rows[:n]...)
		st.rows = st.rows[n:]
		st.flushed = off + 1
	}
	return &storagepb.FlushRowsResponse{Offset: off}, nil
}

// conn is the per-connection state of one AppendRows call: the stream and
// writer schema of the last request that named them.
type conn struct {
	stream string
	desc   protoreflect.MessageDescriptor
}

var errDrop = status.Error(codes.Unavailable, "bqfake: connection dropped")

// AppendRows implements storagepb.BigQueryWriteServer.
func (s *Server) AppendRows(srv storagepb.BigQueryWrite_AppendRowsServer) error {
	var c conn
	for {
		req, err := srv.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		resp, acked, cut, fatal := s.append(&c, req)
		if fatal != nil {
			return fatal
		}
		switch cut {
		case cutDrop:
			return errDrop
		case cutHang:
			<-srv.Context().Done()
			return srv.Context().Err()
		}
		if err := srv.Send(resp); err != nil {
			return err
		}
		if acked != nil {
			acked()
		}
	}
}

func errResp(name string, st *status.Status) *storagepb.AppendRowsResponse {
	return &storagepb.AppendRowsResponse{
		Response:    &storagepb.AppendRowsResponse_Error{Error: st.Proto()},
		WriteStream: name,
	}
}

func faultResp(name string, f *Fault) *storagepb.AppendRowsResponse {
	return errResp(name, f.status(name))
}

// cut is how a fault ends an append instead of answering it.
type cut int

const (
	cutNone cut = iota // answer
	cutDrop            // end the connection with UNAVAILABLE
	cutHang            // never answer; end when the client gives the connection up
)

// cutOf is how fault f ends the append.
func cutOf(f *Fault) cut {
	switch {
	case f.Hang:
		return cutHang
	case f.Drop:
		return cutDrop
	}
	return cutNone
}

// append handles one request. A fatal error ends the connection, as the real
// service does for a first request without stream or schema.
// acked, when not nil, is to be called once the response was sent.
func (s *Server) append(c *conn, req *storagepb.AppendRowsRequest) (resp *storagepb.AppendRowsResponse, acked func(), how cut, fatal error) {
	if name := req.GetWriteStream(); name != "" && name != c.stream {
		pr := req.GetProtoRows()
		if pr.GetWriterSchema() == nil {
			return nil, nil, cutNone, status.Errorf(codes.InvalidArgument, "the first request for stream %s must carry the writer schema", name)
		}
		c.stream = name
		c.desc = nil
	}
	if c.stream == "" {
		return nil, nil, cutNone, status.Error(codes.InvalidArgument, "the first request must name the write stream")
	}
	pr := req.GetProtoRows()
	if pr == nil {
		return nil, nil, cutNone, status.Error(codes.InvalidArgument, "bqfake supports proto_rows only")
	}
	if ws := pr.GetWriterSchema(); ws != nil {
		d, err := messageDescriptor(ws.GetProtoDescriptor())
		if err != nil {
			return errResp(c.stream, status.New(codes.InvalidArgument, "Invalid proto schema: "+err.Error())), nil, cutNone, nil
		}
		c.desc = d
	}
	raw := pr.GetRows().GetSerializedRows()

	s.mu.Lock()
	s.seq++
	seq := s.seq
	hooks := s.hooks
	st, t, serr := s.lookupStream(c.stream)
	s.mu.Unlock()
	if serr != nil {
		return errResp(c.stream, serr), nil, cutNone, nil
	}
	a := Append{Seq: seq, Stream: c.stream, Offset: -1, Rows: len(raw)}
	if o := req.GetOffset(); o != nil {
		a.Offset = o.GetValue()
	}
	if hooks.BeforeAppend != nil {
		s.mu.Lock()
		a.End = st.end
		s.mu.Unlock()
		if f := hooks.BeforeAppend(a); f != nil {
			if how := cutOf(f); how != cutNone {
				return nil, nil, how, nil
			}
			return faultResp(c.stream, f), nil, cutNone, nil
		}
	}

	rows, rowErrs, err := decodeRows(c.desc, raw, t.schema)
	if err != nil {
		return errResp(c.stream, storageErr(codes.InvalidArgument, storagepb.StorageError_SCHEMA_MISMATCH_EXTRA_FIELDS, c.stream, err.Error())), nil, cutNone, nil
	}
	if len(rowErrs) > 0 {
		r := errResp(c.stream, status.New(codes.InvalidArgument, "Errors found while processing rows. Please refer to the row_errors field for details."))
		r.RowErrors = rowErrs
		return r, nil, cutNone, nil
	}

	s.mu.Lock()
	resp, ok := s.applyLocked(st, t, req.GetOffset(), rows)
	a.End = st.end
	s.mu.Unlock()
	if ok && hooks.AfterAppend != nil {
		if f := hooks.AfterAppend(a); f != nil {
			if how := cutOf(f); how != cutNone {
				return nil, nil, how, nil
			}
			return faultResp(c.stream, f), nil, cutNone, nil
		}
	}
	if ok && hooks.Acked != nil {
		acked = func() { hooks.Acked(a) }
	}
	return resp, acked, cutNone, nil
}

// applyLocked checks the offset and stores the rows. It reports whether the
// append was applied.
func (s *Server) applyLocked(st *stream, t *table, offset *wrapperspb.Int64Value, rows []Row) (*storagepb.AppendRowsResponse, bool) {
	switch {
	case st.finalized:
		return errResp(st.name, storageErr(codes.InvalidArgument, storagepb.StorageError_STREAM_FINALIZED, st.name, "Stream is finalized: "+st.name)), false
	case !st.committed.IsZero():
		return errResp(st.name, storageErr(codes.InvalidArgument, storagepb.StorageError_STREAM_ALREADY_COMMITTED, st.name, "Stream is already committed: "+st.name)), false
	}
	if offset != nil {
		off := offset.GetValue()
		switch {
		case isDefault(st.name):
			return errResp(st.name, status.New(codes.InvalidArgument, "Offsets are not supported on the _default stream")), false
		case off < st.end:
			return errResp(st.name, storageErr(codes.AlreadyExists, storagepb.StorageError_OFFSET_ALREADY_EXISTS, st.name,
				fmt.Sprintf("The offset is within stream, expected offset %d, received %d", st.end, off))), false
		case off > st.end:
			return errResp(st.name, storageErr(codes.OutOfRange, storagepb.StorageError_OFFSET_OUT_OF_RANGE, st.name,
				fmt.Sprintf("The offset is beyond stream, expected offset %d, received %d", st.end, off))), false
		}
	}
	at := st.end
	st.end += int64(len(rows))
	switch st.typ {
	case storagepb.WriteStream_COMMITTED:
		t.rows = append(t.rows, rows...)
	default:
		st.rows = append(st.rows, rows...)
	}
	resp := &storagepb.AppendRowsResponse{
		Response:    &storagepb.AppendRowsResponse_AppendResult_{AppendResult: &storagepb.AppendRowsResponse_AppendResult{}},
		WriteStream: st.name,
	}
	if !isDefault(st.name) {
		// No offset comes back for appends to the default stream.
		resp.GetAppendResult().Offset = wrapperspb.Int64(at)
	}
	return resp, true
}

// messageDescriptor builds the writer schema's message from its
// self-contained DescriptorProto (nested types inside, as NormalizeDescriptor
// produces).
func messageDescriptor(dp *descriptorpb.DescriptorProto) (protoreflect.MessageDescriptor, error) {
	if dp == nil {
		return nil, errors.New("no proto descriptor")
	}
	fdp := &descriptorpb.FileDescriptorProto{
		Name:        proto.String("bqfake_writer_schema.proto"),
		MessageType: []*descriptorpb.DescriptorProto{dp},
	}
	fd, err := protodesc.NewFile(fdp, nil)
	if err != nil {
		return nil, fmt.Errorf("build writer schema: %w", err)
	}
	return fd.Messages().Get(0), nil
}

// decodeRows decodes the serialized rows with the writer schema and checks
// them against the table schema: a writer field with no column is an error
// of the whole request (SCHEMA_MISMATCH_EXTRA_FIELDS), a row that cannot be
// decoded or misses a REQUIRED column is a row error.
func decodeRows(md protoreflect.MessageDescriptor, raw [][]byte, schema *storagepb.TableSchema) ([]Row, []*storagepb.RowError, error) {
	if md == nil {
		return nil, nil, errors.New("no writer schema on this connection")
	}
	if err := checkFields(md, schema.GetFields(), ""); err != nil {
		return nil, nil, err
	}
	rows := make([]Row, 0, len(raw))
	var rowErrs []*storagepb.RowError
	for i, b := range raw {
		m := dynamicpb.NewMessage(md)
		if err := (proto.UnmarshalOptions{AllowPartial: true}).Unmarshal(b, m); err != nil {
			rowErrs = append(rowErrs, &storagepb.RowError{Index: int64(i), Code: storagepb.RowError_FIELDS_ERROR, Message: "cannot decode row: " + err.Error()})
			continue
		}
		r := toRow(m)
		if missing := missingRequired(r, schema.GetFields()); missing != "" {
			rowErrs = append(rowErrs, &storagepb.RowError{Index: int64(i), Code: storagepb.RowError_FIELDS_ERROR, Message: "required field " + missing + " is missing"})
			continue
		}
		rows = append(rows, r)
	}
	return rows, rowErrs, nil
}

func column(fields []*storagepb.TableFieldSchema, name string) *storagepb.TableFieldSchema {
	for _, f := range fields {
		if strings.EqualFold(f.GetName(), name) {
			return f
		}
	}
	return nil
}

func checkFields(md protoreflect.MessageDescriptor, fields []*storagepb.TableFieldSchema, prefix string) error {
	fds := md.Fields()
	for i := range fds.Len() {
		fd := fds.Get(i)
		col := column(fields, string(fd.Name()))
		if col == nil {
			return fmt.Errorf("Input schema has more fields than BigQuery schema, extra fields: '%s%s'", prefix, fd.Name())
		}
		if fd.Kind() == protoreflect.MessageKind && col.GetType() == storagepb.TableFieldSchema_STRUCT {
			if err := checkFields(fd.Message(), col.GetFields(), prefix+string(fd.Name())+"."); err != nil {
				return err
			}
		}
	}
	return nil
}

func missingRequired(r Row, fields []*storagepb.TableFieldSchema) string {
	for _, f := range fields {
		if f.GetMode() != storagepb.TableFieldSchema_REQUIRED {
			continue
		}
		found := false
		for k := range r {
			if strings.EqualFold(k, f.GetName()) {
				found = true
				break
			}
		}
		if !found {
			return f.GetName()
		}
	}
	return ""
}

func toRow(m protoreflect.Message) Row {
	r := Row{}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		r[string(fd.Name())] = toValue(fd, v)
		return true
	})
	return r
}

func toValue(fd protoreflect.FieldDescriptor, v protoreflect.Value) any {
	if fd.IsList() {
		l := v.List()
		out := make([]any, l.Len())
		for i := range l.Len() {
			out[i] = scalar(fd, l.Get(i))
		}
		return out
	}
	return scalar(fd, v)
}

func scalar(fd protoreflect.FieldDescriptor, v protoreflect.Value) any {
	if fd.Kind() == protoreflect.MessageKind || fd.Kind() == protoreflect.GroupKind {
		return toRow(v.Message())
	}
	return v.Interface()
}

// StorageErrorOf returns the StorageError detail of an error the client
// surfaced, or nil.
func StorageErrorOf(err error) *storagepb.StorageError {
	st, ok := status.FromError(err)
	if !ok {
		return nil
	}
	for _, d := range st.Proto().GetDetails() {
		se := &storagepb.StorageError{}
		if anypb.UnmarshalTo(d, se, proto.UnmarshalOptions{}) == nil {
			return se
		}
	}
	return nil
}

var _ storagepb.BigQueryWriteServer = (*Server)(nil)
