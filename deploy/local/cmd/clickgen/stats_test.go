package main

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/ecomstream/platform/deploy/local/clickgen"
)

func TestExpectWriter(t *testing.T) {
	valid, _ := clickgen.ExpectationFor(clickgen.KindValid)
	malformed, _ := clickgen.ExpectationFor(clickgen.KindMalformedJSON)
	badURL, _ := clickgen.ExpectationFor(clickgen.KindBadURL)
	tests := []struct {
		name string
		rec  clickgen.Record
		err  error
		want expectLine
	}{
		{"valid", clickgen.Record{Key: []byte("s1"), Value: []byte(`{}`), EventID: "e1", Expect: valid},
			nil, expectLine{EventID: "e1", Key: "s1", Valid: true, Kind: "valid", Topic: "clickstream", Partition: 2, Offset: 41}},
		{"duplicate", clickgen.Record{Key: []byte("s1"), Value: []byte(`{}`), EventID: "e1", Expect: valid, Duplicate: true},
			nil, expectLine{EventID: "e1", Key: "s1", Valid: true, Kind: "valid", Duplicate: true, Topic: "clickstream", Partition: 2, Offset: 41}},
		{"rule failure", clickgen.Record{Key: []byte("s2"), Value: []byte(`{}`), EventID: "e2", Expect: badURL},
			nil, expectLine{EventID: "e2", Key: "s2", Kind: "bad_url", Stage: "validator", Code: "RULE_FAILED",
				RuleID: "click.page_url_valid", Topic: "clickstream", Partition: 2, Offset: 41}},
		{"no event id: bytes", clickgen.Record{Key: []byte("s3"), Value: []byte(`{"event_id":"x`), Expect: malformed},
			nil, expectLine{Key: "s3", Kind: "malformed_json", Stage: "ingest-clickstream", Code: "MALFORMED_JSON",
				Topic: "clickstream", Partition: 2, Offset: 41, ValueB64: base64.StdEncoding.EncodeToString([]byte(`{"event_id":"x`))}},
		{"not delivered", clickgen.Record{Key: []byte("s4"), Value: []byte(`{}`), EventID: "e4", Expect: valid},
			errors.New("boom"), expectLine{EventID: "e4", Key: "s4", Valid: true, Kind: "valid", Topic: "clickstream",
				Partition: -1, Offset: -1, Error: "boom"}},
	}
	path := filepath.Join(t.TempDir(), "expect.jsonl")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := newExpectWriter(f)
	for _, tt := range tests {
		w.write(tt.rec, "clickstream", 2, 41, tt.err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	w.write(tests[0].rec, "clickstream", 2, 42, nil) // after Close: dropped, no panic

	f, err = os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for _, tt := range tests {
		if !sc.Scan() {
			t.Fatalf("%s: missing line", tt.name)
		}
		var got expectLine
		if err := json.Unmarshal(sc.Bytes(), &got); err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if got != tt.want {
			t.Errorf("%s: got %+v, want %+v", tt.name, got, tt.want)
		}
	}
	if sc.Scan() {
		t.Errorf("extra line %s", sc.Text())
	}
}
