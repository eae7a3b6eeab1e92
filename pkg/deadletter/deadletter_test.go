package deadletter

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ecomstream/platform/pkg/events"
	protoavro "github.com/ecomstream/platform/proto/avro"
)

func TestEnvelope(t *testing.T) {
	now := time.Date(2026, 11, 25, 1, 2, 3, 0, time.FixedZone("x", 3600))
	rec := &kgo.Record{Topic: "clickstream", Partition: 2, Offset: 41, Key: []byte("s1"), Value: []byte(`{"bad"`),
		Timestamp: now, Headers: []kgo.RecordHeader{{Key: "traceparent", Value: []byte("00-x")}}}
	rej := &Rejection{Entity: "click_event", SchemaID: 7, Reasons: []Reason{
		{Code: MalformedJSON, Message: "unexpected end"},
		{Code: RuleFailed, RuleID: "click.page_url_valid", Field: "page_url", Message: "not a URL"},
	}}
	for _, budget := range []int{0, 64 << 10} {
		dl := Envelope(rec, "ingest-clickstream", rej, "0af7651916cd43dd8448eb211c80319c", 2, now, budget)
		if string(dl.OriginalValue) != `{"bad"` || len(dl.Reasons) != 2 || Truncated(&dl) {
			t.Fatalf("budget %d: value %q reasons %+v", budget, dl.OriginalValue, dl.Reasons)
		}
		if dl.SourceTopic != "clickstream" || dl.SourcePartition != 2 || dl.SourceOffset != 41 || dl.Stage != "ingest-clickstream" ||
			*dl.Entity != "click_event" || *dl.SchemaID != 7 || dl.Attempt != 2 || *dl.TraceID != "0af7651916cd43dd8448eb211c80319c" ||
			string(*dl.OriginalKey) != "s1" || len(dl.OriginalHeaders) != 1 || dl.FailedAt.Location() != time.UTC {
			t.Errorf("envelope fields: %+v", dl)
		}
		if r := dl.Reasons[1]; r.Code != "RULE_FAILED" || *r.RuleID != "click.page_url_valid" || *r.Field != "page_url" {
			t.Errorf("reason %+v", r)
		}
	}
}

