package stream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"syscall"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ecomstream/platform/pkg/deadletter"
)

// TestRecoverClassifiesPanics: a panic is permanent only when it says so or
// keeps happening; a panic with a transient cause is retried.
func TestRecoverClassifiesPanics(t *testing.T) {
	type want int
	const (
		transient want = iota
		permanent
	)
	rej := deadletter.Rejectf(deadletter.InvalidValue, "x", "bad")
	tests := []struct {
		name  string
		value any
		ctx   func() context.Context
		want  []want // per attempt on the same record
	}{
		{name: "a rejection is permanent at once", value: fmt.Errorf("decode: %w", rej), want: []want{permanent}},
		{name: "context deadline is transient", value: fmt.Errorf("call: %w", context.DeadlineExceeded),
			want: []want{transient, transient, transient, transient, transient}},
		{name: "connection reset is transient", value: &net.OpError{Op: "read", Err: os.NewSyscallError("read", syscall.ECONNRESET)},
			want: []want{transient, transient, transient, transient}},
		{name: "a panic while ctx is done is transient", value: "nil client", ctx: func() context.Context {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			return ctx
		}, want: []want{transient, transient, transient, transient}},
		{name: "a runtime error is retried, then dead-lettered", value: errors.New("index out of range"),
			want: []want{transient, transient, permanent}},
		{name: "a string panic likewise", value: "boom", want: []want{transient, transient, permanent}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := Recover(slog.New(slog.NewTextHandler(io.Discard, nil)))(func(context.Context, *kgo.Record) ([]*kgo.Record, error) {
				panic(tt.value)
			})
			ctx := context.Background()
			if tt.ctx != nil {
				ctx = tt.ctx()
			}
			rec := &kgo.Record{Topic: "in", Partition: 1, Offset: 7}
			for i, w := range tt.want {
				_, err := h(ctx, rec)
				if err == nil {
					t.Fatalf("attempt %d: no error", i+1)
				}
				if got := deadletter.IsPermanent(err); got != (w == permanent) {
					t.Errorf("attempt %d: %v, want permanent %v", i+1, err, w == permanent)
				}
			}
		})
	}
}

// TestRecoverForgetsRecordsThatEnd: a record that panicked and then
// succeeded starts its count again, and counts are per record.
func TestRecoverForgetsRecordsThatEnd(t *testing.T) {
	fail := map[int64]bool{1: true, 2: true}
	h := Recover(slog.New(slog.NewTextHandler(io.Discard, nil)))(func(_ context.Context, rec *kgo.Record) ([]*kgo.Record, error) {
		if fail[rec.Offset] {
			panic("flaky")
		}
		return nil, nil
	})
	a, b := &kgo.Record{Topic: "in", Offset: 1}, &kgo.Record{Topic: "in", Offset: 2}
	for range PanicAttempts - 1 {
		if _, err := h(context.Background(), a); deadletter.IsPermanent(err) {
			t.Fatal("dead-lettered too early")
		}
	}
	if _, err := h(context.Background(), b); err == nil || deadletter.IsPermanent(err) {
		t.Errorf("another record's first panic: %v, want transient", err)
	}
	fail[1] = false
	if _, err := h(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	fail[1] = true
	if _, err := h(context.Background(), a); err == nil || deadletter.IsPermanent(err) {
		t.Errorf("after a success the count starts over: %v", err)
	}
}
