package catalogdb

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/ecomstream/platform/deploy/local/seed"
)

// State is the generator's view of the tables: what a change may refer to.
// Load it with LoadState; the generator keeps it up to date from the log
// entries of applied changes (Observe).
type State struct {
	Products  map[string]ProductRow
	Customers map[string]CustomerRow
	// Sales maps a product on sale to its list price, restored by SaleEnd.
	Sales map[string]int64
}

// LoadState reads the current rows of the schema.
func LoadState(ctx context.Context, db DB, schema string) (*State, error) {
	st := &State{Products: map[string]ProductRow{}, Customers: map[string]CustomerRow{}, Sales: map[string]int64{}}
	rows, err := db.Query(ctx, "SELECT "+productCols+" FROM "+pgx.Identifier{schema, "products"}.Sanitize())
	if err != nil {
		return nil, fmt.Errorf("catalogdb: load products: %w", err)
	}
	ps, err := pgx.CollectRows(rows, pgx.RowToStructByName[ProductRow])
	if err != nil {
		return nil, fmt.Errorf("catalogdb: load products: %w", err)
	}
	for _, p := range ps {
		st.Products[p.ProductID] = p
	}
	rows, err = db.Query(ctx, "SELECT "+customerCols+" FROM "+pgx.Identifier{schema, "customers"}.Sanitize())
	if err != nil {
		return nil, fmt.Errorf("catalogdb: load customers: %w", err)
	}
	cs, err := pgx.CollectRows(rows, pgx.RowToStructByName[CustomerRow])
	if err != nil {
		return nil, fmt.Errorf("catalogdb: load customers: %w", err)
	}
	for _, c := range cs {
		st.Customers[c.CustomerID] = c
	}
	return st, nil
}

// Generator makes random changes like a shop's: deterministic for a seed and a starting State.
type Generator struct {
	rng       *rand.Rand
	st        *State
	bad       float64
	products  []string // sorted ids, for deterministic picks
	customers []string
	countries []string
	nextP     int
	nextC     int
	emails    int
}

// weights of the good kinds a generated change is drawn from (CategoryReprice is the burst's).
var weights = []struct {
	kind Kind
	w    int
}{
	{PriceChange, 18}, {SaleStart, 10}, {SaleEnd, 10}, {Rename, 7}, {Recategorize, 3}, {Touch, 4},
	{NewProduct, 8}, {Discontinue, 5}, {DeleteProduct, 3},
	{CustomerMove, 10}, {CustomerEmail, 10}, {NewCustomer, 9}, {DeleteCustomer, 3},
}

// hosts are the kinds a bad change can be made of.
var hosts = map[Bad][]Kind{
	NegativePrice:   {PriceChange, NewProduct},
	UnknownCategory: {Recategorize, NewProduct},
	EmptyName:       {Rename, NewProduct},
	MalformedEmail:  {CustomerEmail, NewCustomer},
	UnknownCountry:  {CustomerMove, NewCustomer},
}

// NewGenerator returns a generator over st (which it owns from now on) with
// a share badFraction of bad changes.
func NewGenerator(rngSeed uint64, st *State, badFraction float64) *Generator {
	g := &Generator{rng: rand.New(rand.NewPCG(rngSeed, 0xca7a)), st: st, bad: badFraction, nextP: 1, nextC: 1}
	countries := map[string]bool{}
	for id, c := range st.Customers {
		g.customers = append(g.customers, id)
		if len(c.Country) == 2 && c.Country != BadCountry {
			countries[c.Country] = true
		}
		g.nextC = max(g.nextC, idNumber(id)+1)
	}
	for id := range st.Products {
		g.products = append(g.products, id)
		g.nextP = max(g.nextP, idNumber(id)+1)
	}
	for c := range countries {
		g.countries = append(g.countries, c)
	}
	if len(g.countries) < 2 {
		g.countries = []string{"US", "GB", "DE", "FR", "JP"}
	}
	slices.Sort(g.products)
	slices.Sort(g.customers)
	slices.Sort(g.countries)
	return g
}

// idNumber is the number of "p-00042" or "u-000042" (0 if it has none).
func idNumber(id string) int {
	_, num, _ := strings.Cut(id, "-")
	n, _ := strconv.Atoi(num)
	return n
}

// Next returns the next change, a transaction of one statement.
func (g *Generator) Next() Tx {
	for range 100 {
		var c Change
		var ok bool
		if g.rng.Float64() < g.bad {
			bad := BadKinds()[g.rng.IntN(len(BadKinds()))]
			hs := hosts[bad]
			c, ok = g.make(hs[g.rng.IntN(len(hs))], bad)
		} else {
			c, ok = g.make(g.pickKind(), "")
		}
		if ok {
			return Tx{Changes: []Change{c}}
		}
	}
	// Nothing to change (an empty shop): open one.
	c, _ := g.make(NewProduct, "")
	return Tx{Changes: []Change{c}}
}

