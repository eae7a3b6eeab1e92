package rules

import (
	"slices"
	"strings"
	"testing"
	"time"

	seedids "github.com/ecomstream/platform/deploy/local/seed"
	"github.com/ecomstream/platform/pkg/events"
)

// aProduct is a product upsert as catalog-sync's CDC sends it, built from
// the first product of the shared seed.
func aProduct() events.ProductChange {
	p := seedids.Generate(seedids.DefaultSeed, 0, 1).Products[0]
	changed := now.Add(-time.Second)
	return events.ProductChange{ProductID: p.ProductID, Op: "upsert", Sku: ptr(p.SKU), Name: p.Name, Category: ptr(p.Category),
		Brand: ptr(p.Brand), PriceMinor: p.PriceMinor, Currency: p.Currency, IsActive: true, UpdatedAt: changed, SyncedAt: now,
		Source: "cdc", SourceLsn: 0x1_6B37_4D48, SourceOrdinal: 1, ChangedAt: &changed}
}

// productDelete is a hard delete: only the key and the sequence.
func productDelete() events.ProductChange {
	return events.ProductChange{ProductID: "p-00042", Op: "delete", UpdatedAt: now.Add(-time.Minute), SyncedAt: now,
		Source: "cdc", SourceLsn: 0x1_6B37_4D48, SourceOrdinal: 3, ChangedAt: ptr(now.Add(-time.Second))}
}

