package e2e

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/ecomstream/platform/deploy/local/catalogdb"
	"github.com/ecomstream/platform/deploy/local/seed"
	"github.com/ecomstream/platform/deploy/local/slice"
)

// dimVersion is one version of a dimension row: the oracle's, computed from
// the seed and the mutator's log, or the warehouse's.
type dimVersion struct {
	Key       string // product_id | user_id
	SK        string // product_key | user_key (the warehouse's only)
	ValidFrom time.Time
	ValidTo   *time.Time
	IsCurrent bool
	Attrs     []string // the tracked attributes, in dimAttrs' order
}

// The tracked attributes compared, per dimension (bq-writer README, Dimensions).
var dimAttrs = map[string][]string{
	"dim_products": {"sku", "name", "category", "brand", "price_minor", "currency", "is_active"},
	"dim_users":    {"email_hash", "email_domain", "country", "is_active"},
}

// dimOracle builds the versions per key from the seed (the initial
// snapshot: valid_from = updated_at) and the log's entries in commit order:
// an entry with defects is dead-lettered (no version); a good upsert whose
// tracked attributes equal the version in force makes none; otherwise it
// ends the version in force at its commit time and opens one; a hard
// delete ends the version in force.
type dimOracle struct {
	versions map[string][]*dimVersion
	open     map[string]bool // the key's last version is in force (not ended by a delete)
}

func newOracle() *dimOracle {
	return &dimOracle{versions: map[string][]*dimVersion{}, open: map[string]bool{}}
}

func (o *dimOracle) upsert(key string, at time.Time, attrs []string) {
	vs := o.versions[key]
	if o.open[key] {
		last := vs[len(vs)-1]
		if slices.Equal(last.Attrs, attrs) {
			return
		}
		last.ValidTo, last.IsCurrent = &at, false
	}
	o.versions[key] = append(vs, &dimVersion{Key: key, ValidFrom: at, IsCurrent: true, Attrs: attrs})
	o.open[key] = true
}

func (o *dimOracle) delete(key string, at time.Time) {
	if !o.open[key] {
		return
	}
	vs := o.versions[key]
	last := vs[len(vs)-1]
	last.ValidTo, last.IsCurrent = &at, false
	o.open[key] = false
}

// at is the version valid at t (valid_from <= t < valid_to), nil if none.
func (o *dimOracle) at(key string, t time.Time) *dimVersion {
	for _, v := range o.versions[key] {
		if !t.Before(v.ValidFrom) && (v.ValidTo == nil || t.Before(*v.ValidTo)) {
			return v
		}
	}
	return nil
}

func productAttrs(p catalogdb.ProductRow) []string {
	return []string{p.SKU, p.Name, deref(p.Category), deref(p.Brand), fmt.Sprint(p.PriceMinor), p.Currency, fmt.Sprint(p.IsActive)}
}