// Burst returns a bulk re-price of one category (5-15% up or down), one transaction.
func (g *Generator) Burst() Tx {
	cats := seed.Categories()
	pct := 5 + g.rng.IntN(11)
	if g.rng.IntN(2) == 0 {
		pct = -pct
	}
	return Tx{Name: "burst", Changes: []Change{{Kind: CategoryReprice, Key: cats[g.rng.IntN(len(cats))], Percent: pct}}}
}

func (g *Generator) pickKind() Kind {
	total := 0
	for _, w := range weights {
		total += w.w
	}
	u := g.rng.IntN(total)
	for _, w := range weights {
		if u < w.w {
			return w.kind
		}
		u -= w.w
	}
	return PriceChange
}

// pick returns a random id of ids for which ok holds (a few tries).
func (g *Generator) pick(ids []string, ok func(string) bool) (string, bool) {
	for range 20 {
		if len(ids) == 0 {
			return "", false
		}
		if id := ids[g.rng.IntN(len(ids))]; ok(id) {
			return id, true
		}
	}
	return "", false
}

func (g *Generator) liveProduct(id string) bool {
	p, ok := g.st.Products[id]
	return ok && p.DeletedAt == nil
}

func (g *Generator) offSale(id string) bool {
	_, on := g.st.Sales[id]
	return g.liveProduct(id) && !on && g.st.Products[id].PriceMinor > 0
}

// make builds a change of kind k (bad if bad != ""); false when no row fits.
func (g *Generator) make(k Kind, bad Bad) (Change, bool) {
	c := Change{Kind: k, Bad: bad}
	var ok bool
	switch k {
	case PriceChange:
		if c.Key, ok = g.pick(g.products, g.offSale); ok {
			old := g.st.Products[c.Key].PriceMinor
			pct := 3 + g.rng.IntN(23) // 3-25%
			if g.rng.IntN(3) == 0 {
				pct = -pct
			}
			c.PriceMinor = charm(old * int64(100+pct) / 100)
			if bad == NegativePrice {
				c.PriceMinor = -c.PriceMinor
			}
		}
	case SaleStart:
		if c.Key, ok = g.pick(g.products, g.offSale); ok {
			c.PriceMinor = charm(g.st.Products[c.Key].PriceMinor * int64(100-[]int{10, 15, 20, 25, 30, 40, 50}[g.rng.IntN(7)]) / 100)
		}
	case SaleEnd:
		var on []string
		for id := range g.st.Sales {
			on = append(on, id)
		}
		slices.Sort(on)
		if c.Key, ok = g.pick(on, g.liveProduct); ok {
			c.PriceMinor = g.st.Sales[c.Key]
		}
	case Rename:
		if c.Key, ok = g.pick(g.products, g.liveProduct); ok {
			base, _, _ := strings.Cut(g.st.Products[c.Key].Name, " (")
			c.Name = base + " (" + editions[g.rng.IntN(len(editions))] + ")"
			if bad == EmptyName {
				c.Name = ""
			}
		}
	case Recategorize:
		if c.Key, ok = g.pick(g.products, g.liveProduct); ok {
			cats := seed.Categories()
			c.Category = cats[g.rng.IntN(len(cats))]
			if bad == UnknownCategory {
				c.Category = BadCategories[g.rng.IntN(len(BadCategories))]
			}
		}
	case Touch:
		c.Key, ok = g.pick(g.products, g.liveProduct)
	case Discontinue:
		c.Key, ok = g.pick(g.products, g.liveProduct)
	case DeleteProduct:
		c.Key, ok = g.pick(g.products, func(string) bool { return true })
	case NewProduct:
		tmpl, found := g.pick(g.products, func(string) bool { return true })
		n := g.nextP
		g.nextP++
		p := newProduct(n, g.st.Products[tmpl], found, editions[g.rng.IntN(len(editions))], 80+g.rng.IntN(41))
		switch bad {
		case NegativePrice:
			p.PriceMinor = -p.PriceMinor
		case UnknownCategory:
			p.Category = &BadCategories[g.rng.IntN(len(BadCategories))]
		case EmptyName:
			p.Name = ""
		}
		c.Key, c.Product, ok = p.ProductID, p, true
	case CustomerMove:
		if c.Key, ok = g.pick(g.customers, g.liveCustomer); ok {
			cur := g.st.Customers[c.Key].Country
			for c.Country = cur; c.Country == cur; {
				c.Country = g.countries[g.rng.IntN(len(g.countries))]
			}
			if bad == UnknownCountry {
				c.Country = BadCountry
			}
		}
	case CustomerEmail:
		if c.Key, ok = g.pick(g.customers, g.liveCustomer); ok {
			c.Email = g.newEmail(g.st.Customers[c.Key].Email, bad == MalformedEmail)
		}
	case DeleteCustomer:
		c.Key, ok = g.pick(g.customers, func(string) bool { return true })
	case NewCustomer:
		n := g.nextC
		g.nextC++
		first := []string{"Ada", "Björn", "Chiara", "Dmitri", "Elif", "Farah", "Gustavo", "Hana"}[g.rng.IntN(8)]
		last := []string{"Lindqvist", "Okafor", "Moreau", "Novak", "Yilmaz", "Costa", "Ito", "Walsh"}[g.rng.IntN(8)]
		u := &CustomerRow{CustomerID: seed.CustomerID(n), Name: first + " " + last, Country: g.countries[g.rng.IntN(len(g.countries))],
			Email: fmt.Sprintf("%s.%s.%d@example.com", strings.ToLower(asciiFold(first)), strings.ToLower(asciiFold(last)), n)}
		switch bad {
		case MalformedEmail:
			u.Email = strings.Replace(u.Email, "@", ".at.", 1)
		case UnknownCountry:
			u.Country = BadCountry
		}
		c.Key, c.Customer, ok = u.CustomerID, u, true
	}
	return c, ok
}