// verdictOf is the ids of the rules rec failed (error) and warned.
func verdictOf(set *Set, rec any) (failed, warned []string) {
	results, reasons := set.Evaluate(rec, time.Time{}, nil)
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

// TestProductRules: every product rule passes a well-formed change, fails a
// broken one, and leaves a hard delete's empty attributes alone.
func TestProductRules(t *testing.T) {
	set, err := Products(defaults)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		give       func() events.ProductChange
		wantFailed []string
		wantWarned []string
	}{
		{name: "cdc upsert passes", give: aProduct},
		{name: "snapshot row passes", give: func() events.ProductChange { p := aProduct(); p.Source, p.SourceOrdinal = "snapshot", 0; return p }},
		{name: "backfill passes", give: func() events.ProductChange { p := aProduct(); p.Source, p.SourceOrdinal = "backfill", 0; return p }},
		{name: "soft delete passes", give: func() events.ProductChange { p := aProduct(); p.IsActive, p.DeletedAt = false, ptr(now); return p }},
		{name: "free product passes", give: func() events.ProductChange { p := aProduct(); p.PriceMinor = 0; return p }},
		{name: "price at the cap passes", give: func() events.ProductChange { p := aProduct(); p.PriceMinor = 10_000_000; return p }},
		{name: "six-digit product number passes", give: func() events.ProductChange {
			p := aProduct()
			p.ProductID, p.Sku = "p-100001", ptr("ELE-100001")
			return p
		}},
		{name: "hard delete passes with empty attributes", give: productDelete},
		{name: "hard delete from a snapshot passes", give: func() events.ProductChange {
			p := productDelete()
			p.Source, p.SourceOrdinal = "snapshot", 0
			return p
		}},

		{name: "blank product_id", give: func() events.ProductChange { p := aProduct(); p.ProductID = " "; return p },
			wantFailed: []string{ProductRequiredFields, ProductIDFormat}},
		{name: "blank source", give: func() events.ProductChange { p := aProduct(); p.Source = ""; return p },
			wantFailed: []string{ProductRequiredFields, ProductSourceKnown}},
		{name: "updated_at never set", give: func() events.ProductChange { p := aProduct(); p.UpdatedAt = time.Time{}; return p },
			wantFailed: []string{ProductRequiredFields}},
		{name: "synced_at at the epoch", give: func() events.ProductChange { p := aProduct(); p.SyncedAt = time.UnixMicro(0); return p },
			wantFailed: []string{ProductRequiredFields}},
		{name: "delete without a key", give: func() events.ProductChange { p := productDelete(); p.ProductID = ""; return p },
			wantFailed: []string{ProductRequiredFields, ProductIDFormat}},
		{name: "product_id of another shape", give: func() events.ProductChange { p := aProduct(); p.ProductID = "P-42"; return p },
			wantFailed: []string{ProductIDFormat}},
		{name: "unknown op", give: func() events.ProductChange { p := aProduct(); p.Op = "update"; return p },
			wantFailed: []string{ProductOpKnown}},
		{name: "unknown source", give: func() events.ProductChange { p := aProduct(); p.Source = "manual"; return p },
			wantFailed: []string{ProductSourceKnown}},
		{name: "no LSN", give: func() events.ProductChange { p := aProduct(); p.SourceLsn = 0; return p },
			wantFailed: []string{ProductSourceSequence}},
		{name: "delete without an LSN", give: func() events.ProductChange { p := productDelete(); p.SourceLsn = 0; return p },
			wantFailed: []string{ProductSourceSequence}},
		{name: "cdc change with ordinal 0", give: func() events.ProductChange { p := aProduct(); p.SourceOrdinal = 0; return p },
			wantFailed: []string{ProductSourceSequence}},
		{name: "snapshot row with an ordinal would beat cdc", give: func() events.ProductChange {
			p := aProduct()
			p.Source, p.SourceOrdinal = "snapshot", 1
			return p
		}, wantFailed: []string{ProductSourceSequence}},
		{name: "negative ordinal", give: func() events.ProductChange { p := aProduct(); p.Source, p.SourceOrdinal = "backfill", -1; return p },
			wantFailed: []string{ProductSourceSequence}},
		{name: "empty name", give: func() events.ProductChange { p := aProduct(); p.Name = ""; return p },
			wantFailed: []string{ProductNamePresent}},
		{name: "blank name", give: func() events.ProductChange { p := aProduct(); p.Name = "   "; return p },
			wantFailed: []string{ProductNamePresent}},
		{name: "no sku", give: func() events.ProductChange { p := aProduct(); p.Sku = nil; return p },
			wantFailed: []string{ProductSKUFormat}},
		{name: "lower-case sku", give: func() events.ProductChange { p := aProduct(); p.Sku = ptr("sho-00042"); return p },
			wantFailed: []string{ProductSKUFormat}},
		{name: "sku without the dash", give: func() events.ProductChange { p := aProduct(); p.Sku = ptr("SHO00042"); return p },
			wantFailed: []string{ProductSKUFormat}},
		{name: "sku with four digits", give: func() events.ProductChange { p := aProduct(); p.Sku = ptr("SHO-0042"); return p },
			wantFailed: []string{ProductSKUFormat}},
		{name: "negative price", give: func() events.ProductChange { p := aProduct(); p.PriceMinor = -1999; return p },
			wantFailed: []string{ProductPriceRange}},
		{name: "price above the cap", give: func() events.ProductChange { p := aProduct(); p.PriceMinor = 10_000_001; return p },
			wantFailed: []string{ProductPriceRange}},
		{name: "empty currency", give: func() events.ProductChange { p := aProduct(); p.Currency = ""; return p },
			wantFailed: []string{ProductCurrency}},
		{name: "currency not ISO 4217", give: func() events.ProductChange { p := aProduct(); p.Currency = "US$"; return p },
			wantFailed: []string{ProductCurrency}},
		{name: "unknown category", give: func() events.ProductChange { p := aProduct(); p.Category = ptr("garden"); return p },
			wantFailed: []string{ProductCategoryKnown}},
		{name: "category of another case", give: func() events.ProductChange { p := aProduct(); p.Category = ptr("Shoes"); return p },
			wantFailed: []string{ProductCategoryKnown}},
		{name: "no category", give: func() events.ProductChange { p := aProduct(); p.Category = nil; return p },
			wantFailed: []string{ProductCategoryKnown}},
		{name: "deleted_at on an active product", give: func() events.ProductChange { p := aProduct(); p.DeletedAt = ptr(now); return p },
			wantWarned: []string{ProductSoftDelete}},
		{name: "every failure is reported", give: func() events.ProductChange {
			p := aProduct()
			p.Name, p.PriceMinor, p.Currency, p.Category = "", -1, "ZZZ", ptr("garden")
			return p
		}, wantFailed: []string{ProductNamePresent, ProductPriceRange, ProductCurrency, ProductCategoryKnown}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := tt.give()
			failed, warned := verdictOf(set, &p)
			if !slices.Equal(failed, tt.wantFailed) || !slices.Equal(warned, tt.wantWarned) {
				t.Errorf("failed %v warned %v, want failed %v warned %v", failed, warned, tt.wantFailed, tt.wantWarned)
			}
		})
	}
	// Every rule is exercised by a failing case above.
	exercised := map[string]bool{}
	for _, tt := range tests {
		for _, id := range append(tt.wantFailed, tt.wantWarned...) {
			exercised[id] = true
		}
	}
	for _, r := range set.Rules() {
		if !exercised[r.ID] {
			t.Errorf("rule %s has no failing case", r.ID)
		}
	}
}

