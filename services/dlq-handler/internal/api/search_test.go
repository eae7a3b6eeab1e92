package api

import (
	"strings"
	"testing"

	"github.com/ecomstream/platform/services/dlq-handler/internal/auth"
	"github.com/ecomstream/platform/services/dlq-handler/internal/query"
	"github.com/ecomstream/platform/services/dlq-handler/internal/store"
)

// TestSearchMessageIsWhatIsShown: the column a caller without the PII
// right searches (store.SearchMessage, written at ingest) holds exactly the
// message RedactMeta shows that caller, so a search hit never confirms
// text the answer hides.
func TestSearchMessageIsWhatIsShown(t *testing.T) {
	f := func(s string) *string { return &s }
	tests := []struct {
		name    string
		reasons []query.Reason
		message string // "" = the reasons' messages joined
		pii     bool
	}{
		{"email", []query.Reason{{Message: "notify ann+tag@x.com failed"}}, "", false},
		{"personal field", []query.Reason{{Field: f("shippingAddress.city"), Message: `city "Bern": unknown`}, {Field: f("page"), Message: `page "x"`}}, "", false},
		{"pii row", []query.Reason{{Field: f("currency"), Message: `currency "Xanadu": want EUR; mail a@b.example`}}, "", true},
		{"message not the reasons'", []query.Reason{{Field: f("client_ip"), Message: "m"}}, `ip "10.1.2.3" and c@d.example`, false},
		{"no reasons", nil, `x "y" e@f.example`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msgs := make([]string, len(tt.reasons))
			rs := make([]store.Reason, len(tt.reasons))
			for i, r := range tt.reasons {
				msgs[i] = r.Message
				rs[i] = store.Reason{Code: r.Code, RuleID: r.RuleID, Field: r.Field, Message: r.Message}
			}
			msg := tt.message
			if msg == "" {
				msg = strings.Join(msgs, "\n")
			}
			d := query.DeadLetter{Message: msg, Reasons: append([]query.Reason(nil), tt.reasons...), PII: tt.pii}
			RedactMeta(&d, auth.Identity{Name: "bob", Role: auth.Viewer})
			if got := store.SearchMessage(msg, rs, tt.pii); got != d.Message {
				t.Errorf("store.SearchMessage = %q, RedactMeta shows %q", got, d.Message)
			}
		})
	}
}
