package cost

import (
	"context"
	"strings"
	"sync"

	"cloud.google.com/go/bigquery/storage/apiv1/storagepb"
	"google.golang.org/grpc"
)

// storageAPIs names the Storage Write API's unary methods.
var storageAPIs = map[string]string{
	storagepb.BigQueryWrite_CreateWriteStream_FullMethodName:       APICreateStream,
	storagepb.BigQueryWrite_FinalizeWriteStream_FullMethodName:     APIFinalizeStream,
	storagepb.BigQueryWrite_GetWriteStream_FullMethodName:          APIGetStream,
	storagepb.BigQueryWrite_BatchCommitWriteStreams_FullMethodName: APIBatchCommit,
	storagepb.BigQueryWrite_FlushRows_FullMethodName:               APIFlushRows,
}

// GRPCDialOptions are the dial options that count the Storage Write API's calls and price its
// appends: add them to the managedwriter client's options (option.WithGRPCDialOption).
func (m *Meter) GRPCDialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithChainUnaryInterceptor(m.unary),
		grpc.WithChainStreamInterceptor(m.stream),
	}
}

func (m *Meter) unary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	api, ok := storageAPIs[method]
	if !ok {
		api = APIStorageOther
	}
	m.Call(ctx, api)
	return invoker(ctx, method, req, reply, cc, opts...)
}

func (m *Meter) stream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	cs, err := streamer(ctx, desc, cc, method, opts...)
	if err != nil || method != storagepb.BigQueryWrite_AppendRows_FullMethodName {
		if method != storagepb.BigQueryWrite_AppendRows_FullMethodName {
			m.Call(ctx, APIStorageOther)
		}
		return cs, err
	}
	return &appendStream{ClientStream: cs, m: m}, nil
}

// appendStream counts and prices every AppendRowsRequest sent on one AppendRows connection. A
// request names its write stream only when it changes (the first on a connection, or on a
// multiplexed one a request for another stream), so the stream is remembered.
type appendStream struct {
	grpc.ClientStream
	m *Meter

	mu    sync.Mutex // SendMsg may run beside RecvMsg, not beside itself; the lock is for the race detector's peace
	table string
}

func (s *appendStream) SendMsg(msg any) error {
	err := s.ClientStream.SendMsg(msg)
	req, ok := msg.(*storagepb.AppendRowsRequest)
	if !ok {
		return err
	}
	ctx := s.Context()
	s.m.Call(ctx, APIAppendRows)
	s.mu.Lock()
	if name := req.GetWriteStream(); name != "" {
		s.table = TableOfStream(name)
	}
	table := s.table
	s.mu.Unlock()
	if err != nil {
		return err // not sent: not billed
	}
	var n int64
	for _, r := range req.GetProtoRows().GetRows().GetSerializedRows() {
		n += int64(len(r))
	}
	s.m.Appended(ctx, table, n)
	return nil
}

// TableOfStream returns the table id of a write stream name
// (projects/p/datasets/d/tables/t/streams/s or .../tables/t/_default), or "unknown".
func TableOfStream(name string) string {
	_, rest, ok := strings.Cut(name, "/tables/")
	if !ok {
		return "unknown"
	}
	table, _, _ := strings.Cut(rest, "/")
	if table == "" {
		return "unknown"
	}
	return table
}
