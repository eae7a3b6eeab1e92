package clickgen

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
)

// catalogSeed is fixed, not derived from WithSeed, so "p-00042" names the same
// product with the same prices in every run: a shop database seeded from
// Catalog() and clickstream from any seed join on product_id.
const catalogSeed = 0xc47a106

// DefaultProducts is the catalog size: a few hundred products is enough for a
// long tail and small enough that every product gets some traffic.
const DefaultProducts = 500

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
	rng := rand.New(rand.NewPCG(catalogSeed, catalogSeed))
	catPick := newWeighted(categories, func(c category) float64 { return c.weight })
	ps := make([]product, n)
	for i := range ps {
		ci := catPick.pick(rng)
		c := categories[ci]
		brand := c.brands[rng.IntN(len(c.brands))]
		name := brand + " " + c.nouns[rng.IntN(len(c.nouns))] + " " + productAdjectives[rng.IntN(len(productAdjectives))]
		id := fmt.Sprintf("p-%05d", i+1)
		// Skew prices towards the cheap end of the range: most catalogs have
		// many inexpensive items and a few expensive ones.
		f := rng.Float64()
		usd := c.minUSD + int(f*f*float64(c.maxUSD-c.minUSD))
		ps[i] = product{
			id:       id,
			name:     name,
			category: ci,
			brand:    brand,
			path:     "/p/" + id + "/" + slugify(name),
			price:    localPrices(usd),
		}
	}
	return ps
}

// localPrices turns a whole-dollar list price into charm prices per currency.
func localPrices(usd int) [numCurrencies]int64 {
	var out [numCurrencies]int64
	for c := range numCurrencies {
		v := float64(usd) * usdRate[c]
		if currencyMinorDigits[c] == 0 {
			out[c] = int64(math.Max(10, math.Round(v/10)*10)) // 2480 yen
			continue
		}
		out[c] = int64(math.Max(1, math.Floor(v)))*100 + 99 // 19.99
		out[c] -= 100                                       // 20 -> 19.99, not 20.99
		if out[c] < 99 {
			out[c] = 99
		}
	}
	return out
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