// TestEnvelopeFitsItsBudget: whatever part of the record is large (the key,
// the headers, the value, the reasons, or all of them), the encoded envelope
// fits the budget, and every part that was cut is named by an OVERSIZED
// reason.
func TestEnvelopeFitsItsBudget(t *testing.T) {
	schema := avro.MustParse(mustLatest(t))
	const budget = 100 << 10
	big := func(n int) []byte { return bytes.Repeat([]byte("k"), n) }
	manyHeaders := func(n, size int) []kgo.RecordHeader {
		hs := make([]kgo.RecordHeader, n)
		for i := range hs {
			hs[i] = kgo.RecordHeader{Key: fmt.Sprintf("h%d", i), Value: big(size)}
		}
		return hs
	}
	manyReasons := func(n, size int) []Reason {
		rs := make([]Reason, n)
		for i := range rs {
			rs[i] = Reason{Code: RuleFailed, RuleID: strings.Repeat("r", 500), Field: "f", Message: strings.Repeat("m", size)}
		}
		return rs
	}
	tests := []struct {
		name    string
		key     []byte
		value   []byte
		headers []kgo.RecordHeader
		reasons []Reason
		wantCut []string // fields of the OVERSIZED notes
	}{
		{name: "small", key: []byte("k"), value: []byte("v"), reasons: manyReasons(1, 10)},
		{name: "large value", key: []byte("k"), value: big(300 << 10), reasons: manyReasons(1, 10), wantCut: []string{FieldOriginalValue}},
		{name: "large key, small value", key: big(300 << 10), value: []byte("v"), reasons: manyReasons(1, 10), wantCut: []string{FieldOriginalKey}},
		{name: "many headers", key: []byte("k"), value: []byte("v"), headers: manyHeaders(5000, 100), reasons: manyReasons(1, 10), wantCut: []string{FieldOriginalHeaders}},
		{name: "one huge header", value: []byte("v"), headers: manyHeaders(1, 500<<10), reasons: manyReasons(1, 10), wantCut: []string{FieldOriginalHeaders}},
		{name: "many long reasons", key: []byte("k"), value: []byte("v"), reasons: manyReasons(2000, 5000), wantCut: []string{FieldReasons, FieldReasons}},
		{name: "everything large", key: big(200 << 10), value: big(200 << 10), headers: manyHeaders(3000, 100), reasons: manyReasons(500, 2000),
			wantCut: []string{FieldReasons, FieldReasons, FieldOriginalKey, FieldOriginalHeaders, FieldOriginalValue}},
		{name: "large value beside a fitting key", key: big(10 << 10), value: big(1 << 20), reasons: manyReasons(1, 10), wantCut: []string{FieldOriginalValue}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &kgo.Record{Topic: "clickstream", Key: tt.key, Value: tt.value, Headers: tt.headers, Timestamp: time.Now()}
			dl := Envelope(rec, "ingest-clickstream", &Rejection{Reasons: tt.reasons}, "", 1, time.Now(), budget)
			b, err := avro.Marshal(schema, &dl)
			if err != nil {
				t.Fatal(err)
			}
			if len(b) > budget || Size(&dl) > budget {
				t.Errorf("envelope is %d bytes (bound %d), budget %d", len(b), Size(&dl), budget)
			}
			var cut []string
			for _, r := range dl.Reasons {
				if r.Code == string(Oversized) && r.Field != nil {
					cut = append(cut, *r.Field)
				}
			}
			if strings.Join(cut, ",") != strings.Join(tt.wantCut, ",") {
				t.Errorf("cuts recorded %v, want %v", cut, tt.wantCut)
			}
			if Truncated(&dl) != (len(tt.wantCut) > 0 && tt.name != "many long reasons") {
				t.Errorf("Truncated = %v", Truncated(&dl))
			}
			if dl.Reasons[0].Code != string(RuleFailed) {
				t.Errorf("the rejection's first reason is gone: %+v", dl.Reasons[0])
			}
			// The value is the part kept best: whole when it fits half the budget.
			if len(tt.value) <= budget/2 && !bytes.Equal(dl.OriginalValue, tt.value) {
				t.Errorf("value cut to %d of %d bytes", len(dl.OriginalValue), len(tt.value))
			}
			// A key is never stored twice at full length: the Kafka key of
			// the dead letter is the key or its hash.
			if k := Key(tt.key); len(k) > maxKafkaKey {
				t.Errorf("dead letter Kafka key is %d bytes", len(k))
			}
		})
	}
}

func TestMinimal(t *testing.T) {
	schema := avro.MustParse(mustLatest(t))
	rec := &kgo.Record{Topic: "clickstream", Partition: 1, Offset: 9, Key: bytes.Repeat([]byte("k"), 1<<20), Value: []byte("abc"),
		Headers: []kgo.RecordHeader{{Key: "h", Value: make([]byte, 100)}}}
	rej := Reject(Reason{Code: InvalidValue, Message: strings.Repeat("m", 5000)}, Reason{Code: RuleFailed, RuleID: "r1", Message: "x"})
	dl := Minimal(rec, "validator", rej, "trace", 2, time.Now())
	b, err := avro.Marshal(schema, &dl)
	if err != nil {
		t.Fatal(err)
	}
	last := dl.Reasons[len(dl.Reasons)-1]
	// sha256("abc")
	if len(b) > 2<<10 || dl.DeadLetterID != ID("validator", "clickstream", 1, 9) || len(dl.OriginalValue) != 0 || dl.OriginalKey != nil ||
		!Truncated(&dl) || *last.Field != FieldOriginal ||
		!strings.Contains(last.Message, "value 3 bytes sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad") ||
		!strings.Contains(last.Message, "key 1048576 bytes") || !strings.Contains(last.Message, "1 headers 101 bytes") ||
		dl.Reasons[0].Code != string(InvalidValue) || len(dl.Reasons[0].Message) > 128 {
		t.Errorf("minimal envelope (%d bytes): %+v", len(b), dl)
	}
}

