// Package clickparse turns one raw clickstream JSON object (the contract in
// proto/json/clickstream-raw.schema.json) into an Avro ClickEvent, or into a
// *deadletter.Rejection that says precisely what is wrong with it.
package clickparse

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	gojson "github.com/goccy/go-json"

	"github.com/ecomstream/platform/pkg/deadletter"
	"github.com/ecomstream/platform/pkg/events"
)

// Entity is the dead-letter entity name of click events.
const Entity = "click_event"

// EventTypes are the event types the ClickEvent contract knows.
var EventTypes = []string{"page_view", "product_view", "search", "add_to_cart", "remove_from_cart", "begin_checkout", "purchase"}

var knownTypes = func() map[string]bool {
	m := map[string]bool{}
	for _, t := range EventTypes {
		m[t] = true
	}
	return m
}()

// Field length limits, from the JSON contract.
const (
	maxIDLen     = 128
	maxURLLen    = 2048
	maxUALen     = 1024
	maxQueryLen  = 1024
	maxShortText = 128
)

// Parser parses raw events.
type Parser struct {
	MaxBytes int    // records larger than this are OVERSIZED
	Source   string // kafka or http
}

// raw mirrors the JSON contract. Pointers tell "absent or null" from zero.
type raw struct {
	EventID        *string  `json:"event_id"`
	EventTimestamp *string  `json:"event_timestamp"`
	EventType      *string  `json:"event_type"`
	UserID         *string  `json:"user_id"`
	AnonymousID    *string  `json:"anonymous_id"`
	SessionID      *string  `json:"session_id"`
	PageURL        *string  `json:"page_url"`
	Referrer       *string  `json:"referrer"`
	UserAgent      *string  `json:"user_agent"`
	Device         *device  `json:"device"`
	Geo            *geo     `json:"geo"`
	ProductID      *string  `json:"product_id"`
	SearchQuery    *string  `json:"search_query"`
	Quantity       *int32   `json:"quantity"`
	Price          *decimal `json:"price"`
	Currency       *string  `json:"currency"`
	OrderID        *string  `json:"order_id"`
}

type device struct {
	Type    *string `json:"type"`
	OS      *string `json:"os"`
	Browser *string `json:"browser"`
}

type geo struct {
	Country *string `json:"country"`
	Region  *string `json:"region"`
	City    *string `json:"city"`
}

// errPriceType is returned by decimal for a value that is neither a number
// nor a string; the JSON library reports custom unmarshaler errors without the
// JSON field name, so the parser recognises this one.
var errPriceType = errors.New("price must be a decimal number or a string holding one")

// decimal accepts a JSON number or a string holding one, kept as text so no
// float ever touches money.
type decimal string

func (d *decimal) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*d = decimal(strings.TrimSpace(s))
		return nil
	}
	if len(b) == 0 || !(b[0] == '-' || (b[0] >= '0' && b[0] <= '9')) {
		return errPriceType
	}
	*d = decimal(b)
	return nil
}

