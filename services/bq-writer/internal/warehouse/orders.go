package warehouse

import (
	"cmp"
	"fmt"
	"math"
	"time"
	"unicode/utf8"
)

// This file holds the backend-neutral rule for order versions; duckdb_orders.go applies it to
// DuckDB.
//
// The rule: per order_id the warehouse keeps one version, the greatest by (order_version,
// updated_at). A version is written only when it is greater than the stored one, so an older
// version arriving after a newer one never overwrites it, and the same version twice (a replay, or
// the poll and the webhook both delivering it) is one row. Within a batch only the greatest version
// of each order is a candidate; the others are stale (older) or duplicates (equal to it).
//
// Copies of one version are told apart by their source coordinates: the row kept is the copy
// with the lowest (source_topic, source_partition, source_offset), whatever order the copies
// arrive in. BigQuery's prod.fact_orders view applies the same tie rule to its append-only raw
// rows, so both backends keep the same record, independent of batching and rebalances.

// OrderVersion is what orders are compared by.
type OrderVersion struct {
	Version   int64
	UpdatedAt time.Time
}

// Compare orders versions: by Version, then by UpdatedAt.
func (v OrderVersion) Compare(w OrderVersion) int {
	if c := cmp.Compare(v.Version, w.Version); c != 0 {
		return c
	}
	return v.UpdatedAt.Compare(w.UpdatedAt)
}

func versionOf(r *OrderRow) OrderVersion {
	return OrderVersion{Version: r.OrderVersion, UpdatedAt: r.UpdatedAt}
}

// storedOrder is the kept row of an order: its version and source coordinates.
type storedOrder struct {
	OrderVersion
	Topic     string
	Partition int32
	Offset    int64
}

func storedOf(r *OrderRow) storedOrder {
	return storedOrder{versionOf(r), r.SourceTopic, r.SourcePartition, r.SourceOffset}
}

// lowerCoords reports whether a's source coordinates come before b's.
func (a storedOrder) lowerCoords(b storedOrder) bool {
	return cmp.Or(cmp.Compare(a.Topic, b.Topic), cmp.Compare(a.Partition, b.Partition), cmp.Compare(a.Offset, b.Offset)) < 0
}

// preferred reports whether a is kept over b: a greater version, or the same version at lower
// source coordinates.
func (a storedOrder) preferred(b storedOrder) bool {
	c := a.Compare(b.OrderVersion)
	return c > 0 || (c == 0 && a.lowerCoords(b))
}

// orderPlan is what to do with a batch's fresh order versions.
type orderPlan struct {
	insert  []int // indexes of versions of orders not stored: appended
	replace []int // indexes of versions preferred to the stored one: the stored row and lines go
	res     OrderResult
}

// planOrders applies the rule to rows[fresh] given the stored row of each order (absent: not
// stored). The result counts only the fresh rows; the caller adds position-stale ones. insert and
// replace are in the order of fresh. A copy of the stored version at lower source coordinates
// replaces the stored row and counts as a duplicate (it is the same version).
func planOrders(rows []OrderRow, fresh []int, stored map[string]storedOrder) orderPlan {
	var p orderPlan
	best := make(map[string]int, len(fresh)) // order_id -> index of its preferred fresh version
	for _, i := range fresh {
		id := rows[i].OrderID
		if j, ok := best[id]; !ok || storedOf(&rows[i]).preferred(storedOf(&rows[j])) {
			best[id] = i
		}
	}
	for _, i := range fresh {
		r := &rows[i]
		j := best[r.OrderID]
		if i != j {
			if versionOf(r).Compare(versionOf(&rows[j])) == 0 {
				p.res.Duplicates++
			} else {
				p.res.Stale++
			}
			continue
		}
		old, ok := stored[r.OrderID]
		switch c := versionOf(r).Compare(old.OrderVersion); {
		case !ok:
			p.insert = append(p.insert, i)
			p.res.Inserted++
		case c > 0:
			p.replace = append(p.replace, i)
			p.res.Replaced++
		case c == 0:
			if storedOf(r).lowerCoords(old) {
				p.replace = append(p.replace, i)
			}
			p.res.Duplicates++
		default:
			p.res.Stale++
		}
	}
	return p
}

// invalidOrder returns why the order version cannot be stored faithfully, or "".
func invalidOrder(r *OrderRow) string {
	o := &r.Order
	if o.OrderID == "" {
		return "empty order_id"
	}
	if o.OrderTimestamp.IsZero() {
		return "zero order_timestamp"
	}
	strs := []struct{ name, v string }{
		{"order_id", o.OrderID}, {"user_id", o.UserID}, {"status", o.Status}, {"currency", o.Currency},
		{"source", o.Source}, {"trace_id", r.TraceID}, {"dq_warnings", r.DQWarnings}, {"source_topic", r.SourceTopic},
	}
	if o.ShippingCountry != nil {
		strs = append(strs, struct{ name, v string }{"shipping_country", *o.ShippingCountry})
	}
	for i, it := range o.Items {
		if it.Quantity > math.MaxInt32 || it.Quantity < math.MinInt32 {
			return fmt.Sprintf("items[%d].quantity %d overflows INTEGER", i, it.Quantity)
		}
		strs = append(strs, struct{ name, v string }{fmt.Sprintf("items[%d].product_id", i), it.ProductID})
		if it.LineID != nil {
			strs = append(strs, struct{ name, v string }{fmt.Sprintf("items[%d].line_id", i), *it.LineID})
		}
	}
	for _, f := range strs {
		if !utf8.ValidString(f.v) {
			return f.name + " is not valid UTF-8"
		}
	}
	return ""
}
