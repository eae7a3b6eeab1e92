package collector

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestSplit(t *testing.T) {
	ev1, ev2 := `{"event_id":"a","x":[1,{"y":"]}"}]}`, `{"event_id":"b","s":"\"\\{"}`
	tests := []struct {
		name    string
		give    string
		format  bodyFormat
		wantKey string
		want    []string
		wantErr string // substring; "" = no error
		tooMany bool
	}{
		{name: "array", give: `[` + ev1 + `, ` + ev2 + `]`, want: []string{ev1, ev2}},
		{name: "array with whitespace", give: " \n[ \t" + ev1 + " \r\n, " + ev2 + " ]\n", want: []string{ev1, ev2}},
		{name: "empty array", give: `[]`, want: nil},
		{name: "array of non-objects: each the parser's to reject", give: `[1, "x", null, [2], tru]`, want: []string{"1", `"x"`, "null", "[2]", "tru"}},
		{name: "element malformed inside, structure sound", give: `[{"a" 1}, ` + ev2 + `]`, want: []string{`{"a" 1}`, ev2}},
		{name: "envelope", give: `{"write_key":"wk_1234567890abcdef","events":[` + ev1 + `]}`, wantKey: "wk_1234567890abcdef", want: []string{ev1}},
		{name: "envelope, events first, escaped key", give: `{"events":[` + ev1 + `,` + ev2 + `],"write_key":"wk_\u0041bc"}`, wantKey: "wk_Abc", want: []string{ev1, ev2}},
		{name: "envelope without key", give: `{"events":[]}`, want: nil},
		{name: "envelope member name escaped", give: `{"ev\u0065nts":[` + ev1 + `]}`, want: []string{ev1}},
		{name: "single event", give: "  " + ev1 + "\n", want: []string{ev1}},
		{name: "empty object is an event", give: `{}`, want: []string{`{}`}},
		{name: "single event under text/plain", give: ev1, format: formatSniff, want: []string{ev1}},
		{name: "envelope under text/plain", give: `{"write_key":"k","events":[` + ev2 + `]}`, format: formatSniff, wantKey: "k", want: []string{ev2}},
		{name: "array under text/plain", give: `[` + ev1 + `]`, format: formatSniff, want: []string{ev1}},
		{name: "NDJSON under text/plain", give: ev1 + "\n" + ev2 + "\n", format: formatSniff, want: []string{ev1, ev2}},
		{name: "NDJSON with a broken later line under text/plain", give: ev1 + "\n" + `{"a":` + "\n" + ev2, format: formatSniff, want: []string{ev1, `{"a":`, ev2}},
		{name: "BOM before an array under text/plain", give: "\xef\xbb\xbf[\n  " + ev1 + ",\n  " + ev2 + "\n]\n", format: formatSniff, want: []string{ev1, ev2}},
		{name: "BOM before an array", give: "\xef\xbb\xbf[" + ev1 + "]", want: []string{ev1}},
		{name: "BOM before NDJSON", give: "\xef\xbb\xbf" + ev1 + "\n" + ev2, format: formatNDJSON, want: []string{ev1, ev2}},
		{name: "pretty-printed single event under text/plain", give: "{\n  \"a\": 1\n}\n", format: formatSniff, want: []string{"{\n  \"a\": 1\n}"}},
		{name: "NDJSON", give: ev1 + "\r\n\n  " + ev2, format: formatNDJSON, want: []string{ev1, ev2}},
		{name: "NDJSON of garbage lines", give: "x\ny", format: formatNDJSON, want: []string{"x", "y"}},

		{name: "empty", give: "", wantErr: "empty"},
		{name: "blank", give: " \n ", wantErr: "empty"},
		{name: "blank NDJSON", give: "\n\n", format: formatNDJSON, wantErr: "empty"},
		{name: "scalar body", give: `42`, wantErr: "not a JSON array"},
		{name: "unterminated array", give: `[` + ev1, wantErr: "unterminated array"},
		{name: "unterminated string", give: `[{"a":"b}]`, wantErr: "unterminated string"},
		{name: "missing comma", give: `[{} {}]`, wantErr: "expected ',' or ']'"},
		{name: "trailing comma", give: `[{},]`, wantErr: "unexpected ']'"},
		{name: "mismatched brackets", give: `[{"a":[1}]`, wantErr: "unexpected '}'"},
		{name: "data after the array", give: `[{}] {}`, wantErr: "data after"},
		{name: "two objects as application/json", give: ev1 + "\n" + ev2, wantErr: "data after"},
		{name: "envelope with events not an array", give: `{"events":{}}`, wantErr: "must be an array"},
		{name: "envelope with two events", give: `{"events":[],"events":[]}`, wantErr: "two events"},
		{name: "envelope with an unknown member", give: `{"events":[],"sent_at":1}`, wantErr: `member "sent_at"`},
		{name: "write_key not a string", give: `{"write_key":7,"events":[]}`, wantErr: "must be a string"},
		{name: "write_key without events", give: `{"write_key":"k","event_id":"x"}`, wantErr: "needs events"},
		{name: "first object broken under text/plain", give: `{"a":` + "\n" + ev2, format: formatSniff, wantErr: "unterminated object"},
		{name: "pretty-printed objects under text/plain", give: "{\n\"a\": 1\n}\n{\n\"b\": 2\n}", format: formatSniff, wantErr: "data after"},
		{name: "two objects on one line under text/plain", give: ev1 + " " + ev2, format: formatSniff, wantErr: "data after"},
		{name: "garbage under text/plain", give: "x\ny", format: formatSniff, wantErr: "not a JSON array"},
		{name: "a second BOM is not skipped", give: "\xef\xbb\xbf\xef\xbb\xbf[]", wantErr: "not a JSON array"},
		{name: "envelope and more under text/plain", give: `{"events":[]}` + "\n{}", format: formatSniff, wantErr: "data after"},
		{name: "too deep", give: "[" + strings.Repeat("[", maxNesting+1), wantErr: "nested deeper"},

		{name: "too many in an array", give: `[{},{},{},{}]`, wantErr: "COLLECTOR_MAX_EVENTS=3", tooMany: true},
		{name: "too many in an envelope", give: `{"events":[{},{},{},{}]}`, wantErr: "COLLECTOR_MAX_EVENTS=3", tooMany: true},
		{name: "too many lines", give: "{}\n{}\n{}\n{}", format: formatNDJSON, wantErr: "COLLECTOR_MAX_EVENTS=3", tooMany: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			max := 10
			if tt.tooMany {
				max = 3
			}
			key, evs, err := split([]byte(tt.give), tt.format, max)
			if tt.wantErr != "" {
				se, ok := err.(*splitError)
				if !ok || !strings.Contains(err.Error(), tt.wantErr) || se.tooMany != tt.tooMany {
					t.Fatalf("err = %v (tooMany %v), want %q", err, ok && se.tooMany, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if key != tt.wantKey {
				t.Errorf("write key %q, want %q", key, tt.wantKey)
			}
			var got []string
			for _, e := range evs {
				got = append(got, string(e))
			}
			if strings.Join(got, "|") != strings.Join(tt.want, "|") || len(got) != len(tt.want) {
				t.Errorf("events %q, want %q", got, tt.want)
			}
		})
	}
}

// TestSplitAllocations: splitting takes the events' bytes as slices of the
// body, whatever their content, with one slice header per event.
func TestSplitAllocations(t *testing.T) {
	body := []byte(batch(manyEvents("e", 50)...))
	allocs := testing.AllocsPerRun(100, func() {
		if _, evs, err := split(body, formatJSON, 500); err != nil || len(evs) != 50 {
			t.Fatal(err, len(evs))
		}
	})
	if allocs > 2 {
		t.Errorf("split of 50 events: %v allocations, want at most 2 (the slice of events)", allocs)
	}
}

// FuzzSplit checks split against encoding/json: a body encoding/json reads
// as an array, or an envelope, must split into the same number of events,
// each of them the element's exact bytes; whatever the input, split does
// not panic, returns at most max events, and every event is a piece of the
// body.
func FuzzSplit(f *testing.F) {
	// The seed corpus is testdata/fuzz/FuzzSplit (go test runs it); a few more here.
	f.Add([]byte(`[{"a":"\\\""},{}]`), uint8(formatJSON))
	f.Add([]byte("{}\n{\n"), uint8(formatNDJSON))
	const max = 20
	f.Fuzz(func(t *testing.T, body []byte, fm uint8) {
		format := bodyFormat(fm % 3)
		_, evs, err := split(body, format, max)
		if err != nil {
			if _, ok := err.(*splitError); !ok {
				t.Fatalf("error of type %T: %v", err, err)
			}
		}
		if len(evs) > max {
			t.Fatalf("%d events, max %d", len(evs), max)
		}
		for _, e := range evs {
			if len(e) == 0 || !bytes.Contains(body, e) {
				t.Fatalf("event %q is not a piece of the body", e)
			}
		}
		if format == formatNDJSON || !json.Valid(body) {
			return
		}
		var elems []json.RawMessage
		if trimmed := bytes.TrimSpace(body); trimmed[0] != '[' || json.Unmarshal(body, &elems) != nil {
			var env struct {
				WriteKey *string            `json:"write_key"`
				Events   *[]json.RawMessage `json:"events"`
			}
			var members map[string]json.RawMessage
			if json.Unmarshal(body, &members) == nil && members != nil && !bytes.Contains(body, []byte("events")) && !bytes.Contains(body, []byte("write_key")) &&
				!bytes.Contains(body, []byte(`\u`)) {
				// One event: taken whole.
				if err != nil || len(evs) != 1 || !bytes.Equal(evs[0], bytes.TrimSpace(body)) {
					t.Fatalf("object %q: events %q, err %v; want the object as one event", body, evs, err)
				}
				return
			}
			if json.Unmarshal(body, &members) != nil || json.Unmarshal(body, &env) != nil || env.Events == nil ||
				bytes.Count(body, []byte(`"events"`)) != 1 || bytes.Count(body, []byte(`"write_key"`)) > 1 {
				return // a single event, or an envelope only we read as one (escaped or repeated names)
			}
			for name := range members {
				if name != "events" && name != "write_key" {
					return // an envelope with extras: refused
				}
			}
			elems = *env.Events
		}
		if len(elems) > max {
			if err == nil {
				t.Fatalf("%d elements, no error", len(elems))
			}
			return
		}
		if err != nil {
			t.Fatalf("valid JSON %q refused: %v", body, err)
		}
		if len(evs) != len(elems) {
			t.Fatalf("%d events, encoding/json reads %d", len(evs), len(elems))
		}
		for i := range elems {
			if !bytes.Equal(evs[i], bytes.TrimSpace(elems[i])) {
				t.Fatalf("event %d is %q, encoding/json reads %q", i, evs[i], elems[i])
			}
		}
	})
}
