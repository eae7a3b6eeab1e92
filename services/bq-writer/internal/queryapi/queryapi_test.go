package queryapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ecomstream/platform/services/bq-writer/internal/warehouse"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const token = "test-token-0123456789"

func openWarehouse(t *testing.T, opts ...warehouse.Option) *warehouse.DuckDB {
	t.Helper()
	d, err := warehouse.OpenDuckDB("", opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return d
}

func post(t *testing.T, h http.Handler, sql string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/v1/warehouse/query", strings.NewReader(sql))
	req.Header.Set("Authorization", "Bearer "+token)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

type result struct {
	Columns []string            `json:"columns"`
	Rows    [][]json.RawMessage `json:"rows"`
	Error   string              `json:"error"`
}

// decode checks the body is one well-formed JSON document and returns it.
func decode(t *testing.T, rec *httptest.ResponseRecorder) result {
	t.Helper()
	body := rec.Body.Bytes()
	if !json.Valid(body) {
		t.Fatalf("status %d, body is not valid JSON: %q", rec.Code, body)
	}
	var res result
	if err := json.Unmarshal(body, &res); err != nil {
		t.Fatal(err)
	}
	return res
}

// TestValuesEncodeAsWellFormedJSON: on 79700c6 a NaN or an infinity made encoding/json fail after
// the 200 status was sent, so the client got an empty body; a MAP or an out-of-range timestamp
// did the same.
func TestValuesEncodeAsWellFormedJSON(t *testing.T) {
	h := &Handler{Q: openWarehouse(t), Token: token, MaxRows: 10, Timeout: 10 * time.Second}
	tests := []struct {
		expr string
		want string // the cell as JSON
	}{
		{`'nan'::DOUBLE`, `"NaN"`},
		{`'inf'::DOUBLE`, `"Infinity"`},
		{`'-inf'::DOUBLE`, `"-Infinity"`},
		{`'nan'::FLOAT`, `"NaN"`},
		{`1.5::DOUBLE`, `1.5`},
		{`0.1::FLOAT`, `0.1`},
		{`1e300::DOUBLE`, `1e+300`},
		{`[1.5, 'nan'::DOUBLE, '-inf'::DOUBLE]`, `[1.5,"NaN","-Infinity"]`},
		{`{'x': 'inf'::DOUBLE, 'a': 1}`, `{"a":1,"x":"Infinity"}`},
		{`MAP {1: 'nan'::DOUBLE, 2: 0.5}`, `{"1":"NaN","2":0.5}`},
		{`MAP {'b': 1, 'a': 2}`, `{"b":1,"a":2}`},
		{`170141183460469231731687303715884105727::HUGEINT`, `170141183460469231731687303715884105727`},
		{`340282366920938463463374607431768211455::UHUGEINT`, `340282366920938463463374607431768211455`},
		{`18446744073709551615::UBIGINT`, `18446744073709551615`},
		{`(-9223372036854775808)::BIGINT`, `-9223372036854775808`},
		{`12.345::DECIMAL(10,3)`, `12.345`},
		{`-0.5::DECIMAL(38,10)`, `-0.5`},
		{`INTERVAL '1 month 2 days 3 seconds'`, `{"months":1,"days":2,"micros":3000000}`},
		{`'00000000-0000-0000-0000-000000000001'::UUID`, `"00000000-0000-0000-0000-000000000001"`},
		{`'\xAA\xBB'::BLOB`, `"qrs="`},
		{`TIMESTAMPTZ '2025-03-14 23:30:00.123456+00'`, `"2025-03-14T23:30:00.123456Z"`},
		{`'infinity'::TIMESTAMP`, `"294247-01-10T04:00:54.775807Z"`},
		{`'-infinity'::TIMESTAMP`, `"-290308-12-21T19:59:05.224193Z"`},
		{`'10000-01-01 00:00:00'::TIMESTAMP`, `"10000-01-01T00:00:00Z"`},
		{`union_value(k := 1)`, `{"tag":"k","value":1}`},
		{`'101'::BIT`, `"101"`},
		{`'a' || chr(0) || '"<b>'`, `"a\u0000\"\u003cb\u003e"`},
		{`NULL`, `null`},
		{`true`, `true`},
		{`'{"a": [1, 2]}'::JSON`, `{"a":[1,2]}`},
		{`[1, 2]::INTEGER[2]`, `[1,2]`},
		{`[MAP {'k': [1.0::DOUBLE, 'inf'::DOUBLE]}]`, `[{"k":[1,"Infinity"]}]`},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			rec := post(t, h, `SELECT `+tt.expr+` AS v`)
			res := decode(t, rec)
			if rec.Code != http.StatusOK {
				t.Fatalf("status %d: %s", rec.Code, res.Error)
			}
			if len(res.Rows) != 1 || len(res.Rows[0]) != 1 {
				t.Fatalf("rows = %v", res.Rows)
			}
			got := string(res.Rows[0][0])
			t.Logf("%s -> %s", tt.expr, got)
			if got != tt.want {
				t.Errorf("%s encoded as %s, want %s", tt.expr, got, tt.want)
			}
		})
	}
}

