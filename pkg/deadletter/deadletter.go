// Package deadletter defines why a record is rejected and the envelope it is
// dead-lettered in.
//
// A stage rejects a record by returning a *Rejection (via Reject): the error is
// permanent, carries typed reasons, and the Kafka runtime turns it into a
// DeadLetter on ecom.dlq.v1 in the same transaction as the input offset. Any
// other error is transient and retried.
package deadletter

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
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

// Limits of the parts of an envelope that a stage writes itself: a
// rejection's text is capped so that a budget is mostly left for the
// original record.
const (
	maxReasonMessage = 1 << 10 // bytes of one reason's message
	maxReasonLabel   = 256     // bytes of a reason's field or rule id
	maxKafkaKey      = 256     // a longer original key is replaced by its hash as the dead letter's Kafka key
	noteReserve      = 2 << 10 // room kept for the OVERSIZED notes a truncation adds
)

// Fields of the envelope named by an OVERSIZED reason that records a
// truncation. A dead letter with such a reason does not hold its original
// whole: it cannot be replayed from the envelope alone.
const (
	FieldOriginalValue   = "original_value"
	FieldOriginalKey     = "original_key"
	FieldOriginalHeaders = "original_headers"
	FieldReasons         = "reasons"
	FieldOriginal        = "original" // the minimal envelope: the whole original dropped
)

// Replay headers, set by the dead-letter handler on a replayed record
// (stream.ReplayOfHeader and stream.ReplayAttemptHeader are these names).
// They link a new dead letter to the replay it rejects again, so Envelope
// and Minimal keep them whole whatever else is cut: without them a replay
// rejected again would pass for resolved. A value longer than
// maxReplayHeader is no handler's and counts as an ordinary header.
const (
	ReplayOfHeader      = "ecom-replay-of"
	ReplayAttemptHeader = "ecom-replay-attempt"
	maxReplayHeader     = 256
)

// replayHeaders splits hs into the replay headers, kept first and whole,
// and the others, in order.
func replayHeaders(hs []kgo.RecordHeader) (pinned []events.Header, rest []events.Header) {
	pinned, rest = []events.Header{}, make([]events.Header, 0, len(hs))
	for _, h := range hs {
		hd := events.Header{Key: h.Key, Value: nonNil(h.Value)}
		if (h.Key == ReplayOfHeader || h.Key == ReplayAttemptHeader) && len(h.Value) <= maxReplayHeader {
			pinned = append(pinned, hd)
			continue
		}
		rest = append(rest, hd)
	}
	return pinned, rest
}

// Truncated reports whether dl lost part of its original to fit its budget.
func Truncated(dl *events.DeadLetter) bool {
	for _, r := range dl.Reasons {
		if r.Code == string(Oversized) && r.Field != nil {
			switch *r.Field {
			case FieldOriginalValue, FieldOriginalKey, FieldOriginalHeaders, FieldOriginal:
				return true
			}
		}
	}
	return false
}

// Pure runs decode, a function of a record's bytes alone, and turns a panic
// in it into a rejection with code: the same bytes would panic again, so
// retrying cannot help. (A panic elsewhere in a handler may have a transient
// cause; see stream.Recover.)
func Pure(code Code, decode func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = Rejectf(code, "", "decoder panic: %v", r)
		}
	}()
	return decode()
}

