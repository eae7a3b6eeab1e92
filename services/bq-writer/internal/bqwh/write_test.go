package bqwh

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/bigquery/storage/apiv1/storagepb"
	"cloud.google.com/go/bigquery/storage/managedwriter"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"google.golang.org/grpc/codes"

	"github.com/ecomstream/platform/services/bq-writer/internal/bqfake"
	"github.com/ecomstream/platform/services/bq-writer/internal/warehouse"
)

// onTable injects into the appends to table the faults of seq, one per append in order (nil lets
// an append through), and lets every append after them through.
func onTable(table string, seq ...*bqfake.Fault) func(bqfake.Append) *bqfake.Fault {
	var mu sync.Mutex
	return func(a bqfake.Append) *bqfake.Fault {
		if !strings.Contains(a.Stream, "/tables/"+table+"/") {
			return nil
		}
		mu.Lock()
		defer mu.Unlock()
		if len(seq) == 0 {
			return nil
		}
		f := seq[0]
		seq = seq[1:]
		return f
	}
}

// every injects f into every append to table.
func every(table string, f *bqfake.Fault) func(bqfake.Append) *bqfake.Fault {
	return func(a bqfake.Append) *bqfake.Fault {
		if strings.Contains(a.Stream, "/tables/"+table+"/") {
			return f
		}
		return nil
	}
}

// TestAppendTimeout: an append whose connection never answers times out, and is resent at the
// same offset on a new connection; Write neither hangs nor stores a row twice.
func TestAppendTimeout(t *testing.T) {
	const timeout = 200 * time.Millisecond
	tests := []struct {
		name  string
		hooks bqfake.Hooks
		// wantErr: the first Write fails (transient); the sink's retry of the batch, with no
		// faults, succeeds.
		wantErr                      bool
		wantReconnects, wantTimeouts int64
	}{
		{name: "hang before the append", hooks: bqfake.Hooks{BeforeAppend: onTable(TableEvents, bqfake.Hang())}, wantReconnects: 1, wantTimeouts: 1},
		{name: "hang after the append is applied, before the ack", hooks: bqfake.Hooks{AfterAppend: onTable(TableEvents, bqfake.Hang())}, wantReconnects: 1, wantTimeouts: 1},
		{name: "two hangs in a row", hooks: bqfake.Hooks{BeforeAppend: onTable(TableOrderItems, bqfake.Hang(), bqfake.Hang())}, wantReconnects: 2, wantTimeouts: 2},
		{name: "every append hangs: gives up, transient; the retried batch stores each row once",
			hooks: bqfake.Hooks{BeforeAppend: every(TableProducts, bqfake.Hang())}, wantErr: true, wantReconnects: 3, wantTimeouts: 2},
		{name: "applied and hung every time: the resend after the first hang is answered ALREADY_EXISTS",
			hooks: bqfake.Hooks{AfterAppend: every(TableUsers, bqfake.Hang())}, wantReconnects: 1, wantTimeouts: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			reader := sdkmetric.NewManualReader()
			w := e.open(t, Config{Meter: sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)).Meter("test")})
			w.retry.appendTimeout, w.retry.attempts = timeout, 3
			write(t, e, w, 0, 10, true)
			e.fake.SetHooks(tt.hooks)
			// Without the append timeout Write waits for the hung connection until ctx ends.
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			b := batch(10, 20)
			start := time.Now()
			res, err := w.Write(ctx, group, b)
			if took := time.Since(start); took > 10*time.Second {
				t.Fatalf("write took %v with an append timeout of %v", took, timeout)
			}
			if tt.wantErr {
				if !warehouse.IsTransient(err) || !errors.Is(err, errAppendTimeout) {
					t.Fatalf("write on a connection that always hangs: %v, want a transient append timeout", err)
				}
				e.fake.SetHooks(bqfake.Hooks{})
				res, err = w.Write(ctx, group, b)
			}
			if err != nil {
				t.Fatalf("write: %v", err)
			}
			e.commit(t, b, res)
			e.fake.SetHooks(bqfake.Hooks{})
			if got := counter(t, reader, "ecom.bigquery.streams", "event", "reconnected"); got != tt.wantReconnects {
				t.Errorf("reconnected %d times, want %d", got, tt.wantReconnects)
			}
			if got := counter(t, reader, "ecom.bigquery.append.retries", "code", codes.DeadlineExceeded.String()); got != tt.wantTimeouts {
				t.Errorf("%d retries after a timeout, want %d", got, tt.wantTimeouts)
			}
			write(t, e, w, 20, 30, true) // the new writer goes on appending
			checkExactlyOnce(t, e, 30)
		})
	}
}