// TestBusyAnswers429: with every query slot taken, another request is answered at once with 429
// and Retry-After instead of waiting for a connection; /readyz's ping still answers.
func TestBusyAnswers429(t *testing.T) {
	d := openWarehouse(t, warehouse.WithMaxConcurrentQueries(1))
	h := &Handler{Q: d, Token: token, MaxRows: 10, Timeout: time.Minute}

	// The slow query retries until it holds the slot: a probe below may take the slot first.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			req := httptest.NewRequestWithContext(ctx, http.MethodPost, "/v1/warehouse/query",
				strings.NewReader(`SELECT count(*) FROM range(1000000000000)`))
			req.Header.Set("Authorization", "Bearer "+token)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != http.StatusTooManyRequests {
				return
			}
		}
	}()
	defer func() { cancel(); <-done }()

	deadline := time.Now().Add(20 * time.Second)
	var rec *httptest.ResponseRecorder
	for {
		rec = post(t, h, `SELECT 1`)
		if rec.Code != http.StatusOK || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond) // the slow query does not hold the slot yet
	}
	res := decode(t, rec)
	if rec.Code != http.StatusTooManyRequests {
		t.Fatalf("status %d (%s), want 429", rec.Code, res.Error)
	}
	if got := rec.Header().Get("Retry-After"); got != "1" {
		t.Errorf("Retry-After = %q, want 1", got)
	}
	if !strings.Contains(res.Error, "too many concurrent queries") {
		t.Errorf("error = %q", res.Error)
	}
	pctx, pcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer pcancel()
	if err := d.Ping(pctx); err != nil {
		t.Errorf("ping while the slot is taken: %v", err)
	}
}

// fakeQuerier answers every query with err.
type fakeQuerier struct{ err error }

func (f fakeQuerier) Query(context.Context, string, int) ([]string, [][]any, error) {
	return nil, nil, f.err
}

func TestStatusAndBody(t *testing.T) {
	tests := []struct {
		name    string
		err     error
		auth    string
		ctype   string
		body    string
		status  int
		errPart string
	}{
		{name: "no token", auth: "", body: "SELECT 1", status: 401, errPart: "bearer token"},
		{name: "wrong token", auth: "Bearer nope", body: "SELECT 1", status: 401, errPart: "bearer token"},
		{name: "bad json", auth: "Bearer " + token, ctype: "application/json", body: "{", status: 400, errPart: "body must be JSON"},
		{name: "too large", auth: "Bearer " + token, body: strings.Repeat("x", maxBody+1), status: 413, errPart: "64 KiB"},
		{name: "refused", err: fmt.Errorf("q: %w: table function checkpoint is not allowed", warehouse.ErrInvalidQuery),
			auth: "Bearer " + token, body: "SELECT * FROM checkpoint()", status: 400, errPart: "checkpoint"},
		{name: "busy", err: fmt.Errorf("q: %w", warehouse.ErrQueryBusy), auth: "Bearer " + token, body: "SELECT 1", status: 429, errPart: "too many"},
		{name: "failed", err: errors.New("Binder Error: \"x\"\n\tnot found"), auth: "Bearer " + token, body: "SELECT x", status: 422, errPart: "Binder"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := &Handler{Q: fakeQuerier{tt.err}, Token: token, MaxRows: 10, Timeout: time.Second}
			req := httptest.NewRequest(http.MethodPost, "/v1/warehouse/query", strings.NewReader(tt.body))
			if tt.auth != "" {
				req.Header.Set("Authorization", tt.auth)
			}
			if tt.ctype != "" {
				req.Header.Set("Content-Type", tt.ctype)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			res := decode(t, rec)
			if rec.Code != tt.status || !strings.Contains(res.Error, tt.errPart) {
				t.Errorf("got %d %q, want %d with %q", rec.Code, res.Error, tt.status, tt.errPart)
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q", ct)
			}
		})
	}
}

// TestRefusedStatementOverHTTP goes through the real warehouse: a state-changing SELECT is a 400.
func TestRefusedStatementOverHTTP(t *testing.T) {
	h := &Handler{Q: openWarehouse(t), Token: token, MaxRows: 10, Timeout: 10 * time.Second}
	rec := post(t, h, `SELECT * FROM checkpoint()`)
	res := decode(t, rec)
	if rec.Code != http.StatusBadRequest || !strings.Contains(res.Error, "table function checkpoint is not allowed") {
		t.Errorf("got %d %q, want 400 naming checkpoint", rec.Code, res.Error)
	}
}
