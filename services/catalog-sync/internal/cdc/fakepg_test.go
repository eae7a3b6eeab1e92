package cdc

import (
	"context"
	"encoding/binary"
	"net"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// fakeConn returns a connection to an in-memory server (net.Pipe: a write
// blocks until the server reads it) that accepted the startup, and the
// server's side. The pipe is closed when the test ends.
func fakeConn(t *testing.T) (*pgconn.PgConn, *pgproto3.Backend) {
	t.Helper()
	client, server := net.Pipe()
	t.Cleanup(func() {
		_ = client.Close()
		_ = server.Close()
	})
	be := pgproto3.NewBackend(server, server)
	started := make(chan error, 1)
	go func() {
		if _, err := be.ReceiveStartupMessage(); err != nil {
			started <- err
			return
		}
		be.Send(&pgproto3.AuthenticationOk{})
		be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
		started <- be.Flush()
	}()
	cfg, err := pgconn.ParseConfig("postgres://cdc@127.0.0.1:5432/ecom?sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	cfg.DialFunc = func(context.Context, string, string) (net.Conn, error) { return client, nil }
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-started; err != nil {
		t.Fatal(err)
	}
	return conn, be
}

// statusUpdates reads the client's messages and sends the flush position
// of each standby status update to the returned channel.
func statusUpdates(be *pgproto3.Backend) <-chan LSN {
	out := make(chan LSN, 16)
	go func() {
		defer close(out)
		for {
			msg, err := be.Receive()
			if err != nil {
				return
			}
			if cd, ok := msg.(*pgproto3.CopyData); ok && len(cd.Data) >= 17 && cd.Data[0] == 'r' {
				out <- LSN(binary.BigEndian.Uint64(cd.Data[9:17]))
			}
		}
	}()
	return out
}

func fakeStream(t *testing.T, interval time.Duration) *Stream {
	t.Helper()
	s, err := New(Config{URL: "postgres://cdc@127.0.0.1:5432/ecom", Slot: "s", Publication: "p", StatusInterval: interval})
	if err != nil {
		t.Fatal(err)
	}
	return s
}
