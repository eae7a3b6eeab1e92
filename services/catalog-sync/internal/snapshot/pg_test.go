package snapshot

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"go.uber.org/goleak"
)

// fakeReplication is a PG whose replication connection goes to an
// in-memory server that answers the one command it receives with reply
// (after delay), and reports that command on got.
// TestMain checks no test leaves a goroutine behind, except the idle
// keep-alive connections of the integration tests' registry client.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreAnyFunction("net/http.(*persistConn).writeLoop"))
}

func fakeReplication(t *testing.T, delay time.Duration, reply ...pgproto3.BackendMessage) (*PG, <-chan string) {
	t.Helper()
	got := make(chan string, 1)
	src := &PG{SlotPrefix: "ecom_catalog_sync"}
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop) })
	src.dial = func(ctx context.Context) (*pgconn.PgConn, error) {
		client, server := net.Pipe()
		t.Cleanup(func() {
			_ = client.Close()
			_ = server.Close()
		})
		go func() {
			be := pgproto3.NewBackend(server, server)
			if _, err := be.ReceiveStartupMessage(); err != nil {
				return
			}
			be.Send(&pgproto3.AuthenticationOk{})
			be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
			if be.Flush() != nil {
				return
			}
			msg, err := be.Receive()
			if err != nil {
				return
			}
			if q, ok := msg.(*pgproto3.Query); ok {
				got <- q.String
			}
			select {
			case <-time.After(delay):
			case <-stop:
				return
			}
			for _, m := range reply {
				be.Send(m)
			}
			be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
			_ = be.Flush()
			_, _ = be.Receive() // the client's Terminate
		}()
		cfg, err := pgconn.ParseConfig("postgres://ecom_cdc@127.0.0.1:5432/ecom?sslmode=disable&replication=database")
		if err != nil {
			return nil, err
		}
		cfg.DialFunc = func(context.Context, string, string) (net.Conn, error) { return client, nil }
		return pgconn.ConnectConfig(ctx, cfg)
	}
	return src, got
}

// slotRow is CREATE_REPLICATION_SLOT's answer.
func slotRow(slot, point, snapshot string) []pgproto3.BackendMessage {
	cols := []string{"slot_name", "consistent_point", "snapshot_name", "output_plugin"}
	desc := &pgproto3.RowDescription{}
	for _, c := range cols {
		desc.Fields = append(desc.Fields, pgproto3.FieldDescription{Name: []byte(c), DataTypeOID: 25, DataTypeSize: -1, TypeModifier: -1})
	}
	return []pgproto3.BackendMessage{desc,
		&pgproto3.DataRow{Values: [][]byte{[]byte(slot), []byte(point), []byte(snapshot), []byte("pgoutput")}},
		&pgproto3.CommandComplete{CommandTag: []byte("CREATE_REPLICATION_SLOT")}}
}