// TestSeedProductsPass: every product of the shared seed (what deploy/local
// loads into the storefront's products table) passes without a warning, as
// a snapshot row.
func TestSeedProductsPass(t *testing.T) {
	set, err := Products(defaults)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range seedids.Default().Products {
		c := events.ProductChange{ProductID: p.ProductID, Op: "upsert", Sku: ptr(p.SKU), Name: p.Name, Category: ptr(p.Category),
			Brand: ptr(p.Brand), PriceMinor: p.PriceMinor, Currency: p.Currency, IsActive: true, UpdatedAt: now, SyncedAt: now,
			Source: "snapshot", SourceLsn: 1}
		if failed, warned := verdictOf(set, &c); failed != nil || warned != nil {
			t.Fatalf("seed product %+v: failed %v warned %v", p, failed, warned)
		}
	}
}

// TestTaxonomyMatchesSeed: the category list of product.category_known is
// the seed's taxonomy (the validator must not import deploy/local at run
// time, so the file holds a copy).
func TestTaxonomyMatchesSeed(t *testing.T) {
	set, err := Products(defaults)
	if err != nil {
		t.Fatal(err)
	}
	var listed []string
	for _, r := range set.Rules() {
		if r.ID != ProductCategoryKnown {
			continue
		}
		for _, cl := range r.clauses {
			if pf, ok := cl.check.(*perField); ok && pf.fields[0].name == "category" && strings.HasPrefix(pf.want, "one of") {
				listed = strings.Fields(strings.Trim(strings.TrimPrefix(pf.want, "one of "), "[]"))
			}
		}
	}
	want := seedids.Categories()
	if !slices.Equal(listed, want) {
		t.Errorf("product.category_known lists %v, seed.Categories() is %v: update rules/product.yaml (and its version)", listed, want)
	}
}

// TestPriceCapOverride: PRODUCT_MAX_PRICE_MINOR reaches product.price_range.
func TestPriceCapOverride(t *testing.T) {
	cfg := defaults
	cfg.ProductMaxPriceMinor = 1000
	set, err := Products(cfg)
	if err != nil {
		t.Fatal(err)
	}
	p := aProduct()
	p.PriceMinor = 1001
	if failed, _ := verdictOf(set, &p); !slices.Equal(failed, []string{ProductPriceRange}) {
		t.Errorf("price 1001 under a cap of 1000: failed %v", failed)
	}
	p.PriceMinor = 1000
	if failed, _ := verdictOf(set, &p); failed != nil {
		t.Errorf("price 1000 under a cap of 1000: failed %v", failed)
	}
}