// TestReplayHeadersKeptWhole: the replay headers link a dead letter to the
// replay it rejects again; however the original's headers are cut (many
// before them, one huge one, the minimal envelope), both are kept whole,
// and first once headers are cut. An overlong one is an ordinary header.
func TestReplayHeadersKeptWhole(t *testing.T) {
	const budget = 100 << 10
	replay := []kgo.RecordHeader{{Key: ReplayOfHeader, Value: []byte("validator-0-7-abcdef012345")}, {Key: ReplayAttemptHeader, Value: []byte("3")}}
	many := make([]kgo.RecordHeader, 5000)
	for i := range many {
		many[i] = kgo.RecordHeader{Key: fmt.Sprintf("h%d", i), Value: bytes.Repeat([]byte("x"), 100)}
	}
	huge := []kgo.RecordHeader{{Key: "huge", Value: make([]byte, 500<<10)}}
	long := kgo.RecordHeader{Key: ReplayOfHeader, Value: bytes.Repeat([]byte("o"), 300<<10)}
	tests := []struct {
		name    string
		headers []kgo.RecordHeader
		minimal bool
		want    []string // the first headers' keys
		wantLen int      // bytes of the first header's value
	}{
		{name: "fits: order kept", headers: append([]kgo.RecordHeader{{Key: "a", Value: []byte("b")}}, replay...),
			want: []string{"a", ReplayOfHeader, ReplayAttemptHeader}, wantLen: 1},
		{name: "many headers before them", headers: append(slices.Clone(many), replay...), want: []string{ReplayOfHeader, ReplayAttemptHeader}, wantLen: 26},
		{name: "a huge header before them", headers: append(slices.Clone(huge), replay...), want: []string{ReplayOfHeader, ReplayAttemptHeader}, wantLen: 26},
		{name: "minimal envelope", headers: append(slices.Clone(many), replay...), minimal: true, want: []string{ReplayOfHeader, ReplayAttemptHeader}, wantLen: 26},
		{name: "an overlong one is cut like any", headers: []kgo.RecordHeader{long}, want: []string{ReplayOfHeader}, wantLen: -1},
		{name: "an overlong one is not kept by the minimal envelope", headers: []kgo.RecordHeader{long}, minimal: true},
	}
	for _, tt := range tests {
		rec := &kgo.Record{Topic: "ecom.events.v1", Offset: 3, Value: []byte("v"), Headers: tt.headers}
		rej := Reject(Reason{Code: RuleFailed, Message: "again"})
		var dl events.DeadLetter
		if tt.minimal {
			dl = Minimal(rec, "validator", rej, "", 4, time.Now())
		} else {
			dl = Envelope(rec, "validator", rej, "", 4, time.Now(), budget)
		}
		if Size(&dl) > budget {
			t.Errorf("%s: envelope bound %d over the budget", tt.name, Size(&dl))
		}
		var got []string
		for _, h := range dl.OriginalHeaders[:min(len(tt.want), len(dl.OriginalHeaders))] {
			got = append(got, h.Key)
		}
		if strings.Join(got, ",") != strings.Join(tt.want, ",") {
			t.Errorf("%s: first headers %v, want %v", tt.name, got, tt.want)
			continue
		}
		if len(tt.want) == 0 {
			if len(dl.OriginalHeaders) != 0 {
				t.Errorf("%s: headers %d, want none", tt.name, len(dl.OriginalHeaders))
			}
			continue
		}
		if n := len(dl.OriginalHeaders[0].Value); tt.wantLen >= 0 && n != tt.wantLen || tt.wantLen < 0 && n >= len(long.Value) {
			t.Errorf("%s: first header value %d bytes, want %d", tt.name, n, tt.wantLen)
		}
		if tt.wantLen == 26 && string(dl.OriginalHeaders[1].Value) != "3" {
			t.Errorf("%s: attempt header %q", tt.name, dl.OriginalHeaders[1].Value)
		}
	}
}

