// Package deadletter defines why a record is rejected and the envelope it is
// dead-lettered in.
//
// A stage rejects a record by returning a *Rejection (via Reject): the error is
// permanent, carries typed reasons, and the Kafka runtime turns it into a
// DeadLetter on ecom.dlq.v1 in the same transaction as the input offset. Any
// other error is transient and retried.
package deadletter

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ecomstream/platform/pkg/events"
)

// Topic is the platform's dead-letter topic.
const Topic = "ecom.dlq.v1"

// Code is the type of a rejection reason.
type Code string

// Reason codes. They are a contract: dashboards, alerts and the dlq-handler
// group and filter by them.
const (
	MalformedJSON    Code = "MALFORMED_JSON"     // not parseable as JSON
	WrongType        Code = "WRONG_TYPE"         // a field has the wrong JSON type
	MissingField     Code = "MISSING_FIELD"      // a required field is absent or null
	Oversized        Code = "OVERSIZED"          // the record exceeds the size limit
	UnknownEventType Code = "UNKNOWN_EVENT_TYPE" // event_type is not one the platform knows
	InvalidValue     Code = "INVALID_VALUE"      // right type, unusable value (e.g. a bad timestamp)
	SchemaMismatch   Code = "SCHEMA_MISMATCH"    // Avro writer schema cannot be read as the current one
	Undecodable      Code = "UNDECODABLE"        // not Confluent-framed Avro, or a corrupt body
	RuleFailed       Code = "RULE_FAILED"        // a data-quality rule failed; RuleID says which
	Internal         Code = "INTERNAL"           // a bug (a recovered panic) met this record
)

// Reason is one typed reason for a rejection.
type Reason struct {
	Code    Code
	RuleID  string // set when Code is RuleFailed
	Field   string
	Message string
}

func (r Reason) String() string {
	var b strings.Builder
	b.WriteString(string(r.Code))
	if r.RuleID != "" {
		b.WriteString("[" + r.RuleID + "]")
	}
	if r.Field != "" {
		b.WriteString(" " + r.Field)
	}
	if r.Message != "" {
		b.WriteString(": " + r.Message)
	}
	return b.String()
}

// Rejection is a permanent error: retrying cannot make the record acceptable.
type Rejection struct {
	Reasons  []Reason
	Entity   string // click_event, order, product_change when known
	SchemaID int    // writer schema id of an Avro input, 0 if none
}

func (e *Rejection) Error() string {
	parts := make([]string, len(e.Reasons))
	for i, r := range e.Reasons {
		parts[i] = r.String()
	}
	return "rejected: " + strings.Join(parts, "; ")
}

// Reject returns a *Rejection with reasons.
func Reject(reasons ...Reason) *Rejection { return &Rejection{Reasons: reasons} }

// Rejectf returns a *Rejection with a single reason.
func Rejectf(code Code, field, format string, args ...any) *Rejection {
	return Reject(Reason{Code: code, Field: field, Message: fmt.Sprintf(format, args...)})
}

// AsRejection reports whether err is (or wraps) a *Rejection.
func AsRejection(err error) (*Rejection, bool) {
	var r *Rejection
	ok := errors.As(err, &r)
	return r, ok
}

// IsPermanent reports whether err must be dead-lettered rather than retried.
func IsPermanent(err error) bool {
	_, ok := AsRejection(err)
	return ok
}

// Envelope builds the dead letter for rec rejected by stage. At most
// maxOriginal bytes of the original value are kept (0 = all); a cut is
// recorded as an extra OVERSIZED reason saying how much was kept.
func Envelope(rec *kgo.Record, stage string, rej *Rejection, traceID string, attempt int, now time.Time, maxOriginal int) events.DeadLetter {
	reasons := make([]events.Reason, len(rej.Reasons), len(rej.Reasons)+1)
	for i, r := range rej.Reasons {
		reasons[i] = events.Reason{Code: string(r.Code), Message: r.Message, RuleID: optional(r.RuleID), Field: optional(r.Field)}
	}
	value := nonNil(rec.Value)
	if maxOriginal > 0 && len(value) > maxOriginal {
		reasons = append(reasons, events.Reason{Code: string(Oversized), Message: fmt.Sprintf(
			"original_value truncated to its first %d of %d bytes to fit the dead-letter topic", maxOriginal, len(value))})
		value = value[:maxOriginal]
	}
	headers := make([]events.Header, 0, len(rec.Headers))
	for _, h := range rec.Headers {
		headers = append(headers, events.Header{Key: h.Key, Value: h.Value})
	}
	dl := events.DeadLetter{
		DeadLetterID:    ID(stage, rec.Topic, rec.Partition, rec.Offset),
		Stage:           stage,
		Entity:          optional(rej.Entity),
		SourceTopic:     rec.Topic,
		SourcePartition: int(rec.Partition),
		SourceOffset:    rec.Offset,
		SourceTimestamp: rec.Timestamp.UTC(),
		OriginalValue:   value,
		OriginalHeaders: headers,
		Reasons:         reasons,
		Attempt:         max(attempt, 1),
		TraceID:         optional(traceID),
		FailedAt:        now.UTC(),
	}
	if rec.Key != nil {
		dl.OriginalKey = &rec.Key
	}
	if rej.SchemaID > 0 {
		id := rej.SchemaID
		dl.SchemaID = &id
	}
	return dl
}

// ID is the deterministic id of the dead letter of one input record at one
// stage: re-delivering the same dead letter yields the same id, so the
// dead-letter store can ignore repeats.
func ID(stage, topic string, partition int32, offset int64) string {
	h := fnv.New128a()
	h.Write([]byte(stage))
	h.Write([]byte{0})
	h.Write([]byte(topic))
	var b [12]byte
	binary.BigEndian.PutUint32(b[:4], uint32(partition))
	binary.BigEndian.PutUint64(b[4:], uint64(offset))
	h.Write(b[:])
	return stage + "-" + strconv.Itoa(int(partition)) + "-" + strconv.FormatInt(offset, 10) + "-" + hex.EncodeToString(h.Sum(nil)[:6])
}

func optional(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}