// Parse parses b, read at receivedAt.
func (p *Parser) Parse(b []byte, receivedAt time.Time) (events.ClickEvent, error) {
	if p.MaxBytes > 0 && len(b) > p.MaxBytes {
		return events.ClickEvent{}, reject(deadletter.Reason{Code: deadletter.Oversized,
			Message: fmt.Sprintf("record is %d bytes, limit is %d", len(b), p.MaxBytes)})
	}
	trimmed := bytes.TrimSpace(b)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return events.ClickEvent{}, reject(deadletter.Reason{Code: deadletter.MalformedJSON, Message: "not a JSON object"})
	}
	if !utf8.Valid(b) {
		return events.ClickEvent{}, reject(deadletter.Reason{Code: deadletter.MalformedJSON, Message: "not valid UTF-8"})
	}
	// goccy/go-json is several times faster than encoding/json on the happy
	// path; on any error the standard library decodes again, both to classify
	// the error precisely (goccy reports some type errors as syntax errors) and
	// so that the standard library is the judge of what is valid.
	var r raw
	if gojson.Unmarshal(b, &r) != nil {
		r = raw{}
		err := json.Unmarshal(b, &r)
		if err != nil {
			return events.ClickEvent{}, classify(err)
		}
	}

	var reasons []deadletter.Reason
	require := func(field string, v *string) {
		if v == nil {
			reasons = append(reasons, deadletter.Reason{Code: deadletter.MissingField, Field: field, Message: field + " is required"})
		}
	}
	require("event_id", r.EventID)
	require("event_timestamp", r.EventTimestamp)
	require("event_type", r.EventType)
	require("session_id", r.SessionID)
	require("page_url", r.PageURL)
	if len(reasons) > 0 {
		return events.ClickEvent{}, reject(reasons...)
	}

	ev := events.ClickEvent{
		EventID:     *r.EventID,
		ReceivedAt:  receivedAt.UTC().Truncate(time.Microsecond),
		EventType:   *r.EventType,
		UserID:      r.UserID,
		AnonymousID: r.AnonymousID,
		SessionID:   *r.SessionID,
		PageURL:     *r.PageURL,
		Referrer:    r.Referrer,
		UserAgent:   r.UserAgent,
		ProductID:   r.ProductID,
		SearchQuery: r.SearchQuery,
		Currency:    r.Currency,
		OrderID:     r.OrderID,
		Source:      p.Source,
	}
	if r.Device != nil {
		ev.DeviceType, ev.Os, ev.Browser = r.Device.Type, r.Device.OS, r.Device.Browser
	}
	if r.Geo != nil {
		ev.Country, ev.Region, ev.City = r.Geo.Country, r.Geo.Region, r.Geo.City
	}
	if r.Quantity != nil {
		q := int(*r.Quantity)
		ev.Quantity = &q
	}

	invalid := func(field, format string, args ...any) {
		reasons = append(reasons, deadletter.Reason{Code: deadletter.InvalidValue, Field: field, Message: fmt.Sprintf(format, args...)})
	}
	if !knownTypes[ev.EventType] {
		reasons = append(reasons, deadletter.Reason{Code: deadletter.UnknownEventType, Field: "event_type",
			Message: fmt.Sprintf("unknown event_type %q", truncate(ev.EventType, 64))})
	}
	ts, err := time.Parse(time.RFC3339Nano, *r.EventTimestamp)
	if err != nil {
		invalid("event_timestamp", "not an RFC 3339 timestamp: %q", truncate(*r.EventTimestamp, 64))
	} else {
		ev.EventTimestamp = ts.UTC().Truncate(time.Microsecond)
	}
	for _, f := range []struct {
		name string
		v    *string
		max  int
	}{
		{"event_id", r.EventID, maxIDLen}, {"session_id", r.SessionID, maxIDLen}, {"user_id", r.UserID, maxIDLen},
		{"anonymous_id", r.AnonymousID, maxIDLen}, {"product_id", r.ProductID, maxIDLen}, {"order_id", r.OrderID, maxIDLen},
		{"page_url", r.PageURL, maxURLLen}, {"referrer", r.Referrer, maxURLLen}, {"user_agent", r.UserAgent, maxUALen},
		{"search_query", r.SearchQuery, maxQueryLen}, {"currency", r.Currency, 3},
		{"device.type", ev.DeviceType, maxShortText}, {"device.os", ev.Os, maxShortText}, {"device.browser", ev.Browser, maxShortText},
		{"geo.country", ev.Country, maxShortText}, {"geo.region", ev.Region, maxShortText}, {"geo.city", ev.City, maxShortText},
	} {
		if f.v != nil && len(*f.v) > f.max {
			invalid(f.name, "longer than %d bytes", f.max)
		}
	}
	if r.Currency != nil && !isCurrencyCode(*r.Currency) {
		invalid("currency", "not an ISO 4217 code: %q", truncate(*r.Currency, 16))
	}
	if r.Price != nil {
		if r.Currency == nil {
			invalid("currency", "currency is required when price is set")
		} else if minor, err := MinorUnits(string(*r.Price), *r.Currency); err != nil {
			invalid("price", "%v", err)
		} else {
			ev.PriceMinor = &minor
		}
	}
	if len(reasons) > 0 {
		return events.ClickEvent{}, reject(reasons...)
	}
	return ev, nil
}

