package store

import "testing"

// TestSearchMessage: message_redacted is the message as a caller without
// the PII right is shown it: email-like strings always masked, quoted
// values of pii rows and of reasons on a personal field too.
func TestSearchMessage(t *testing.T) {
	f := func(s string) *string { return &s }
	tests := []struct {
		name    string
		message string
		reasons []Reason
		pii     bool
		want    string
	}{
		{"plain", "value 7 out of range", []Reason{{Message: "value 7 out of range"}}, false, "value 7 out of range"},
		{"email in a non-pii row", "notify ann+tag@x.com failed", []Reason{{Message: "notify ann+tag@x.com failed"}}, false,
			"notify [redacted] failed"},
		{"quoted value of a personal field", "client_ip \"10.9.8.7\": bad\npage \"Checkout\": unknown",
			[]Reason{{Field: f("client_ip"), Message: "client_ip \"10.9.8.7\": bad"}, {Field: f("page"), Message: "page \"Checkout\": unknown"}}, false,
			"client_ip \"[redacted]\": bad\npage \"Checkout\": unknown"},
		{"quoted values of a pii row", "currency \"Xanadu\": want EUR", []Reason{{Field: f("currency"), Message: "currency \"Xanadu\": want EUR"}}, true,
			"currency \"[redacted]\": want EUR"},
		{"message not the reasons' (masked whole, personal)", "name \"Ann\" and more",
			[]Reason{{Field: f("customer.firstName"), Message: "other"}}, false, "name \"[redacted]\" and more"},
		{"no reasons", "to \"x\" ann@shop.example", nil, false, "to \"x\" [redacted]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := SearchMessage(tt.message, tt.reasons, tt.pii); got != tt.want {
				t.Errorf("SearchMessage = %q, want %q", got, tt.want)
			}
		})
	}
}
