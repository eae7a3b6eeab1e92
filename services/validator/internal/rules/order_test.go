package rules

import (
	"slices"
	"testing"
	"time"

	seedids "github.com/ecomstream/platform/deploy/local/seed"
	"github.com/ecomstream/platform/deploy/local/storefront"
	"github.com/ecomstream/platform/pkg/events"
)

func orderSet(t testing.TB) *Set {
	t.Helper()
	set, err := Orders(defaults)
	if err != nil {
		t.Fatal(err)
	}
	return set
}

// verdict is the ids of the rules o failed (error) and warned.
func verdict(set *Set, o *events.Order) (failed, warned []string) {
	results, reasons := set.Evaluate(o, time.Time{}, nil)
	for _, r := range reasons {
		failed = append(failed, r.RuleID)
	}
	for _, r := range results {
		if r.Outcome == Warned {
			warned = append(warned, r.RuleID)
		}
	}
	return failed, warned
}

// delivered is a well-formed v2 order that went created -> paid -> shipped
// -> delivered, with line ids and totals as the API states them.
func delivered() events.Order {
	created := now.Add(-72 * time.Hour)
	paid, shipped, deliv := created.Add(time.Minute), created.Add(24*time.Hour), created.Add(60*time.Hour)
	return events.Order{OrderID: "o1", UserID: "c1", Status: "delivered", OrderTimestamp: created, UpdatedAt: deliv,
		Currency: "EUR", SubtotalMinor: 1000, TaxMinor: 171, ShippingMinor: 499, DiscountMinor: 100, TotalMinor: 1570,
		Items: []events.OrderItem{
			{ProductID: "p1", Quantity: 2, UnitPriceMinor: 300, LineID: ptr("o1-1"), LineTotalMinor: ptr(int64(600))},
			{ProductID: "p2", Quantity: 1, UnitPriceMinor: 400, LineID: ptr("o1-2"), LineTotalMinor: ptr(int64(400))},
		},
		ShippingCountry: ptr("DE"), Source: "api", OrderVersion: 4,
		PaidAt: &paid, ShippedAt: &shipped, DeliveredAt: &deliv, ReceivedAt: ptr(deliv.Add(2 * time.Second))}
}