// TestExport: the snapshot's slot is created temporary, exporting its
// snapshot, under a name of its own; its consistent point and snapshot name
// are read, and the errors an operator can fix say what to do.
func TestExport(t *testing.T) {
	commandRE := regexp.MustCompile(`^CREATE_REPLICATION_SLOT (ecom_catalog_sync_snap_[0-9]+_[0-9a-f]{8}) TEMPORARY LOGICAL pgoutput EXPORT_SNAPSHOT$`)
	tests := []struct {
		name      string
		reply     []pgproto3.BackendMessage
		wantLSN   string
		wantName  string
		wantErrIn []string // "" error = success
	}{
		{name: "exported", reply: slotRow("s", "0/16B941D0", "00000008-0000620B-1"), wantLSN: "0/16B941D0", wantName: "00000008-0000620B-1"},
		{name: "no free slot", reply: []pgproto3.BackendMessage{&pgproto3.ErrorResponse{Severity: "ERROR", Code: "53400",
			Message: "all replication slots are in use"}}, wantErrIn: []string{"max_replication_slots", "all replication slots are in use", "ecom_catalog_sync_snap_"}},
		{name: "no REPLICATION", reply: []pgproto3.BackendMessage{&pgproto3.ErrorResponse{Severity: "ERROR", Code: "42501",
			Message: "permission denied to create replication slot"}}, wantErrIn: []string{"needs REPLICATION", "CATALOG_DATABASE_URL"}},
		{name: "other error", reply: []pgproto3.BackendMessage{&pgproto3.ErrorResponse{Severity: "ERROR", Code: "XX000",
			Message: "boom"}}, wantErrIn: []string{"create snapshot slot", "boom"}},
		{name: "bad consistent point", reply: slotRow("s", "nope", "00000008-0000620B-1"), wantErrIn: []string{"consistent point \"nope\""}},
		{name: "snapshot name that cannot be pasted", reply: slotRow("s", "0/1", "x'; DROP TABLE t; --"), wantErrIn: []string{"is not one"}},
		{name: "no snapshot exported", reply: slotRow("s", "0/1", ""), wantErrIn: []string{"is not one"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src, got := fakeReplication(t, 0, tt.reply...)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			e, err := src.export(ctx)
			if cmd := <-got; !commandRE.MatchString(cmd) {
				t.Errorf("command %q", cmd)
			}
			if tt.wantErrIn != nil {
				if err == nil {
					e.release(ctx)
					t.Fatalf("exported %+v, want an error", e)
				}
				for _, w := range tt.wantErrIn {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not say %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer e.release(ctx)
			if e.lsn.String() != tt.wantLSN || e.name != tt.wantName || !strings.HasPrefix(e.slot, "ecom_catalog_sync_snap_") {
				t.Errorf("exported slot %s at %s, snapshot %q; want %s, %q", e.slot, e.lsn, e.name, tt.wantLSN, tt.wantName)
			}
		})
	}
}

// TestExportLogsWait: a slot creation that waits (for running
// transactions) is logged while it waits; a prompt one is not.
func TestExportLogsWait(t *testing.T) {
	for _, tt := range []struct {
		delay time.Duration
		want  bool
	}{{delay: 0, want: false}, {delay: 300 * time.Millisecond, want: true}} {
		src, _ := fakeReplication(t, tt.delay, slotRow("s", "0/1", "00000003-00000002-1")...)
		var logs logBuffer
		src.Log = slog.New(slog.NewTextHandler(&logs, nil))
		src.WaitLogEvery = 50 * time.Millisecond
		e, err := src.export(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		e.release(context.Background())
		if got := strings.Contains(logs.String(), "level=WARN msg=\"snapshot waits for the transactions running"); got != tt.want {
			t.Errorf("delay %s: wait logged %v, want %v:\n%s", tt.delay, got, tt.want, logs.String())
		}
	}
}

// TestExportCancelled: a cancelled slot creation returns ctx's error,
// saying how long it waited.
func TestExportCancelled(t *testing.T) {
	src, _ := fakeReplication(t, time.Hour)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := src.export(ctx)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "waited") {
		t.Fatalf("export = %v, want the deadline", err)
	}
	if d := time.Since(start); d > 8*time.Second {
		t.Errorf("returned after %s", d)
	}
}

func TestSlotName(t *testing.T) {
	now := time.Unix(1796136960, 0)
	nameRE := regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)
	tests := []struct {
		prefix, wantPrefix string
	}{
		{"ecom_catalog_sync", "ecom_catalog_sync_snap_1796136960_"},
		{strings.Repeat("a", 63), strings.Repeat("a", 63-len("_snap_1796136960_12345678")) + "_snap_1796136960_"},
	}
	for _, tt := range tests {
		a, b := SlotName(tt.prefix, now), SlotName(tt.prefix, now)
		if !strings.HasPrefix(a, tt.wantPrefix) || len(a) > 63 || !nameRE.MatchString(a) {
			t.Errorf("SlotName(%q) = %q, want %q + 8 hex digits, at most 63", tt.prefix, a, tt.wantPrefix)
		}
		if a == b {
			t.Errorf("two snapshots at the same second got the same slot %q", a)
		}
	}
}
