package catalogdb

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ecomstream/platform/deploy/local/seed"
)

// seedState is the State of a schema freshly loaded from a seed.
func seedState(customers, products int) *State {
	set := seed.Generate(seed.DefaultSeed, customers, products)
	st := &State{Products: map[string]ProductRow{}, Customers: map[string]CustomerRow{}, Sales: map[string]int64{}}
	for _, p := range set.Products {
		st.Products[p.ProductID] = ProductRow{ProductID: p.ProductID, SKU: p.SKU, Name: p.Name, Category: &p.Category,
			Brand: &p.Brand, PriceMinor: p.PriceMinor, Currency: p.Currency, IsActive: true, CreatedAt: ShopOpened, UpdatedAt: ShopOpened}
	}
	for _, c := range set.Customers {
		st.Customers[c.CustomerID] = CustomerRow{CustomerID: c.CustomerID, Email: c.Email, Name: c.Name, Country: c.Country,
			IsActive: true, CreatedAt: c.CreatedAt, UpdatedAt: c.CreatedAt}
	}
	return st
}

// simulate applies a change to the state as the database would, returning its entries.
func simulate(st *State, tx Tx) []Entry {
	var out []Entry
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	for _, c := range tx.Changes {
		e := Entry{Table: c.Kind.Table(), Op: c.Kind.Op(), Kind: c.Kind, Bad: c.Bad, Key: c.Key}
		if e.Table == "customers" {
			u, ok := st.Customers[c.Key]
			switch c.Kind {
			case NewCustomer:
				u, ok = *c.Customer, true
			case CustomerMove:
				u.Country = c.Country
			case CustomerEmail:
				u.Email = c.Email
			}
			if ok {
				e.Customer = &u
				out = append(out, e)
			}
			continue
		}
		if c.Kind == CategoryReprice {
			for _, p := range st.Products {
				if p.Category != nil && *p.Category == c.Key && p.DeletedAt == nil {
					p.PriceMinor = p.PriceMinor * int64(100+c.Percent) / 100
					e.Key, e.Product = p.ProductID, &p
					out = append(out, e)
				}
			}
			continue
		}
		p, ok := st.Products[c.Key]
		switch c.Kind {
		case NewProduct:
			p, ok = *c.Product, true
		case PriceChange, SaleStart, SaleEnd:
			p.PriceMinor = c.PriceMinor
		case Rename:
			p.Name = c.Name
		case Recategorize:
			p.Category = &c.Category
		case Discontinue:
			ok = ok && p.DeletedAt == nil
			p.IsActive, p.DeletedAt = false, &now
		}
		if ok {
			e.Product = &p
			out = append(out, e)
		}
	}
	return out
}

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestGeneratorDeterministic(t *testing.T) {
	run := func() []Tx {
		g := NewGenerator(7, seedState(200, 100), 0.2)
		var txs []Tx
		for range 300 {
			tx := g.Next()
			g.Observe(simulate(g.st, tx))
			txs = append(txs, tx)
		}
		return append(txs, g.Burst())
	}
	if a, b := run(), run(); !reflect.DeepEqual(a, b) {
		t.Fatal("the same seed and state gave two different change streams")
	}
}

