package store

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ecomstream/platform/pkg/deadletter"
	"github.com/ecomstream/platform/pkg/events"
	"github.com/ecomstream/platform/pkg/stream"
	"github.com/ecomstream/platform/services/dlq-handler/internal/redact"
)

// Partition is one partition of a consumed topic.
type Partition struct {
	Topic     string
	Partition int32
}

// Header is one original Kafka header as original_headers stores it: the
// value base64 (std) so that any bytes fit in jsonb.
type Header struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// Reason is one reason as the reasons column stores it.
type Reason struct {
	Code    string  `json:"code"`
	RuleID  *string `json:"rule_id"`
	Field   *string `json:"field"`
	Message string  `json:"message"`
}

// Row is one dead_letters row as Write inserts it (the columns the store
// sets itself, state and stored_at, are not here).
type Row struct {
	DeadLetterID    string
	Stage           string
	Entity          *string
	SourceTopic     string
	SourcePartition int32
	SourceOffset    int64
	SourceTimestamp time.Time
	OriginalKey     []byte // nil = no key
	OriginalValue   []byte
	OriginalHeaders []Header
	SchemaID        *int32
	Reasons         []Reason
	Codes           []string // distinct, sorted
	RuleIDs         []string // distinct, sorted
	Message         string   // the reasons' messages, one per line
	Attempt         int32
	TraceID         *string
	FailedAt        time.Time
	DLQPartition    int32
	DLQOffset       int64
	// ReplayOf is the dead letter whose replay this one rejects again (the
	// original's ecom-replay-of header), "" for a first rejection.
	ReplayOf string
	// ReplayedAttempt is the replayed attempt (the ecom-replay-attempt
	// header, else Attempt-1); meaningful with ReplayOf.
	ReplayedAttempt int32
	PII             bool
}

// DefaultPIIEntities is DLQ_PII_ENTITIES' default: the entities whose
// originals carry personal data (a customer's email and name).
var DefaultPIIEntities = []string{"customer_change", "order"}

// UndecodableStage is the stage of a record on the DLQ topic that is not a
// DeadLetter: nobody is known to have rejected it.
const UndecodableStage = "unknown"

// emailRE finds an email-like string. It errs on the side of pii: a row
// flagged pii is shown redacted and purged sooner, nothing worse.
var emailRE = regexp.MustCompile(`[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}`)

// HasEmail reports whether b holds an email-like string. Avro and JSON
// originals keep strings as UTF-8 bytes, so the bytes are searched as they are.
func HasEmail(b []byte) bool { return emailRE.Match(b) }

// FromDeadLetter converts dl, read at (dlqPartition, dlqOffset) of the DLQ
// topic, to its row. piiEntities are DLQ_PII_ENTITIES.
func FromDeadLetter(dl *events.DeadLetter, dlqPartition int32, dlqOffset int64, piiEntities []string) Row {
	r := Row{
		DeadLetterID:    text(dl.DeadLetterID),
		Stage:           text(dl.Stage),
		Entity:          textPtr(dl.Entity),
		SourceTopic:     text(dl.SourceTopic),
		SourcePartition: int32(dl.SourcePartition),
		SourceOffset:    dl.SourceOffset,
		SourceTimestamp: dl.SourceTimestamp.UTC(),
		OriginalValue:   nonNil(dl.OriginalValue),
		Attempt:         int32(dl.Attempt),
		TraceID:         textPtr(dl.TraceID),
		FailedAt:        dl.FailedAt.UTC(),
		DLQPartition:    dlqPartition,
		DLQOffset:       dlqOffset,
	}
	if dl.OriginalKey != nil {
		r.OriginalKey = nonNil(*dl.OriginalKey)
	}
	if dl.SchemaID != nil {
		id := int32(*dl.SchemaID)
		r.SchemaID = &id
	}
	r.OriginalHeaders = make([]Header, 0, len(dl.OriginalHeaders))
	for _, h := range dl.OriginalHeaders {
		r.OriginalHeaders = append(r.OriginalHeaders, Header{Key: text(h.Key), Value: base64.StdEncoding.EncodeToString(h.Value)})
		switch h.Key {
		case stream.ReplayOfHeader:
			r.ReplayOf = text(string(h.Value))
		case stream.ReplayAttemptHeader:
			if n, err := strconv.ParseInt(string(h.Value), 10, 32); err == nil && n >= 0 {
				r.ReplayedAttempt = int32(n)
			}
		}
	}
	if r.ReplayOf != "" && r.ReplayedAttempt == 0 {
		r.ReplayedAttempt = max(r.Attempt-1, 0)
	}
	if r.ReplayOf == "" {
		r.ReplayedAttempt = 0
	}
	r.Reasons = make([]Reason, 0, len(dl.Reasons))
	for _, rs := range dl.Reasons {
		r.Reasons = append(r.Reasons, Reason{Code: text(rs.Code), RuleID: textPtr(rs.RuleID), Field: textPtr(rs.Field), Message: text(rs.Message)})
	}
	r.summarise()
	r.PII = r.Entity != nil && slices.Contains(piiEntities, *r.Entity) || HasEmail(r.OriginalValue) || HasEmail(r.OriginalKey) ||
		r.personal()
	return r
}

