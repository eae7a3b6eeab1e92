package health

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestClient: the answers the client reads, and a typed error for each
// way a query fails.
func TestClient(t *testing.T) {
	big := `{"status":"success","data":{"resultType":"vector","result":[` + strings.Repeat(`{"metric":{},"value":[1,"1"]},`, MaxResponseBytes/28) + `{"metric":{},"value":[1,"1"]}]}}`
	tests := []struct {
		name     string
		status   int
		body     string
		delay    time.Duration
		want     string // the samples as "labels=value" or the error kind
		wantKind ErrorKind
	}{
		{name: "vector", body: vector(series{[]string{"job=validator"}, "1"}, series{[]string{"job=bq-writer"}, "NaN"}, series{[]string{"job=x"}, "+Inf"}), want: "map[job:validator]=1"},
		{name: "scalar", body: `{"status":"success","data":{"resultType":"scalar","result":[1,"0.5"]}}`, want: "map[]=0.5"},
		{name: "scalar NaN", body: `{"status":"success","data":{"resultType":"scalar","result":[1,"NaN"]}}`, want: ""},
		{name: "empty vector", body: vector(), want: ""},
		{name: "bad data", status: 400, body: `{"status":"error","errorType":"bad_data","error":"1:5: parse error"}`, wantKind: QueryFailed},
		{name: "query timeout", status: 503, body: `{"status":"error","errorType":"timeout","error":"query timed out"}`, wantKind: QueryFailed},
		{name: "proxy 502", status: 502, body: "<html>bad gateway</html>", wantKind: BadStatus},
		{name: "not json", body: "hello", wantKind: BadResponse},
		{name: "matrix", body: `{"status":"success","data":{"resultType":"matrix","result":[]}}`, wantKind: BadResponse},
		{name: "value not a string", body: `{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,2]}]}}`, wantKind: BadResponse},
		{name: "too large", body: big, wantKind: BadResponse},
		{name: "slower than the timeout", body: vector(), delay: 2 * time.Second, wantKind: Unreachable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var gotQuery, gotTimeout string
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				gotQuery, gotTimeout = r.PostFormValue("query"), r.PostFormValue("timeout")
				select {
				case <-time.After(tt.delay):
				case <-r.Context().Done():
					return
				}
				if tt.status != 0 {
					w.WriteHeader(tt.status)
				}
				_, _ = w.Write([]byte(tt.body))
			}))
			defer srv.Close()
			c, err := NewClient(srv.URL+"/", 300*time.Millisecond, nil)
			if err != nil {
				t.Fatal(err)
			}
			s, err := c.Query(context.Background(), `up{job="x"}`, time.Unix(1764590400, 0))
			if tt.wantKind != "" {
				var e *Error
				if !errors.As(err, &e) || e.Kind != tt.wantKind {
					t.Fatalf("err %v, want kind %s", err, tt.wantKind)
				}
				if IsUnreachable(err) != (tt.wantKind == Unreachable) {
					t.Errorf("IsUnreachable(%v) = %v", err, IsUnreachable(err))
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, x := range s {
				got = append(got, fmtSample(x))
			}
			if strings.Join(got, " ") != tt.want {
				t.Errorf("samples %q, want %q", got, tt.want)
			}
			if gotQuery != `up{job="x"}` || gotTimeout != "300ms" {
				t.Errorf("sent query %q timeout %q", gotQuery, gotTimeout)
			}
		})
	}
	if _, err := NewClient("127.0.0.1:9090", time.Second, nil); err == nil {
		t.Error("a URL without a scheme was taken")
	}
}

func fmtSample(s Sample) string { return fmt.Sprintf("%v=%g", s.Labels, s.Value) }
