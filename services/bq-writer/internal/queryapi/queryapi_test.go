package queryapi

import (
	"encoding/json"
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
	Columns []string          `json:"columns"`
	Rows    [][]json.RawMessage `json:"rows"`
	Error   string            `json:"error"`
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
