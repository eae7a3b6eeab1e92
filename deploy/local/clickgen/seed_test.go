package clickgen_test

import (
	"encoding/json"
	"testing"

	"github.com/ecomstream/platform/deploy/local/clickgen"
	"github.com/ecomstream/platform/deploy/local/seed"
)

// TestIDsComeFromTheSeed: every user_id and product_id in the clickstream is
// a customer or product of the shared id seed, a logged-in visitor browses
// from the customer's country, and prices are the seed's prices, so the
// warehouse can join clicks to orders, products and customers.
func TestIDsComeFromTheSeed(t *testing.T) {
	ids := seed.Default()
	customers := map[string]seed.Customer{}
	for _, c := range ids.Customers {
		customers[c.CustomerID] = c
	}
	products := map[string]seed.Product{}
	for _, p := range ids.Products {
		products[p.ProductID] = p
	}
	for _, p := range clickgen.Catalog() {
		sp, ok := products[p.ID]
		if !ok || sp.Name != p.Name || sp.Category != p.Category || p.PriceMinor["USD"] != sp.PriceMinor || p.PriceMinor["EUR"] != seed.PriceIn(sp, "EUR") {
			t.Fatalf("catalog product %+v is not seed product %+v", p, sp)
		}
	}
	recs, _ := generate(50_000, clickgen.WithSeed(11), clickgen.WithBrokenFraction(0))
	users := 0
	for _, r := range recs {
		var e struct {
			UserID    *string `json:"user_id"`
			ProductID *string `json:"product_id"`
			Geo       *struct {
				Country string `json:"country"`
			} `json:"geo"`
		}
		if err := json.Unmarshal(r.Value, &e); err != nil {
			t.Fatal(err)
		}
		if e.UserID != nil {
			users++
			c, ok := customers[*e.UserID]
			if !ok {
				t.Fatalf("user_id %s is not a seed customer", *e.UserID)
			}
			if e.Geo != nil && e.Geo.Country != c.Country {
				t.Fatalf("user %s browses from %s, lives in %s", c.CustomerID, e.Geo.Country, c.Country)
			}
		}
		if e.ProductID != nil {
			if _, ok := products[*e.ProductID]; !ok {
				t.Fatalf("product_id %s is not a seed product", *e.ProductID)
			}
		}
	}
	if users == 0 {
		t.Fatal("no logged-in events")
	}
}
