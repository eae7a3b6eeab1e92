// Package seed is the shared id seed of the local world: the customers and
// products that the storefront simulator sells to and from, that clickgen's
// visitors log in as and look at, and that the catalog issue loads into
// PostgreSQL. Every component that generates data about the shop draws its
// ids from here, so the warehouse can join clicks, orders, products and
// customers.
//
// The seed is generated in code, deterministically from a seed number: the
// same number gives the same rows, byte for byte, in every program and on
// every machine (math/rand/v2's PCG is specified, not platform-dependent).
// The shape is a contract (documented in deploy/local/README.md, "The id
// seed"): ids are dense and stable, so "u-000042" and "p-00042" are the same
// customer and product everywhere.
package seed

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"time"
)

// Defaults: tens of thousands of customers, a few thousand products.
const (
	DefaultSeed      uint64 = 20261201
	DefaultCustomers        = 20000
	DefaultProducts         = 2000
)

// Customer is one row of the customers table.
type Customer struct {
	CustomerID string    `json:"customer_id"` // "u-000042", dense from u-000001
	Email      string    `json:"email"`       // unique, lower case, @example.com/.net/.org (RFC 2606)
	Name       string    `json:"name"`
	Country    string    `json:"country"`    // ISO 3166-1 alpha-2
	CreatedAt  time.Time `json:"created_at"` // UTC, whole seconds
}

// Product is one row of the products table. PriceMinor is the list price in
// Currency (always USD in the seed); PriceIn gives the storefront price in
// the other currencies.
type Product struct {
	ProductID  string `json:"product_id"` // "p-00042", dense from p-00001
	SKU        string `json:"sku"`        // "SHO-00042": category prefix + the product number
	Name       string `json:"name"`
	Category   string `json:"category"` // slug, one of Categories()
	Brand      string `json:"brand"`
	PriceMinor int64  `json:"price_minor"` // > 0, minor units (cents)
	Currency   string `json:"currency"`    // ISO 4217
}

// Set is a generated seed.
type Set struct {
	Seed      uint64
	Customers []Customer
	Products  []Product
}

// Default returns the seed every local component uses unless told otherwise.
// It is built once and shared: callers must not modify it.
func Default() *Set { return defaultSet() }

var defaultSet = sync.OnceValue(func() *Set { return Generate(DefaultSeed, DefaultCustomers, DefaultProducts) })

// Generate builds customers and products from a seed number. Customers and
// products use separate random streams, so changing one count does not
// change the other table, and a smaller count gives a prefix of a larger one.
func Generate(seed uint64, customers, products int) *Set {
	return &Set{
		Seed:      seed,
		Customers: genCustomers(seed, max(customers, 0)),
		Products:  genProducts(seed, max(products, 0)),
	}
}

// CustomerID and ProductID format the dense ids, for callers that pick by number.
func CustomerID(n int) string { return fmt.Sprintf("u-%06d", n) }
func ProductID(n int) string  { return fmt.Sprintf("p-%05d", n) }

// CurrencyFor is the currency a customer in the country pays in: the
// storefront sells in USD, EUR, GBP and JPY only.
func CurrencyFor(country string) string {
	for _, c := range countries {
		if c.code == country {
			return c.currency
		}
	}
	return "USD"
}

// MinorDigits is the number of fraction digits of a currency (ISO 4217).
func MinorDigits(currency string) int {
	if currency == "JPY" {
		return 0
	}
	return 2
}

var usdRate = map[string]float64{"USD": 1, "EUR": 0.92, "GBP": 0.79, "JPY": 150}

// PriceIn converts a product's USD list price into a storefront currency as a
// "charm" price: x.99, or a multiple of 10 yen. Unknown currencies give the
// USD price.
func PriceIn(p Product, currency string) int64 {
	rate, ok := usdRate[currency]
	if !ok || currency == p.Currency {
		return p.PriceMinor
	}
	v := float64(p.PriceMinor) / 100 * rate
	if MinorDigits(currency) == 0 {
		return int64(math.Max(10, math.Round(v/10)*10))
	}
	return max(int64(math.Floor(v))*100-1, 99)
}

type countryRow struct {
	code     string
	weight   float64
	currency string
}

// countries: the same markets and rough weights as clickgen's storefronts.
var countries = []countryRow{
	{"US", 38, "USD"}, {"GB", 10, "GBP"}, {"DE", 9, "EUR"}, {"FR", 6, "EUR"}, {"JP", 6, "JPY"},
	{"CA", 5, "USD"}, {"NL", 3, "EUR"}, {"ES", 3, "EUR"}, {"IT", 3, "EUR"}, {"AU", 3, "USD"},
	{"BR", 2, "USD"}, {"IN", 2, "USD"}, {"IE", 1, "EUR"}, {"MX", 1, "USD"},
}

// A few non-ASCII names on purpose, so UTF-8 travels through every table.
var firstNames = []string{
	"Emma", "Liam", "Olivia", "Noah", "Ava", "Lucas", "Mia", "Leon", "Sofia", "Hugo",
	"Chloé", "Jonas", "Léa", "Mateo", "Hannah", "Yuki", "Haruto", "Aoife", "Seán", "Zoë",
	"Priya", "Arjun", "Camila", "João", "Isabella", "Finn", "Maja", "Lars", "Amélie", "Diego",
}

var lastNames = []string{
	"Smith", "Johnson", "Brown", "Garcia", "Miller", "Müller", "Schmidt", "Martin", "Bernard",
	"Dubois", "Rossi", "Bianchi", "Tanaka", "Sato", "Suzuki", "Murphy", "O'Brien", "Kelly",
	"de Jong", "Jansen", "López", "Fernández", "Silva", "Santos", "Patel", "Sharma", "Wilson",
	"Taylor", "Nguyen", "Kowalski",
}

