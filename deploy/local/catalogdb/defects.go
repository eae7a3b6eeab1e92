package catalogdb

import (
	"slices"
	"strings"

	"github.com/ecomstream/platform/deploy/local/seed"
)

// ProductDefects lists the bad kinds a product row has, whichever change put
// them there: a row stays bad until a later change fixes it, so an oracle
// judges a row by its state, not only by the Bad of the change at hand.
func ProductDefects(p ProductRow) []Bad {
	var out []Bad
	if p.PriceMinor < 0 {
		out = append(out, NegativePrice)
	}
	if p.Category == nil || !slices.Contains(seed.Categories(), *p.Category) {
		out = append(out, UnknownCategory)
	}
	if strings.TrimSpace(p.Name) == "" {
		out = append(out, EmptyName)
	}
	return out
}

// CustomerDefects lists the bad kinds a customer row has (see ProductDefects).
// An email is malformed unless it is local@domain with a dot in the domain;
// a country is unknown unless it is two capital letters outside ISO 3166's
// user-assigned codes (AA, QM-QZ, XA-XZ, ZZ).
func CustomerDefects(u CustomerRow) []Bad {
	var out []Bad
	local, domain, ok := strings.Cut(u.Email, "@")
	if !ok || local == "" || strings.Contains(domain, "@") || !strings.Contains(strings.Trim(domain, "."), ".") {
		out = append(out, MalformedEmail)
	}
	if !countryCode(u.Country) {
		out = append(out, UnknownCountry)
	}
	return out
}

func countryCode(c string) bool {
	if len(c) != 2 || c[0] < 'A' || c[0] > 'Z' || c[1] < 'A' || c[1] > 'Z' {
		return false
	}
	switch {
	case c == "AA", c == "ZZ", c[0] == 'X', c[0] == 'Q' && c[1] >= 'M':
		return false
	}
	return true
}