// TestOrderRules: the verdict of the order rules on representative orders.
func TestOrderRules(t *testing.T) {
	at := func(d time.Duration) *time.Time { t := delivered().OrderTimestamp.Add(d); return &t }
	tests := []struct {
		name       string
		give       func(o *events.Order)
		wantFailed []string
		wantWarned []string
	}{
		{name: "delivered order passes", give: func(*events.Order) {}},
		{name: "just created", give: func(o *events.Order) {
			o.Status, o.PaidAt, o.ShippedAt, o.DeliveredAt, o.OrderVersion = "created", nil, nil, nil, 1
			o.UpdatedAt = o.OrderTimestamp
			o.ReceivedAt = &o.UpdatedAt
		}},
		{name: "lines without stated totals", give: func(o *events.Order) {
			for i := range o.Items {
				o.Items[i].LineTotalMinor, o.Items[i].LineID = nil, nil
			}
		}},
		{name: "partially refunded", give: func(o *events.Order) {
			o.Status, o.RefundedMinor, o.RefundedAt, o.UpdatedAt = "partially_refunded", 300, at(80*time.Hour), *at(80 * time.Hour)
			o.ReceivedAt = at(80 * time.Hour)
		}},
		{name: "paid, then cancelled and refunded in full", give: func(o *events.Order) {
			o.Status, o.ShippedAt, o.DeliveredAt = "cancelled", nil, nil
			o.CancelledAt, o.RefundedAt, o.RefundedMinor = at(time.Hour), at(time.Hour), o.TotalMinor
		}},
		{name: "v1 data has no stage timestamps", give: func(o *events.Order) {
			o.OrderVersion, o.PaidAt, o.ShippedAt, o.DeliveredAt = 0, nil, nil, nil
		}},
		{name: "backfill is not judged on freshness", give: func(o *events.Order) { o.Source, o.ReceivedAt = "backfill", ptr(now.Add(240*time.Hour)) }},
		{name: "no received_at is not judged", give: func(o *events.Order) { o.ReceivedAt = nil }},

		{name: "blank ids", give: func(o *events.Order) { o.OrderID, o.Items[1].ProductID = " ", "" }, wantFailed: []string{OrderRequiredFields}},
		{name: "blank product id only", give: func(o *events.Order) { o.Items[0].ProductID = "" }, wantFailed: []string{OrderRequiredFields}},
		{name: "currency not ISO 4217", give: func(o *events.Order) { o.Currency = "ZZZ" }, wantFailed: []string{OrderCurrencyISO4217}},
		{name: "lower-case currency", give: func(o *events.Order) { o.Currency = "eur" }, wantFailed: []string{OrderCurrencyISO4217}},
		{name: "negative shipping, total still adds up", give: func(o *events.Order) { o.ShippingMinor, o.TotalMinor = -499, 572 },
			wantFailed: []string{OrderAmountsNonNegative}},
		{name: "negative unit price", give: func(o *events.Order) {
			o.Items[1].UnitPriceMinor, o.Items[1].LineTotalMinor, o.SubtotalMinor, o.TotalMinor = -400, ptr(int64(-400)), 200, 770
		}, wantFailed: []string{OrderAmountsNonNegative}},
		{name: "total one more than the sum", give: func(o *events.Order) { o.TotalMinor++ }, wantFailed: []string{OrderTotalMatches}},
		{name: "discount not subtracted", give: func(o *events.Order) { o.TotalMinor += o.DiscountMinor }, wantFailed: []string{OrderTotalMatches}},
		{name: "no lines", give: func(o *events.Order) {
			o.Items = []events.OrderItem{}
			o.SubtotalMinor, o.TaxMinor, o.DiscountMinor, o.TotalMinor = 0, 0, 0, 499
		},
			wantFailed: []string{OrderHasLines}},
		{name: "null lines", give: func(o *events.Order) {
			o.Items = nil
			o.SubtotalMinor, o.TaxMinor, o.DiscountMinor, o.TotalMinor = 0, 0, 0, 499
		},
			wantFailed: []string{OrderHasLines}},
		{name: "zero quantity", give: func(o *events.Order) {
			o.Items[1].Quantity, o.Items[1].LineTotalMinor, o.SubtotalMinor, o.TaxMinor, o.TotalMinor = 0, ptr(int64(0)), 600, 0, 999
		}, wantFailed: []string{OrderQuantitiesPositive}},
		{name: "line total not quantity x price", give: func(o *events.Order) { o.Items[0].UnitPriceMinor = 299 }, wantFailed: []string{OrderLineTotals}},
		{name: "lines do not sum to the subtotal", give: func(o *events.Order) { o.SubtotalMinor, o.TotalMinor = 1100, 1670 },
			wantFailed: []string{OrderLinesSumToSubtotal}},
		{name: "computed line totals do not sum", give: func(o *events.Order) { o.Items[0].LineTotalMinor, o.Items[0].Quantity = nil, 3 },
			wantFailed: []string{OrderLinesSumToSubtotal}},
		{name: "refunded more than the total", give: func(o *events.Order) {
			o.Status, o.RefundedMinor, o.RefundedAt = "refunded", o.TotalMinor+1, o.DeliveredAt
		}, wantFailed: []string{OrderRefundWithinTotal}},
		{name: "refund without refunded_at", give: func(o *events.Order) { o.RefundedMinor = 1 }, wantFailed: []string{OrderRefundWithinTotal}},
		{name: "unknown status", give: func(o *events.Order) { o.Status = "returned" }, wantFailed: []string{OrderStatusKnown}},
		{name: "delivered straight from created", give: func(o *events.Order) { o.PaidAt, o.ShippedAt, o.OrderVersion = nil, nil, 2 },
			wantFailed: []string{OrderStatusConsistent}},
		{name: "delivered without shipped_at", give: func(o *events.Order) { o.ShippedAt = nil }, wantFailed: []string{OrderStatusConsistent}},
		{name: "shipped but delivered_at set", give: func(o *events.Order) { o.Status = "shipped" }, wantFailed: []string{OrderStatusConsistent}},
		{name: "paid without paid_at", give: func(o *events.Order) { o.Status, o.PaidAt, o.ShippedAt, o.DeliveredAt = "paid", nil, nil, nil },
			wantFailed: []string{OrderStatusConsistent}},
		{name: "created with paid_at", give: func(o *events.Order) { o.Status, o.ShippedAt, o.DeliveredAt = "created", nil, nil },
			wantFailed: []string{OrderStatusConsistent}},
		{name: "cancelled after shipping", give: func(o *events.Order) { o.Status, o.DeliveredAt, o.CancelledAt = "cancelled", nil, at(30*time.Hour) },
			wantFailed: []string{OrderStatusConsistent}},
		{name: "refunded before delivery", give: func(o *events.Order) {
			o.Status, o.DeliveredAt, o.RefundedMinor, o.RefundedAt = "refunded", nil, o.TotalMinor, at(30*time.Hour)
		}, wantFailed: []string{OrderStatusConsistent}},
		{name: "cancelled_at on a delivered order", give: func(o *events.Order) { o.CancelledAt = at(time.Hour) }, wantFailed: []string{OrderStatusConsistent}},
		{name: "delivered before paid", give: func(o *events.Order) { o.PaidAt = at(61 * time.Hour) }, wantFailed: []string{OrderStageTimesOrdered}},
		{name: "updated_at before created", give: func(o *events.Order) { o.OrderTimestamp = o.UpdatedAt.Add(time.Second) },
			wantFailed: []string{OrderStageTimesOrdered}},
		{name: "stage after updated_at", give: func(o *events.Order) { o.DeliveredAt = at(61 * time.Hour) }, wantFailed: []string{OrderStageTimesOrdered}},
		{name: "shipping country not ISO 3166", give: func(o *events.Order) { o.ShippingCountry = ptr("UK") }, wantFailed: []string{OrderShippingCountry}},
		{name: "polled an hour and more late", give: func(o *events.Order) { o.ReceivedAt = ptr(o.UpdatedAt.Add(61 * time.Minute)) },
			wantWarned: []string{OrderFreshness}},
		{name: "webhook from the future", give: func(o *events.Order) { o.Source, o.ReceivedAt = "webhook", ptr(o.UpdatedAt.Add(-6*time.Minute)) },
			wantWarned: []string{OrderFreshness}},
		{name: "every failure is reported", give: func(o *events.Order) { o.Currency, o.TotalMinor, o.Status = "ZZZ", 1, "lost" },
			wantFailed: []string{OrderCurrencyISO4217, OrderTotalMatches, OrderStatusKnown}},
	}
	set := orderSet(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := delivered()
			tt.give(&o)
			failed, warned := verdict(set, &o)
			if !slices.Equal(failed, tt.wantFailed) || !slices.Equal(warned, tt.wantWarned) {
				t.Errorf("failed %v warned %v, want failed %v warned %v", failed, warned, tt.wantFailed, tt.wantWarned)
			}
		})
	}
}

