package snapshot

import (
	"context"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ecomstream/platform/pkg/stream"
)

// ErrTransactionStuck is stream.ErrTransactionStuck: a transaction that could
// be neither committed nor aborted.
var ErrTransactionStuck = stream.ErrTransactionStuck

// Transact returns the Committer of cl, a transactional client with the
// state's fixed transactional id, already initialised (fenced):
// stream.Transact, produce, commit, abort on any error.
func Transact(cl *kgo.Client) Committer {
	return func(ctx context.Context, recs []*kgo.Record) error { return stream.Transact(ctx, cl, recs) }
}
