// Package rules is the validator's data-quality rule engine. Rules are
// declared per entity in versioned YAML files (services/validator/rules/,
// embedded in the binary; RULES_DIR replaces them), compiled once at load
// against the entity's generated Go type in pkg/events, and evaluated per
// record without reflection lookups or allocation on the pass path.
//
// Every rule has a stable id (dashboards, alerts and dead letters refer to
// it) and a severity: a record failing an `error` rule is dead-lettered with
// every failed rule, not just the first; a record failing only `warn` rules
// passes on, flagged with their ids. An invalid file stops the validator at
// start with one error naming the file, line and rule.
//
// A verdict depends on the record alone, never on when it is processed: the
// time checks judge a timestamp against another timestamp of the same record
// (event_timestamp against received_at, when the raw event reached the
// platform; received_at against the Kafka record's own timestamp), never
// against the clock. So a validator catching up on old data, or a retry, or a
// replay, decides as it would have when the event arrived.
package rules

import (
	"fmt"
	"reflect"
	"time"

	"github.com/ecomstream/platform/pkg/deadletter"
)

// Rule ids of the click rules (services/validator/rules/click_event.yaml).
const (
	RequiredFields      = "click.required_fields"
	EventTypeAllowed    = "click.event_type_allowed"
	TimestampNotFuture  = "click.timestamp_not_future"
	TimestampWithinWin  = "click.timestamp_within_window"
	ReceivedAtPlausible = "click.received_at_plausible"
	PageURLValid        = "click.page_url_valid"
	CommerceFieldsValid = "click.commerce_fields"
)

// Rule ids of the order rules (services/validator/rules/order.yaml).
const (
	OrderRequiredFields     = "order.required_fields"
	OrderCurrencyISO4217    = "order.currency_iso4217"
	OrderAmountsNonNegative = "order.amounts_non_negative"
	OrderTotalMatches       = "order.total_matches"
	OrderHasLines           = "order.has_lines"
	OrderQuantitiesPositive = "order.quantities_positive"
	OrderLineTotals         = "order.line_totals"
	OrderLinesSumToSubtotal = "order.lines_sum_to_subtotal"
	OrderRefundWithinTotal  = "order.refund_within_total"
	OrderStatusKnown        = "order.status_known"
	OrderStatusConsistent   = "order.status_consistent"
	OrderStageTimesOrdered  = "order.stage_times_ordered"
	OrderShippingCountry    = "order.shipping_country_iso3166"
	OrderFreshness          = "order.freshness"
)

// Rule ids of the product rules (services/validator/rules/product.yaml).
const (
	ProductRequiredFields = "product.required_fields"
	ProductIDFormat       = "product.product_id_format"
	ProductOpKnown        = "product.op_known"
	ProductSourceKnown    = "product.source_known"
	ProductSourceSequence = "product.source_sequence"
	ProductNamePresent    = "product.name_present"
	ProductSKUFormat      = "product.sku_format"
	ProductPriceRange     = "product.price_range"
	ProductCurrency       = "product.currency_iso4217"
	ProductCategoryKnown  = "product.category_known"
	ProductSoftDelete     = "product.soft_delete_consistent"
)

// Rule ids of the customer rules (services/validator/rules/customer.yaml).
const (
	CustomerRequiredFields = "customer.required_fields"
	CustomerIDFormat       = "customer.customer_id_format"
	CustomerOpKnown        = "customer.op_known"
	CustomerSourceKnown    = "customer.source_known"
	CustomerSourceSequence = "customer.source_sequence"
	CustomerEmailValid     = "customer.email_valid"
	CustomerCountry        = "customer.country_iso3166"
)

// Severity says what a failed rule does to its record.
type Severity uint8

const (
	Error Severity = iota + 1 // dead-letter the record
	Warn                      // pass it on, counted and flagged
)

func (s Severity) String() string {
	switch s {
	case Error:
		return "error"
	case Warn:
		return "warn"
	}
	return "?"
}