// TestGeneratorKinds: over a long run every good kind and every bad kind
// occurs, bad changes are about the configured share, and each bad change
// carries its defect.
func TestGeneratorKinds(t *testing.T) {
	tests := []struct {
		bad      float64
		min, max float64
	}{{0, 0, 0}, {0.05, 0.03, 0.07}, {0.5, 0.45, 0.55}}
	countries := map[string]bool{}
	for _, c := range seed.Default().Customers {
		countries[c.Country] = true
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.bad), func(t *testing.T) {
			g := NewGenerator(1, seedState(2000, 500), tt.bad)
			kinds, bads := map[Kind]int{}, map[Bad]int{}
			const n = 4000
			for range n {
				tx := g.Next()
				if len(tx.Changes) != 1 {
					t.Fatalf("generated transaction with %d changes, want 1", len(tx.Changes))
				}
				c := tx.Changes[0]
				if _, _, err := c.statement("s"); err != nil {
					t.Fatalf("change %+v: %v", c, err)
				}
				kinds[c.Kind]++
				if c.Bad != "" {
					bads[c.Bad]++
				}
				checkBad(t, c, countries)
				g.Observe(simulate(g.st, tx))
			}
			for _, w := range weights {
				if kinds[w.kind] == 0 {
					t.Errorf("kind %s never generated: %v", w.kind, kinds)
				}
			}
			total := 0
			for _, b := range BadKinds() {
				total += bads[b]
				if tt.bad > 0 && bads[b] == 0 {
					t.Errorf("bad kind %s never generated: %v", b, bads)
				}
			}
			if share := float64(total) / n; share < tt.min || share > tt.max {
				t.Errorf("bad share %.3f, want %.2f..%.2f", share, tt.min, tt.max)
			}
		})
	}
}

// checkBad: a bad change has its defect, a good one none.
func checkBad(t *testing.T, c Change, countries map[string]bool) {
	t.Helper()
	price, name, cat, email, country := c.PriceMinor, c.Name, c.Category, c.Email, c.Country
	if p := c.Product; p != nil {
		price, name, cat = p.PriceMinor, p.Name, *p.Category
	}
	if u := c.Customer; u != nil {
		email, country = u.Email, u.Country
	}
	hasPrice := c.Kind == PriceChange || c.Kind == SaleStart || c.Kind == SaleEnd || c.Kind == NewProduct
	hasName := c.Kind == Rename || c.Kind == NewProduct
	hasCat := c.Kind == Recategorize || c.Kind == NewProduct
	hasEmail := c.Kind == CustomerEmail || c.Kind == NewCustomer
	hasCountry := c.Kind == CustomerMove || c.Kind == NewCustomer
	known := strings.Join(seed.Categories(), ",")
	defects := map[Bad]bool{
		NegativePrice:   hasPrice && price < 0,
		EmptyName:       hasName && name == "",
		UnknownCategory: hasCat && !strings.Contains(","+known+",", ","+cat+","),
		MalformedEmail:  hasEmail && !strings.Contains(email, "@"),
		UnknownCountry:  hasCountry && !countries[country],
	}
	for b, has := range defects {
		if has != (c.Bad == b) {
			t.Errorf("change %+v: defect %s present=%v, but marked bad %q", c, b, has, c.Bad)
		}
	}
}

// TestSaleRestoresListPrice: a sale's end sets the price it had before the sale.
func TestSaleRestoresListPrice(t *testing.T) {
	g := NewGenerator(3, seedState(10, 20), 0)
	started := map[string]int64{}
	ended := 0
	for range 2000 {
		tx := g.Next()
		c := tx.Changes[0]
		switch c.Kind {
		case SaleStart:
			started[c.Key] = g.st.Products[c.Key].PriceMinor
			if c.PriceMinor >= started[c.Key] {
				t.Fatalf("sale of %s at %d, not below the list price %d", c.Key, c.PriceMinor, started[c.Key])
			}
		case SaleEnd:
			if want, ok := started[c.Key]; !ok || c.PriceMinor != want {
				t.Fatalf("sale end of %s sets %d, want the list price %d (on sale: %v)", c.Key, c.PriceMinor, want, ok)
			}
			delete(started, c.Key)
			ended++
		case PriceChange, Discontinue, DeleteProduct:
			delete(started, c.Key)
		}
		g.Observe(simulate(g.st, tx))
	}
	if ended == 0 {
		t.Fatal("no sale ended in 2000 changes")
	}
}

func TestBurst(t *testing.T) {
	g := NewGenerator(5, seedState(10, 100), 0)
	for range 50 {
		tx := g.Burst()
		if len(tx.Changes) != 1 || tx.Changes[0].Kind != CategoryReprice {
			t.Fatalf("burst %+v: want one category re-price", tx)
		}
		c := tx.Changes[0]
		if abs := max(c.Percent, -c.Percent); abs < 5 || abs > 15 {
			t.Errorf("burst percent %d, want 5..15 up or down", c.Percent)
		}
		if !strings.Contains(strings.Join(seed.Categories(), ","), c.Key) {
			t.Errorf("burst of unknown category %q", c.Key)
		}
	}
}