// classify turns a decoding error of encoding/json into a rejection.
func classify(err error) *deadletter.Rejection {
	if errors.Is(err, errPriceType) {
		return reject(deadletter.Reason{Code: deadletter.WrongType, Field: "price", Message: errPriceType.Error()})
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		field := jsonName(te.Field)
		msg := fmt.Sprintf("%s must be %s", field, wantType(field))
		if te.Value != "" {
			msg += ", got " + te.Value
		}
		return reject(deadletter.Reason{Code: deadletter.WrongType, Field: field, Message: msg})
	}
	return reject(deadletter.Reason{Code: deadletter.MalformedJSON, Message: err.Error()})
}

func reject(reasons ...deadletter.Reason) *deadletter.Rejection {
	return &deadletter.Rejection{Entity: Entity, Reasons: reasons}
}

// jsonNames maps Go field names of the raw structs to their JSON names: the
// JSON library sometimes reports one, sometimes the other.
var jsonNames = func() map[string]string {
	m := map[string]string{}
	for _, t := range []reflect.Type{reflect.TypeFor[raw](), reflect.TypeFor[device](), reflect.TypeFor[geo]()} {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			m[f.Name], m[name] = name, name
		}
	}
	return m
}()

func jsonName(field string) string {
	parts := strings.Split(field, ".")
	for i, p := range parts {
		if n, ok := jsonNames[p]; ok {
			parts[i] = n
		}
	}
	return strings.Join(parts, ".")
}

func wantType(field string) string {
	switch field {
	case "quantity":
		return "an integer"
	case "price":
		return "a decimal number"
	case "device", "geo":
		return "an object"
	case "":
		return "a JSON object"
	default:
		return "a string"
	}
}

func isCurrencyCode(s string) bool {
	if len(s) != 3 {
		return false
	}
	for i := 0; i < 3; i++ {
		if s[i] < 'A' || s[i] > 'Z' {
			return false
		}
	}
	return true
}

// zeroDecimal and threeDecimal list ISO 4217 currencies whose minor unit is
// not the usual hundredth.
var (
	zeroDecimal  = map[string]bool{"JPY": true, "KRW": true, "VND": true, "CLP": true, "ISK": true, "UGX": true, "XAF": true, "XOF": true}
	threeDecimal = map[string]bool{"BHD": true, "KWD": true, "OMR": true, "JOD": true, "TND": true, "IQD": true, "LYD": true}
)

// MinorUnits converts a decimal price in major units of currency to integer
// minor units exactly (no floats). More fraction digits than the currency has
// is an error rather than a silent rounding.
func MinorUnits(s, currency string) (int64, error) {
	exp := 2
	switch {
	case zeroDecimal[currency]:
		exp = 0
	case threeDecimal[currency]:
		exp = 3
	}
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, errors.New("empty price")
	}
	neg := false
	if s[0] == '-' {
		neg, s = true, s[1:]
	}
	intPart, frac, hasDot := strings.Cut(s, ".")
	if !digits(intPart) || (hasDot && !digits(frac)) {
		return 0, fmt.Errorf("not a plain decimal: %q", truncate(s, 32))
	}
	frac = strings.TrimRight(frac, "0")
	if len(frac) > exp {
		return 0, fmt.Errorf("%q has more than %d decimals for %s", truncate(s, 32), exp, currency)
	}
	frac += strings.Repeat("0", exp-len(frac))
	n, err := strconv.ParseInt(intPart+frac, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("not a decimal in range: %q", truncate(s, 32))
	}
	if neg {
		n = -n
	}
	return n, nil
}

func digits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
