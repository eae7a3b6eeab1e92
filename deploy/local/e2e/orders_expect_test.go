package e2e

// What TestE2EOrders expects, read from the storefront simulator's own log
// of every version it made, and the row-by-row comparison of the warehouse
// and the dead letters against it.

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ecomstream/platform/deploy/local/slice"
	"github.com/ecomstream/platform/deploy/local/storefront"
	"github.com/ecomstream/platform/pkg/avroserde"
	"github.com/ecomstream/platform/pkg/events"
)

// brokenRule is the rule of services/validator/rules/order.yaml that must
// reject each kind of deliberately broken order version (the validator's
// rules test holds the same table against the rule file).
var brokenRule = map[string]string{
	storefront.BrokenNegativeAmount:    "order.amounts_non_negative",
	storefront.BrokenUnknownCurrency:   "order.currency_iso4217",
	storefront.BrokenTotalMismatch:     "order.total_matches",
	storefront.BrokenNoLines:           "order.has_lines",
	storefront.BrokenIllegalTransition: "order.status_consistent",
}

// orderLog is one order's versions from the simulator's log, in version order.
type orderLog struct {
	versions []storefront.Version
	broken   string // the order's broken kind, "" for a well-formed order
}

// want is the version fact_orders must hold: the latest well-formed one (an
// illegal_transition order's version 1; none for the other broken kinds).
func (l *orderLog) want() (storefront.Version, bool) {
	for i := len(l.versions) - 1; i >= 0; i-- {
		if l.versions[i].Broken == "" {
			return l.versions[i], true
		}
	}
	return storefront.Version{}, false
}

// versionKey names one order version.
func versionKey(id string, version int64) string { return fmt.Sprintf("%s v%d", id, version) }

// readVersionLog reads the simulator's version log into orders by id.
func readVersionLog(sl *slice.Slice) (map[string]*orderLog, int, error) {
	orders := map[string]*orderLog{}
	n := 0
	err := sl.StorefrontVersions(func(line []byte) error {
		var v storefront.Version
		if err := json.Unmarshal(line, &v); err != nil {
			return fmt.Errorf("version log line %d: %w", n+1, err)
		}
		n++
		l := orders[v.Order.ID]
		if l == nil {
			l = &orderLog{}
			orders[v.Order.ID] = l
		}
		if want := len(l.versions) + 1; v.Order.Version != want {
			return fmt.Errorf("version log: order %s version %d after %d versions", v.Order.ID, v.Order.Version, len(l.versions))
		}
		if v.Broken != "" {
			l.broken = v.Broken
		}
		l.versions = append(l.versions, v)
		return nil
	})
	return orders, n, err
}

// diffs collects differences and keeps the first few for the failure message.
type diffs struct {
	what  string
	n     int
	first []string
}

func (d *diffs) add(format string, args ...any) {
	d.n++
	if len(d.first) < 8 {
		d.first = append(d.first, fmt.Sprintf(format, args...))
	}
}

func (d *diffs) report(t *testing.T) {
	t.Helper()
	if d.n > 0 {
		t.Errorf("%s: %d differences; the first:\n  %s", d.what, d.n, strings.Join(d.first, "\n  "))
	}
}

// orderColumns are the fact_orders columns compared with the version log, as
// the query selects them (timestamps as microseconds since the epoch, which
// JSON carries exactly).
var orderColumns = []string{
	"order_version", "user_id", "status", "currency", "subtotal_minor", "tax_minor", "shipping_minor",
	"discount_minor", "total_minor", "refunded_minor", "order_timestamp", "updated_at",
	"paid_at", "shipped_at", "delivered_at", "cancelled_at", "refunded_at",
}

const factOrdersQuery = `SELECT order_id, order_version, user_id, status, currency, subtotal_minor, tax_minor, shipping_minor,
	discount_minor, total_minor, refunded_minor, epoch_us(order_timestamp), epoch_us(updated_at),
	epoch_us(paid_at), epoch_us(shipped_at), epoch_us(delivered_at), epoch_us(cancelled_at), epoch_us(refunded_at), source
	FROM fact_orders`

const factItemsQuery = `SELECT order_id, line_number, line_id, product_id, quantity, unit_price_minor, line_total_minor, order_version
	FROM fact_order_items ORDER BY order_id, line_number`

// orderValues are o's values in orderColumns order.
func orderValues(o storefront.Order) []any {
	us := func(t *time.Time) any {
		if t == nil {
			return nil
		}
		return t.UnixMicro()
	}
	return []any{
		int64(o.Version), o.CustomerID, o.Status, o.Currency, o.SubtotalMinor, o.TaxMinor, o.ShippingMinor,
		o.DiscountMinor, o.TotalMinor, o.RefundedMinor, o.CreatedAt.UnixMicro(), o.UpdatedAt.UnixMicro(),
		us(o.PaidAt), us(o.ShippedAt), us(o.DeliveredAt), us(o.CancelledAt), us(o.RefundedAt),
	}
}