var emailDomains = []string{"example.com", "example.net", "example.org"}

var (
	customersFrom = time.Date(2022, 1, 1, 0, 0, 0, 0, time.UTC)
	customersTo   = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
)

func genCustomers(seed uint64, n int) []Customer {
	rng := rand.New(rand.NewPCG(seed, 0xc057))
	var total float64
	for _, c := range countries {
		total += c.weight
	}
	span := int64(customersTo.Sub(customersFrom) / time.Second)
	out := make([]Customer, n)
	for i := range out {
		first := firstNames[rng.IntN(len(firstNames))]
		last := lastNames[rng.IntN(len(lastNames))]
		u := rng.Float64() * total
		country := countries[len(countries)-1].code
		for _, c := range countries {
			if u < c.weight {
				country = c.code
				break
			}
			u -= c.weight
		}
		// Customers sign up in id order, as rows of a real table do, at a
		// pace that does not depend on n (so a smaller set is a prefix).
		created := customersFrom.Add(time.Duration(span*int64(i)/DefaultCustomers+rng.Int64N(3600)) * time.Second)
		out[i] = Customer{
			CustomerID: CustomerID(i + 1),
			// The id in the address keeps emails unique without a lookup.
			Email:     fmt.Sprintf("%s.%s.%d@%s", asciiLocal(first), asciiLocal(last), i+1, emailDomains[rng.IntN(len(emailDomains))]),
			Name:      first + " " + last,
			Country:   country,
			CreatedAt: created,
		}
	}
	return out
}

type categoryRow struct {
	slug           string
	prefix         string
	weight         float64
	minUSD, maxUSD int
	nouns, brands  []string
}

// categories: the same categories, brands and price ranges as clickgen's.
var categories = []categoryRow{
	{"shoes", "SHO", 14, 39, 189, []string{"Running Shoe", "Trail Runner", "Sneaker", "Hiking Boot", "Sandal"}, []string{"Northpeak", "Strider", "Velo"}},
	{"apparel", "APP", 18, 12, 149, []string{"T-Shirt", "Hoodie", "Rain Jacket", "Leggings", "Fleece", "Chinos"}, []string{"Kestrel", "Urbanline", "Northpeak"}},
	{"electronics", "ELE", 16, 15, 399, []string{"Wireless Headphones", "Bluetooth Speaker", "Smartwatch", "USB-C Charger", "Earbuds", "Power Bank"}, []string{"Sonance", "Voltix", "Arcwave"}},
	{"home", "HOM", 14, 9, 249, []string{"Coffee Grinder", "Chef's Knife", "Cast Iron Pan", "Desk Lamp", "Throw Blanket"}, []string{"Hearth & Co", "Lumen", "Kitchenry"}},
	{"beauty", "BEA", 10, 4, 69, []string{"Face Serum", "Shampoo", "Lip Balm", "Sunscreen SPF 50"}, []string{"Dewly", "Pure Botanics"}},
	{"sports", "SPO", 12, 8, 229, []string{"Yoga Mat", "Dumbbell Set", "Water Bottle", "Bike Helmet", "Resistance Bands"}, []string{"Corefit", "Velo", "Northpeak"}},
	{"toys", "TOY", 8, 7, 89, []string{"Building Blocks", "Jigsaw Puzzle", "Plush Bear", "Board Game"}, []string{"Brickly", "Playwell"}},
	{"books", "BOO", 8, 8, 45, []string{"Cookbook", "Novel", "Travel Guide", "Field Notebook"}, []string{"Inkwell Press", "Harbor Books"}},
}

var adjectives = []string{"Classic", "Pro", "Lite", "Max", "Essential", "Everyday", "Ultra", "Eco", "Studio", "Trail", "Urban", "Compact"}

// Categories lists the category slugs in the seed.
func Categories() []string {
	out := make([]string, len(categories))
	for i, c := range categories {
		out[i] = c.slug
	}
	return out
}

func genProducts(seed uint64, n int) []Product {
	rng := rand.New(rand.NewPCG(seed, 0x960d))
	var total float64
	for _, c := range categories {
		total += c.weight
	}
	out := make([]Product, n)
	for i := range out {
		u := rng.Float64() * total
		c := categories[len(categories)-1]
		for _, cc := range categories {
			if u < cc.weight {
				c = cc
				break
			}
			u -= cc.weight
		}
		brand := c.brands[rng.IntN(len(c.brands))]
		name := brand + " " + c.nouns[rng.IntN(len(c.nouns))] + " " + adjectives[rng.IntN(len(adjectives))]
		// Skewed towards the cheap end: many inexpensive items, few expensive ones.
		f := rng.Float64()
		usd := c.minUSD + int(f*f*float64(c.maxUSD-c.minUSD))
		out[i] = Product{
			ProductID:  ProductID(i + 1),
			SKU:        fmt.Sprintf("%s-%05d", c.prefix, i+1),
			Name:       name,
			Category:   c.slug,
			Brand:      brand,
			PriceMinor: int64(usd)*100 - 1, // 19.99
			Currency:   "USD",
		}
	}
	return out
}

// asciiLocal makes a name usable in the local part of an email address.
func asciiLocal(s string) string {
	r := strings.NewReplacer("é", "e", "è", "e", "ë", "e", "ü", "u", "ó", "o", "á", "a", "ã", "a", "'", "", " ", "")
	return strings.ToLower(r.Replace(s))
}
