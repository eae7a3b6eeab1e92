// Package rules holds the data-quality rules the validator applies to every
// ClickEvent. Every rule has a stable id (dashboards, alerts and dead letters
// refer to it); a record failing any rule is dead-lettered with every failed
// rule, not just the first.
//
// A verdict depends on the record alone, never on when it is processed: the
// time rules judge event_timestamp against received_at (when the raw event
// reached the platform), and received_at against the Kafka record's own
// timestamp. So a
// validator catching up on old data, or a retry, or a replay, decides as it
// would have when the event arrived.
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
	ReceivedAtPlausible = "click.received_at_plausible"
	PageURLValid        = "click.page_url_valid"
	CommerceFieldsValid = "click.commerce_fields"
)

// Config parameterises the click rules.
type Config struct {
	AllowedEventTypes []string      // event_type must be one of these
	MaxFutureSkew     time.Duration // event_timestamp may be at most this far ahead of received_at (client clocks drift), and received_at this far ahead of the record's timestamp
	MaxEventAge       time.Duration // event_timestamp at most this far behind received_at (late mobile batches arrive; very old ones are suspect)
}

// Rule is one data-quality check.
type Rule struct {
	ID          string
	Description string
	check       func(ev *events.ClickEvent, recordTime time.Time) (field, msg string, ok bool)
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

// Evaluate applies every rule to ev, read from a Kafka record with timestamp
// recordTime (zero if it has none). It returns one Result per rule (for the
// pass-rate metrics) and the reasons of the failed ones.
func (s *Set) Evaluate(ev *events.ClickEvent, recordTime time.Time, results []Result) ([]Result, []deadletter.Reason) {
	var reasons []deadletter.Reason
	results = results[:0]
	for _, r := range s.rules {
		field, msg, ok := r.check(ev, recordTime)
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
		{ID: TimestampNotFuture, Description: fmt.Sprintf("event_timestamp is at most %s after received_at", cfg.MaxFutureSkew),
			check: func(ev *events.ClickEvent, _ time.Time) (string, string, bool) {
				if ahead := ev.EventTimestamp.Sub(ev.ReceivedAt); ahead > cfg.MaxFutureSkew {
					return "event_timestamp", fmt.Sprintf("event_timestamp %s is %s after received_at %s (limit %s)",
						ev.EventTimestamp.Format(time.RFC3339), ahead.Round(time.Second), ev.ReceivedAt.Format(time.RFC3339), cfg.MaxFutureSkew), false
				}
				return "", "", true
			}},
		{ID: TimestampWithinWin, Description: fmt.Sprintf("event_timestamp is at most %s before received_at", cfg.MaxEventAge),
			check: func(ev *events.ClickEvent, _ time.Time) (string, string, bool) {
				if age := ev.ReceivedAt.Sub(ev.EventTimestamp); age > cfg.MaxEventAge {
					return "event_timestamp", fmt.Sprintf("event_timestamp %s is %s before received_at %s (limit %s)",
						ev.EventTimestamp.Format(time.RFC3339), age.Round(time.Second), ev.ReceivedAt.Format(time.RFC3339), cfg.MaxEventAge), false
				}
				return "", "", true
			}},
		{ID: ReceivedAtPlausible, Description: fmt.Sprintf("received_at is at most %s after the Kafka record's timestamp", cfg.MaxFutureSkew),
			check: func(ev *events.ClickEvent, recordTime time.Time) (string, string, bool) {
				// ingest gives its output record the timestamp received_at, so
				// on a CreateTime topic the two are equal. A received_at further
				// ahead means a record that did not come from ingest, or a
				// LogAppendTime topic whose broker clock is behind ingest's; the
				// time rules above cannot be trusted then.
				// Records without a timestamp (before 0.10's format) are not judged.
				if recordTime.IsZero() || recordTime.UnixMilli() < 0 {
					return "", "", true
				}
				if ahead := ev.ReceivedAt.Sub(recordTime); ahead > cfg.MaxFutureSkew {
					return "received_at", fmt.Sprintf("received_at %s is %s after the record's timestamp %s (limit %s)",
						ev.ReceivedAt.Format(time.RFC3339), ahead.Round(time.Second), recordTime.UTC().Format(time.RFC3339), cfg.MaxFutureSkew), false
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
