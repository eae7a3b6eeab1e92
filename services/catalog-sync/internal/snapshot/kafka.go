package snapshot

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// ErrTransactionStuck is a transaction that could be neither committed nor
// aborted: the producer cannot begin another, so the service stops; a
// restarted instance's initialisation aborts the transaction.
var ErrTransactionStuck = errors.New("transaction neither committed nor aborted")

// Transact returns the Committer of cl, a transactional client with the
// state's fixed transactional id, already initialised (fenced). It is
// ingest-orders' poller.Transact: produce, commit, abort on any error.
func Transact(cl *kgo.Client) Committer {
	return func(ctx context.Context, recs []*kgo.Record) error {
		if err := cl.BeginTransaction(); err != nil {
			return fmt.Errorf("%w: begin: %w", ErrTransactionStuck, err)
		}
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			return errors.Join(fmt.Errorf("produce: %w", err), abort(cl))
		}
		if err := cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
			return errors.Join(fmt.Errorf("commit transaction: %w", err), abort(cl))
		}
		return nil
	}
}

// abort ends a failed transaction under its own short deadline (ctx may be
// the one that ended).
func abort(cl *kgo.Client) error {
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