func TestNewIDsAreFresh(t *testing.T) {
	g := NewGenerator(9, seedState(30, 40), 0)
	seen := map[string]bool{}
	for range 1000 {
		tx := g.Next()
		c := tx.Changes[0]
		if c.Kind == NewProduct || c.Kind == NewCustomer {
			if seen[c.Key] {
				t.Fatalf("new row %s generated twice", c.Key)
			}
			seen[c.Key] = true
			if _, ok := g.st.Products[c.Key]; ok {
				t.Fatalf("new product %s already exists", c.Key)
			}
			if _, ok := g.st.Customers[c.Key]; ok {
				t.Fatalf("new customer %s already exists", c.Key)
			}
		}
		g.Observe(simulate(g.st, tx))
	}
}

func TestStatement(t *testing.T) {
	p := &ProductRow{ProductID: "p-1"}
	tests := []struct {
		give    Change
		want    string // a part of the SQL
		wantErr string
	}{
		{Change{Kind: PriceChange, Key: "p-1", PriceMinor: 5}, `UPDATE "s"."products" SET price_minor = $2 WHERE product_id = $1 RETURNING`, ""},
		{Change{Kind: Touch, Key: "p-1"}, "SET name = name", ""},
		{Change{Kind: Discontinue, Key: "p-1"}, "is_active = false, deleted_at = now() WHERE product_id = $1 AND deleted_at IS NULL", ""},
		{Change{Kind: DeleteProduct, Key: "p-1"}, `DELETE FROM "s"."products"`, ""},
		{Change{Kind: NewProduct, Key: "p-1", Product: p}, `INSERT INTO "s"."products"`, ""},
		{Change{Kind: NewProduct, Key: "p-2", Product: p}, "", "without its row"},
		{Change{Kind: NewCustomer, Key: "u-1"}, "", "without its row"},
		{Change{Kind: CategoryReprice, Key: "toys", Percent: 10}, "WHERE category = $1 AND deleted_at IS NULL", ""},
		{Change{Kind: CustomerEmail, Key: "u-1", Email: "x"}, `UPDATE "s"."customers" SET email = $2`, ""},
		{Change{Kind: DeleteCustomer, Key: "u-1"}, `DELETE FROM "s"."customers"`, ""},
		{Change{Kind: Rename}, "", "without a key"},
		{Change{Kind: "teleport", Key: "p-1"}, "", "unknown change kind"},
	}
	for _, tt := range tests {
		t.Run(string(tt.give.Kind), func(t *testing.T) {
			sql, _, err := tt.give.statement("s")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || !strings.Contains(sql, tt.want) {
				t.Fatalf("statement = %q, %v; want it to contain %q", sql, err, tt.want)
			}
		})
	}
}

func TestKindTableOp(t *testing.T) {
	for _, k := range Kinds() {
		wantTable, wantOp := "products", "upsert"
		if strings.HasPrefix(string(k), "customer") || strings.HasSuffix(string(k), "customer") {
			wantTable = "customers"
		}
		if strings.HasPrefix(string(k), "delete") {
			wantOp = "delete"
		}
		if k.Table() != wantTable || k.Op() != wantOp {
			t.Errorf("%s: table %s op %s, want %s %s", k, k.Table(), k.Op(), wantTable, wantOp)
		}
	}
}

func TestCharm(t *testing.T) {
	tests := []struct{ give, want int64 }{{1999, 1999}, {2058, 2099}, {2049, 1999}, {2050, 2099}, {100, 99}, {50, 99}, {0, 0}, {-500, -500}}
	for _, tt := range tests {
		if got := charm(tt.give); got != tt.want {
			t.Errorf("charm(%d) = %d, want %d", tt.give, got, tt.want)
		}
	}
}
