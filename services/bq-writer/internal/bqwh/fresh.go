package bqwh

import (
	"github.com/ecomstream/platform/services/bq-writer/internal/warehouse"
)

// dropStale removes from b the rows below the position of their partition (the claimed one,
// moved by every successful Write) and counts them as Stale in res, as the DuckDB backend does:
// a batch re-delivering records a commit covers appends nothing of them, and the skip of the
// rows past the commit applies to the records after it. A batch from another incarnation of a
// topic or cluster than the position is a warehouse.ErrPositionConflict. Called with w.mu held.
func (w *Warehouse) dropStale(b *warehouse.Batch, res *warehouse.WriteResult) error {
	w.posMu.Lock()
	stored, err := warehouse.CheckSameLog(w.positions, *b)
	w.posMu.Unlock()
	if err != nil {
		return err
	}
	var stale int
	b.Events, stale = keepFresh(b.Events, warehouse.EventAt(b), stored)
	res.Stale += stale
	b.Orders, stale = keepFresh(b.Orders, warehouse.OrderAt(b), stored)
	res.Orders.Stale += stale
	b.Products, stale = keepFresh(b.Products, warehouse.ProductAt(b), stored)
	res.Products.Stale += stale
	b.Users, stale = keepFresh(b.Users, warehouse.UserAt(b), stored)
	res.Users.Stale += stale
	return nil
}

// keepFresh returns the rows FreshRows keeps (a new slice when any is stale: the caller's batch
// is not changed) and the count of stale ones.
func keepFresh[R any](rows []R, at func(int) (warehouse.Partition, int64), stored map[warehouse.Partition]int64) ([]R, int) {
	fresh, stale := warehouse.FreshRows(len(rows), at, stored)
	if stale == 0 {
		return rows, 0
	}
	out := make([]R, 0, len(fresh))
	for _, i := range fresh {
		out = append(out, rows[i])
	}
	return out, stale
}