// show renders a compared value for a message: timestamps (the columns
// ending in _at or _timestamp, compared as microseconds) in RFC 3339.
func show(col string, v any) any {
	if us, ok := v.(int64); ok && (strings.HasSuffix(col, "_at") || strings.HasSuffix(col, "_timestamp")) {
		return time.UnixMicro(us).UTC().Format(time.RFC3339Nano)
	}
	return v
}

// norm turns a value of the query endpoint's JSON into what orderValues
// holds: numbers as int64 (all compared numbers are integers), strings and nil as they are.
func norm(v any) any {
	if f, ok := v.(float64); ok {
		return int64(f)
	}
	return v
}

// orderCheck is what the warehouse comparison found.
type orderCheck struct {
	rows, items  int
	bySource     map[string]int
	byStatus     map[string]int
	lateLatest   int // orders whose stored version is a late update
	lateVersions int // late versions in the log
}

// checkWarehouse compares fact_orders and fact_order_items with the version
// log, row by row: each order the simulator created once, at its latest
// well-formed version with that version's values, and that version's lines.
func checkWarehouse(ctx context.Context, t *testing.T, sl *slice.Slice, orders map[string]*orderLog) orderCheck {
	t.Helper()
	res := orderCheck{bySource: map[string]int{}, byStatus: map[string]int{}}
	_, rows, err := sl.Query(ctx, factOrdersQuery)
	if err != nil {
		t.Fatalf("fact_orders: %v", err)
	}
	res.rows = len(rows)
	od := &diffs{what: "fact_orders against the version log"}
	stored := map[string]int{}
	for _, r := range rows {
		id, _ := r[0].(string)
		stored[id]++
		if stored[id] == 2 {
			od.add("order %s: more than one row", id)
		}
		res.bySource[fmt.Sprint(r[len(r)-1])]++
		res.byStatus[fmt.Sprint(r[3])]++
		l := orders[id]
		if l == nil {
			od.add("order %s: in fact_orders, but the simulator never made it", id)
			continue
		}
		want, ok := l.want()
		if !ok {
			od.add("order %s (broken %s): in fact_orders at version %v, but none of its versions is well formed", id, l.broken, norm(r[1]))
			continue
		}
		if stored[id] > 1 {
			continue
		}
		wv := orderValues(want.Order)
		for i, col := range orderColumns {
			if got := norm(r[i+1]); got != wv[i] {
				od.add("order %s (want v%d of %d, broken %q): %s = %v, want %v", id, want.Order.Version, len(l.versions), l.broken, col, show(col, got), show(col, wv[i]))
			}
		}
		if src := r[len(r)-1]; src != "api" && src != "webhook" {
			od.add("order %s: source %v, want api or webhook", id, src)
		}
		if want.Late {
			res.lateLatest++
		}
	}
	for _, id := range slices.Sorted(maps.Keys(orders)) {
		l := orders[id]
		for _, v := range l.versions {
			if v.Late {
				res.lateVersions++
			}
		}
		if want, ok := l.want(); ok && stored[id] == 0 {
			od.add("order %s: missing from fact_orders (want v%d, %s, late %v)", id, want.Order.Version, want.Order.Status, want.Late)
		}
	}
	od.report(t)

	_, items, err := sl.Query(ctx, factItemsQuery)
	if err != nil {
		t.Fatalf("fact_order_items: %v", err)
	}
	res.items = len(items)
	lines := map[string][][]any{}
	for _, r := range items {
		id, _ := r[0].(string)
		lines[id] = append(lines[id], r)
	}
	id := &diffs{what: "fact_order_items against the version log"}
	for oid, got := range lines {
		l := orders[oid]
		stored := false
		if l != nil {
			_, stored = l.want()
		}
		if !stored {
			id.add("order %s: %d lines in fact_order_items, want none (not a stored order)", oid, len(got))
		}
	}
	for _, oid := range slices.Sorted(maps.Keys(orders)) {
		want, ok := orders[oid].want()
		if !ok {
			continue
		}
		got := lines[oid]
		if len(got) != len(want.Order.Lines) {
			id.add("order %s v%d: %d lines, want %d", oid, want.Order.Version, len(got), len(want.Order.Lines))
			continue
		}
		for n, wl := range want.Order.Lines {
			g := got[n]
			wantRow := []any{int64(n), wl.LineID, wl.ProductID, wl.Quantity, wl.UnitPriceMinor, wl.LineTotalMinor, int64(want.Order.Version)}
			for k, col := range []string{"line_number", "line_id", "product_id", "quantity", "unit_price_minor", "line_total_minor", "order_version"} {
				if gv := norm(g[k+1]); gv != wantRow[k] {
					id.add("order %s v%d line %d: %s = %v, want %v", oid, want.Order.Version, n, col, gv, wantRow[k])
				}
			}
		}
	}
	id.report(t)
	return res
}

// warehouseProgress is how many orders fact_orders holds at the expected
// version: when it is len(want), the warehouse has caught up.
func warehouseProgress(ctx context.Context, sl *slice.Slice, want map[string]int64) (atVersion, rows int, err error) {
	_, got, err := sl.Query(ctx, "SELECT order_id, order_version FROM fact_orders")
	if err != nil {
		return 0, 0, err
	}
	for _, r := range got {
		id, _ := r[0].(string)
		if v, ok := want[id]; ok && norm(r[1]) == v {
			atVersion++
		}
	}
	return atVersion, len(got), nil
}

