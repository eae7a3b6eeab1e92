package store

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/ecomstream/platform/services/dlq-handler/internal/redact"
	ddl "github.com/ecomstream/platform/sql"
)

// TestRedactDoc: the retention masks an audit entry's or a job's JSON one
// string at a time, so a line break before an email (a console textarea
// sends \r\n) stays a line break and the result is always JSON.
func TestRedactDoc(t *testing.T) {
	tests := []struct {
		name        string
		give        string
		want        string
		wantChanged bool
	}{
		{"crlf before an email", `{"reason": "Customer request\r\nann@shop.example"}`, `{"reason": "Customer request\r\n[redacted]"}`, true},
		{"lf before an email", `{"reason": "asked by\nann@shop.example", "discarded": 2}`, `{"reason": "asked by\n[redacted]", "discarded": 2}`, true},
		{"escaped quote and unicode", `{"r": "\"ann@shop.example\" \u00e9"}`, `{"r": "\"[redacted]\" é"}`, true},
		{"q anywhere, whole", `{"filter": {"q": "John Smith", "stage": ["validator"]}, "q": ""}`, `{"filter": {"q": "[redacted]", "stage": ["validator"]}, "q": ""}`, true},
		{"an email as a key", `{"by": {"a@b.example": 1, "c@d.example": 2}}`, `{"by": {"[redacted]": 1, "[redacted]#2": 2}}`, true},
		{"nothing to mask", `{"ids": ["a"], "n": 12345678901234567890}`, `{"ids": ["a"], "n": 12345678901234567890}`, false},
		{"already masked", `{"q": "[redacted]", "reason": "[redacted]"}`, `{"q": "[redacted]", "reason": "[redacted]"}`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, changed := redactDoc([]byte(tt.give))
			if !json.Valid(got) {
				t.Fatalf("redactDoc = %s: not JSON", got)
			}
			var g, w any
			_ = json.Unmarshal(got, &g)
			_ = json.Unmarshal([]byte(tt.want), &w)
			gb, _ := json.Marshal(g)
			wb, _ := json.Marshal(w)
			if string(gb) != string(wb) || changed != tt.wantChanged {
				t.Errorf("redactDoc = %s, %v; want %s, %v", got, changed, tt.want, tt.wantChanged)
			}
			if strings.Contains(string(got), "12345678901234567890") != strings.Contains(tt.give, "12345678901234567890") {
				t.Errorf("redactDoc changed a number: %s", got)
			}
		})
	}
}

// TestMigration0002Patterns: the backfill of migration 0002 masks and flags
// with exactly internal/redact's patterns (as SQL literals), so a row the
// migration handled reads the same as one the retention or ingest handles.
func TestMigration0002Patterns(t *testing.T) {
	ms, err := ddl.DLQMigrations()
	if err != nil {
		t.Fatal(err)
	}
	var sql string
	for _, m := range ms {
		if m.Name == "postgres/dlq/0002_retention.sql" {
			sql = m.SQL
		}
	}
	if sql == "" {
		t.Fatal("no postgres/dlq/0002_retention.sql")
	}
	for name, p := range map[string]string{"QuotedPattern": redact.QuotedPattern, "QuotedMask": redact.QuotedMask,
		"EmailPattern": redact.EmailPattern, "Mask": redact.Mask, "FieldPattern": redact.FieldPattern, "CamelPattern": redact.CamelPattern} {
		if lit := "'" + strings.ReplaceAll(p, "'", "''") + "'"; !strings.Contains(sql, lit) {
			t.Errorf("0002 lacks redact.%s as the literal %s", name, lit)
		}
	}
}
