// Package rules holds the data-quality rules the validator applies to every
// ClickEvent. Every rule has a stable id (dashboards, alerts and dead letters
// refer to it); a record failing any rule is dead-lettered with every failed
// rule, not just the first.
package rules

import (
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/ecomstream/platform/pkg/deadletter"
	"github.com/ecomstream/platform/pkg/events"
)

// Rule ids.
const (
	RequiredFields      = "click.required_fields"
	EventTypeAllowed    = "click.event_type_allowed"
	TimestampNotFuture  = "click.timestamp_not_future"
	TimestampWithinWin  = "click.timestamp_within_window"
	PageURLValid        = "click.page_url_valid"
	CommerceFieldsValid = "click.commerce_fields"
)

// Config parameterises the click rules.
type Config struct {
	AllowedEventTypes []string      // event_type must be one of these
	MaxFutureSkew     time.Duration // event_timestamp may be at most this far ahead of now (client clocks drift)
	MaxEventAge       time.Duration // and at most this far behind (late mobile batches arrive; very old ones are suspect)
}

// Rule is one data-quality check.
type Rule struct {
	ID          string
	Description string
	check       func(ev *events.ClickEvent, now time.Time) (field, msg string, ok bool)
}

// Result is the outcome of one rule for one record.
type Result struct {
	RuleID string
	Passed bool
}

// Set is an ordered set of rules.
type Set struct {
	rules []Rule
}

// Rules returns the rules of the set in evaluation order.
func (s *Set) Rules() []Rule { return s.rules }

// Evaluate applies every rule to ev. It returns one Result per rule (for the
// pass-rate metrics) and the reasons of the failed ones.
func (s *Set) Evaluate(ev *events.ClickEvent, now time.Time, results []Result) ([]Result, []deadletter.Reason) {
	var reasons []deadletter.Reason
	results = results[:0]
	for _, r := range s.rules {
		field, msg, ok := r.check(ev, now)
		results = append(results, Result{RuleID: r.ID, Passed: ok})
		if !ok {
			reasons = append(reasons, deadletter.Reason{Code: deadletter.RuleFailed, RuleID: r.ID, Field: field, Message: msg})
		}
	}
	return results, reasons
}

// ClickEvents returns the click-event rule set.
func ClickEvents(cfg Config) *Set {
	allowed := map[string]bool{}
	for _, t := range cfg.AllowedEventTypes {
		allowed[t] = true
	}
	return &Set{rules: []Rule{
		{ID: RequiredFields, Description: "event_id, session_id, page_url and event_type are non-blank, and the visitor is identified by user_id or anonymous_id",
			check: func(ev *events.ClickEvent, _ time.Time) (string, string, bool) {
				for _, f := range []struct{ name, v string }{
					{"event_id", ev.EventID}, {"session_id", ev.SessionID}, {"page_url", ev.PageURL}, {"event_type", ev.EventType},
				} {
					if blank(f.v) {
						return f.name, f.name + " is blank", false
					}
				}
				if blankPtr(ev.UserID) && blankPtr(ev.AnonymousID) {
					return "user_id", "neither user_id nor anonymous_id is set", false
				}
				return "", "", true
			}},
		{ID: EventTypeAllowed, Description: "event_type is in the allowed set",
			check: func(ev *events.ClickEvent, _ time.Time) (string, string, bool) {
				if !allowed[ev.EventType] {
					return "event_type", fmt.Sprintf("event_type %q is not allowed", ev.EventType), false
				}
				return "", "", true
			}},
		{ID: TimestampNotFuture, Description: fmt.Sprintf("event_timestamp is at most %s in the future", cfg.MaxFutureSkew),
			check: func(ev *events.ClickEvent, now time.Time) (string, string, bool) {
				if ahead := ev.EventTimestamp.Sub(now); ahead > cfg.MaxFutureSkew {
					return "event_timestamp", fmt.Sprintf("event_timestamp %s is %s in the future (limit %s)",
						ev.EventTimestamp.Format(time.RFC3339), ahead.Round(time.Second), cfg.MaxFutureSkew), false
				}
				return "", "", true
			}},
		{ID: TimestampWithinWin, Description: fmt.Sprintf("event_timestamp is at most %s old", cfg.MaxEventAge),
			check: func(ev *events.ClickEvent, now time.Time) (string, string, bool) {
				if age := now.Sub(ev.EventTimestamp); age > cfg.MaxEventAge {
					return "event_timestamp", fmt.Sprintf("event_timestamp %s is %s old (limit %s)",
						ev.EventTimestamp.Format(time.RFC3339), age.Round(time.Second), cfg.MaxEventAge), false
				}
				return "", "", true
			}},
		{ID: PageURLValid, Description: "page_url is an absolute http(s) URL with a host",
			check: func(ev *events.ClickEvent, _ time.Time) (string, string, bool) {
				u, err := url.Parse(ev.PageURL)
				if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
					return "page_url", fmt.Sprintf("page_url %q is not an absolute http(s) URL", truncate(ev.PageURL, 80)), false
				}
				return "", "", true
			}},
		{ID: CommerceFieldsValid, Description: "product events name a product, cart events a positive quantity, purchases an order; prices are non-negative with a currency",
			check: func(ev *events.ClickEvent, _ time.Time) (string, string, bool) {
				switch ev.EventType {
				case "product_view", "add_to_cart", "remove_from_cart":
					if blankPtr(ev.ProductID) {
						return "product_id", ev.EventType + " needs product_id", false
					}
				case "purchase":
					if blankPtr(ev.OrderID) {
						return "order_id", "purchase needs order_id", false
					}
				}
				if (ev.EventType == "add_to_cart" || ev.EventType == "remove_from_cart") && (ev.Quantity == nil || *ev.Quantity <= 0) {
					return "quantity", ev.EventType + " needs a positive quantity", false
				}
				if ev.PriceMinor != nil {
					if *ev.PriceMinor < 0 {
						return "price_minor", "price is negative", false
					}
					if blankPtr(ev.Currency) {
						return "currency", "price without currency", false
					}
				}
				return "", "", true
			}},
	}}
}

func blank(s string) bool { return strings.TrimSpace(s) == "" }

func blankPtr(s *string) bool { return s == nil || blank(*s) }

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
