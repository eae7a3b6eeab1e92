package clickgen

import (
	"slices"
	"strings"

	"github.com/ecomstream/platform/deploy/local/seed"
)

// The catalog is the shared id seed's (deploy/local/seed, default seed
// number): the same products, names, categories and prices as the storefront
// simulator's orders and the catalog in PostgreSQL, so clicks, orders and
// products join on product_id. It does not depend on WithSeed.

// DefaultProducts is the catalog size: every product of the seed.
const DefaultProducts = seed.DefaultProducts

// Product is one catalog entry as the storefront shows it.
type Product struct {
	ID       string // "p-00042"
	Name     string
	Category string // category slug, e.g. "electronics"
	Brand    string
	// PriceMinor is the list price in minor units (cents; yen for JPY) per
	// currency code: USD, EUR, GBP and JPY.
	PriceMinor map[string]int64
}

// product is the hot-path form of Product: array-indexed prices, and the URL
// path precomputed because every product_view and add_to_cart needs it.
type product struct {
	id       string
	name     string
	category int
	brand    string
	path     string // "/p/p-00042/northpeak-trail-runner-pro"
	price    [numCurrencies]int64
}

// Catalog returns the products the generator uses. It is the same for every
// seed and every call.
func Catalog() []Product {
	ps := buildCatalog(DefaultProducts)
	out := make([]Product, len(ps))
	for i, p := range ps {
		prices := make(map[string]int64, numCurrencies)
		for c, code := range currencyCodes {
			prices[code] = p.price[c]
		}
		out[i] = Product{
			ID:         p.id,
			Name:       p.name,
			Category:   categories[p.category].slug,
			Brand:      p.brand,
			PriceMinor: prices,
		}
	}
	return out
}

func buildCatalog(n int) []product {
	ps := make([]product, n)
	for i, sp := range seed.Generate(seed.DefaultSeed, 0, n).Products {
		ci := slices.IndexFunc(categories, func(c category) bool { return c.slug == sp.Category })
		if ci < 0 {
			ci = 0 // cannot happen: the seed's categories are these; keep the generator running
		}
		var price [numCurrencies]int64
		for c, code := range currencyCodes {
			price[c] = seed.PriceIn(sp, code)
		}
		ps[i] = product{
			id:       sp.ProductID,
			name:     sp.Name,
			category: ci,
			brand:    sp.Brand,
			path:     "/p/" + sp.ProductID + "/" + slugify(sp.Name),
			price:    price,
		}
	}
	return ps
}

func slugify(s string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(s) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
			dash = false
		case !dash && b.Len() > 0:
			b.WriteByte('-')
			dash = true
		}
	}
	return strings.TrimSuffix(b.String(), "-")
}
