package warehouse

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ecomstream/platform/pkg/events"
	ddl "github.com/ecomstream/platform/sql"
)

const ordersTopic = "ecom.orders.valid.v1"

// order builds version v of order id with lines lines (product ids p0, p1, ...), read from offset
// off of partition 0 of the orders topic.
func order(off int64, id string, v int64, lines int) OrderRow {
	o := events.Order{
		OrderID: id, UserID: "cust-1", Status: "paid", OrderTimestamp: t0, UpdatedAt: t0.Add(time.Duration(v) * time.Minute),
		Currency: "EUR", SubtotalMinor: 1000, TaxMinor: 190, ShippingMinor: 500, TotalMinor: 1690,
		ShippingCountry: ptr("DE"), Source: "api", OrderVersion: v, PaidAt: ptr(t0.Add(time.Minute)),
		ReceivedAt: ptr(t0.Add(time.Duration(v)*time.Minute + time.Second)),
	}
	for n := range lines {
		o.Items = append(o.Items, events.OrderItem{ProductID: fmt.Sprintf("p%d", n), Quantity: n + 1, UnitPriceMinor: 100,
			LineID: ptr(fmt.Sprintf("line-%d", n)), LineTotalMinor: ptr(int64(100 * (n + 1)))})
	}
	return OrderRow{Order: o, TraceID: "4bf92f3577b34da6a3ce929d0e0e4736", SourceTopic: ordersTopic, SourceOffset: off}
}

// orderBatch builds a batch of order rows whose positions are the highest offset per partition + 1.
func orderBatch(rows ...OrderRow) Batch {
	b := Batch{Orders: rows, Positions: map[Partition]int64{}}
	for _, r := range rows {
		p := Partition{r.SourceTopic, r.SourcePartition}
		b.Positions[p] = max(b.Positions[p], r.SourceOffset+1)
	}
	return b
}

// stored returns "order_id:version:lines" for every stored order, sorted, checking that every line
// belongs to the stored version.
func storedOrders(t *testing.T, d *DuckDB) []string {
	t.Helper()
	_, rows, err := d.Query(context.Background(), `SELECT o.order_id, o.order_version, count(i.order_id),
  count(*) FILTER (WHERE i.order_version <> o.order_version)
FROM fact_orders o LEFT JOIN fact_order_items i USING (order_id) GROUP BY ALL ORDER BY 1`, 100)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range rows {
		if r[3].(int64) != 0 {
			t.Errorf("order %v has lines of another version", r[0])
		}
		out = append(out, fmt.Sprintf("%v:%v:%v", r[0], r[1], r[2]))
	}
	if n := count(t, d, `SELECT count(*) FROM fact_order_items WHERE order_id NOT IN (SELECT order_id FROM fact_orders)`); n != 0 {
		t.Errorf("%d orphan lines", n)
	}
	return out
}

