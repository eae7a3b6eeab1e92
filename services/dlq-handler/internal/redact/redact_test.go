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
		{"email keys", `{"by_address": {"a@b.example": 1, "c@d.example": 2}}`, `{"by_address": {"[redacted]": 1, "[redacted]#2": 2}}`, true},
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
