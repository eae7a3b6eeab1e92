package clickgen_test

import (
	"encoding/json"
	"maps"
	"reflect"
	"testing"
	"time"

	"github.com/ecomstream/platform/deploy/local/clickgen"
	"github.com/ecomstream/platform/deploy/local/seed"
	"github.com/ecomstream/platform/deploy/local/storefront"
)

// TestPurchasesAreOrders: every valid purchase record carries the order the
// storefront must hold for it: the event's order_id, its user_id (a seed
// customer, paying in the currency the session shopped in) and the cart the
// session's add_to_cart and remove_from_cart events built, in seed products.
// No other record carries one, a duplicate carries its original's, and an
// account belongs to one visitor.
func TestPurchasesAreOrders(t *testing.T) {
	n := 300_000
	if testing.Short() {
		n = 60_000
	}
	recs, _ := generate(n, clickgen.WithSeed(21), clickgen.WithDuplicateFraction(0.05))
	customers := map[string]seed.Customer{}
	for _, c := range seed.Default().Customers {
		customers[c.CustomerID] = c
	}
	products := map[string]bool{}
	for _, p := range seed.Default().Products {
		products[p.ProductID] = true
	}
	type session struct {
		cart     map[string]int64
		order    []string // products in the order first added
		currency string
	}
	sessions := map[string]*session{}
	byEvent := map[string]*clickgen.Purchase{} // the originals, by event id
	owner := map[string]string{}               // user_id -> anonymous_id
	purchases, signedUp := 0, 0
	for i, r := range recs {
		if !r.Expect.Valid {
			if r.Purchase != nil {
				t.Fatalf("record %d: broken record with a purchase %+v", i, r.Purchase)
			}
			continue
		}
		var e rawEvent
		if err := json.Unmarshal(r.Value, &e); err != nil {
			t.Fatal(err)
		}
		if r.Duplicate {
			if orig := byEvent[*e.EventID]; !reflect.DeepEqual(r.Purchase, orig) {
				t.Fatalf("record %d: duplicate's purchase %+v, the original's %+v", i, r.Purchase, orig)
			}
			continue
		}
		byEvent[*e.EventID] = r.Purchase
		if e.UserID != nil {
			if a, ok := owner[*e.UserID]; ok && a != *e.AnonymousID {
				t.Fatalf("record %d: account %s used by visitors %s and %s", i, *e.UserID, a, *e.AnonymousID)
			}
			owner[*e.UserID] = *e.AnonymousID
		}
		s := sessions[*e.SessionID]
		if s == nil {
			s = &session{cart: map[string]int64{}}
			sessions[*e.SessionID] = s
		}
		if e.Currency != nil {
			s.currency = *e.Currency
		}
		switch *e.EventType {
		case "add_to_cart":
			if _, ok := s.cart[*e.ProductID]; !ok {
				s.order = append(s.order, *e.ProductID)
			}
			s.cart[*e.ProductID] += int64(*e.Quantity)
		case "remove_from_cart":
			s.cart[*e.ProductID] -= int64(*e.Quantity)
			if s.cart[*e.ProductID] == 0 {
				delete(s.cart, *e.ProductID)
			}
		case "begin_checkout":
			if e.UserID != nil && customers[*e.UserID].CustomerID >= "u-010000" {
				signedUp++ // the registered population has the low ids
			}
		}
		p := r.Purchase
		if *e.EventType != "purchase" {
			if p != nil {
				t.Fatalf("record %d: %s with a purchase", i, *e.EventType)
			}
			continue
		}
		purchases++
		if p == nil {
			t.Fatalf("record %d: purchase event without a purchase: %s", i, r.Value)
		}
		ts, _ := time.Parse(time.RFC3339Nano, *e.EventTimestamp)
		c, isCustomer := customers[p.CustomerID]
		if p.OrderID != *e.OrderID || e.UserID == nil || p.CustomerID != *e.UserID || !isCustomer || !p.At.Equal(ts) {
			t.Fatalf("record %d: purchase %+v for event %s", i, p, r.Value)
		}
		if cur := seed.CurrencyFor(c.Country); cur != s.currency {
			t.Fatalf("record %d: customer %s pays in %s, the session shopped in %s", i, c.CustomerID, cur, s.currency)
		}
		got := map[string]int64{}
		var order []string
		for _, l := range p.Lines {
			if !products[l.ProductID] || l.Quantity < 1 || got[l.ProductID] != 0 {
				t.Fatalf("record %d: line %+v of %+v", i, l, p)
			}
			got[l.ProductID] = l.Quantity
			order = append(order, l.ProductID)
		}
		var want []string
		for _, id := range s.order {
			if s.cart[id] > 0 {
				want = append(want, id)
			}
		}
		if !maps.Equal(got, s.cart) || !reflect.DeepEqual(order, want) {
			t.Fatalf("record %d: purchase lines %v (in order %v), the session's cart %v (%v)", i, got, order, s.cart, want)
		}
		s.cart, s.order = map[string]int64{}, nil
	}
	if purchases < n/1000 || signedUp == 0 {
		t.Fatalf("%d purchases, %d sign-ups at checkout in %d records", purchases, signedUp, n)
	}
	t.Logf("%d purchases in %d records (%.2f%%: %.1f a second at 1000 events a second), %d checkouts by a visitor who signed up",
		purchases, n, 100*float64(purchases)/float64(n), 1000*float64(purchases)/float64(n), signedUp)
}

