package api

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ecomstream/platform/pkg/config"
	"github.com/ecomstream/platform/services/dlq-handler/internal/auth"
	"github.com/ecomstream/platform/services/dlq-handler/internal/query"
)

const (
	operatorTok = "operator-token-0123456789"
	viewerTok   = "viewer-token-0123456789"
)

// unitServer serves the API over a pool that never connects (nothing
// listens on port 1): the requests here are answered before any query.
func unitServer(t *testing.T, cfg Config) http.Handler {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), "postgres://x:x@127.0.0.1:1/x?connect_timeout=1")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	tk, err := auth.New(auth.Config{OperatorToken: operatorTok, ViewerToken: viewerTok})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Pool, cfg.Auth = pool, tk
	return New(cfg)
}

type apiError struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func do(h http.Handler, method, path, token, contentType, body string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// TestErrors: every refusal before the store is a JSON error with the
// right status and code.
func TestErrors(t *testing.T) {
	h := unitServer(t, Config{})
	big := `{"reason": "x", "ids": ["` + strings.Repeat("a", maxBodyBytes) + `"]}`
	tests := []struct {
		name     string
		method   string
		path     string
		token    string
		ct       string
		body     string
		want     int
		wantCode string
		wantMsg  string // in the message
	}{
		{"no token", "GET", "/v1/dead-letters", "", "", "", 401, "unauthorized", "bearer token"},
		{"wrong token", "GET", "/v1/stats", "nope-nope-nope-nope", "", "", 401, "unauthorized", "not known"},
		{"viewer discards", "POST", "/v1/dead-letters/discard", viewerTok, "", `{}`, 403, "forbidden", "operator"},
		{"viewer runs retention", "POST", "/v1/retention", viewerTok, "", "", 403, "forbidden", "operator"},
		{"unknown route", "GET", "/v1/nothing", viewerTok, "", "", 404, "not_found", ""},
		{"wrong method", "DELETE", "/v1/stats", viewerTok, "", "", 405, "method_not_allowed", ""},
		{"bad filter", "GET", "/v1/dead-letters?state=gone", viewerTok, "", "", 400, "invalid_argument", "state"},
		{"unknown parameter", "GET", "/v1/dead-letters?stagee=x", viewerTok, "", "", 400, "invalid_argument", "stagee"},
		{"email search without pii", "GET", "/v1/dead-letters?q=ann@shop.example", viewerTok, "", "", 400, "invalid_argument", "pii right"},
		{"email search in stats", "GET", "/v1/stats?q=ann@shop.example", operatorTok, "", "", 400, "invalid_argument", "pii right"},
		{"bad limit", "GET", "/v1/dead-letters?limit=9999", viewerTok, "", "", 400, "invalid_argument", "limit"},
		{"bad cursor", "GET", "/v1/dead-letters?cursor=zzz", viewerTok, "", "", 400, "invalid_argument", "cursor"},
		{"bad window", "GET", "/v1/stats?window=1x", viewerTok, "", "", 400, "invalid_argument", "window"},
		{"bad audit", "GET", "/v1/audit?from=x", viewerTok, "", "", 400, "invalid_argument", "from"},
		{"discard no body", "POST", "/v1/dead-letters/discard", operatorTok, "", "", 400, "invalid_argument", "body is required"},
		{"discard no reason", "POST", "/v1/dead-letters/discard", operatorTok, "", `{"ids": ["a"]}`, 400, "invalid_argument", "reason"},
		{"discard blank reason", "POST", "/v1/dead-letters/discard", operatorTok, "", `{"ids": ["a"], "reason": "  "}`, 400, "invalid_argument", "reason"},
		{"discard neither", "POST", "/v1/dead-letters/discard", operatorTok, "", `{"reason": "x"}`, 400, "invalid_argument", "either ids or filter"},
		{"discard both", "POST", "/v1/dead-letters/discard", operatorTok, "", `{"reason": "x", "ids": ["a"], "filter": {"stage": ["v"]}}`, 400, "invalid_argument", "either ids or filter"},
		{"discard empty filter", "POST", "/v1/dead-letters/discard", operatorTok, "", `{"reason": "x", "filter": {}}`, 400, "invalid_argument", "empty filter"},
		{"discard bad filter", "POST", "/v1/dead-letters/discard", operatorTok, "", `{"reason": "x", "filter": {"state": ["gone"]}}`, 400, "invalid_argument", "filter.state"},
		{"discard unknown field", "POST", "/v1/dead-letters/discard", operatorTok, "", `{"reason": "x", "id": "a"}`, 400, "invalid_argument", "unknown field"},
		{"discard two values", "POST", "/v1/dead-letters/discard", operatorTok, "", `{"reason": "x", "ids": ["a"]} {}`, 400, "invalid_argument", "one JSON value"},
		{"discard empty id", "POST", "/v1/dead-letters/discard", operatorTok, "", `{"reason": "x", "ids": [""]}`, 400, "invalid_argument", "empty"},
		{"discard too many ids", "POST", "/v1/dead-letters/discard", operatorTok, "", `{"reason": "x", "ids": [` + strings.Repeat(`"a",`, maxDiscardIDs) + `"a"]}`, 400, "invalid_argument", "at most"},
		{"discard too big", "POST", "/v1/dead-letters/discard", operatorTok, "", big, 413, "payload_too_large", "at most"},
		{"discard not json", "POST", "/v1/dead-letters/discard", operatorTok, "text/plain", `{}`, 415, "unsupported_media_type", "application/json"},
		{"retention not configured", "POST", "/v1/retention", operatorTok, "application/json", "", 503, "unavailable", "retention"},
		{"retention bad body", "POST", "/v1/retention", operatorTok, "", `{"now": true}`, 400, "invalid_argument", "unknown field"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := do(h, tt.method, tt.path, tt.token, tt.ct, tt.body)
			if rec.Code != tt.want {
				t.Fatalf("status %d, want %d: %s", rec.Code, tt.want, rec.Body)
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			var e apiError
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil {
				t.Fatalf("body %s: %v", rec.Body, err)
			}
			if e.Error.Code != tt.wantCode || e.Error.Message == "" || !strings.Contains(e.Error.Message, tt.wantMsg) {
				t.Errorf("error %+v, want code %s with %q", e.Error, tt.wantCode, tt.wantMsg)
			}
		})
	}
}

// fakeDecoder decodes "avro" originals of the unit tests: values starting
// with 0 hold JSON after the 5-byte header.
type fakeDecoder struct{}

func (fakeDecoder) Decode(_ context.Context, b []byte) (int, any, error) {
	if len(b) < 5 || b[0] != 0 {
		return 0, nil, errors.New("not framed")
	}
	var v any
	if err := json.Unmarshal(b[5:], &v); err != nil {
		return 1, nil, err
	}
	return 1, v, nil
}

func framed(s string) []byte { return append([]byte{0, 0, 0, 0, 1}, s...) }

func TestOriginal(t *testing.T) {
	sid := int32(1)
	purged := time.Now()
	pii := auth.Identity{Name: "alice", Role: auth.Viewer, PII: true}
	plain := auth.Identity{Name: "bob", Role: auth.Viewer}
	binary := []byte{0xff, 0xfe, 0x00, 0x01, 0x02, 0x03}
	tests := []struct {
		name         string
		rec          query.Record
		id           auth.Identity
		registry     Decoder
		wantFormat   string
		wantDecoded  string // JSON, compared after parsing
		wantHex      string
		wantRedacted bool
		wantTrunc    bool
		wantDecErr   bool
	}{
		{name: "avro, pii caller", rec: rec(&sid, framed(`{"email":"a@b.example","n":1}`), true), id: pii, registry: fakeDecoder{},
			wantFormat: "avro", wantDecoded: `{"email":"a@b.example","n":1}`},
		{name: "avro, redacted", rec: rec(&sid, framed(`{"email":"a@b.example","n":1,"note":"to c@d.example"}`), true), id: plain, registry: fakeDecoder{},
			wantFormat: "avro", wantDecoded: `{"email":"[redacted]","n":1,"note":"to [redacted]"}`, wantRedacted: true},
		{name: "avro undecodable falls back to hex", rec: rec(&sid, binary, false), id: plain, registry: fakeDecoder{},
			wantFormat: "hex", wantHex: hex.EncodeToString(binary), wantDecErr: true},
		{name: "avro undecodable pii row hidden", rec: rec(&sid, binary, true), id: plain, registry: fakeDecoder{},
			wantFormat: "hidden", wantRedacted: true, wantDecErr: true},
		{name: "avro undecodable pii row, pii caller", rec: rec(&sid, binary, true), id: pii, registry: fakeDecoder{},
			wantFormat: "hex", wantHex: hex.EncodeToString(binary), wantDecErr: true},
		{name: "avro without registry", rec: rec(&sid, framed(`{}`), false), id: plain,
			wantFormat: "hex", wantHex: hex.EncodeToString(framed(`{}`)), wantDecErr: true},
		{name: "json", rec: rec(nil, []byte(`{"event_id":"e1","price":-1,"big":12345678901234567890}`), false), id: plain,
			wantFormat: "json", wantDecoded: `{"event_id":"e1","price":-1,"big":12345678901234567890}`},
		{name: "json redacted", rec: rec(nil, []byte(`[{"Name":"Ann","ip":"10.0.0.1"}]`), false), id: plain,
			wantFormat: "json", wantDecoded: `[{"Name":"[redacted]","ip":"[redacted]"}]`, wantRedacted: true},
		{name: "hex", rec: rec(nil, binary, false), id: plain, wantFormat: "hex", wantHex: hex.EncodeToString(binary)},
		{name: "hex truncated", rec: rec(nil, append(binary, make([]byte, 100)...), false), id: plain,
			wantFormat: "hex", wantHex: hex.EncodeToString(append(binary, make([]byte, 10)...)), wantTrunc: true},
		{name: "pii hex hidden", rec: rec(nil, binary, true), id: plain, wantFormat: "hidden", wantRedacted: true},
		{name: "empty", rec: rec(nil, []byte{}, false), id: plain, wantFormat: "empty"},
		{name: "purged", rec: func() query.Record { r := rec(nil, nil, true); r.PIIPurgedAt = &purged; return r }(), id: pii, wantFormat: "purged"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &server{cfg: Config{Registry: tt.registry, MaxHexBytes: 16}}
			req := httptest.NewRequest("GET", "/", nil)
			o := s.original(req.Context(), tt.rec, tt.id)
			if o.Format != tt.wantFormat || o.Hex != tt.wantHex || o.Redacted != tt.wantRedacted || o.Truncated != tt.wantTrunc ||
				(o.DecodeError != "") != tt.wantDecErr || o.Size != len(tt.rec.Value) {
				t.Fatalf("got %+v", o)
			}
			if tt.wantDecoded == "" {
				if o.Decoded != nil || o.Pretty != "" {
					t.Errorf("decoded %s, pretty %q; want none", o.Decoded, o.Pretty)
				}
				return
			}
			if !jsonEqual(t, o.Decoded, []byte(tt.wantDecoded)) || !jsonEqual(t, []byte(o.Pretty), []byte(tt.wantDecoded)) {
				t.Errorf("decoded %s, want %s", o.Decoded, tt.wantDecoded)
			}
			if !strings.Contains(o.Pretty, "\n  ") {
				t.Errorf("pretty is not indented: %q", o.Pretty)
			}
		})
	}
}