// aCustomer is a customer upsert as catalog-sync's CDC sends it, built from
// the first customer of the shared seed.
func aCustomer() events.CustomerChange {
	c := seedids.Generate(seedids.DefaultSeed, 1, 0).Customers[0]
	changed := now.Add(-time.Second)
	return events.CustomerChange{CustomerID: c.CustomerID, Op: "upsert", Email: ptr(c.Email), Name: ptr(c.Name), Country: ptr(c.Country),
		IsActive: true, CreatedAt: ptr(c.CreatedAt), UpdatedAt: changed, SyncedAt: now, Source: "cdc", SourceLsn: 0x2_0000_0010,
		SourceOrdinal: 2, ChangedAt: &changed}
}

func customerDelete() events.CustomerChange {
	return events.CustomerChange{CustomerID: "u-000042", Op: "delete", UpdatedAt: now.Add(-time.Minute), SyncedAt: now,
		Source: "cdc", SourceLsn: 0x2_0000_0010, SourceOrdinal: 1}
}

// TestCustomerRules: every customer rule passes a well-formed change, fails
// a broken one, and leaves a hard delete's null attributes alone.
func TestCustomerRules(t *testing.T) {
	set, err := Customers(defaults)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		give       func() events.CustomerChange
		wantFailed []string
	}{
		{name: "cdc upsert passes", give: aCustomer},
		{name: "snapshot row passes", give: func() events.CustomerChange { c := aCustomer(); c.Source, c.SourceOrdinal = "snapshot", 0; return c }},
		{name: "closed account passes", give: func() events.CustomerChange { c := aCustomer(); c.IsActive, c.DeletedAt = false, ptr(now); return c }},
		{name: "moved country passes", give: func() events.CustomerChange { c := aCustomer(); c.Country = ptr("JP"); return c }},
		{name: "hard delete passes without email and country", give: customerDelete},
		{name: "hard delete with a blank email passes", give: func() events.CustomerChange { c := customerDelete(); c.Email = ptr(""); return c }},

		{name: "blank customer_id", give: func() events.CustomerChange { c := aCustomer(); c.CustomerID = ""; return c },
			wantFailed: []string{CustomerRequiredFields, CustomerIDFormat}},
		{name: "blank op", give: func() events.CustomerChange { c := aCustomer(); c.Op = " "; return c },
			wantFailed: []string{CustomerRequiredFields, CustomerOpKnown}},
		{name: "updated_at never set", give: func() events.CustomerChange { c := customerDelete(); c.UpdatedAt = time.Time{}; return c },
			wantFailed: []string{CustomerRequiredFields}},
		{name: "customer_id with five digits", give: func() events.CustomerChange { c := aCustomer(); c.CustomerID = "u-00042"; return c },
			wantFailed: []string{CustomerIDFormat}},
		{name: "customer_id of another shape", give: func() events.CustomerChange { c := customerDelete(); c.CustomerID = "c1"; return c },
			wantFailed: []string{CustomerIDFormat}},
		{name: "unknown op", give: func() events.CustomerChange { c := aCustomer(); c.Op = "merge"; return c },
			wantFailed: []string{CustomerOpKnown}},
		{name: "unknown source", give: func() events.CustomerChange { c := aCustomer(); c.Source = "import"; return c },
			wantFailed: []string{CustomerSourceKnown}},
		{name: "no LSN", give: func() events.CustomerChange { c := customerDelete(); c.SourceLsn = 0; return c },
			wantFailed: []string{CustomerSourceSequence}},
		{name: "snapshot row with an ordinal", give: func() events.CustomerChange { c := aCustomer(); c.Source = "snapshot"; return c },
			wantFailed: []string{CustomerSourceSequence}},
		{name: "no email", give: func() events.CustomerChange { c := aCustomer(); c.Email = nil; return c },
			wantFailed: []string{CustomerEmailValid}},
		{name: "blank email", give: func() events.CustomerChange { c := aCustomer(); c.Email = ptr(" "); return c },
			wantFailed: []string{CustomerEmailValid}},
		{name: "email without a domain", give: func() events.CustomerChange { c := aCustomer(); c.Email = ptr("ann.smith"); return c },
			wantFailed: []string{CustomerEmailValid}},
		{name: "email with a single-label domain", give: func() events.CustomerChange { c := aCustomer(); c.Email = ptr("ann@localhost"); return c },
			wantFailed: []string{CustomerEmailValid}},
		{name: "email with a space", give: func() events.CustomerChange { c := aCustomer(); c.Email = ptr("ann smith@example.com"); return c },
			wantFailed: []string{CustomerEmailValid}},
		{name: "no country", give: func() events.CustomerChange { c := aCustomer(); c.Country = nil; return c },
			wantFailed: []string{CustomerCountry}},
		{name: "country UK", give: func() events.CustomerChange { c := aCustomer(); c.Country = ptr("UK"); return c },
			wantFailed: []string{CustomerCountry}},
		{name: "country name", give: func() events.CustomerChange { c := aCustomer(); c.Country = ptr("Germany"); return c },
			wantFailed: []string{CustomerCountry}},
		{name: "every failure is reported", give: func() events.CustomerChange {
			c := aCustomer()
			c.Email, c.Country, c.Source = ptr("x"), ptr("XX"), "sync"
			return c
		}, wantFailed: []string{CustomerSourceKnown, CustomerEmailValid, CustomerCountry}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.give()
			failed, warned := verdictOf(set, &c)
			if !slices.Equal(failed, tt.wantFailed) || warned != nil {
				t.Errorf("failed %v warned %v, want failed %v", failed, warned, tt.wantFailed)
			}
		})
	}
	exercised := map[string]bool{}
	for _, tt := range tests {
		for _, id := range tt.wantFailed {
			exercised[id] = true
		}
	}
	for _, r := range set.Rules() {
		if !exercised[r.ID] {
			t.Errorf("rule %s has no failing case", r.ID)
		}
	}
}

