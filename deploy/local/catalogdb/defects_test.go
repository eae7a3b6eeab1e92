package catalogdb

import (
	"reflect"
	"testing"
)

func TestProductDefects(t *testing.T) {
	shoes, gadgets := "shoes", "gadgets"
	tests := []struct {
		name string
		give ProductRow
		want []Bad
	}{
		{"good", ProductRow{Name: "Sneaker", Category: &shoes, PriceMinor: 1999}, nil},
		{"free is not negative", ProductRow{Name: "Sticker", Category: &shoes, PriceMinor: 0}, nil},
		{"negative price", ProductRow{Name: "Sneaker", Category: &shoes, PriceMinor: -1}, []Bad{NegativePrice}},
		{"unknown category", ProductRow{Name: "Sneaker", Category: &gadgets, PriceMinor: 1}, []Bad{UnknownCategory}},
		{"no category", ProductRow{Name: "Sneaker", PriceMinor: 1}, []Bad{UnknownCategory}},
		{"blank name", ProductRow{Name: "  ", Category: &shoes, PriceMinor: 1}, []Bad{EmptyName}},
		{"all three", ProductRow{Category: &gadgets, PriceMinor: -5}, []Bad{NegativePrice, UnknownCategory, EmptyName}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ProductDefects(tt.give); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ProductDefects = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestCustomerDefects(t *testing.T) {
	tests := []struct {
		email, country string
		want           []Bad
	}{
		{"ada@example.com", "SE", nil},
		{"a.b+3@example.org", "JP", nil},
		{"no-at-sign.example.com", "DE", []Bad{MalformedEmail}},
		{"@example.com", "DE", []Bad{MalformedEmail}},
		{"a@localhost", "DE", []Bad{MalformedEmail}},
		{"a@b@example.com", "DE", []Bad{MalformedEmail}},
		{"a@example.com", "ZZ", []Bad{UnknownCountry}},
		{"a@example.com", "XK", []Bad{UnknownCountry}},
		{"a@example.com", "QM", []Bad{UnknownCountry}},
		{"a@example.com", "QA", nil},
		{"a@example.com", "us", []Bad{UnknownCountry}},
		{"a@example.com", "USA", []Bad{UnknownCountry}},
		{"x", "", []Bad{MalformedEmail, UnknownCountry}},
	}
	for _, tt := range tests {
		t.Run(tt.email+"/"+tt.country, func(t *testing.T) {
			if got := CustomerDefects(CustomerRow{Email: tt.email, Country: tt.country}); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("CustomerDefects = %v, want %v", got, tt.want)
			}
		})
	}
}