// brokenRule is the rule each of the storefront simulator's deliberate
// defects must fail.
var brokenRule = map[string]string{
	storefront.BrokenNegativeAmount:    OrderAmountsNonNegative,
	storefront.BrokenUnknownCurrency:   OrderCurrencyISO4217,
	storefront.BrokenTotalMismatch:     OrderTotalMatches,
	storefront.BrokenNoLines:           OrderHasLines,
	storefront.BrokenIllegalTransition: OrderStatusConsistent,
}

// TestSimulatedOrders runs every version the storefront simulator makes in
// twenty shop days (thousands of orders through every life-cycle step, late
// updates, a few percent broken on purpose) through the order rules: a
// well-formed version passes without warnings, and a broken one fails
// exactly the rule its defect names.
func TestSimulatedOrders(t *testing.T) {
	if len(brokenRule) != len(storefront.BrokenKinds()) {
		t.Fatalf("brokenRule covers %d of the simulator's %d broken kinds %v", len(brokenRule), len(storefront.BrokenKinds()), storefront.BrokenKinds())
	}
	opens := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	clock := storefront.NewManualClock(opens)
	sim := storefront.NewSimulator(storefront.SimConfig{Seed: 7, IDs: seedids.Generate(seedids.DefaultSeed, 2000, 300), Clock: clock,
		Speed: 3600, RatePerMinute: 600, BrokenFraction: 0.05})
	for range 20 * 24 * 6 {
		sim.Advance(clock.Add(10 * time.Minute))
	}
	set := orderSet(t)
	statuses, kinds := map[string]int{}, map[string]int{}
	for _, v := range sim.Versions() {
		o := toEvent(v.Order)
		failed, warned := verdict(set, &o)
		var want []string
		if v.Broken != "" {
			want = []string{brokenRule[v.Broken]}
			kinds[v.Broken]++
		} else {
			statuses[v.Order.Status]++
		}
		if !slices.Equal(failed, want) || warned != nil {
			t.Errorf("order %s v%d (%s, broken %q): failed %v warned %v, want failed %v\n%+v", v.Order.ID, v.Order.Version, v.Order.Status, v.Broken, failed, warned, want, v.Order)
		}
	}
	for _, s := range storefront.Statuses() {
		if statuses[s] == 0 {
			t.Errorf("no well-formed %s version simulated (statuses %v)", s, statuses)
		}
	}
	for _, k := range storefront.BrokenKinds() {
		if kinds[k] == 0 {
			t.Errorf("no %s version simulated (kinds %v)", k, kinds)
		}
	}
	t.Logf("well-formed versions by status %v; broken versions by kind %v", statuses, kinds)
}