func rec(sid *int32, value []byte, pii bool) query.Record {
	return query.Record{DeadLetter: query.DeadLetter{ID: "dl", SchemaID: sid, PII: pii}, Value: value}
}

func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Errorf("%s: %v", a, err)
		return false
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatal(err)
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return string(xa) == string(ya)
}

func TestBytesView(t *testing.T) {
	s := &server{cfg: Config{MaxHexBytes: 4}}
	pii := auth.Identity{PII: true}
	tests := []struct {
		name string
		give []byte
		row  bool // the row is pii
		id   auth.Identity
		want Bytes
	}{
		{"text", []byte("c-1"), false, auth.Identity{}, Bytes{Encoding: "utf8", Value: "c-1"}},
		{"text with an email", []byte("to a@b.example"), true, auth.Identity{}, Bytes{Encoding: "utf8", Value: "to [redacted]", Redacted: true}},
		{"text with an email, pii caller", []byte("to a@b.example"), true, pii, Bytes{Encoding: "utf8", Value: "to a@b.example"}},
		{"binary", []byte{0, 1, 2, 3, 4, 5}, false, auth.Identity{}, Bytes{Encoding: "hex", Value: "00010203"}},
		{"binary of a pii row", []byte{0, 1}, true, auth.Identity{}, Bytes{Encoding: "hidden", Redacted: true}},
		{"binary of a pii row, pii caller", []byte{0, 1}, true, pii, Bytes{Encoding: "hex", Value: "0001"}},
	}
	for _, tt := range tests {
		if got := s.bytesView(tt.give, tt.row, tt.id); got != tt.want {
			t.Errorf("%s: %+v, want %+v", tt.name, got, tt.want)
		}
	}
}

