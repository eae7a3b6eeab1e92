package cdc

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestConfirmWhileQueueFull: a Confirm made while the receiver waits for
// room in the queue (the handler is slow) is reported at once, not at the
// next status tick (an hour away here).
func TestConfirmWhileQueueFull(t *testing.T) {
	conn, be := fakeConn(t)
	updates := statusUpdates(be)
	s := fakeStream(t, time.Hour)
	tx1, tx2 := Tx{CommitLSN: 0x200, EndLSN: 0x230}, Tx{CommitLSN: 0x300, EndLSN: 0x330}
	s.pos.received(&tx1)
	s.pos.received(&tx2)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.enqueue(ctx, conn, make(chan Tx), tx2) }() // nobody takes it
	s.Confirm(tx1.CommitLSN)
	select {
	case lsn := <-updates:
		if lsn != tx1.EndLSN {
			t.Errorf("status update flush position %s, want %s (the end of the confirmed tx)", lsn, tx1.EndLSN)
		}
	case err := <-done:
		t.Fatalf("enqueue returned %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("no status update after Confirm while the queue was full (the next tick is an hour away)")
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("enqueue = %v, want the context's error", err)
	}
}