// TestAlreadyExists: ALREADY_EXISTS is "stored" only for a resend of exactly the append that may
// have landed (same offset, same rows); otherwise it is fatal, naming the stream and the offset.
func TestAlreadyExists(t *testing.T) {
	alreadyExists := &bqfake.Fault{Code: codes.AlreadyExists, Message: "The offset is within stream", Storage: storagepb.StorageError_OFFSET_ALREADY_EXISTS}
	tests := []struct {
		name string
		// run writes [10, 20) with faults and returns the error of the Write that meets the
		// ALREADY_EXISTS (nil: accepted; the rows are then checked exactly once).
		run     func(t *testing.T, e *env, w *Warehouse) error
		wantErr string // in the error, besides the stream name and "offset 10"
	}{
		{name: "first send: another writer appended to the stream", wantErr: "no earlier attempt of this append may have landed",
			run: func(t *testing.T, e *env, w *Warehouse) error {
				appendAsAnotherWriter(t, w, pEvents, TableEvents)
				_, err := w.Write(context.Background(), group, batch(10, 20))
				return err
			}},
		{name: "resend after a quota refusal, which stored nothing", wantErr: "no earlier attempt",
			run: func(t *testing.T, e *env, w *Warehouse) error {
				e.fake.SetHooks(bqfake.Hooks{BeforeAppend: onTable(TableEvents, bqfake.Quota(), alreadyExists)})
				_, err := w.Write(context.Background(), group, batch(10, 20))
				return err
			}},
		{name: "resend after a lost ack", run: func(t *testing.T, e *env, w *Warehouse) error {
			e.fake.SetHooks(bqfake.Hooks{AfterAppend: onTable(TableEvents, bqfake.Drop())})
			b := batch(10, 20)
			res, err := w.Write(context.Background(), group, b)
			if err == nil {
				e.commit(t, b, res)
			}
			return err
		}},
		{name: "resend after a lost ack and a quota refusal", run: func(t *testing.T, e *env, w *Warehouse) error {
			e.fake.SetHooks(bqfake.Hooks{AfterAppend: onTable(TableEvents, bqfake.Drop()), BeforeAppend: onTable(TableEvents, nil, bqfake.Quota())})
			b := batch(10, 20)
			res, err := w.Write(context.Background(), group, b)
			if err == nil {
				e.commit(t, b, res)
			}
			return err
		}},
		{name: "the sink's retry of the batch resends the append a failed Write may have landed",
			run: func(t *testing.T, e *env, w *Warehouse) error {
				w.retry.attempts = 1
				e.fake.SetHooks(bqfake.Hooks{AfterAppend: onTable(TableEvents, bqfake.Drop())})
				b := batch(10, 20)
				if _, err := w.Write(context.Background(), group, b); !warehouse.IsTransient(err) {
					t.Fatalf("write with its ack lost: %v, want transient", err)
				}
				res, err := w.Write(context.Background(), group, b)
				if err == nil {
					e.commit(t, b, res)
				}
				return err
			}},
		{name: "a retry with other rows at the offset of the append that may have landed",
			wantErr: "an earlier append of 10 rows at this offset may have landed, this one has 5",
			run: func(t *testing.T, e *env, w *Warehouse) error {
				w.retry.attempts = 1
				e.fake.SetHooks(bqfake.Hooks{AfterAppend: onTable(TableEvents, bqfake.Drop())})
				if _, err := w.Write(context.Background(), group, batch(10, 20)); !warehouse.IsTransient(err) {
					t.Fatalf("write with its ack lost: %v, want transient", err)
				}
				_, err := w.Write(context.Background(), group, batch(10, 15))
				return err
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			w := e.open(t, Config{})
			write(t, e, w, 0, 10, true)
			name := w.parts[pEvents][TableEvents].name
			err := tt.run(t, e, w)
			e.fake.SetHooks(bqfake.Hooks{})
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("resend answered ALREADY_EXISTS: %v, want it taken as stored", err)
				}
				write(t, e, w, 20, 30, true)
				checkExactlyOnce(t, e, 30)
				return
			}
			if err == nil || warehouse.IsTransient(err) || errors.Is(err, ErrFenced) {
				t.Fatalf("ALREADY_EXISTS that is not our resend: %v, want a fatal error", err)
			}
			for _, want := range []string{name, "offset 10", tt.wantErr} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
		})
	}
}