// Envelope builds the dead letter for rec rejected by stage, at most budget
// bytes once Avro-encoded (0 = no limit). The whole envelope counts: reasons,
// key, headers and value. When they do not fit, each of reasons, key and
// headers is guaranteed an eighth of what the metadata leaves, the value
// gets the rest, and what a part does not need goes to the others; every cut
// is recorded as an OVERSIZED reason whose field names the cut part and whose
// message says how much was kept.
func Envelope(rec *kgo.Record, stage string, rej *Rejection, traceID string, attempt int, now time.Time, budget int) events.DeadLetter {
	dl := metadata(rec, stage, rej, traceID, attempt, now)
	reasons, cutMessages := reasonsOf(rej.Reasons, maxReasonMessage)
	value, key := nonNil(rec.Value), rec.Key
	// The replay headers are metadata: counted with it, never cut.
	pinned, headers := replayHeaders(rec.Headers)
	dl.OriginalHeaders = pinned
	needR, needK, needH, needV := reasonsSize(reasons), keySize(rec.Key), headersSize(headers), bytesSize(len(value))
	var notes []events.Reason
	if cutMessages > 0 {
		notes = append(notes, note(FieldReasons, fmt.Sprintf("%d reason messages cut to %d bytes", cutMessages, maxReasonMessage)))
	}
	avail := budget - Size(&dl) - noteReserve
	if budget > 0 && needR+needK+needH+needV > avail {
		avail = max(avail, 0)
		share := avail / 8
		gotR, gotK, gotH := min(needR, share), min(needK, share), min(needH, share)
		gotV := min(needV, avail-gotR-gotK-gotH)
		left := avail - gotR - gotK - gotH - gotV
		for _, p := range []struct{ got, need *int }{{&gotR, &needR}, {&gotK, &needK}, {&gotH, &needH}} {
			more := min(left, *p.need-*p.got)
			*p.got += more
			left -= more
		}
		if gotR < needR {
			kept := fitReasons(reasons, gotR)
			notes = append(notes, note(FieldReasons, fmt.Sprintf("kept the first %d of %d reasons", kept, len(reasons))))
			reasons = reasons[:kept]
		}
		if gotK < needK {
			key = key[:max(gotK-keySize(nil)-10, 0)]
			notes = append(notes, note(FieldOriginalKey, fmt.Sprintf("original_key truncated to its first %d of %d bytes to fit the dead-letter topic", len(key), len(rec.Key))))
		}
		if gotH < needH {
			var kept, bytes int
			headers, kept, bytes = fitHeaders(headers, gotH)
			all := headerBytes(rec.Headers)
			for _, h := range pinned {
				bytes += len(h.Key) + len(h.Value)
			}
			notes = append(notes, note(FieldOriginalHeaders, fmt.Sprintf("original_headers truncated to %d of %d bytes (%d of %d headers whole) to fit the dead-letter topic",
				bytes, all, kept+len(pinned), len(rec.Headers))))
			// The replay headers first, then what fitted of the others.
			headers = append(slices.Clip(pinned), headers...)
		} else {
			headers = allHeaders(rec.Headers)
		}
		if gotV < needV {
			n := max(gotV-bytesSize(0), 0)
			notes = append(notes, note(FieldOriginalValue, fmt.Sprintf("original_value truncated to its first %d of %d bytes to fit the dead-letter topic", n, len(value))))
			value = value[:n]
		}
	} else {
		headers = allHeaders(rec.Headers)
	}
	dl.Reasons = append(reasons, notes...)
	dl.OriginalValue = value
	dl.OriginalHeaders = headers
	if key != nil {
		dl.OriginalKey = &key
	}
	return dl
}

// allHeaders is hs as envelope headers, in order.
func allHeaders(hs []kgo.RecordHeader) []events.Header {
	out := make([]events.Header, 0, len(hs))
	for _, h := range hs {
		out = append(out, events.Header{Key: h.Key, Value: nonNil(h.Value)})
	}
	return out
}

// Minimal is the smallest useful dead letter of rec: its metadata, the
// replay headers (whole), the rejection's first reasons with short
// messages, and an OVERSIZED reason
// (field "original") giving the original's sizes and SHA-256 hashes, so it
// can still be found in, and checked against, its source topic. It is
// written when even the budgeted envelope is refused as too large.
func Minimal(rec *kgo.Record, stage string, rej *Rejection, traceID string, attempt int, now time.Time) events.DeadLetter {
	dl := metadata(rec, stage, rej, traceID, attempt, now)
	dl.OriginalHeaders, _ = replayHeaders(rec.Headers)
	reasons, _ := reasonsOf(rej.Reasons[:min(len(rej.Reasons), 4)], 128)
	hbytes := headerBytes(rec.Headers)
	keySum, valueSum := sha256.Sum256(rec.Key), sha256.Sum256(rec.Value)
	dl.Reasons = append(reasons, note(FieldOriginal, fmt.Sprintf(
		"dead letter exceeded the producer's record limit; original dropped: key %d bytes sha256:%s, value %d bytes sha256:%s, %d headers %d bytes, %d reasons",
		len(rec.Key), hex.EncodeToString(keySum[:]), len(rec.Value), hex.EncodeToString(valueSum[:]), len(rec.Headers), hbytes, len(rej.Reasons))))
	return dl
}

// headerBytes is the size of the headers' keys and values.
func headerBytes(hs []kgo.RecordHeader) int {
	n := 0
	for _, h := range hs {
		n += len(h.Key) + len(h.Value)
	}
	return n
}

// Key is the Kafka key of the dead letter of a record keyed key: the key
// itself when short, else "sha256:" and its hash, so dead letters of one key
// still share a partition without the key counting twice against the limit.
func Key(key []byte) []byte {
	if len(key) <= maxKafkaKey {
		return key
	}
	sum := sha256.Sum256(key)
	return []byte("sha256:" + hex.EncodeToString(sum[:]))
}

func metadata(rec *kgo.Record, stage string, rej *Rejection, traceID string, attempt int, now time.Time) events.DeadLetter {
	dl := events.DeadLetter{
		DeadLetterID:    idOf(stage, rec),
		Stage:           stage,
		Entity:          optional(rej.Entity),
		SourceTopic:     rec.Topic,
		SourcePartition: int(rec.Partition),
		SourceOffset:    rec.Offset,
		SourceTimestamp: rec.Timestamp.UTC(),
		OriginalValue:   []byte{},
		OriginalHeaders: []events.Header{},
		Attempt:         max(attempt, 1),
		TraceID:         optional(traceID),
		FailedAt:        now.UTC(),
	}
	if rej.SchemaID > 0 {
		id := rej.SchemaID
		dl.SchemaID = &id
	}
	return dl
}