func (g *Generator) liveCustomer(id string) bool {
	u, ok := g.st.Customers[id]
	return ok && u.DeletedAt == nil
}

// newEmail is another address of the same person: a new mailbox number at another domain.
func (g *Generator) newEmail(old string, malformed bool) string {
	g.emails++
	local, _, _ := strings.Cut(old, "@")
	local, _, _ = strings.Cut(local, "+")
	email := fmt.Sprintf("%s+%d@%s", local, g.emails, []string{"example.com", "example.net", "example.org"}[g.rng.IntN(3)])
	if malformed {
		email = strings.Replace(email, "@", ".at.", 1)
	}
	return email
}

var editions = []string{"2027 Edition", "Gen 2", "Plus", "Limited", "Refresh", "Pro Series", "Eco Line"}

// newProduct is product number n, modelled on tmpl: same category, brand and
// currency, the price scaled by pricePct percent.
func newProduct(n int, tmpl ProductRow, found bool, edition string, pricePct int) *ProductRow {
	cats := seed.Categories()
	p := &ProductRow{ProductID: seed.ProductID(n), Currency: "USD", PriceMinor: 1999, Name: "Essential Item " + edition, Category: &cats[n%len(cats)]}
	prefix := "NEW"
	if found {
		base, _, _ := strings.Cut(tmpl.Name, " (")
		p.Name, p.Category, p.Brand, p.Currency = base+" "+edition, tmpl.Category, tmpl.Brand, tmpl.Currency
		if p.Category == nil || !slices.Contains(seed.Categories(), *p.Category) {
			// The template is a bad change's product: do not copy its defect.
			p.Category = &seed.Categories()[n%len(seed.Categories())]
		}
		if strings.TrimSpace(base) == "" {
			p.Name = "Essential Item " + edition
		}
		if tmpl.PriceMinor > 0 {
			p.PriceMinor = charm(tmpl.PriceMinor * int64(pricePct) / 100)
		}
		if pre, _, ok := strings.Cut(tmpl.SKU, "-"); ok {
			prefix = pre
		}
	}
	p.SKU = fmt.Sprintf("%s-%05d", prefix, n)
	return p
}

// charm rounds a positive price to the nearest x.99 (at least 0.99).
func charm(minor int64) int64 {
	if minor <= 0 {
		return minor
	}
	return max((minor+50)/100*100-1, 99)
}

func asciiFold(s string) string {
	r := strings.NewReplacer("ö", "o", "é", "e", "ü", "u", "ç", "c", "ı", "i")
	return r.Replace(s)
}

// Observe updates the generator's state with applied changes.
func (g *Generator) Observe(entries []Entry) {
	for _, e := range entries {
		switch {
		case e.Product != nil:
			id := e.Product.ProductID
			_, known := g.st.Products[id]
			if e.Op == "delete" {
				delete(g.st.Products, id)
				delete(g.st.Sales, id)
				g.products = remove(g.products, id)
				continue
			}
			switch e.Kind {
			case SaleStart:
				g.st.Sales[id] = g.st.Products[id].PriceMinor
			case SaleEnd, PriceChange, Discontinue:
				delete(g.st.Sales, id)
			case CategoryReprice:
				if list, on := g.st.Sales[id]; on {
					g.st.Sales[id] = charm(list * e.Product.PriceMinor / max(g.st.Products[id].PriceMinor, 1))
				}
			}
			g.st.Products[id] = *e.Product
			if !known {
				g.products = insert(g.products, id)
			}
		case e.Customer != nil:
			id := e.Customer.CustomerID
			_, known := g.st.Customers[id]
			if e.Op == "delete" {
				delete(g.st.Customers, id)
				g.customers = remove(g.customers, id)
				continue
			}
			g.st.Customers[id] = *e.Customer
			if !known {
				g.customers = insert(g.customers, id)
			}
		}
	}
}

func remove(ids []string, id string) []string {
	if i, ok := slices.BinarySearch(ids, id); ok {
		return slices.Delete(ids, i, i+1)
	}
	return ids
}

func insert(ids []string, id string) []string {
	if i, ok := slices.BinarySearch(ids, id); !ok {
		return slices.Insert(ids, i, id)
	}
	return ids
}