// orderDeadLetter is a dead letter of this run's orders path.
type orderDeadLetter struct {
	dl    events.DeadLetter
	order events.Order // decoded from the original value (validator and bq-writer)
}

// consumeOrderDeadLetters reads the dead-letter topic from the given offsets
// until every key of want has a dead letter and a quiet two seconds passed
// (or a minute, whichever first), and returns this run's order dead letters
// by versionKey. Dead letters of ingest-orders' webhook receiver (raw
// bodies, source_topic http:...) are kept under "raw:"+body when the body
// names one of the run's orders (isOurs).
func consumeOrderDeadLetters(ctx context.Context, t *testing.T, brokers []string, from map[int32]kgo.Offset, dlq, orderCodec *avroserde.Codec,
	prefix string, want map[string]bool, isOurs func(id string) bool) map[string][]orderDeadLetter {
	t.Helper()
	out := map[string][]orderDeadLetter{}
	missing := maps.Clone(want)
	keep := func(dl events.DeadLetter) bool {
		switch {
		case strings.HasPrefix(dl.SourceTopic, prefix):
			var o events.Order
			if _, err := orderCodec.Decode(ctx, dl.OriginalValue, &o); err != nil {
				if strings.Contains(dl.SourceTopic, "orders") {
					t.Errorf("original of a %s dead letter from %s does not decode as an Order: %v", dl.Stage, dl.SourceTopic, err)
				}
				return false
			}
			k := versionKey(o.OrderID, o.OrderVersion)
			out[k] = append(out[k], orderDeadLetter{dl: dl, order: o})
			delete(missing, k)
			return true
		case strings.HasPrefix(dl.SourceTopic, "http:/v1/webhooks/orders"):
			var body struct {
				ID string `json:"id"`
			}
			if json.Unmarshal(dl.OriginalValue, &body) == nil && isOurs(body.ID) {
				k := "raw:" + string(dl.OriginalValue)
				out[k] = append(out[k], orderDeadLetter{dl: dl})
				return true
			}
		}
		return false
	}
	consumeDLQ(ctx, t, brokers, from, dlq, time.Minute, 2*time.Second, keep, func() bool { return len(missing) == 0 })
	return out
}

// checkDeadLetters: every broken version is dead-lettered by the validator
// with exactly the rule its defect names, and nothing else of the run is.
func checkDeadLetters(t *testing.T, orders map[string]*orderLog, got map[string][]orderDeadLetter) (brokenVersions int) {
	t.Helper()
	d := &diffs{what: "dead letters of the orders path"}
	for _, oid := range slices.Sorted(maps.Keys(orders)) {
		for _, v := range orders[oid].versions {
			if v.Broken == "" {
				continue
			}
			brokenVersions++
			k := versionKey(oid, int64(v.Order.Version))
			dls := got[k]
			if len(dls) == 0 {
				d.add("order %s v%d (broken %s, %s): not dead-lettered, want rule %s", oid, v.Order.Version, v.Broken, v.Order.Status, brokenRule[v.Broken])
				continue
			}
			for _, x := range dls {
				rules := ruleIDs(x.dl)
				if x.dl.Stage != "validator" || len(rules) != 1 || rules[0] != brokenRule[v.Broken] {
					d.add("order %s v%d (broken %s, source %s): dead-lettered by %s with %v, want the validator with exactly rule %s",
						oid, v.Order.Version, v.Broken, x.order.Source, x.dl.Stage, reasons(x.dl), brokenRule[v.Broken])
				}
			}
		}
	}
	for _, k := range slices.Sorted(maps.Keys(got)) {
		x := got[k][0]
		if strings.HasPrefix(k, "raw:") {
			d.add("ingest-orders dead-lettered a webhook body of this run's orders (%d times): %v: %.120s", len(got[k]), reasons(x.dl), k[4:])
			continue
		}
		l := orders[x.order.OrderID]
		switch {
		case l == nil:
			d.add("dead letter for %s, an order the simulator never made: %s %v", k, x.dl.Stage, reasons(x.dl))
		case x.order.OrderVersion < 1 || int(x.order.OrderVersion) > len(l.versions):
			d.add("dead letter for %s: the simulator made %d versions of it", k, len(l.versions))
		case l.versions[x.order.OrderVersion-1].Broken == "":
			d.add("good version %s (%s, source %s) dead-lettered by %s: %v", k, x.order.Status, x.order.Source, x.dl.Stage, reasons(x.dl))
		}
	}
	d.report(t)
	return brokenVersions
}

// ruleIDs are the sorted rule ids of a dead letter's reasons.
func ruleIDs(dl events.DeadLetter) []string {
	var out []string
	for _, r := range dl.Reasons {
		if r.RuleID != nil {
			out = append(out, *r.RuleID)
		}
	}
	slices.Sort(out)
	return out
}
