package redact

import (
	"encoding/json"
	"reflect"
	"testing"
)

func TestValue(t *testing.T) {
	tests := []struct {
		name        string
		give        string
		want        string
		wantChanged bool
	}{
		{"nothing personal", `{"sku": "p-1", "qty": 2, "ok": true, "none": null}`, `{"sku": "p-1", "qty": 2, "ok": true, "none": null}`, false},
		{"fields any case", `{"Email": "x", "NAME": "Ann", "phone": 123, "Address": {"street": "Main 1", "zip": "1000"}}`,
			`{"Email": "[redacted]", "NAME": "[redacted]", "phone": "[redacted]", "Address": "[redacted]"}`, true},
		{"nested and in arrays", `{"customer": {"first_name": "Ann", "last_name": "Lee", "city": "Bern", "postcode": "3000", "ip": "10.0.0.1"}, "items": [{"name": "x"}]}`,
			`{"customer": {"first_name": "[redacted]", "last_name": "[redacted]", "city": "[redacted]", "postcode": "[redacted]", "ip": "[redacted]"}, "items": [{"name": "[redacted]"}]}`, true},
		{"email-like anywhere", `{"note": "mail ann.lee+x@shop.example.com now", "list": ["b@c.io"]}`,
			`{"note": "mail [redacted] now", "list": ["[redacted]"]}`, true},
		{"a null personal field stays null", `{"email": null}`, `{"email": null}`, false},
		{"not an email", `{"handle": "@ann", "at": "a@b"}`, `{"handle": "@ann", "at": "a@b"}`, false},
		{"email keys", `{"by_account": {"a@b.example": 1, "c@d.example": 2}}`, `{"by_account": {"[redacted]": 1, "[redacted]#2": 2}}`, true},
		{"name segments", `{"client_ip": "10.0.0.9", "billing_email": "x", "clientIP": "::1", "shippingAddress": {"line": "Main 1"}, "customer_name": "Ann", "ip_address": "10.1.1.1", "zipcode": "3000", "sku_id": "p-1", "shipping_country": "CH", "tip": 2}`,
			`{"client_ip": "[redacted]", "billing_email": "[redacted]", "clientIP": "[redacted]", "shippingAddress": "[redacted]", "customer_name": "[redacted]", "ip_address": "[redacted]", "zipcode": "[redacted]", "sku_id": "p-1", "shipping_country": "CH", "tip": 2}`, true},
		{"top-level string", `"x@y.example"`, `"[redacted]"`, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var give, want any
			if err := json.Unmarshal([]byte(tt.give), &give); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal([]byte(tt.want), &want); err != nil {
				t.Fatal(err)
			}
			orig, _ := json.Marshal(give)
			got, changed := Value(give)
			if !reflect.DeepEqual(got, want) || changed != tt.wantChanged {
				t.Errorf("Value = %v, %v; want %v, %v", got, changed, want, tt.wantChanged)
			}
			if after, _ := json.Marshal(give); string(after) != string(orig) {
				t.Errorf("Value changed its input: %s", after)
			}
		})
	}
}

func TestText(t *testing.T) {
	tests := []struct{ give, want string }{
		{"email ann@shop.example is invalid", "email [redacted] is invalid"},
		{"two: a@b.co, c.d@e.example.org", "two: [redacted], [redacted]"},
		{"price must be positive", "price must be positive"},
	}
	for _, tt := range tests {
		if got := Text(tt.give); got != tt.want {
			t.Errorf("Text(%q) = %q, want %q", tt.give, got, tt.want)
		}
		if HasEmail(tt.give) != (tt.give != tt.want) {
			t.Errorf("HasEmail(%q) disagrees with Text", tt.give)
		}
	}
}

func TestField(t *testing.T) {
	tests := []struct {
		name string
		want bool
	}{
		{"email", true}, {"EMAIL", true}, {"client_ip", true}, {"billing_email", true}, {"first_name", true},
		{"customer.first_name", true}, {"customer.email", true}, {"clientIP", true}, {"clientIp", true},
		{"shippingAddress", true}, {"IPAddress", true}, {"postal-code", true}, {"postalCode", true}, {"phone_number", true},
		{"sku", false}, {"zip_count", true}, {"tip", false}, {"ship", false}, {"shipping_country", false}, {"unzipped", false},
		{"currency", false}, {"", false}, {"names", false},
	}
	for _, tt := range tests {
		if got := Field(tt.name); got != tt.want {
			t.Errorf("Field(%q) = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestMessage(t *testing.T) {
	tests := []struct {
		name, msg, field string
		pii              bool
		want             string
	}{
		{"personal field, not pii", `name "John Smith": want matches "^[A-Z]"`, "name", false, `name "[redacted]": want matches "[redacted]"`},
		{"pii row, other field", `currency "J\"S": want is in [CHF EUR]`, "currency", true, `currency "[redacted]": want is in [CHF EUR]`},
		{"no pii, other field", `currency "XXX": want is in [CHF EUR]`, "currency", false, `currency "XXX": want is in [CHF EUR]`},
		{"emails always", `note "a@b.example" bad`, "note", false, `note "[redacted]" bad`},
		{"segment field", `client_ip "10.0.0.1": want an address`, "client_ip", false, `client_ip "[redacted]": want an address`},
	}
	for _, tt := range tests {
		if got := Message(tt.msg, tt.field, tt.pii); got != tt.want {
			t.Errorf("%s: Message = %q, want %q", tt.name, got, tt.want)
		}
	}
}
