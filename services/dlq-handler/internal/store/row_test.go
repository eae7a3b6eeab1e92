package store

import (
	"reflect"
	"testing"
	"time"

	"github.com/ecomstream/platform/pkg/events"
	"github.com/ecomstream/platform/pkg/stream"
)

func ptr[T any](v T) *T { return &v }

// deadLetter is a validator's dead letter of an order, for the tests to vary.
func deadLetter() events.DeadLetter {
	return events.DeadLetter{
		DeadLetterID: "validator:ecom.orders.v1:2:41", Stage: "validator", Entity: ptr("click_event"),
		SourceTopic: "ecom.orders.v1", SourcePartition: 2, SourceOffset: 41,
		SourceTimestamp: time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC),
		OriginalKey:     ptr([]byte("k-1")), OriginalValue: []byte{0, 0, 0, 0, 7, 2, 'x'},
		OriginalHeaders: []events.Header{{Key: "traceparent", Value: []byte("00-abc-def-01")}},
		SchemaID:        ptr(7),
		Reasons: []events.Reason{
			{Code: "RULE_FAILED", RuleID: ptr("price_positive"), Field: ptr("price"), Message: "price must be > 0"},
			{Code: "MISSING_FIELD", Field: ptr("currency"), Message: "currency is required"},
			{Code: "RULE_FAILED", RuleID: ptr("currency_iso"), Message: "currency is not ISO 4217"},
		},
		Attempt: 1, TraceID: ptr("0123456789abcdef0123456789abcdef"),
		FailedAt: time.Date(2026, 12, 1, 10, 0, 1, 0, time.UTC),
	}
}

