package warehouse

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"strings"
	"time"

	duckdb "github.com/duckdb/duckdb-go/v2"
)

// tableWriter writes one entity's rows of a batch inside Write's transaction, before the
// positions. Write runs every writer of DuckDB.tables; an entity is added by adding its writer
// there (and its rows to Batch).
type tableWriter interface {
	// write stores the entity's rows of b that are not below stored (the group's positions read
	// in this transaction) and adds its counts to res. The returned func, if not nil, runs after
	// the transaction committed (in-memory state that must only see committed rows).
	write(ctx context.Context, tx *sql.Tx, b Batch, stored map[Partition]int64, now time.Time, res *WriteResult) (func(), error)
}

// ordersWriter writes Batch.Orders to fact_orders and fact_order_items by the rule of orders.go.
type ordersWriter struct{ d *DuckDB }

// lookupChunk bounds the parameters of one stored-version lookup or delete.
const lookupChunk = 1000

func (w ordersWriter) write(ctx context.Context, tx *sql.Tx, b Batch, stored map[Partition]int64, now time.Time, res *WriteResult) (func(), error) {
	if len(b.Orders) == 0 {
		return nil, nil
	}
	fresh, stale := FreshRows(len(b.Orders), OrderAt(&b), stored)
	ids := make([]string, 0, len(fresh))
	seen := make(map[string]bool, len(fresh))
	for _, i := range fresh {
		if id := b.Orders[i].OrderID; !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	versions, err := storedVersions(ctx, tx, ids)
	if err != nil {
		return nil, fmt.Errorf("read order versions: %w", err)
	}
	plan := planOrders(b.Orders, fresh, versions)
	plan.res.Stale += stale

	// A preferred version replaces the order's row and all its lines.
	replaced := make([]string, len(plan.replace))
	for k, i := range plan.replace {
		replaced[k] = b.Orders[i].OrderID
	}
	for _, table := range []string{"fact_orders", "fact_order_items"} {
		if err := deleteOrders(ctx, tx, table, replaced); err != nil {
			return nil, fmt.Errorf("replace %s: %w", table, err)
		}
	}
	write := append(plan.insert, plan.replace...)
	if len(write) > 0 {
		n, err := w.d.appendOrders(ctx, b.Orders, write, now)
		if err != nil {
			return nil, fmt.Errorf("append orders: %w", err)
		}
		res.Bytes += n
	}
	res.Orders = plan.res
	return nil, nil
}

// storedVersions reads the stored row of the given orders: version and source coordinates.
func storedVersions(ctx context.Context, tx *sql.Tx, ids []string) (map[string]storedOrder, error) {
	out := make(map[string]storedOrder, len(ids))
	for start := 0; start < len(ids); start += lookupChunk {
		chunk := ids[start:min(start+lookupChunk, len(ids))]
		rows, err := tx.QueryContext(ctx, `SELECT order_id, order_version, updated_at, source_topic, source_partition, source_offset FROM fact_orders WHERE order_id IN (`+
			placeholders(len(chunk))+`)`, anys(chunk)...)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var id string
			var v storedOrder
			if err := rows.Scan(&id, &v.Version, &v.UpdatedAt, &v.Topic, &v.Partition, &v.Offset); err != nil {
				return nil, errors.Join(err, rows.Close())
			}
			out[id] = v
		}
		if err := errors.Join(rows.Err(), rows.Close()); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func deleteOrders(ctx context.Context, tx *sql.Tx, table string, ids []string) error {
	for start := 0; start < len(ids); start += lookupChunk {
		chunk := ids[start:min(start+lookupChunk, len(ids))]
		if _, err := tx.ExecContext(ctx, `DELETE FROM `+table+` WHERE order_id IN (`+placeholders(len(chunk))+`)`, anys(chunk)...); err != nil {
			return err
		}
	}
	return nil
}

func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?, ", n), ", ")
}

func anys(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// orderColumns and itemColumns are the appenders' column lists; orderValues and itemValues fill
// them in this order.
var (
	orderColumns = []string{
		"order_id", "order_version", "user_id", "status", "currency",
		"subtotal_minor", "tax_minor", "shipping_minor", "discount_minor", "total_minor", "refunded_minor",
		"order_timestamp", "order_date", "date_key", "updated_at",
		"paid_at", "shipped_at", "delivered_at", "cancelled_at", "refunded_at",
		"shipping_country", "source", "received_at", "dq_warnings", "trace_id",
		"source_topic", "source_partition", "source_offset", "loaded_at",
	}
	itemColumns = []string{
		"order_id", "line_number", "line_id", "product_id", "quantity", "unit_price_minor", "line_total_minor",
		"order_version", "date_key", "loaded_at",
	}
)

// appendOrders appends rows[write] to fact_orders and their lines to fact_order_items, and returns
// their approximate size in bytes.
func (d *DuckDB) appendOrders(ctx context.Context, rows []OrderRow, write []int, loadedAt time.Time) (int64, error) {
	var size int64
	err := d.writer.Raw(func(dc any) error {
		oa, err := duckdb.NewAppenderWithColumns(dc.(driver.Conn), "", "", "fact_orders", orderColumns)
		if err != nil {
			return err
		}
		ia, err := duckdb.NewAppenderWithColumns(dc.(driver.Conn), "", "", "fact_order_items", itemColumns)
		if err != nil {
			return errors.Join(err, oa.Close())
		}
		ov := make([]driver.Value, len(orderColumns))
		iv := make([]driver.Value, len(itemColumns))
		for _, i := range write {
			r := &rows[i]
			dateKey := orderValues(ov, r, loadedAt)
			size += int64(len(orderColumns)) * 8
			if err := oa.AppendRow(ov...); err != nil {
				return errors.Join(err, oa.Clear(), oa.Close(), ia.Clear(), ia.Close())
			}
			for n := range r.Items {
				itemValues(iv, r, n, dateKey, loadedAt)
				size += int64(len(itemColumns)) * 8
				if err := ia.AppendRow(iv...); err != nil {
					return errors.Join(err, oa.Clear(), oa.Close(), ia.Clear(), ia.Close())
				}
			}
		}
		return errors.Join(oa.CloseWithCancel(ctx), ia.CloseWithCancel(ctx))
	})
	return size, err
}

// orderValues fills vals in orderColumns order and returns the order's date_key.
func orderValues(vals []driver.Value, r *OrderRow, loadedAt time.Time) int32 {
	o := &r.Order
	ts := o.OrderTimestamp.UTC()
	y, m, dd := ts.Date()
	dateKey := int32(y*10000 + int(m)*100 + dd)
	optTime := func(t *time.Time) driver.Value {
		if t == nil {
			return nil
		}
		return t.UTC()
	}
	vals[0], vals[1], vals[2], vals[3], vals[4] = o.OrderID, o.OrderVersion, o.UserID, o.Status, o.Currency
	vals[5], vals[6], vals[7], vals[8], vals[9], vals[10] = o.SubtotalMinor, o.TaxMinor, o.ShippingMinor, o.DiscountMinor, o.TotalMinor, o.RefundedMinor
	vals[11], vals[12], vals[13], vals[14] = ts, time.Date(y, m, dd, 0, 0, 0, 0, time.UTC), dateKey, o.UpdatedAt.UTC()
	vals[15], vals[16], vals[17], vals[18], vals[19] = optTime(o.PaidAt), optTime(o.ShippedAt), optTime(o.DeliveredAt), optTime(o.CancelledAt), optTime(o.RefundedAt)
	vals[20] = nil
	if o.ShippingCountry != nil {
		vals[20] = *o.ShippingCountry
	}
	vals[21], vals[22], vals[23], vals[24] = o.Source, optTime(o.ReceivedAt), nullIfEmpty(r.DQWarnings), nullIfEmpty(r.TraceID)
	vals[25], vals[26], vals[27], vals[28] = r.SourceTopic, r.SourcePartition, r.SourceOffset, loadedAt
	return dateKey
}

// itemValues fills vals in itemColumns order for line n of r.
func itemValues(vals []driver.Value, r *OrderRow, n int, dateKey int32, loadedAt time.Time) {
	it := &r.Items[n]
	vals[0], vals[1], vals[2] = r.OrderID, int32(n), nil
	if it.LineID != nil {
		vals[2] = *it.LineID
	}
	vals[3], vals[4], vals[5], vals[6] = it.ProductID, int32(it.Quantity), it.UnitPriceMinor, nil // range checked by invalidOrder
	if it.LineTotalMinor != nil {
		vals[6] = *it.LineTotalMinor
	}
	vals[7], vals[8], vals[9] = r.OrderVersion, dateKey, loadedAt
}