// appendAsAnotherWriter appends one row at the end of p's stream on table through a writer of its
// own: the stream's offset moves without w knowing.
func appendAsAnotherWriter(t *testing.T, w *Warehouse, p warehouse.Partition, table string) {
	t.Helper()
	ctx := context.Background()
	ts := w.parts[p][table]
	s, err := w.schema(ctx, table)
	if err != nil {
		t.Fatal(err)
	}
	ms, err := w.client.NewManagedStream(ctx, managedwriter.WithStreamName(ts.name), managedwriter.WithSchemaDescriptor(s.dp))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ms.Close() }()
	b := batch(100, 101)
	row, err := s.encode(eventValues(&b.Events[0], t0))
	if err != nil {
		t.Fatal(err)
	}
	res, err := ms.AppendRows(ctx, [][]byte{row}, managedwriter.WithOffset(ts.end))
	if err == nil {
		_, err = res.GetResult(ctx)
	}
	if err != nil {
		t.Fatalf("append as another writer: %v", err)
	}
}

// TestBackoff: the retry pause is a capped exponential with equal jitter: in [d/2, d], never above
// the cap, and spread (streams that hit the same quota do not retry in lockstep).
func TestBackoff(t *testing.T) {
	p := retryPolicy{base: 100 * time.Millisecond, max: 5 * time.Second}
	tests := []struct {
		n    int
		want time.Duration // d before jitter
	}{
		{1, 100 * time.Millisecond},
		{2, 200 * time.Millisecond},
		{6, 3200 * time.Millisecond},
		{7, 5 * time.Second},
		{1000, 5 * time.Second}, // no overflow
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint("retry ", tt.n), func(t *testing.T) {
			if got := backoff(p.base, p.max, tt.n); got != tt.want {
				t.Fatalf("backoff %v, want %v", got, tt.want)
			}
			lowest := func(time.Duration) time.Duration { return 0 }
			highest := func(n time.Duration) time.Duration { return n - 1 }
			if lo, hi := jitter(tt.want, lowest), jitter(tt.want, highest); lo != tt.want/2 || hi != tt.want {
				t.Fatalf("jitter bounds [%v, %v], want [%v, %v]", lo, hi, tt.want/2, tt.want)
			}
			seen := map[time.Duration]bool{}
			for range 1000 {
				d := p.pause(tt.n)
				if d < tt.want/2 || d > tt.want || d > p.max {
					t.Fatalf("pause %v outside [%v, %v]", d, tt.want/2, tt.want)
				}
				seen[d] = true
			}
			if len(seen) < 900 {
				t.Errorf("%d distinct pauses in 1000: not jittered", len(seen))
			}
		})
	}
	if got := jitter(0, func(time.Duration) time.Duration { panic("drawn for d = 0") }); got != 0 {
		t.Errorf("jitter(0) = %v", got)
	}
}