// Outcome is a rule's result for one record.
type Outcome uint8

const (
	Pass   Outcome = iota
	Fail           // an error clause failed: the record is dead-lettered
	Warned         // only warn clauses failed: the record passes, flagged
)

// String is the metric label value.
func (o Outcome) String() string {
	return [...]string{"pass", "fail", "warn"}[o]
}

// Result is the outcome of one rule for one record.
type Result struct {
	RuleID  string
	Outcome Outcome
}

// Rule is one data-quality rule: one or more clauses under one id. Its
// outcome is Fail if an error clause fails, else Warned if a warn clause
// fails, else Pass.
type Rule struct {
	ID          string
	Description string
	Severity    Severity // of its clauses unless they say otherwise
	Line        int      // in its file
	clauses     []clause
}

type clause struct {
	when     []condition
	check    checker
	severity Severity
}

// condition restricts a clause to the records it applies to.
type condition struct {
	f       *field
	set     strSet // the field's value is one of these
	present bool   // the field is set (not null)
	absent  bool
	expr    *exprCheck
}

func (c *condition) holds(rec reflect.Value, m Meta) bool {
	if c.expr != nil {
		return c.expr.ok(rec, m)
	}
	switch {
	case c.present:
		return !c.f.missing(rec, m, false)
	case c.absent:
		return c.f.missing(rec, m, false)
	}
	v := rec.Field(c.f.index) // a string field (checked at load)
	if c.f.ptr {
		if v.IsNil() {
			return false
		}
		v = v.Elem()
	}
	return c.set.has(v.String())
}

func (cl *clause) applies(rec reflect.Value, m Meta) bool {
	for i := range cl.when {
		if !cl.when[i].holds(rec, m) {
			return false
		}
	}
	return true
}

// Set is the ordered rule set of one entity, from one file.
type Set struct {
	Entity  Entity
	File    string // as loaded, e.g. click_event.yaml or /etc/rules/click_event.yaml
	Version string // the file's version field
	Hash    string // first 12 hex digits of the SHA-256 of the file's bytes
	rules   []Rule
	ptr     reflect.Type
	tag     string // appended to every failure message
}

// Rules returns the rules of the set in evaluation order.
func (s *Set) Rules() []Rule { return s.rules }

// Evaluate applies every rule to rec, a pointer to the set's entity type
// (e.g. *events.ClickEvent), read from a Kafka record with timestamp
// recordTime (zero if it has none). It returns one Result per rule, in order
// (for the metrics and the warning flag), and a reason per failed rule (for
// the dead letter). It allocates only for failed rules and expressions.
func (s *Set) Evaluate(rec any, recordTime time.Time, results []Result) ([]Result, []deadletter.Reason) {
	if reflect.TypeOf(rec) != s.ptr {
		panic(fmt.Sprintf("rules: %s set evaluated on a %T", s.Entity.Name, rec)) // a wiring bug, not data
	}
	v := base(rec)
	m := Meta{RecordTime: recordTime}
	var reasons []deadletter.Reason
	results = results[:0]
	for i := range s.rules {
		r := &s.rules[i]
		out := Pass
		for j := range r.clauses {
			cl := &r.clauses[j]
			if !cl.applies(v, m) || cl.check.ok(v, m) {
				continue
			}
			if cl.severity == Warn {
				out = Warned
				continue
			}
			out = Fail
			field, msg := cl.check.explain(v, m)
			reasons = append(reasons, deadletter.Reason{Code: deadletter.RuleFailed, RuleID: r.ID, Field: field, Message: msg + s.tag})
			break
		}
		results = append(results, Result{RuleID: r.ID, Outcome: out})
	}
	return results, reasons
}

// Label is the rule set's identity for logs, metrics and dead letters:
// "<file> v<version> sha256:<hash>".
func (s *Set) Label() string {
	return fmt.Sprintf("%s v%s sha256:%s", s.File, s.Version, s.Hash)
}