func TestCheckTraceTemplate(t *testing.T) {
	tests := []struct {
		give string
		ok   bool
	}{
		{"", true},
		{"http://127.0.0.1:16686/trace/{trace_id}", true},
		{"https://grafana.example/explore?trace={trace_id}", true},
		{"http://127.0.0.1:16686/trace/", false},
		{"ftp://x/{trace_id}", false},
		{"/trace/{trace_id}", false},
	}
	for _, tt := range tests {
		err := CheckTraceTemplate("DLQ_TRACE_URL_TEMPLATE", tt.give)
		var ce *config.Error
		if tt.ok != (err == nil) || (err != nil && (!errors.As(err, &ce) || ce.Var != "DLQ_TRACE_URL_TEMPLATE")) {
			t.Errorf("CheckTraceTemplate(%q) = %v, want ok %v", tt.give, err, tt.ok)
		}
	}
}

func TestRedactJSON(t *testing.T) {
	tests := []struct{ give, want string }{
		{`{"reason": "asked by a@b.example"}`, `{"reason":"asked by [redacted]"}`},
		{`{"ids": ["x"]}`, `{"ids": ["x"]}`},
		{`not json`, `"[redacted]"`},
		{`{"filter": {"q": "John Smith", "stage": ["validator"]}}`, `{"filter":{"q":"[redacted]","stage":["validator"]}}`},
		{`{"filter": {"q": ""}}`, `{"filter": {"q": ""}}`},
	}
	for _, tt := range tests {
		if got := string(redactJSON(json.RawMessage(tt.give))); got != tt.want {
			t.Errorf("redactJSON(%s) = %s, want %s", tt.give, got, tt.want)
		}
	}
}