func TestPure(t *testing.T) {
	tests := []struct {
		name     string
		fn       func() error
		wantPerm bool
		wantNil  bool
	}{
		{"ok", func() error { return nil }, false, true},
		{"error passes through", func() error { return errors.New("x") }, false, false},
		{"panic is a rejection", func() error { var m map[string]int; m["a"]++; return nil }, true, false},
	}
	for _, tt := range tests {
		err := Pure(Undecodable, tt.fn)
		if (err == nil) != tt.wantNil || IsPermanent(err) != tt.wantPerm {
			t.Errorf("%s: %v", tt.name, err)
		}
	}
}

func mustLatest(t *testing.T) string {
	t.Helper()
	v, err := protoavro.Latest(protoavro.DeadLetter)
	if err != nil {
		t.Fatal(err)
	}
	return v.Schema
}

func TestIDIsDeterministic(t *testing.T) {
	a := ID("validator", "ecom.events.v1", 1, 99)
	if a != ID("validator", "ecom.events.v1", 1, 99) {
		t.Error("same input, different id")
	}
	for _, other := range []string{ID("bq-writer", "ecom.events.v1", 1, 99), ID("validator", "ecom.events.v2", 1, 99),
		ID("validator", "ecom.events.v1", 2, 99), ID("validator", "ecom.events.v1", 1, 100)} {
		if other == a {
			t.Errorf("collision: %s", a)
		}
	}
}

// TestContentIDOfRecordsNotFromKafka: a record without a Kafka position
// (offset -1, the HTTP collector's) is named by its origin and its bytes, so
// the same bad event sent twice has one id and two different ones two ids.
func TestContentIDOfRecordsNotFromKafka(t *testing.T) {
	rej := &Rejection{Reasons: []Reason{{Code: MalformedJSON, Message: "x"}}}
	off := func(value, origin string) *kgo.Record {
		r := &kgo.Record{Topic: "clickstream", Partition: -1, Offset: -1, Value: []byte(value)}
		if origin != "" {
			r.Headers = []kgo.RecordHeader{{Key: OriginHeader, Value: []byte(origin)}}
		}
		return r
	}
	now := time.Now()
	tests := []struct {
		name string
		give *kgo.Record
		want string
	}{
		// sha256("{}") = 44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a
		{"http origin", off("{}", "http"), "ingest-clickstream-http-44136fa355b3678a1146ad16"},
		{"no origin header", off("{}", ""), "ingest-clickstream-external-44136fa355b3678a1146ad16"},
		{"from kafka", &kgo.Record{Topic: "clickstream", Partition: 1, Offset: 7, Value: []byte("{}")}, ID("ingest-clickstream", "clickstream", 1, 7)},
	}
	for _, tt := range tests {
		for _, dl := range []events.DeadLetter{Envelope(tt.give, "ingest-clickstream", rej, "", 1, now, 0), Minimal(tt.give, "ingest-clickstream", rej, "", 1, now)} {
			if dl.DeadLetterID != tt.want {
				t.Errorf("%s: dead_letter_id %q, want %q", tt.name, dl.DeadLetterID, tt.want)
			}
		}
	}
	if a, b := ContentID("s", "http", []byte(`{"a":1}`)), ContentID("s", "http", []byte(`{"a":2}`)); a == b {
		t.Errorf("different bytes, same id %s", a)
	}
}

func TestPermanence(t *testing.T) {
	rej := Rejectf(WrongType, "quantity", "want %s", "int")
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"rejection", rej, true},
		{"wrapped rejection", fmt.Errorf("handle: %w", rej), true},
		{"joined", errors.Join(errors.New("x"), rej), true},
		{"plain error is transient", errors.New("broker down"), false},
		{"nil", nil, false},
	}
	for _, tt := range tests {
		if got := IsPermanent(tt.err); got != tt.want {
			t.Errorf("%s: IsPermanent = %v", tt.name, got)
		}
	}
	if got := rej.Error(); got != "rejected: WRONG_TYPE quantity: want int" {
		t.Errorf("Error() = %q", got)
	}
}
