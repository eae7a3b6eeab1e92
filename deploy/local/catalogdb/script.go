package catalogdb

import (
	"context"
	"fmt"
	"io"
	"slices"

	"github.com/ecomstream/platform/deploy/local/seed"
)

// ScriptMinProducts and ScriptMinCustomers are the smallest seed Script works on.
const (
	ScriptMinProducts  = 13
	ScriptMinCustomers = 6
)

// Script is the end-to-end test's history: a deterministic list of
// transactions over a schema loaded by Init from ids, covering every kind of
// change and every bad kind, a delete then re-create of one key (in two
// transactions and in one), a change that alters no tracked attribute,
// several changes of one row in one transaction, a product and a customer in
// one transaction, and a burst.
func Script(ids *seed.Set) ([]Tx, error) {
	if len(ids.Products) < ScriptMinProducts || len(ids.Customers) < ScriptMinCustomers {
		return nil, fmt.Errorf("catalogdb: script needs at least %d products and %d customers, the seed has %d and %d",
			ScriptMinProducts, ScriptMinCustomers, len(ids.Products), len(ids.Customers))
	}
	p := func(n int) seed.Product { return ids.Products[n-1] }
	row := func(n int) ProductRow {
		sp := p(n)
		return ProductRow{ProductID: sp.ProductID, SKU: sp.SKU, Name: sp.Name, Category: &sp.Category, Brand: &sp.Brand, PriceMinor: sp.PriceMinor, Currency: sp.Currency}
	}
	u := func(n int) seed.Customer { return ids.Customers[n-1] }
	otherCountry := func(n int) string {
		if u(n).Country == "DE" {
			return "FR"
		}
		return "DE"
	}
	otherCategory := func(n int) string {
		cats := seed.Categories()
		i := slices.Index(cats, p(n).Category)
		return cats[(i+1)%len(cats)]
	}
	newP1 := newProduct(len(ids.Products)+1, row(1), true, "Gen 2", 110)
	newP2 := newProduct(len(ids.Products)+2, row(2), true, "Limited", 90)
	recreated := newProduct(5, row(5), true, "Refresh", 120)
	recreated13 := newProduct(13, row(13), true, "Eco Line", 95)
	newU := seed.CustomerID(len(ids.Customers) + 1)
	one := func(name string, cs ...Change) Tx { return Tx{Name: name, Changes: cs} }

	return []Tx{
		one("price change", Change{Kind: PriceChange, Key: p(1).ProductID, PriceMinor: charm(p(1).PriceMinor * 110 / 100)}),
		one("sale starts", Change{Kind: SaleStart, Key: p(2).ProductID, PriceMinor: charm(p(2).PriceMinor * 70 / 100)}),
		one("rename", Change{Kind: Rename, Key: p(3).ProductID, Name: p(3).Name + " (Gen 2)"}),
		one("recategorize", Change{Kind: Recategorize, Key: p(11).ProductID, Category: otherCategory(11)}),
		one("new product", Change{Kind: NewProduct, Key: newP1.ProductID, Product: newP1}),
		one("new product changed twice in its own transaction",
			Change{Kind: NewProduct, Key: newP2.ProductID, Product: newP2},
			Change{Kind: PriceChange, Key: newP2.ProductID, PriceMinor: charm(newP2.PriceMinor * 120 / 100)},
			Change{Kind: Rename, Key: newP2.ProductID, Name: newP2.Name + " (Plus)"}),
		one("three changes of one row in one transaction",
			Change{Kind: PriceChange, Key: p(7).ProductID, PriceMinor: charm(p(7).PriceMinor * 95 / 100)},
			Change{Kind: Rename, Key: p(7).ProductID, Name: p(7).Name + " (Refresh)"},
			Change{Kind: PriceChange, Key: p(7).ProductID, PriceMinor: charm(p(7).PriceMinor * 90 / 100)}),
		one("touch: no tracked attribute changes", Change{Kind: Touch, Key: p(6).ProductID}),
		one("discontinued (soft delete)", Change{Kind: Discontinue, Key: p(4).ProductID}),
		one("hard delete", Change{Kind: DeleteProduct, Key: p(5).ProductID}),
		one("sale ends", Change{Kind: SaleEnd, Key: p(2).ProductID, PriceMinor: p(2).PriceMinor}),
		one("deleted key re-created", Change{Kind: NewProduct, Key: recreated.ProductID, Product: recreated}),
		one("discontinued product hard-deleted", Change{Kind: DeleteProduct, Key: p(4).ProductID}),
		one("delete and re-create in one transaction",
			Change{Kind: DeleteProduct, Key: p(13).ProductID},
			Change{Kind: NewProduct, Key: recreated13.ProductID, Product: recreated13}),
		one("bad: negative price", Change{Kind: PriceChange, Bad: NegativePrice, Key: p(8).ProductID, PriceMinor: -p(8).PriceMinor}),
		one("bad: unknown category", Change{Kind: Recategorize, Bad: UnknownCategory, Key: p(9).ProductID, Category: BadCategories[0]}),
		one("bad: empty name", Change{Kind: Rename, Bad: EmptyName, Key: p(10).ProductID, Name: ""}),
		one("customer moves", Change{Kind: CustomerMove, Key: u(3).CustomerID, Country: otherCountry(3)}),
		one("customer changes email", Change{Kind: CustomerEmail, Key: u(4).CustomerID, Email: "moved." + u(4).Email}),
		one("new customer", Change{Kind: NewCustomer, Key: newU, Customer: &CustomerRow{CustomerID: newU, Email: "ada.lindqvist." + newU + "@example.org", Name: "Ada Lindqvist", Country: "SE"}}),
		one("bad: malformed email", Change{Kind: CustomerEmail, Bad: MalformedEmail, Key: u(1).CustomerID, Email: "no-at-sign.example.com"}),
		one("bad: unknown country", Change{Kind: CustomerMove, Bad: UnknownCountry, Key: u(2).CustomerID, Country: BadCountry}),
		one("customer deleted", Change{Kind: DeleteCustomer, Key: u(5).CustomerID}),
		one("deleted customer re-created", Change{Kind: NewCustomer, Key: u(5).CustomerID, Customer: &CustomerRow{CustomerID: u(5).CustomerID, Email: "again." + u(5).Email, Name: u(5).Name, Country: u(5).Country}}),
		one("a product and a customer in one transaction",
			Change{Kind: PriceChange, Key: p(12).ProductID, PriceMinor: charm(p(12).PriceMinor * 105 / 100)},
			Change{Kind: CustomerMove, Key: u(6).CustomerID, Country: otherCountry(6)}),
		one("burst: a category re-priced in one transaction", Change{Kind: CategoryReprice, Key: "toys", Percent: 10}),
		one("bad price corrected", Change{Kind: PriceChange, Key: p(8).ProductID, PriceMinor: p(8).PriceMinor}),
	}, nil
}

// ApplyScript applies the transactions in order, writing every entry to log
// (nil = none) after its transaction commits, and returns all entries.
func ApplyScript(ctx context.Context, db DB, schema string, script []Tx, log io.Writer) ([]Entry, error) {
	var all []Entry
	for i, tx := range script {
		entries, err := Apply(ctx, db, schema, tx)
		if err != nil {
			return all, fmt.Errorf("catalogdb: script step %d (%s): %w", i+1, tx.Name, err)
		}
		if log != nil {
			if err := WriteLog(log, entries); err != nil {
				return all, err
			}
		}
		all = append(all, entries...)
	}
	return all, nil
}