// TestMounted: main mounts the API on the service router beside /healthz
// with Handle("/v1/*", ...); routes and path parameters work through it.
func TestMounted(t *testing.T) {
	outer := chi.NewRouter()
	outer.Get("/healthz", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
	outer.Handle("/v1/*", unitServer(t, Config{}))
	tests := []struct {
		method, path, token string
		want                int
	}{
		{"GET", "/healthz", "", 204},
		{"GET", "/v1/dead-letters", "", 401},
		{"GET", "/v1/dead-letters?limit=0", viewerTok, 400},
		{"POST", "/v1/retention", viewerTok, 403},
		{"POST", "/v1/retention", operatorTok, 503},
		{"GET", "/v1/nothing", viewerTok, 404},
	}
	for _, tt := range tests {
		if rec := do(outer, tt.method, tt.path, tt.token, "", ""); rec.Code != tt.want {
			t.Errorf("%s %s: %d, want %d (%s)", tt.method, tt.path, rec.Code, tt.want, rec.Body)
		}
	}
}

// TestDescribeLeavesRecord: describing a record for an identity without the
// PII right redacts the copy it returns, never the caller's record (the
// console describes a record it also lists).
func TestDescribeLeavesRecord(t *testing.T) {
	msg := "no customer for ann@example.com"
	rec := query.Record{DeadLetter: query.DeadLetter{ID: "dl", Message: msg, Reasons: []query.Reason{{Code: "X", Message: msg}}}}
	d := Describe(context.Background(), Config{}, rec, auth.Identity{Name: "v", Role: auth.Viewer})
	if strings.Contains(d.DeadLetter.Reasons[0].Message, "ann@example.com") || strings.Contains(d.DeadLetter.Message, "ann@example.com") {
		t.Fatalf("not redacted: %+v", d.DeadLetter)
	}
	if rec.Reasons[0].Message != msg || rec.Message != msg {
		t.Fatalf("the caller's record was changed: %+v", rec)
	}
}
