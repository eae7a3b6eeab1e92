package clickgen

// Record kinds. KindValid records must reach the warehouse; every other kind
// is a defect that one stage of the platform must dead-letter with the code
// (and rule id) in its Expectation. The names are shared with the services and
// the end-to-end tests, so they are part of the contract: do not rename them.
const (
	KindValid = "valid"

	KindMalformedJSON    = "malformed_json"
	KindWrongType        = "wrong_type"
	KindMissingField     = "missing_field"
	KindUnknownEventType = "unknown_event_type"
	KindOversized        = "oversized"
	KindBadTimestamp     = "bad_timestamp"
	KindFutureTimestamp  = "future_timestamp"
	KindStaleTimestamp   = "stale_timestamp"
	KindBadURL           = "bad_url"
	KindMissingIdentity  = "missing_identity"
)

// Stages that reject broken records (the dead letter's stage field).
const (
	StageIngest    = "ingest-clickstream"
	StageValidator = "validator"
)

// MaxValueBytes is the record size above which ingest-clickstream rejects a
// value as OVERSIZED (the contract's default limit, 64 KiB).
const MaxValueBytes = 64 << 10

// Expectation is the outcome the platform must produce for one record.
type Expectation struct {
	Valid  bool   // true: the event must reach the warehouse (once)
	Kind   string // KindValid or one of the broken kinds
	Stage  string // stage that dead-letters it; "" when Valid
	Code   string // dead letter reason code, e.g. "WRONG_TYPE"
	RuleID string // data-quality rule id when Code is "RULE_FAILED"
}

// BrokenKinds lists every broken kind in a stable order.
func BrokenKinds() []string {
	return []string{
		KindMalformedJSON,
		KindWrongType,
		KindMissingField,
		KindUnknownEventType,
		KindOversized,
		KindBadTimestamp,
		KindFutureTimestamp,
		KindStaleTimestamp,
		KindBadURL,
		KindMissingIdentity,
	}
}

// ExpectationFor returns the expected outcome for a kind, and false for an
// unknown kind.
func ExpectationFor(kind string) (Expectation, bool) {
	ingest := func(code string) Expectation {
		return Expectation{Kind: kind, Stage: StageIngest, Code: code}
	}
	rule := func(id string) Expectation {
		return Expectation{Kind: kind, Stage: StageValidator, Code: "RULE_FAILED", RuleID: id}
	}
	switch kind {
	case KindValid:
		return Expectation{Valid: true, Kind: KindValid}, true
	case KindMalformedJSON:
		return ingest("MALFORMED_JSON"), true
	case KindWrongType:
		return ingest("WRONG_TYPE"), true
	case KindMissingField:
		return ingest("MISSING_FIELD"), true
	case KindUnknownEventType:
		return ingest("UNKNOWN_EVENT_TYPE"), true
	case KindOversized:
		return ingest("OVERSIZED"), true
	case KindBadTimestamp:
		return ingest("INVALID_VALUE"), true
	case KindFutureTimestamp:
		return rule("click.timestamp_not_future"), true
	case KindStaleTimestamp:
		return rule("click.timestamp_within_window"), true
	case KindBadURL:
		return rule("click.page_url_valid"), true
	case KindMissingIdentity:
		return rule("click.required_fields"), true
	}
	return Expectation{}, false
}
