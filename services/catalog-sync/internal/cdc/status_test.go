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

// TestStatusStalledConnection: a status update the server does not read
// (a stalled connection) does not keep Run from returning after its
// context ends; the last update after the context ended is still sent to
// a connection that works.
func TestStatusStalledConnection(t *testing.T) {
	t.Run("the receiver returns when its context ends", func(t *testing.T) {
		conn, _ := fakeConn(t) // the server never reads
		s := fakeStream(t, 10*time.Millisecond)
		s.statusTimeout = time.Hour // only the context can end the write
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- s.receive(ctx, conn, make(chan Tx, 1)) }()
		time.Sleep(100 * time.Millisecond) // the first status update is due after 10ms
		cancel()
		select {
		case err := <-done:
			if err == nil {
				t.Error("receive = nil, want an error")
			}
		case <-time.After(10 * time.Second):
			t.Fatal("receive blocked in a status update after its context ended")
		}
	})
	t.Run("the last update gives up after the timeout", func(t *testing.T) {
		conn, _ := fakeConn(t)
		s := fakeStream(t, time.Hour)
		s.statusTimeout = 50 * time.Millisecond
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		done := make(chan error, 1)
		go func() { done <- s.lastStatus(ctx, conn) }()
		select {
		case err := <-done:
			if err == nil {
				t.Error("lastStatus on a stalled connection = nil, want an error")
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the last status update blocked on a stalled connection")
		}
	})
	t.Run("the last update is sent after the context ended", func(t *testing.T) {
		conn, be := fakeConn(t)
		updates := statusUpdates(be)
		s := fakeStream(t, time.Hour)
		tx := Tx{CommitLSN: 0x200, EndLSN: 0x230}
		s.pos.received(&tx)
		s.pos.confirm(tx.CommitLSN)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := s.lastStatus(ctx, conn); err != nil {
			t.Fatalf("lastStatus after the context ended: %v", err)
		}
		if lsn := <-updates; lsn != tx.EndLSN {
			t.Errorf("last status update flush position %s, want %s", lsn, tx.EndLSN)
		}
	})
}