func TestOrderVersionCompare(t *testing.T) {
	tests := []struct {
		a, b OrderVersion
		want int
	}{
		{OrderVersion{2, t0}, OrderVersion{1, t0.Add(time.Hour)}, 1},
		{OrderVersion{1, t0}, OrderVersion{1, t0.Add(time.Second)}, -1},
		{OrderVersion{3, t0}, OrderVersion{3, t0}, 0},
		{OrderVersion{0, t0.Add(time.Second)}, OrderVersion{0, t0}, 1},
	}
	for _, tt := range tests {
		if got := tt.a.Compare(tt.b); got != tt.want {
			t.Errorf("%v.Compare(%v) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
	}
}

// Versions 1, 2, 3 of an order (with 1, 3 and 2 lines) arrive in every order, one batch each: the
// result is always version 3 with its 2 lines, and each write is counted as what it did.
func TestOrderLatestWinsInAnyArrivalOrder(t *testing.T) {
	lines := map[int64]int{1: 1, 2: 3, 3: 2}
	for _, perm := range [][]int64{{1, 2, 3}, {1, 3, 2}, {2, 1, 3}, {2, 3, 1}, {3, 1, 2}, {3, 2, 1}} {
		t.Run(fmt.Sprint(perm), func(t *testing.T) {
			d, _ := openTest(t)
			best := int64(0)
			for off, v := range perm {
				res := mustWrite(t, d, orderBatch(order(int64(off), "o-1", v, lines[v])))
				want := OrderResult{}
				switch {
				case best == 0:
					want.Inserted = 1
				case v > best:
					want.Replaced = 1
				default:
					want.Stale = 1
				}
				best = max(best, v)
				if res.Orders != want {
					t.Fatalf("version %d: result %+v, want %+v", v, res.Orders, want)
				}
			}
			if got := storedOrders(t, d); !slices.Equal(got, []string{"o-1:3:2"}) {
				t.Fatalf("stored %v, want [o-1:3:2]", got)
			}
		})
	}
	// The same versions in one batch, in every order: only the greatest is written.
	for _, perm := range [][]int64{{1, 2, 3}, {3, 1, 2}, {2, 3, 1}} {
		t.Run(fmt.Sprint("one batch ", perm), func(t *testing.T) {
			d, _ := openTest(t)
			var rows []OrderRow
			for off, v := range perm {
				rows = append(rows, order(int64(off), "o-1", v, lines[v]))
			}
			res := mustWrite(t, d, orderBatch(rows...))
			if want := (OrderResult{Inserted: 1, Stale: 2}); res.Orders != want {
				t.Fatalf("result %+v, want %+v", res.Orders, want)
			}
			if got := storedOrders(t, d); !slices.Equal(got, []string{"o-1:3:2"}) {
				t.Fatalf("stored %v, want [o-1:3:2]", got)
			}
		})
	}
}

func TestOrderSameVersionTwiceIsOneRow(t *testing.T) {
	d, _ := openTest(t)
	poll := order(0, "o-1", 2, 2)
	hook := order(1, "o-1", 2, 2)
	hook.Source, hook.WebhookDeliveryID = "webhook", ptr("dlv-1")
	if res := mustWrite(t, d, orderBatch(poll, hook)); res.Orders != (OrderResult{Inserted: 1, Duplicates: 1}) {
		t.Fatalf("poll and webhook in one batch: %+v", res.Orders)
	}
	again := order(2, "o-1", 2, 2)
	if res := mustWrite(t, d, orderBatch(again)); res.Orders != (OrderResult{Duplicates: 1}) {
		t.Fatalf("the version again: %+v", res.Orders)
	}
	// A replay of the first batch (offsets below the stored position) is stale.
	if res := mustWrite(t, d, orderBatch(poll, hook)); res.Orders != (OrderResult{Stale: 2}) {
		t.Fatalf("replay: %+v", res.Orders)
	}
	// The same order_version with a later updated_at is newer.
	later := order(3, "o-1", 2, 1)
	later.UpdatedAt = later.UpdatedAt.Add(time.Second)
	if res := mustWrite(t, d, orderBatch(later)); res.Orders != (OrderResult{Replaced: 1}) {
		t.Fatalf("same version, later updated_at: %+v", res.Orders)
	}
	if got := storedOrders(t, d); !slices.Equal(got, []string{"o-1:2:1"}) {
		t.Fatalf("stored %v", got)
	}
	if n := count(t, d, `SELECT count(*) FROM fact_orders WHERE source_offset = 3 AND source = 'api'`); n != 1 {
		t.Fatal("the row is not the one read at offset 3")
	}
}

// Copies of one version keep the lowest source coordinates whatever their arrival order, as
// BigQuery's prod.fact_orders does (the conformance suite compares the two): a copy from a lower
// partition arriving later replaces the stored row and its lines.
func TestOrderTieKeepsLowestCoordinates(t *testing.T) {
	d, _ := openTest(t)
	hook := order(0, "o-1", 2, 2)
	hook.SourcePartition, hook.Source = 1, "webhook"
	if res := mustWrite(t, d, orderBatch(hook)); res.Orders != (OrderResult{Inserted: 1}) {
		t.Fatalf("first copy: %+v", res.Orders)
	}
	poll := order(5, "o-1", 2, 2)
	if res := mustWrite(t, d, orderBatch(poll)); res.Orders != (OrderResult{Duplicates: 1}) {
		t.Fatalf("the copy from partition 0: %+v", res.Orders)
	}
	later := order(1, "o-1", 2, 2)
	later.SourcePartition = 1
	if res := mustWrite(t, d, orderBatch(later)); res.Orders != (OrderResult{Duplicates: 1}) {
		t.Fatalf("another copy from partition 1: %+v", res.Orders)
	}
	if got := storedOrders(t, d); !slices.Equal(got, []string{"o-1:2:2"}) {
		t.Fatalf("stored %v, want [o-1:2:2]", got)
	}
	if n := count(t, d, `SELECT count(*) FROM fact_orders WHERE source_partition = 0 AND source_offset = 5 AND source = 'api'`); n != 1 {
		t.Fatal("the row kept is not the copy at partition 0, offset 5")
	}
}

func TestOrderNewerVersionReplacesLines(t *testing.T) {
	d, _ := openTest(t)
	mustWrite(t, d, orderBatch(order(0, "o-1", 1, 3), order(1, "o-2", 1, 1)))
	v2 := order(2, "o-1", 2, 1)
	v2.Items[0] = events.OrderItem{ProductID: "p9", Quantity: 4, UnitPriceMinor: 250, LineID: ptr("line-9")}
	v2.Status, v2.RefundedMinor, v2.RefundedAt = "partially_refunded", 500, ptr(t0.Add(time.Hour))
	mustWrite(t, d, orderBatch(v2))
	if got := storedOrders(t, d); !slices.Equal(got, []string{"o-1:2:1", "o-2:1:1"}) {
		t.Fatalf("stored %v", got)
	}
	_, rows, err := d.Query(context.Background(), `SELECT line_number, line_id, product_id, quantity, unit_price_minor, line_total_minor, date_key
FROM fact_order_items WHERE order_id = 'o-1'`, 10)
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(rows); got != "[[0 line-9 p9 4 250 <nil> 20250314]]" {
		t.Fatalf("lines %s", got)
	}
	_, rows, err = d.Query(context.Background(), `SELECT status, refunded_minor, refunded_at IS NOT NULL, order_date::VARCHAR, date_key,
  shipping_country, trace_id, dq_warnings FROM fact_orders WHERE order_id = 'o-1'`, 10)
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(rows); got != "[[partially_refunded 500 true 2025-03-14 20250314 DE 4bf92f3577b34da6a3ce929d0e0e4736 <nil>]]" {
		t.Fatalf("order %s", got)
	}
}

func TestOrdersCommitWithPositionsAndRollBack(t *testing.T) {
	d, _ := openTest(t)
	b := orderBatch(order(0, "o-1", 1, 2))
	b.Events = seq("e", 0, 0, 2)
	b.Positions[Partition{"ecom.events.valid.v1", 0}] = 2
	injected := errors.New("injected")
	d.beforeCommit = func() error { return injected }
	if _, err := d.Write(context.Background(), testGroup, b); !errors.Is(err, injected) {
		t.Fatalf("err = %v", err)
	}
	if got := storedOrders(t, d); len(got) != 0 {
		t.Fatalf("rolled-back batch left orders %v", got)
	}
	if pos, _ := d.Positions(context.Background(), testGroup); len(pos) != 0 {
		t.Fatalf("rolled-back batch left positions %v", pos)
	}
	d.beforeCommit = nil
	res := mustWrite(t, d, b)
	if res.Inserted != 2 || res.Orders.Inserted != 1 {
		t.Fatalf("result %+v", res)
	}
	pos, err := d.Positions(context.Background(), testGroup)
	if err != nil {
		t.Fatal(err)
	}
	if pos[Partition{ordersTopic, 0}].Next != 1 || pos[Partition{"ecom.events.valid.v1", 0}].Next != 2 {
		t.Fatalf("positions %v", pos)
	}
	if got := storedOrders(t, d); !slices.Equal(got, []string{"o-1:1:2"}) {
		t.Fatalf("stored %v", got)
	}
}

func TestWriteRejectsBadOrder(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*OrderRow)
		reason string
	}{
		{"empty id", func(r *OrderRow) { r.OrderID = "" }, "empty order_id"},
		{"zero timestamp", func(r *OrderRow) { r.OrderTimestamp = time.Time{} }, "zero order_timestamp"},
		{"bad utf-8", func(r *OrderRow) { r.Status = "\xff" }, "status is not valid UTF-8"},
		{"line overflow", func(r *OrderRow) { r.Items[0].Quantity = 1 << 40 }, "items[0].quantity 1099511627776 overflows INTEGER"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, _ := openTest(t)
			bad := order(1, "o-2", 1, 1)
			tt.mutate(&bad)
			_, err := d.Write(context.Background(), testGroup, orderBatch(order(0, "o-1", 1, 1), bad))
			var re *RowError
			if !errors.As(err, &re) || re.Entity != EntityOrder || re.Index != 1 || re.Reason != tt.reason {
				t.Fatalf("err = %v, want an order RowError for row 1: %s", err, tt.reason)
			}
		})
	}
}