// TestFromDeadLetter: the conversion's derived columns.
func TestFromDeadLetter(t *testing.T) {
	tests := []struct {
		name         string
		give         func(*events.DeadLetter)
		wantCodes    []string
		wantRules    []string
		wantMessage  string
		wantHeaders  []Header
		wantPII      bool
		wantReplayOf string
		wantReplayed int32
		wantKey      []byte
	}{
		{
			name:        "codes and rule ids distinct and sorted, messages one per line",
			give:        func(*events.DeadLetter) {},
			wantCodes:   []string{"MISSING_FIELD", "RULE_FAILED"},
			wantRules:   []string{"currency_iso", "price_positive"},
			wantMessage: "price must be > 0\ncurrency is required\ncurrency is not ISO 4217",
			wantHeaders: []Header{{Key: "traceparent", Value: "MDAtYWJjLWRlZi0wMQ=="}},
			wantKey:     []byte("k-1"),
		},
		{
			name:      "no reasons",
			give:      func(dl *events.DeadLetter) { dl.Reasons = nil },
			wantCodes: []string{}, wantRules: []string{}, wantMessage: "",
			wantHeaders: []Header{{Key: "traceparent", Value: "MDAtYWJjLWRlZi0wMQ=="}},
			wantKey:     []byte("k-1"),
		},
		{
			name:      "a pii entity",
			give:      func(dl *events.DeadLetter) { dl.Entity = ptr("customer_change"); dl.Reasons = dl.Reasons[:1] },
			wantCodes: []string{"RULE_FAILED"}, wantRules: []string{"price_positive"}, wantMessage: "price must be > 0",
			wantHeaders: []Header{{Key: "traceparent", Value: "MDAtYWJjLWRlZi0wMQ=="}}, wantPII: true, wantKey: []byte("k-1"),
		},
		{
			name: "an email in the value of another entity",
			give: func(dl *events.DeadLetter) {
				dl.OriginalValue = []byte(`{"event_id":"e1","user":"Jane.Doe+x@mail.example.org"}`)
				dl.Reasons = dl.Reasons[1:2]
			},
			wantCodes: []string{"MISSING_FIELD"}, wantRules: []string{}, wantMessage: "currency is required",
			wantHeaders: []Header{{Key: "traceparent", Value: "MDAtYWJjLWRlZi0wMQ=="}}, wantPII: true, wantKey: []byte("k-1"),
		},
		{
			name:      "an email in the key",
			give:      func(dl *events.DeadLetter) { dl.OriginalKey = ptr([]byte("a@b.de")); dl.Reasons = dl.Reasons[1:2] },
			wantCodes: []string{"MISSING_FIELD"}, wantRules: []string{}, wantMessage: "currency is required",
			wantHeaders: []Header{{Key: "traceparent", Value: "MDAtYWJjLWRlZi0wMQ=="}}, wantPII: true, wantKey: []byte("a@b.de"),
		},
		{
			name: "an at sign is no email",
			give: func(dl *events.DeadLetter) {
				dl.OriginalValue = []byte(`{"note":"meet @ noon","handle":"@jane"}`)
				dl.OriginalKey = nil
				dl.Reasons = dl.Reasons[1:2]
			},
			wantCodes: []string{"MISSING_FIELD"}, wantRules: []string{}, wantMessage: "currency is required",
			wantHeaders: []Header{{Key: "traceparent", Value: "MDAtYWJjLWRlZi0wMQ=="}},
		},
		{
			name: "a replay rejected again: linked by its header, the replayed attempt from the attempt header",
			give: func(dl *events.DeadLetter) {
				dl.Attempt = 3
				dl.OriginalHeaders = append(dl.OriginalHeaders, events.Header{Key: stream.ReplayOfHeader, Value: []byte("validator:ecom.orders.v1:0:9")},
					events.Header{Key: stream.ReplayAttemptHeader, Value: []byte("2")})
				dl.Reasons = dl.Reasons[1:2]
			},
			wantCodes: []string{"MISSING_FIELD"}, wantRules: []string{}, wantMessage: "currency is required",
			wantHeaders: []Header{{Key: "traceparent", Value: "MDAtYWJjLWRlZi0wMQ=="},
				{Key: "ecom-replay-of", Value: "dmFsaWRhdG9yOmVjb20ub3JkZXJzLnYxOjA6OQ=="}, {Key: "ecom-replay-attempt", Value: "Mg=="}},
			wantReplayOf: "validator:ecom.orders.v1:0:9", wantReplayed: 2, wantKey: []byte("k-1"),
		},
		{
			name: "a replay without the attempt header: the attempt before this one",
			give: func(dl *events.DeadLetter) {
				dl.Attempt = 2
				dl.OriginalHeaders = []events.Header{{Key: stream.ReplayOfHeader, Value: []byte("d-1")}}
				dl.Reasons = dl.Reasons[1:2]
			},
			wantCodes: []string{"MISSING_FIELD"}, wantRules: []string{}, wantMessage: "currency is required",
			wantHeaders: []Header{{Key: "ecom-replay-of", Value: "ZC0x"}}, wantReplayOf: "d-1", wantReplayed: 1, wantKey: []byte("k-1"),
		},
		{
			name: "text PostgreSQL refuses is made storable",
			give: func(dl *events.DeadLetter) {
				dl.Reasons = []events.Reason{{Code: "UNDECODABLE", Message: "bad\x00byte \xff"}}
				dl.OriginalHeaders = nil
			},
			wantCodes: []string{"UNDECODABLE"}, wantRules: []string{}, wantMessage: "bad\uFFFDbyte \uFFFD",
			wantHeaders: []Header{}, wantKey: []byte("k-1"),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dl := deadLetter()
			tt.give(&dl)
			r := FromDeadLetter(&dl, 1, 99, DefaultPIIEntities)
			if !reflect.DeepEqual(r.Codes, tt.wantCodes) || !reflect.DeepEqual(r.RuleIDs, tt.wantRules) {
				t.Errorf("codes %q rule ids %q, want %q %q", r.Codes, r.RuleIDs, tt.wantCodes, tt.wantRules)
			}
			if r.Message != tt.wantMessage {
				t.Errorf("message %q, want %q", r.Message, tt.wantMessage)
			}
			if !reflect.DeepEqual(r.OriginalHeaders, tt.wantHeaders) {
				t.Errorf("headers %+v, want %+v", r.OriginalHeaders, tt.wantHeaders)
			}
			if r.PII != tt.wantPII {
				t.Errorf("pii %v, want %v", r.PII, tt.wantPII)
			}
			if r.ReplayOf != tt.wantReplayOf || r.ReplayedAttempt != tt.wantReplayed {
				t.Errorf("replay of %q attempt %d, want %q %d", r.ReplayOf, r.ReplayedAttempt, tt.wantReplayOf, tt.wantReplayed)
			}
			if !reflect.DeepEqual(r.OriginalKey, tt.wantKey) {
				t.Errorf("key %q, want %q", r.OriginalKey, tt.wantKey)
			}
			if r.DeadLetterID != dl.DeadLetterID || r.Stage != "validator" || r.DLQPartition != 1 || r.DLQOffset != 99 ||
				r.SourcePartition != 2 || r.SourceOffset != 41 || r.Attempt != int32(dl.Attempt) || *r.SchemaID != 7 ||
				!r.FailedAt.Equal(dl.FailedAt) || !r.SourceTimestamp.Equal(dl.SourceTimestamp) || *r.TraceID != *dl.TraceID {
				t.Errorf("coordinates not kept: %+v", r)
			}
			if len(r.Reasons) != len(dl.Reasons) {
				t.Errorf("%d reasons, want %d", len(r.Reasons), len(dl.Reasons))
			}
		})
	}
}

// TestFromDeadLetterPIIEntities: DLQ_PII_ENTITIES decides which entities are
// personal data.
func TestFromDeadLetterPIIEntities(t *testing.T) {
	tests := []struct {
		entity   *string
		entities []string
		want     bool
	}{
		{ptr("order"), DefaultPIIEntities, true},
		{ptr("customer_change"), DefaultPIIEntities, true},
		{ptr("click_event"), DefaultPIIEntities, false},
		{nil, DefaultPIIEntities, false},
		{ptr("click_event"), []string{"click_event"}, true},
		{ptr("order"), nil, false},
	}
	for _, tt := range tests {
		dl := deadLetter()
		dl.Entity = tt.entity
		if got := FromDeadLetter(&dl, 0, 0, tt.entities).PII; got != tt.want {
			t.Errorf("entity %v with %v: pii %v, want %v", tt.entity, tt.entities, got, tt.want)
		}
	}
}

