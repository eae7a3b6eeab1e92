package query

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"
)

func ts(s string) *time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return &t
}

func manyValues(n int) string {
	vs := make([]string, n)
	for i := range vs {
		vs[i] = fmt.Sprintf("C%d", i)
	}
	return strings.Join(vs, ",")
}

func TestParseFilter(t *testing.T) {
	tests := []struct {
		name      string
		give      string
		want      Filter
		wantParam string // "" = valid
	}{
		{name: "empty", give: ""},
		{name: "repeated and comma lists", give: "stage=validator&stage=bq-writer,ingest-clickstream&code=RULE_FAILED",
			want: Filter{Stage: []string{"validator", "bq-writer", "ingest-clickstream"}, Code: []string{"RULE_FAILED"}}},
		{name: "duplicates and blanks dropped", give: "rule_id=r1,,r1&rule_id=%20r2%20",
			want: Filter{RuleID: []string{"r1", "r2"}}},
		{name: "states", give: "state=new,failed_again", want: Filter{State: []string{"new", "failed_again"}}},
		{name: "entity", give: "entity=order", want: Filter{Entity: []string{"order"}}},
		{name: "time range", give: "from=2026-01-01T00:00:00Z&to=2026-01-02T00:00:00.5%2B01:00",
			want: Filter{From: ts("2026-01-01T00:00:00Z"), To: ts("2026-01-02T00:00:00.5+01:00")}},
		{name: "q", give: "q=%20price%20-negative%20", want: Filter{Q: "price -negative"}},
		{name: "unknown parameter", give: "stages=validator", wantParam: "stages"},
		{name: "bad state", give: "state=done", wantParam: "state"},
		{name: "bad from", give: "from=yesterday", wantParam: "from"},
		{name: "to before from", give: "from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z", wantParam: "to"},
		{name: "to equals from", give: "from=2026-01-02T00:00:00Z&to=2026-01-02T00:00:00Z", wantParam: "to"},
		{name: "q twice", give: "q=a&q=b", wantParam: "q"},
		{name: "q too long", give: "q=" + strings.Repeat("x", maxQLen+1), wantParam: "q"},
		{name: "value too long", give: "stage=" + strings.Repeat("x", maxValueLen+1), wantParam: "stage"},
		{name: "too many values", give: "code=" + manyValues(maxValues+1), wantParam: "code"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := url.ParseQuery(tt.give)
			if err != nil {
				t.Fatal(err)
			}
			got, err := ParseFilter(v)
			if tt.wantParam != "" {
				var qe *Error
				if !errors.As(err, &qe) || qe.Param != tt.wantParam || qe.Msg == "" {
					t.Fatalf("err = %v, want a query error of %s", err, tt.wantParam)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestParsePage(t *testing.T) {
	tests := []struct {
		give    string
		want    Page
		wantErr bool
	}{
		{give: "", want: Page{Limit: DefaultLimit}},
		{give: "limit=1&cursor=abc", want: Page{Limit: 1, Cursor: "abc"}},
		{give: "limit=500", want: Page{Limit: 500}},
		{give: "limit=501", wantErr: true},
		{give: "limit=0", wantErr: true},
		{give: "limit=-3", wantErr: true},
		{give: "limit=ten", wantErr: true},
	}
	for _, tt := range tests {
		v, _ := url.ParseQuery(tt.give)
		got, err := ParsePage(v)
		if (err != nil) != tt.wantErr || (!tt.wantErr && got != tt.want) {
			t.Errorf("ParsePage(%q) = %+v, %v; want %+v, error %v", tt.give, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestCursor(t *testing.T) {
	f := Filter{Stage: []string{"validator"}}
	at := time.Date(2026, 3, 4, 5, 6, 7, 891234000, time.UTC)
	c := cursor{at: at, key: "validator|ecom.events.v1|0|42"} // a key holding the separator
	s := encodeCursor("d", c, f)
	got, err := decodeCursor("d", s, f)
	if err != nil || got != c {
		t.Fatalf("round trip = %+v, %v; want %+v", got, err, c)
	}
	other := encodeCursor("d", c, Filter{Stage: []string{"bq-writer"}})
	tests := []struct {
		name string
		give string
		kind string
		want string // in the error
	}{
		{"another filter", other, "d", "another filter"},
		{"another list", s, "a", "not a cursor"},
		{"not base64", "!!!", "d", "not a cursor"},
		{"garbage", base64.RawURLEncoding.EncodeToString([]byte("d|x|y|z")), "d", "not a cursor"},
		{"too few parts", base64.RawURLEncoding.EncodeToString([]byte("d|1")), "d", "not a cursor"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := decodeCursor(tt.kind, tt.give, f)
			var qe *Error
			if !errors.As(err, &qe) || qe.Param != "cursor" || !strings.Contains(qe.Msg, tt.want) {
				t.Errorf("err = %v, want a cursor error with %q", err, tt.want)
			}
		})
	}
}

func TestParseStats(t *testing.T) {
	tests := []struct {
		name      string
		give      string
		want      StatsRequest
		wantParam string
	}{
		{name: "defaults", give: "", want: StatsRequest{Window: time.Hour, Buckets: 24}},
		{name: "window and buckets", give: "window=15m&buckets=96&stage=validator",
			want: StatsRequest{Window: 15 * time.Minute, Buckets: 96, Filter: Filter{Stage: []string{"validator"}}}},
		{name: "window too small", give: "window=30s", wantParam: "window"},
		{name: "window fraction", give: "window=90.5s", wantParam: "window"},
		{name: "window not a duration", give: "window=1d", wantParam: "window"},
		{name: "buckets zero", give: "buckets=0", wantParam: "buckets"},
		{name: "buckets too many", give: "buckets=1001", wantParam: "buckets"},
		{name: "span too long", give: "window=24h&buckets=401", wantParam: "buckets"},
		{name: "from", give: "from=2026-01-01T00:00:00Z", wantParam: "from"},
		{name: "unknown", give: "limit=3", wantParam: "limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, _ := url.ParseQuery(tt.give)
			got, err := ParseStats(v)
			if tt.wantParam != "" {
				var qe *Error
				if !errors.As(err, &qe) || qe.Param != tt.wantParam {
					t.Fatalf("err = %v, want an error of %s", err, tt.wantParam)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

func TestBins(t *testing.T) {
	now := time.Date(2026, 3, 4, 10, 20, 0, 0, time.UTC)
	from, to := StatsRequest{Window: time.Hour, Buckets: 24}.Bins(now)
	if want := time.Date(2026, 3, 4, 11, 0, 0, 0, time.UTC); !to.Equal(want) {
		t.Errorf("to = %s, want %s (the end of the hour holding now)", to, want)
	}
	if want := time.Date(2026, 3, 3, 11, 0, 0, 0, time.UTC); !from.Equal(want) {
		t.Errorf("from = %s, want %s", from, want)
	}
	// now on a boundary belongs to the bucket it starts.
	_, to = StatsRequest{Window: time.Hour, Buckets: 1}.Bins(time.Date(2026, 3, 4, 10, 0, 0, 0, time.UTC))
	if want := time.Date(2026, 3, 4, 11, 0, 0, 0, time.UTC); !to.Equal(want) {
		t.Errorf("to at a boundary = %s, want %s", to, want)
	}
}

func TestParseAudit(t *testing.T) {
	tests := []struct {
		give     string
		want     AuditFilter
		wantPage Page
		wantErr  bool
	}{
		{give: "", wantPage: Page{Limit: DefaultLimit}},
		{give: "actor=alice,bob&action=discard&limit=5", want: AuditFilter{Actor: []string{"alice", "bob"}, Action: []string{"discard"}}, wantPage: Page{Limit: 5}},
		{give: "from=2026-01-01T00:00:00Z", want: AuditFilter{From: ts("2026-01-01T00:00:00Z")}, wantPage: Page{Limit: DefaultLimit}},
		{give: "who=alice", wantErr: true},
		{give: "from=soon", wantErr: true},
		{give: "from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z", wantErr: true},
		{give: "limit=9999", wantErr: true},
	}
	for _, tt := range tests {
		v, _ := url.ParseQuery(tt.give)
		f, p, err := ParseAudit(v)
		if tt.wantErr {
			var qe *Error
			if !errors.As(err, &qe) {
				t.Errorf("ParseAudit(%q): %v, want a query error", tt.give, err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(f, tt.want) || p != tt.wantPage {
			t.Errorf("ParseAudit(%q) = %+v, %+v, %v; want %+v, %+v", tt.give, f, p, err, tt.want, tt.wantPage)
		}
	}
}

func TestWhere(t *testing.T) {
	f := Filter{Stage: []string{"validator"}, Code: []string{"RULE_FAILED"}, Q: "price"}
	sql, args := f.Where([]any{"first"})
	want := "stage = ANY($2) AND codes && $3::text[] AND message_tsv @@ websearch_to_tsquery('simple', $4)"
	if sql != want {
		t.Errorf("sql = %s\nwant  %s", sql, want)
	}
	if len(args) != 4 || args[0] != "first" || args[3] != "price" {
		t.Errorf("args = %v", args)
	}
	if sql, args := (Filter{}).Where(nil); sql != "TRUE" || len(args) != 0 {
		t.Errorf("empty filter = %q, %v", sql, args)
	}
	// A value is never pasted into the SQL text.
	evil := Filter{Stage: []string{"x'; DROP TABLE dead_letters; --"}}
	if sql, _ := evil.Where(nil); strings.Contains(sql, "DROP") {
		t.Errorf("value in SQL text: %s", sql)
	}
}