func userAttrs(key []byte, email, country string, active bool) []string {
	norm := strings.ToLower(strings.TrimSpace(email))
	m := hmac.New(sha256.New, key)
	m.Write([]byte(norm))
	domain := ""
	if at := strings.LastIndexByte(norm, '@'); at >= 0 && at < len(norm)-1 {
		domain = norm[at+1:]
	}
	return []string{hex.EncodeToString(m.Sum(nil)), domain, country, fmt.Sprint(active)}
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// expectedDims computes both dimensions and the dead letters the validator
// must write (by deadKey), from the seed and the log.
func expectedDims(ids *seed.Set, emailKey []byte, log []catalogdb.Entry) (products, users *dimOracle, dead map[string][]catalogdb.Bad) {
	products, users, dead = newOracle(), newOracle(), map[string][]catalogdb.Bad{}
	for _, p := range ids.Products {
		cat, brand := p.Category, p.Brand
		products.upsert(p.ProductID, catalogdb.ShopOpened, productAttrs(catalogdb.ProductRow{SKU: p.SKU, Name: p.Name,
			Category: &cat, Brand: &brand, PriceMinor: p.PriceMinor, Currency: p.Currency, IsActive: true}))
	}
	for _, c := range ids.Customers {
		users.upsert(c.CustomerID, c.CreatedAt.UTC(), userAttrs(emailKey, c.Email, c.Country, true))
	}
	for _, e := range log {
		o := products
		if e.Table == "customers" {
			o = users
		}
		switch {
		case e.Op == "delete":
			o.delete(e.Key, e.CommitTime)
		case len(e.Defects) > 0:
			dead[deadKey(e.Key, e.CommitTime, int64(e.Ordinal))] = e.Defects
		case e.Table == "products":
			o.upsert(e.Key, e.CommitTime, productAttrs(*e.Product))
		default:
			o.upsert(e.Key, e.CommitTime, userAttrs(emailKey, e.Customer.Email, e.Customer.Country, e.Customer.IsActive))
		}
	}
	return products, users, dead
}

// deadKey names a change by key, commit time and ordinal (a CDC record's
// changed_at and source_ordinal).
func deadKey(key string, at time.Time, ordinal int64) string {
	return fmt.Sprintf("%s@%s#%d", key, at.UTC().Format(time.RFC3339Nano), ordinal)
}

// badRule is the validator's rule for each bad kind (services/validator/rules).
var badRule = map[catalogdb.Bad]string{
	catalogdb.NegativePrice:   "product.price_range",
	catalogdb.UnknownCategory: "product.category_known",
	catalogdb.EmptyName:       "product.name_present",
	catalogdb.MalformedEmail:  "customer.email_valid",
	catalogdb.UnknownCountry:  "customer.country_iso3166",
}

// warehouseDims reads a dimension's versions per key, in valid_from order.
func warehouseDims(ctx context.Context, sl *slice.Slice, table, key, sk string) (map[string][]*dimVersion, error) {
	attrs := dimAttrs[table]
	cols := make([]string, len(attrs))
	for i, a := range attrs {
		cols[i] = "CAST(" + a + " AS VARCHAR)"
	}
	_, rows, err := sl.Query(ctx, fmt.Sprintf(
		"SELECT %s, CAST(%s AS VARCHAR), valid_from, valid_to, is_current, %s FROM %s ORDER BY %s, valid_from, source_lsn, source_ordinal",
		key, sk, strings.Join(cols, ", "), table, key))
	if err != nil {
		return nil, err
	}
	out := map[string][]*dimVersion{}
	for _, r := range rows {
		v := &dimVersion{Key: fmt.Sprint(r[0]), SK: fmt.Sprint(r[1])}
		if v.ValidFrom, err = parseTime(r[2]); err != nil {
			return nil, fmt.Errorf("%s %s valid_from: %w", table, v.Key, err)
		}
		if r[3] != nil {
			t, err := parseTime(r[3])
			if err != nil {
				return nil, fmt.Errorf("%s %s valid_to: %w", table, v.Key, err)
			}
			v.ValidTo = &t
		}
		v.IsCurrent, _ = r[4].(bool)
		for _, a := range r[5:] {
			if a == nil {
				v.Attrs = append(v.Attrs, "")
			} else {
				v.Attrs = append(v.Attrs, fmt.Sprint(a))
			}
		}
		out[v.Key] = append(out[v.Key], v)
	}
	return out, nil
}

func parseTime(v any) (time.Time, error) {
	s, ok := v.(string)
	if !ok {
		return time.Time{}, fmt.Errorf("%T %v is not a timestamp", v, v)
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02 15:04:05.999999-07", "2006-01-02 15:04:05.999999"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("timestamp %q", s)
}

// compareDims lists the differences between the oracle and the warehouse,
// version by version: key, version number, field, want, got.
func compareDims(table string, want *dimOracle, got map[string][]*dimVersion) []string {
	var out []string
	attrs := dimAttrs[table]
	keys := slices.Sorted(maps.Keys(want.versions))
	for _, k := range slices.Sorted(maps.Keys(got)) {
		if _, ok := want.versions[k]; !ok {
			out = append(out, fmt.Sprintf("%s %s: %d versions in the warehouse, none expected", table, k, len(got[k])))
		}
	}
	for _, k := range keys {
		w, g := want.versions[k], got[k]
		if len(w) != len(g) {
			out = append(out, fmt.Sprintf("%s %s: %d versions, want %d (want %s; got %s)", table, k, len(g), len(w), showVersions(w), showVersions(g)))
			continue
		}
		for i := range w {
			field := func(name string, wv, gv any) {
				if fmt.Sprint(wv) != fmt.Sprint(gv) {
					out = append(out, fmt.Sprintf("%s %s v%d: %s want %v, got %v", table, k, i+1, name, wv, gv))
				}
			}
			field("valid_from", w[i].ValidFrom.Truncate(time.Microsecond), g[i].ValidFrom.Truncate(time.Microsecond))
			field("valid_to", showTime(w[i].ValidTo), showTime(g[i].ValidTo))
			field("is_current", w[i].IsCurrent, g[i].IsCurrent)
			for j, a := range attrs {
				field(a, w[i].Attrs[j], g[i].Attrs[j])
			}
		}
	}
	return out
}

func showTime(t *time.Time) string {
	if t == nil {
		return "NULL"
	}
	return t.UTC().Truncate(time.Microsecond).Format(time.RFC3339Nano)
}

func showVersions(vs []*dimVersion) string {
	var parts []string
	for _, v := range vs {
		parts = append(parts, fmt.Sprintf("[%s..%s %v]", v.ValidFrom.Format(time.RFC3339Nano), showTime(v.ValidTo), v.Attrs))
	}
	return strings.Join(parts, " ")
}

// countVersions is the number of versions of an oracle.
func countVersions(o *dimOracle) (n int) {
	for _, vs := range o.versions {
		n += len(vs)
	}
	return n
}
