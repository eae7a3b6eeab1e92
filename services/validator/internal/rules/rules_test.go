package rules

import (
	"slices"
	"testing"
	"time"

	"github.com/ecomstream/platform/pkg/events"
)

var now = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func ptr[T any](v T) *T { return &v }

func valid() events.ClickEvent {
	return events.ClickEvent{
		EventID: "e1", EventTimestamp: now.Add(-time.Second), ReceivedAt: now, EventType: "page_view",
		AnonymousID: ptr("a1"), SessionID: "s1", PageURL: "https://shop.example.com/", Source: "kafka",
	}
}

func clickSet(t testing.TB, cfg Config) *Set {
	t.Helper()
	set, err := ClickEvents(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return set
}

// TestClickEventRules: the cases of the Go rules this file replaced, with
// the same verdicts, except that a missing commerce field (quantity, price,
// order_id) is now a warning (wantWarn) where it was a failure.
func TestClickEventRules(t *testing.T) {
	set := clickSet(t, Config{
		AllowedEventTypes: []string{"page_view", "product_view", "add_to_cart", "remove_from_cart", "purchase"},
		MaxFutureSkew:     5 * time.Minute, MaxEventAge: 7 * 24 * time.Hour,
	})
	tests := []struct {
		name     string
		mutate   func(*events.ClickEvent)
		record   time.Time // the Kafka record's timestamp; zero: now
		want     []string  // failed rule ids, in order
		wantWarn []string  // warned rule ids, in order
	}{
		{name: "valid", mutate: func(*events.ClickEvent) {}},
		{name: "logged in without anonymous id", mutate: func(e *events.ClickEvent) { e.AnonymousID, e.UserID = nil, ptr("u1") }},
		{name: "no identity", mutate: func(e *events.ClickEvent) { e.AnonymousID = ptr("  ") }, want: []string{RequiredFields}},
		{name: "blank session", mutate: func(e *events.ClickEvent) { e.SessionID = "" }, want: []string{RequiredFields}},
		{name: "type not allowed", mutate: func(e *events.ClickEvent) { e.EventType = "search" }, want: []string{EventTypeAllowed}},
		{name: "within skew", mutate: func(e *events.ClickEvent) { e.EventTimestamp = now.Add(4 * time.Minute) }},
		{name: "future", mutate: func(e *events.ClickEvent) { e.EventTimestamp = now.Add(2 * time.Hour) }, want: []string{TimestampNotFuture}},
		{name: "stale", mutate: func(e *events.ClickEvent) { e.EventTimestamp = now.Add(-30 * 24 * time.Hour) }, want: []string{TimestampWithinWin}},
		// The time rules judge against received_at, not against when the
		// validator runs: a catch-up, retry or replay decides the same.
		{name: "replayed a month later", mutate: func(e *events.ClickEvent) {
			e.ReceivedAt = now.Add(-30 * 24 * time.Hour)
			e.EventTimestamp = e.ReceivedAt.Add(-time.Second)
		}},
		{name: "stale when received", mutate: func(e *events.ClickEvent) {
			e.ReceivedAt = now.Add(-30 * 24 * time.Hour)
			e.EventTimestamp = e.ReceivedAt.Add(-8 * 24 * time.Hour)
		}, want: []string{TimestampWithinWin}},
		{name: "future when received", mutate: func(e *events.ClickEvent) {
			e.ReceivedAt = now.Add(-30 * 24 * time.Hour)
			e.EventTimestamp = e.ReceivedAt.Add(time.Hour)
		}, want: []string{TimestampNotFuture}},
		{name: "received_at ahead of the record", mutate: func(e *events.ClickEvent) {
			e.ReceivedAt = now.Add(time.Hour)
			e.EventTimestamp = e.ReceivedAt.Add(-time.Second)
		}, want: []string{ReceivedAtPlausible}},
		{name: "received_at within skew of the record", mutate: func(e *events.ClickEvent) {
			e.ReceivedAt = now.Add(4 * time.Minute)
			e.EventTimestamp = e.ReceivedAt
		}},
		{name: "record without a timestamp", mutate: func(e *events.ClickEvent) {}, record: time.UnixMilli(-1)},
		{name: "not a url", mutate: func(e *events.ClickEvent) { e.PageURL = "not a url" }, want: []string{PageURLValid}},
		{name: "relative url", mutate: func(e *events.ClickEvent) { e.PageURL = "/p/1" }, want: []string{PageURLValid}},
		{name: "ftp url", mutate: func(e *events.ClickEvent) { e.PageURL = "ftp://x/y" }, want: []string{PageURLValid}},
		{name: "product view without product", mutate: func(e *events.ClickEvent) { e.EventType = "product_view" }, want: []string{CommerceFieldsValid}},
		{name: "cart without quantity", mutate: func(e *events.ClickEvent) { e.EventType, e.ProductID = "add_to_cart", ptr("p1") }, wantWarn: []string{CommerceFieldsValid}},
		{name: "cart with zero quantity", mutate: func(e *events.ClickEvent) {
			e.EventType, e.ProductID, e.Quantity, e.PriceMinor, e.Currency = "add_to_cart", ptr("p1"), ptr(0), ptr(int64(999)), ptr("USD")
		}, want: []string{CommerceFieldsValid}},
		{name: "cart without price", mutate: func(e *events.ClickEvent) { e.EventType, e.ProductID, e.Quantity = "add_to_cart", ptr("p1"), ptr(2) }, wantWarn: []string{CommerceFieldsValid}},
		{name: "cart without quantity, negative price", mutate: func(e *events.ClickEvent) {
			e.EventType, e.ProductID, e.PriceMinor, e.Currency = "add_to_cart", ptr("p1"), ptr(int64(-5)), ptr("USD")
		}, want: []string{CommerceFieldsValid}},
		{name: "cart ok", mutate: func(e *events.ClickEvent) {
			e.EventType, e.ProductID, e.Quantity, e.PriceMinor, e.Currency = "add_to_cart", ptr("p1"), ptr(1), ptr(int64(999)), ptr("USD")
		}},
		{name: "purchase without order", mutate: func(e *events.ClickEvent) { e.EventType = "purchase" }, wantWarn: []string{CommerceFieldsValid}},
		{name: "price without currency", mutate: func(e *events.ClickEvent) { e.PriceMinor = ptr(int64(100)) }, want: []string{CommerceFieldsValid}},
		{name: "negative price", mutate: func(e *events.ClickEvent) { e.PriceMinor, e.Currency = ptr(int64(-1)), ptr("USD") }, want: []string{CommerceFieldsValid}},
		{name: "every failure reported", mutate: func(e *events.ClickEvent) {
			e.SessionID, e.EventType, e.EventTimestamp, e.PageURL = "", "hover", now.Add(time.Hour), "x"
		}, want: []string{RequiredFields, EventTypeAllowed, TimestampNotFuture, PageURLValid}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := valid()
			tt.mutate(&ev)
			record := tt.record
			if record.IsZero() {
				record = now
			}
			results, reasons := set.Evaluate(&ev, record, nil)
			if len(results) != len(set.Rules()) {
				t.Errorf("got %d results, want one per rule (%d)", len(results), len(set.Rules()))
			}
			var warned, failed []string
			for _, r := range results {
				switch r.Outcome {
				case Warned:
					warned = append(warned, r.RuleID)
				case Fail:
					failed = append(failed, r.RuleID)
				}
			}
			if !slices.Equal(warned, tt.wantWarn) || !slices.Equal(failed, tt.want) {
				t.Errorf("failed %v warned %v, want failed %v warned %v", failed, warned, tt.want, tt.wantWarn)
			}
			var got []string
			for _, r := range reasons {
				got = append(got, r.RuleID)
				if r.Code != "RULE_FAILED" || r.Message == "" || r.Field == "" {
					t.Errorf("incomplete reason %+v", r)
				}
			}
			if len(got) != len(tt.want) {
				t.Fatalf("failed rules %v, want %v", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Errorf("failed rules %v, want %v", got, tt.want)
				}
			}
		})
	}
}

func BenchmarkEvaluate(b *testing.B) {
	set := clickSet(b, Config{AllowedEventTypes: []string{"page_view"}, MaxFutureSkew: time.Minute, MaxEventAge: time.Hour})
	ev := valid()
	var results []Result
	b.ReportAllocs()
	for b.Loop() {
		results, _ = set.Evaluate(&ev, now, results)
	}
}