// reasonsOf converts rs, cutting messages to maxMsg bytes and labels to
// maxReasonLabel; it returns how many messages were cut.
func reasonsOf(rs []Reason, maxMsg int) ([]events.Reason, int) {
	out := make([]events.Reason, len(rs), len(rs)+4)
	cut := 0
	for i, r := range rs {
		msg := r.Message
		if len(msg) > maxMsg {
			msg, cut = msg[:maxMsg], cut+1
		}
		out[i] = events.Reason{Code: string(r.Code), Message: msg,
			RuleID: optional(capString(r.RuleID, maxReasonLabel)), Field: optional(capString(r.Field, maxReasonLabel))}
	}
	return out, cut
}

func note(field, msg string) events.Reason {
	return events.Reason{Code: string(Oversized), Field: &field, Message: msg}
}

// fitReasons is how many of rs, in order, fit budget; at least one, the
// first reason being the point of a dead letter (its message is capped).
func fitReasons(rs []events.Reason, budget int) int {
	used := 10
	for i := range rs {
		used += reasonSize(&rs[i])
		if used > budget {
			return max(i, 1)
		}
	}
	return len(rs)
}

// fitHeaders keeps whole headers in order while they fit budget, then as
// much of the next header's value as fits; it returns the headers kept,
// how many of them are whole, and their bytes.
func fitHeaders(hs []events.Header, budget int) ([]events.Header, int, int) {
	used, bytes := 10, 0
	for i, h := range hs {
		sz := 10 + bytesSize(len(h.Key)) + bytesSize(len(h.Value)) // as headersSize counts it
		if used+sz <= budget {
			used, bytes = used+sz, bytes+len(h.Key)+len(h.Value)
			continue
		}
		room := budget - used - bytesSize(len(h.Key)) - 20
		if room <= 0 {
			return hs[:i], i, bytes
		}
		part := events.Header{Key: h.Key, Value: h.Value[:room]}
		return append(hs[:i:i], part), i, bytes + len(h.Key) + room
	}
	return hs, len(hs), bytes
}

func capString(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// Size bounds the Avro binary size of dl from above (every length and number
// counted at its widest varint).
func Size(dl *events.DeadLetter) int {
	const num = 10 // widest varint
	// partition, offset, source timestamp, schema id (union), attempt, failed at
	n := 6*num + 1 + bytesSize(len(dl.DeadLetterID)) + bytesSize(len(dl.Stage)) + optSize(dl.Entity) +
		bytesSize(len(dl.SourceTopic)) + optSize(dl.TraceID) + bytesSize(len(dl.OriginalValue))
	if dl.OriginalKey != nil {
		n += keySize(*dl.OriginalKey)
	} else {
		n += keySize(nil)
	}
	return n + headersSize(dl.OriginalHeaders) + reasonsSize(dl.Reasons)
}

func bytesSize(n int) int { return n + 10 }

func optSize(s *string) int {
	if s == nil {
		return 1
	}
	return 1 + bytesSize(len(*s))
}

func keySize(k []byte) int {
	if k == nil {
		return 1
	}
	return 1 + bytesSize(len(k))
}

// arrays are encoded in blocks, each with a count; bound one per item.
func headersSize(hs []events.Header) int {
	n := 10
	for _, h := range hs {
		n += 10 + bytesSize(len(h.Key)) + bytesSize(len(h.Value))
	}
	return n
}

func reasonsSize(rs []events.Reason) int {
	n := 10
	for i := range rs {
		n += reasonSize(&rs[i])
	}
	return n
}

func reasonSize(r *events.Reason) int {
	return 10 + bytesSize(len(r.Code)) + optSize(r.RuleID) + optSize(r.Field) + bytesSize(len(r.Message))
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

// OriginHeader, on a record that was never read from Kafka (offset -1),
// names where it came from: "http" for the HTTP collector. It is kept among
// the dead letter's original headers and names its id (ContentID).
const OriginHeader = "ecom-origin"

// idOf is ID for a record read from Kafka, and ContentID for one that was
// not (a negative offset): there is no position to name it by.
func idOf(stage string, rec *kgo.Record) string {
	if rec.Offset >= 0 {
		return ID(stage, rec.Topic, rec.Partition, rec.Offset)
	}
	origin := "external"
	for _, h := range rec.Headers {
		if h.Key == OriginHeader && len(h.Value) > 0 {
			origin = string(h.Value)
		}
	}
	return ContentID(stage, origin, rec.Value)
}

// ContentID is the id of the dead letter of value, rejected by stage, that
// came from origin without a Kafka position (an HTTP request):
// <stage>-<origin>-<hex of the first 12 bytes of sha256(value)>. A client
// that retries the same bad event gets the same id, so the dead-letter store
// keeps it once; identical bad bytes from two clients are also one dead
// letter, which loses nothing a replay needs.
func ContentID(stage, origin string, value []byte) string {
	sum := sha256.Sum256(value)
	return stage + "-" + origin + "-" + hex.EncodeToString(sum[:12])
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