// toEvent is an API order as ingest-orders publishes it, polled a second
// after its update.
func toEvent(o storefront.Order) events.Order {
	items := make([]events.OrderItem, len(o.Lines))
	for i, l := range o.Lines {
		items[i] = events.OrderItem{ProductID: l.ProductID, Quantity: int(l.Quantity), UnitPriceMinor: l.UnitPriceMinor,
			LineID: ptr(l.LineID), LineTotalMinor: ptr(l.LineTotalMinor)}
	}
	return events.Order{OrderID: o.ID, UserID: o.CustomerID, Status: o.Status, OrderTimestamp: o.CreatedAt, UpdatedAt: o.UpdatedAt,
		Currency: o.Currency, SubtotalMinor: o.SubtotalMinor, TaxMinor: o.TaxMinor, ShippingMinor: o.ShippingMinor,
		TotalMinor: o.TotalMinor, Items: items, Source: "api", OrderVersion: int64(o.Version), DiscountMinor: o.DiscountMinor,
		RefundedMinor: o.RefundedMinor, PaidAt: o.PaidAt, ShippedAt: o.ShippedAt, DeliveredAt: o.DeliveredAt,
		CancelledAt: o.CancelledAt, RefundedAt: o.RefundedAt, ReceivedAt: ptr(o.UpdatedAt.Add(time.Second))}
}

func BenchmarkEvaluateOrders(b *testing.B) {
	set := orderSet(b)
	o := delivered()
	var results []Result
	b.ReportAllocs()
	for b.Loop() {
		results, _ = set.Evaluate(&o, now, results)
	}
}
