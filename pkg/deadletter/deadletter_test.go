package deadletter

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

func TestEnvelope(t *testing.T) {
	now := time.Date(2026, 11, 25, 1, 2, 3, 0, time.FixedZone("x", 3600))
	rec := &kgo.Record{Topic: "clickstream", Partition: 2, Offset: 41, Key: []byte("s1"), Value: []byte(`{"bad"`),
		Timestamp: now, Headers: []kgo.RecordHeader{{Key: "traceparent", Value: []byte("00-x")}}}
	rej := &Rejection{Entity: "click_event", SchemaID: 7, Reasons: []Reason{
		{Code: MalformedJSON, Message: "unexpected end"},
		{Code: RuleFailed, RuleID: "click.page_url_valid", Field: "page_url", Message: "not a URL"},
	}}
	tests := []struct {
		name        string
		maxOriginal int
		wantValue   string
		wantReasons int
	}{
		{name: "whole original", maxOriginal: 0, wantValue: `{"bad"`, wantReasons: 2},
		{name: "fits", maxOriginal: 100, wantValue: `{"bad"`, wantReasons: 2},
		{name: "truncated and says so", maxOriginal: 3, wantValue: `{"b`, wantReasons: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dl := Envelope(rec, "ingest-clickstream", rej, "0af7651916cd43dd8448eb211c80319c", 2, now, tt.maxOriginal)
			if string(dl.OriginalValue) != tt.wantValue || len(dl.Reasons) != tt.wantReasons {
				t.Fatalf("value %q reasons %+v", dl.OriginalValue, dl.Reasons)
			}
			if dl.SourceTopic != "clickstream" || dl.SourcePartition != 2 || dl.SourceOffset != 41 || dl.Stage != "ingest-clickstream" ||
				*dl.Entity != "click_event" || *dl.SchemaID != 7 || dl.Attempt != 2 || *dl.TraceID != "0af7651916cd43dd8448eb211c80319c" ||
				string(*dl.OriginalKey) != "s1" || len(dl.OriginalHeaders) != 1 || dl.FailedAt.Location() != time.UTC {
				t.Errorf("envelope fields: %+v", dl)
			}
			if r := dl.Reasons[1]; r.Code != "RULE_FAILED" || *r.RuleID != "click.page_url_valid" || *r.Field != "page_url" {
				t.Errorf("reason %+v", r)
			}
			if tt.wantReasons == 3 && (dl.Reasons[2].Code != string(Oversized) || !strings.Contains(dl.Reasons[2].Message, "3 of 6 bytes")) {
				t.Errorf("truncation not recorded: %+v", dl.Reasons[2])
			}
		})
	}
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
