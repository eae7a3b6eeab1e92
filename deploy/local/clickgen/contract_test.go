package clickgen_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/ecomstream/platform/deploy/local/clickgen"
)

// This file is a reference reading of proto/json/clickstream-raw.schema.json
// and of the four validator rules the generator targets. It is deliberately
// independent of the generator's code: the tests check the generator against
// it, so a defect that slips into valid records, or a broken record with two
// defects instead of one, shows up as a violation list that is not the
// expected one.

type rawDevice struct {
	Type    *string `json:"type"`
	OS      *string `json:"os"`
	Browser *string `json:"browser"`
}

type rawGeo struct {
	Country *string `json:"country"`
	Region  *string `json:"region"`
	City    *string `json:"city"`
}

type rawEvent struct {
	EventID        *string      `json:"event_id"`
	EventTimestamp *string      `json:"event_timestamp"`
	EventType      *string      `json:"event_type"`
	UserID         *string      `json:"user_id"`
	AnonymousID    *string      `json:"anonymous_id"`
	SessionID      *string      `json:"session_id"`
	PageURL        *string      `json:"page_url"`
	Referrer       *string      `json:"referrer"`
	UserAgent      *string      `json:"user_agent"`
	Device         *rawDevice   `json:"device"`
	Geo            *rawGeo      `json:"geo"`
	ProductID      *string      `json:"product_id"`
	SearchQuery    *string      `json:"search_query"`
	Quantity       *int32       `json:"quantity"`
	Price          *json.Number `json:"price"`
	Currency       *string      `json:"currency"`
	OrderID        *string      `json:"order_id"`
}

var eventTypes = map[string]bool{
	"page_view": true, "product_view": true, "search": true, "add_to_cart": true,
	"remove_from_cart": true, "begin_checkout": true, "purchase": true,
}

// Generated timestamps always have exactly six fraction digits in UTC.
var timestampFormat = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$`)

var userIDFormat = regexp.MustCompile(`^u-\d{6}$`)

// Violations a record can have, named after the kinds that cause them.
const (
	vOversized   = "oversized"
	vMalformed   = "malformed_json"
	vWrongType   = "wrong_type"
	vMissing     = "missing_field"
	vUnknownType = "unknown_event_type"
	vBadTime     = "bad_timestamp"
	vFuture      = "future_timestamp"
	vStale       = "stale_timestamp"
	vBadURL      = "bad_url"
	vNoIdentity  = "missing_identity"
)

// violations lists what is wrong with value as the pipeline would see it at
// time now, in pipeline order. It returns the decoded event when the value
// parses.
func violations(value []byte, now time.Time) ([]string, *rawEvent) {
	var out []string
	if len(value) > clickgen.MaxValueBytes {
		out = append(out, vOversized)
	}
	if !json.Valid(value) || !bytes.HasPrefix(value, []byte("{")) {
		return append(out, vMalformed), nil
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(value, &fields); err != nil {
		return append(out, vMalformed), nil
	}
	var e rawEvent
	dec := json.NewDecoder(bytes.NewReader(value))
	dec.UseNumber()
	dec.DisallowUnknownFields() // the generator never sends unknown fields
	if err := dec.Decode(&e); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) {
			return append(out, vWrongType), nil
		}
		return append(out, "decode: "+err.Error()), nil
	}
	for _, f := range []string{"event_id", "event_timestamp", "event_type", "session_id", "page_url"} {
		if raw, ok := fields[f]; !ok || string(raw) == "null" || string(raw) == `""` {
			return append(out, vMissing), &e
		}
	}
	if !eventTypes[*e.EventType] {
		out = append(out, vUnknownType)
	}
	ts, err := time.Parse(time.RFC3339Nano, *e.EventTimestamp)
	if err != nil {
		return append(out, vBadTime), &e
	}
	switch {
	case ts.After(now.Add(5 * time.Minute)):
		out = append(out, vFuture)
	case ts.Before(now.Add(-7 * 24 * time.Hour)):
		out = append(out, vStale)
	}
	if u, err := url.Parse(*e.PageURL); err != nil || u.Scheme != "https" || u.Host == "" {
		out = append(out, vBadURL)
	}
	if e.UserID == nil && e.AnonymousID == nil {
		out = append(out, vNoIdentity)
	}
	return out, &e
}

// shapeErrors checks what the contract says beyond the pipeline rules, for
// valid records only: formats, nullability and the per-event-type fields.
func shapeErrors(e *rawEvent) []string {
	var errs []string
	bad := func(s string) { errs = append(errs, s) }
	if !timestampFormat.MatchString(*e.EventTimestamp) {
		bad("timestamp not UTC with microseconds: " + *e.EventTimestamp)
	}
	if !strings.HasPrefix(*e.PageURL, "https://shop.ecomstream.dev/") {
		bad("page_url not on the shop: " + *e.PageURL)
	}
	if e.AnonymousID == nil {
		bad("anonymous_id missing") // browsers always have the cookie
	}
	if e.UserID != nil && !userIDFormat.MatchString(*e.UserID) {
		bad("user_id format: " + *e.UserID)
	}
	if e.UserAgent == nil || e.Device == nil || e.Device.Type == nil || e.Geo == nil || e.Geo.Country == nil {
		bad("user_agent, device or country missing")
	}
	has := map[string]bool{
		"product_id":   e.ProductID != nil,
		"search_query": e.SearchQuery != nil,
		"quantity":     e.Quantity != nil,
		"price":        e.Price != nil,
		"currency":     e.Currency != nil,
		"order_id":     e.OrderID != nil,
	}
	want := map[string][]string{
		"page_view":        nil,
		"search":           {"search_query"},
		"product_view":     {"product_id", "price", "currency"},
		"add_to_cart":      {"product_id", "quantity", "price", "currency"},
		"remove_from_cart": {"product_id", "quantity", "price", "currency"},
		"begin_checkout":   nil,
		"purchase":         {"order_id"},
	}[*e.EventType]
	for f, set := range has {
		if set != contains(want, f) {
			bad(*e.EventType + ": " + f + " set=" + boolString(set))
		}
	}
	if e.Quantity != nil && *e.Quantity < 1 {
		bad("quantity < 1")
	}
	if e.Price != nil {
		digits := map[string]int{"USD": 2, "EUR": 2, "GBP": 2, "JPY": 0}[*e.Currency]
		p := string(*e.Price)
		frac := ""
		if i := strings.IndexByte(p, '.'); i >= 0 {
			frac = p[i+1:]
		}
		if len(frac) != digits || strings.HasPrefix(p, "-") {
			bad("price " + p + " for " + *e.Currency)
		}
	}
	return errs
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if x == y {
			return true
		}
	}
	return false
}

func boolString(b bool) string {
	if b {
		return "true"
	}
	return "false"
}