func TestMigrateAddsOrderTablesToOlderFiles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "old.duckdb")
	old := olderFile(t, path, func(s ddl.Statement) (string, bool) { // A file from before orders had no dimensions or views either.
		return s.SQL, !strings.Contains(s.Name, "order") && !strings.Contains(s.Name, "dim_") && !strings.Contains(s.Name, "views_") &&
			!strings.HasPrefix(s.Name, "duckdb/prod/")
	})
	mustWrite(t, old, batch(seq("e", 0, 0, 3)...))
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}
	d, err := OpenDuckDB(path)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := d.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, d, orderBatch(order(0, "o-1", 1, 2)))
	if got := storedOrders(t, d); !slices.Equal(got, []string{"o-1:1:2"}) {
		t.Fatalf("stored %v", got)
	}
	if n := count(t, d, `SELECT count(*) FROM fact_events`); n != 3 {
		t.Fatalf("fact_events has %d rows, want 3", n)
	}
	for _, c := range []struct {
		table string
		cols  []string
	}{{"fact_orders", orderColumns}, {"fact_order_items", itemColumns}} {
		if cols := tableColumns(t, d, c.table); !slices.Equal(cols, c.cols) {
			t.Errorf("%s columns %v\nappender columns %v", c.table, cols, c.cols)
		}
	}
}

