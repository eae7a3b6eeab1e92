package stream

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// ErrTransactionStuck is a transaction that could be neither committed nor
// aborted: the producer cannot begin another, so the service stops; a
// restarted instance's initialisation (same transactional id) aborts it.
var ErrTransactionStuck = errors.New("transaction neither committed nor aborted")

// Transact produces recs in one transaction of cl (a transactional client,
// already initialised) and commits it; on any error the transaction is aborted
// and nothing of it becomes visible. A transaction it can neither commit nor
// abort is ErrTransactionStuck. For a source that is not a consumer group (a
// poller's page and its cursor, a snapshot's page and its state).
func Transact(ctx context.Context, cl *kgo.Client, recs []*kgo.Record) error {
	if err := cl.BeginTransaction(); err != nil {
		return fmt.Errorf("%w: begin: %w", ErrTransactionStuck, err)
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		return errors.Join(fmt.Errorf("produce: %w", err), abortTransaction(cl))
	}
	if err := cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
		return errors.Join(fmt.Errorf("commit transaction: %w", err), abortTransaction(cl))
	}
	return nil
}

// abortTransaction ends a failed transaction under its own short deadline
// (the caller's ctx may be the one that ended).
func abortTransaction(cl *kgo.Client) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := cl.AbortBufferedRecords(ctx); err != nil {
		return fmt.Errorf("%w: abort buffered records: %w", ErrTransactionStuck, err)
	}
	if err := cl.EndTransaction(ctx, kgo.TryAbort); err != nil {
		return fmt.Errorf("%w: abort: %w", ErrTransactionStuck, err)
	}
	return nil
}