// TestSeedCustomersPass: every customer of the shared seed passes as a
// snapshot row, and a failed email never shows the address in the reason.
func TestSeedCustomersPass(t *testing.T) {
	set, err := Customers(defaults)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range seedids.Default().Customers {
		c := events.CustomerChange{CustomerID: s.CustomerID, Op: "upsert", Email: ptr(s.Email), Name: ptr(s.Name), Country: ptr(s.Country),
			IsActive: true, CreatedAt: ptr(s.CreatedAt), UpdatedAt: now, SyncedAt: now, Source: "snapshot", SourceLsn: 1}
		if failed, warned := verdictOf(set, &c); failed != nil || warned != nil {
			t.Fatalf("seed customer %s: failed %v warned %v", s.CustomerID, failed, warned)
		}
	}
	c := aCustomer()
	email := strings.Replace(*c.Email, "@", "@@", 1)
	c.Email = &email
	_, reasons := set.Evaluate(&c, now, nil)
	if len(reasons) != 1 || reasons[0].Field != "email" || strings.Contains(reasons[0].Message, email[:5]) {
		t.Errorf("reasons %+v: want one email reason that does not show the address", reasons)
	}
}

func BenchmarkEvaluateProducts(b *testing.B) {
	set, err := Products(defaults)
	if err != nil {
		b.Fatal(err)
	}
	p := aProduct()
	var results []Result
	b.ReportAllocs()
	for b.Loop() {
		results, _ = set.Evaluate(&p, now, results)
	}
}

func BenchmarkEvaluateCustomers(b *testing.B) {
	set, err := Customers(defaults)
	if err != nil {
		b.Fatal(err)
	}
	c := aCustomer()
	var results []Result
	b.ReportAllocs()
	for b.Loop() {
		results, _ = set.Evaluate(&c, now, results)
	}
}