// The rule itself, without a backend: rows are (order_id, version, partition) at offsets 0.. of
// their partition, stored is what the warehouse holds (at partition 1, offset 100 unless given).
func TestPlanOrders(t *testing.T) {
	type ov struct {
		id   string
		v    int64
		part int32
	}
	type kept struct {
		v    int64
		part int32
		off  int64
	}
	tests := []struct {
		name        string
		rows        []ov
		stored      map[string]kept
		wantInsert  []int
		wantReplace []int
		want        OrderResult
	}{
		{name: "new", rows: []ov{{"a", 1, 0}, {"b", 1, 0}}, wantInsert: []int{0, 1}, want: OrderResult{Inserted: 2}},
		{name: "newer replaces", rows: []ov{{"a", 2, 0}}, stored: map[string]kept{"a": {1, 1, 100}}, wantReplace: []int{0}, want: OrderResult{Replaced: 1}},
		{name: "older is stale", rows: []ov{{"a", 1, 0}}, stored: map[string]kept{"a": {2, 1, 100}}, want: OrderResult{Stale: 1}},
		{name: "same is duplicate", rows: []ov{{"a", 2, 1}}, stored: map[string]kept{"a": {2, 1, 0}}, want: OrderResult{Duplicates: 1}},
		{name: "same at lower coordinates replaces the kept copy", rows: []ov{{"a", 2, 0}}, stored: map[string]kept{"a": {2, 1, 100}},
			wantReplace: []int{0}, want: OrderResult{Duplicates: 1}},
		{name: "same at higher coordinates is duplicate", rows: []ov{{"a", 2, 2}}, stored: map[string]kept{"a": {2, 1, 100}},
			want: OrderResult{Duplicates: 1}},
		{name: "greatest in batch wins", rows: []ov{{"a", 3, 0}, {"a", 5, 0}, {"a", 4, 0}}, stored: map[string]kept{"a": {1, 1, 100}},
			wantReplace: []int{1}, want: OrderResult{Replaced: 1, Stale: 2}},
		{name: "copies of the winner", rows: []ov{{"a", 2, 0}, {"a", 2, 0}, {"a", 1, 0}}, wantInsert: []int{0}, want: OrderResult{Inserted: 1, Duplicates: 1, Stale: 1}},
		{name: "copies in a batch: the lowest partition wins", rows: []ov{{"a", 2, 1}, {"a", 2, 0}}, wantInsert: []int{1},
			want: OrderResult{Inserted: 1, Duplicates: 1}},
		{name: "batch older than stored", rows: []ov{{"a", 2, 0}, {"a", 3, 0}}, stored: map[string]kept{"a": {3, 0, 0}},
			want: OrderResult{Stale: 1, Duplicates: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var rows []OrderRow
			var fresh []int
			next := map[int32]int64{}
			for i, r := range tt.rows {
				o := order(next[r.part], r.id, r.v, 1)
				o.SourcePartition = r.part
				next[r.part]++
				rows = append(rows, o)
				fresh = append(fresh, i)
			}
			stored := map[string]storedOrder{}
			for id, k := range tt.stored {
				o := order(k.off, id, k.v, 0)
				o.SourcePartition = k.part
				stored[id] = storedOf(&o)
			}
			p := planOrders(rows, fresh, stored)
			if p.res != tt.want || !slices.Equal(p.insert, tt.wantInsert) || !slices.Equal(p.replace, tt.wantReplace) {
				t.Fatalf("plan insert %v replace %v %+v, want %v %v %+v", p.insert, p.replace, p.res, tt.wantInsert, tt.wantReplace, tt.want)
			}
		})
	}
}