// TestFromDeadLetterPersonal: a dead letter of an entity not in
// DLQ_PII_ENTITIES is pii when it names personal data the API redacts: a
// reason's field (a click_event rejected for its client_ip), or a
// top-level field with a value of a JSON original.
func TestFromDeadLetterPersonal(t *testing.T) {
	tests := []struct {
		name  string
		field *string
		value []byte
		json  bool // no writer schema: the original is an HTTP ingress's JSON
		want  bool
	}{
		{name: "a reason names client_ip", field: ptr("client_ip"), want: true},
		{name: "a reason names a camelCase personal field", field: ptr("shippingAddress"), want: true},
		{name: "a reason names a plain field", field: ptr("page_url")},
		{name: "json original with client_ip", value: []byte(` {"event_id": "e1", "client_ip": "10.9.8.0"}`), json: true, want: true},
		{name: "json original with a null client_ip", value: []byte(`{"event_id": "e1", "client_ip": null}`), json: true},
		{name: "json original, personal field only nested", value: []byte(`{"event_id": "e1", "ctx": {"ip": "10.0.0.1"}}`), json: true},
		{name: "not json", value: []byte("client_ip=10.0.0.1"), json: true},
		{name: "avro original is not read as json", value: []byte(`{"client_ip": "10.0.0.1"}`)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dl := deadLetter()
			dl.Entity = ptr("click_event")
			dl.Reasons = append(dl.Reasons, events.Reason{Code: "RULE_FAILED", Field: tt.field, Message: "bad"})
			if tt.value != nil {
				dl.OriginalValue = tt.value
			}
			if tt.json {
				dl.SchemaID = nil
			}
			if got := FromDeadLetter(&dl, 0, 0, DefaultPIIEntities).PII; got != tt.want {
				t.Errorf("pii %v, want %v", got, tt.want)
			}
		})
	}
}

// TestUndecodable: a record on the DLQ topic that is not a DeadLetter keeps
// its own coordinates, its raw bytes and one UNDECODABLE reason.
func TestUndecodable(t *testing.T) {
	ts := time.Date(2026, 12, 1, 9, 0, 0, 0, time.FixedZone("x", 3600))
	tests := []struct {
		name    string
		key     []byte
		value   []byte
		headers []Header
		wantPII bool
	}{
		{name: "garbage", value: []byte("not avro")},
		{name: "a tombstone", value: nil},
		{name: "json with an email", key: []byte("k"), value: []byte(`{"email":"x@y.com"}`), headers: []Header{{Key: "h", Value: "dg=="}}, wantPII: true},
		{name: "json with a client_ip", value: []byte(`{"event_id":"e1","client_ip":"10.9.8.0"}`), wantPII: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := Undecodable("ecom.dlq.v1", 2, 17, ts, tt.key, tt.value, tt.headers, "not Confluent-framed Avro", DefaultPIIEntities)
			if r.DeadLetterID != "dlq-undecodable:2:17" || r.Stage != "unknown" || r.SourceTopic != "ecom.dlq.v1" ||
				r.SourcePartition != 2 || r.SourceOffset != 17 || r.DLQPartition != 2 || r.DLQOffset != 17 || r.Attempt != 1 {
				t.Errorf("coordinates: %+v", r)
			}
			if !reflect.DeepEqual(r.Codes, []string{"UNDECODABLE"}) || len(r.RuleIDs) != 0 || r.Message != "not Confluent-framed Avro" {
				t.Errorf("reasons: codes %q rules %q message %q", r.Codes, r.RuleIDs, r.Message)
			}
			if r.OriginalValue == nil || string(r.OriginalValue) != string(tt.value) || string(r.OriginalKey) != string(tt.key) {
				t.Errorf("original %q %q, want %q %q (never NULL)", r.OriginalKey, r.OriginalValue, tt.key, tt.value)
			}
			if r.OriginalHeaders == nil || len(r.OriginalHeaders) != len(tt.headers) {
				t.Errorf("headers %v, want %v", r.OriginalHeaders, tt.headers)
			}
			if r.PII != tt.wantPII {
				t.Errorf("pii %v, want %v", r.PII, tt.wantPII)
			}
			if !r.FailedAt.Equal(ts) || r.FailedAt.Location() != time.UTC {
				t.Errorf("failed_at %v, want %v in UTC", r.FailedAt, ts)
			}
		})
	}
}

// TestReasonPairs: the labels a stored row is counted under.
func TestReasonPairs(t *testing.T) {
	dl := deadLetter()
	dl.Reasons = append(dl.Reasons, events.Reason{Code: "RULE_FAILED", RuleID: ptr("price_positive"), Message: "again"})
	r := FromDeadLetter(&dl, 0, 0, nil)
	want := [][2]string{{"RULE_FAILED", "price_positive"}, {"MISSING_FIELD", ""}, {"RULE_FAILED", "currency_iso"}}
	if got := r.ReasonPairs(); !reflect.DeepEqual(got, want) {
		t.Errorf("ReasonPairs() = %v, want %v", got, want)
	}
}