// TestPurchaseIsACopy: a caller that changes a record's purchase does not
// change the duplicates sent later.
func TestPurchaseIsACopy(t *testing.T) {
	g := clickgen.New(clickgen.WithSeed(5), clickgen.WithBrokenFraction(0), clickgen.WithDuplicateFraction(0.3))
	var orig *clickgen.Purchase
	want := map[string]clickgen.Purchase{}
	for range 200_000 {
		r := g.Next()
		if r.Purchase == nil {
			continue
		}
		if !r.Duplicate {
			want[r.Purchase.OrderID] = clickgen.Purchase{OrderID: r.Purchase.OrderID, CustomerID: r.Purchase.CustomerID,
				At: r.Purchase.At, Lines: append([]clickgen.PurchaseLine(nil), r.Purchase.Lines...)}
			r.Purchase.Lines[0].Quantity = -1 // the caller's to change
			r.Purchase.CustomerID = "changed"
			continue
		}
		if w := want[r.Purchase.OrderID]; !reflect.DeepEqual(*r.Purchase, w) {
			t.Fatalf("duplicate %+v, original %+v", *r.Purchase, w)
		}
		orig = r.Purchase
	}
	if orig == nil {
		t.Fatal("no duplicated purchase")
	}
}

// TestPurchasesDeterministic: the same seed gives the same orders, so a
// replayed run places the same ids (and finds them placed).
func TestPurchasesDeterministic(t *testing.T) {
	purchases := func(seed uint64) []clickgen.Purchase {
		recs, _ := generate(20_000, clickgen.WithSeed(seed), clickgen.WithDuplicateFraction(0.05))
		var out []clickgen.Purchase
		for _, r := range recs {
			if r.Purchase != nil {
				out = append(out, *r.Purchase)
			}
		}
		return out
	}
	a, b, c := purchases(8), purchases(8), purchases(9)
	if len(a) == 0 || !reflect.DeepEqual(a, b) {
		t.Fatalf("same seed: %d and %d purchases, equal %v", len(a), len(b), reflect.DeepEqual(a, b))
	}
	if len(c) > 0 && c[0].OrderID == a[0].OrderID {
		t.Fatalf("another seed, the same first order %s", a[0].OrderID)
	}
}

// TestPurchasePlaceRequest: the storefront order behind a purchase has its
// id, customer and lines, in order.
func TestPurchasePlaceRequest(t *testing.T) {
	tests := []struct {
		name string
		give clickgen.Purchase
		want storefront.PlaceRequest
	}{
		{
			name: "two lines",
			give: clickgen.Purchase{OrderID: "o-1", CustomerID: "u-000007", At: time.Unix(1, 0),
				Lines: []clickgen.PurchaseLine{{ProductID: "p-00001", Quantity: 2}, {ProductID: "p-00042", Quantity: 1}}},
			want: storefront.PlaceRequest{ID: "o-1", CustomerID: "u-000007",
				Lines: []storefront.PlaceLine{{ProductID: "p-00001", Quantity: 2}, {ProductID: "p-00042", Quantity: 1}}},
		},
		{
			name: "no lines",
			give: clickgen.Purchase{OrderID: "o-2", CustomerID: "u-000001"},
			want: storefront.PlaceRequest{ID: "o-2", CustomerID: "u-000001", Lines: []storefront.PlaceLine{}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.give.PlaceRequest(); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("PlaceRequest() = %+v, want %+v", got, tt.want)
			}
		})
	}
}