// Undecodable is the row of a record on the DLQ topic that is not a
// DeadLetter (why says what the decoder found): stored anyway, under an id
// of its DLQ coordinates, with the raw record as its original, so nothing on
// the topic is dropped.
func Undecodable(topic string, partition int32, offset int64, ts time.Time, key, value []byte, headers []Header, why string, piiEntities []string) Row {
	r := Row{
		DeadLetterID:    UndecodableID(partition, offset),
		Stage:           UndecodableStage,
		SourceTopic:     text(topic),
		SourcePartition: partition,
		SourceOffset:    offset,
		SourceTimestamp: ts.UTC(),
		OriginalKey:     key,
		OriginalValue:   nonNil(value),
		OriginalHeaders: headers,
		Reasons:         []Reason{{Code: string(deadletter.Undecodable), Message: text(why)}},
		Attempt:         1,
		FailedAt:        ts.UTC(),
		DLQPartition:    partition,
		DLQOffset:       offset,
	}
	if r.OriginalHeaders == nil {
		r.OriginalHeaders = []Header{}
	}
	r.summarise()
	r.PII = HasEmail(r.OriginalValue) || HasEmail(r.OriginalKey) || r.personal()
	return r
}

// personal reports whether the row names personal data the API redacts
// (redact.Field: client_ip, email, name, ...) whatever its entity: a
// reason's field, or a top-level field with a value of a JSON original (no
// writer schema: an HTTP ingress's body). Such a row is pii, so that the
// retention purges its original and masks its messages like any other
// (a click_event rejected for its client_ip).
func (r *Row) personal() bool {
	for _, rs := range r.Reasons {
		if rs.Field != nil && redact.Field(*rs.Field) {
			return true
		}
	}
	if v := bytes.TrimLeft(r.OriginalValue, " \t\r\n"); r.SchemaID != nil || len(v) == 0 || v[0] != '{' {
		return false
	}
	var top map[string]json.RawMessage
	if json.Unmarshal(r.OriginalValue, &top) != nil {
		return false
	}
	for k, v := range top {
		if redact.Field(k) && string(v) != "null" {
			return true
		}
	}
	return false
}

// UndecodableID is the dead_letter_id of an undecodable record on the DLQ
// topic: its own coordinates, so a re-read of it is the same row.
func UndecodableID(partition int32, offset int64) string {
	return fmt.Sprintf("dlq-undecodable:%d:%d", partition, offset)
}

// summarise sets Codes, RuleIDs and Message from Reasons.
func (r *Row) summarise() {
	r.Codes, r.RuleIDs = []string{}, []string{}
	msgs := make([]string, 0, len(r.Reasons))
	for _, rs := range r.Reasons {
		r.Codes = append(r.Codes, rs.Code)
		if rs.RuleID != nil && *rs.RuleID != "" {
			r.RuleIDs = append(r.RuleIDs, *rs.RuleID)
		}
		msgs = append(msgs, rs.Message)
	}
	slices.Sort(r.Codes)
	r.Codes = slices.Compact(r.Codes)
	slices.Sort(r.RuleIDs)
	r.RuleIDs = slices.Compact(r.RuleIDs)
	r.Message = strings.Join(msgs, "\n")
}

// ReasonPairs are the row's distinct (code, rule id) pairs, the labels its
// stored count is recorded under ("" = no rule).
func (r *Row) ReasonPairs() [][2]string {
	var out [][2]string
	for _, rs := range r.Reasons {
		p := [2]string{rs.Code, ""}
		if rs.RuleID != nil {
			p[1] = *rs.RuleID
		}
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out
}

// headersJSON and reasonsJSON are the jsonb columns' values.
func (r *Row) headersJSON() ([]byte, error) {
	if r.OriginalHeaders == nil {
		return []byte("[]"), nil
	}
	return json.Marshal(r.OriginalHeaders)
}

func (r *Row) reasonsJSON() ([]byte, error) {
	if r.Reasons == nil {
		return []byte("[]"), nil
	}
	return json.Marshal(r.Reasons)
}

// text makes s storable in a PostgreSQL text or jsonb value: valid UTF-8
// without NUL (PostgreSQL refuses both, and a dead letter that can never be
// written would stall the consumer; the original bytes are kept whole in
// bytea columns).
func text(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	return strings.ReplaceAll(s, "\x00", "\uFFFD")
}

func textPtr(s *string) *string {
	if s == nil {
		return nil
	}
	t := text(*s)
	return &t
}

// nonNil keeps an empty original as empty bytes, not NULL (NULL in
// original_value means purged).
func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// SearchMessage is a dead letter's message as a caller without the PII
// right sees it (the API's RedactMeta): when message is the reasons'
// messages joined, each reason's message passed through redact.Message (its
// field, pii) and joined again; otherwise message redacted whole, as pii
// when a reason's field is personal. Write stores it in message_redacted,
// the column that caller's q search reads, so a hit never confirms what
// that caller cannot see.
func SearchMessage(message string, reasons []Reason, pii bool) string {
	msgs := make([]string, len(reasons))
	personal := false
	for i, r := range reasons {
		msgs[i] = r.Message
		personal = personal || r.Field != nil && redact.Field(*r.Field)
	}
	if len(reasons) == 0 || message != strings.Join(msgs, "\n") {
		return redact.Message(message, "", pii || personal)
	}
	for i, r := range reasons {
		field := ""
		if r.Field != nil {
			field = *r.Field
		}
		msgs[i] = redact.Message(r.Message, field, pii)
	}
	return strings.Join(msgs, "\n")
}
