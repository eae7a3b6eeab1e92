package jaegerq

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// A trace as Jaeger v2's /api/traces/<id> answers it (trimmed: tags, logs,
// references and timings left out; the client ignores them).
const traceJSON = `{"data":[{"traceID":"4bf92f3577b34da6a3ce929d0e0e4736","spans":[
 {"traceID":"4bf92f3577b34da6a3ce929d0e0e4736","spanID":"00f067aa0ba902b7","operationName":"clickstream publish","processID":"p1","tags":[]},
 {"traceID":"4bf92f3577b34da6a3ce929d0e0e4736","spanID":"00f067aa0ba902b8","operationName":"ecom.events.v1 process","processID":"p2"},
 {"traceID":"4bf92f3577b34da6a3ce929d0e0e4736","spanID":"00f067aa0ba902b9","operationName":"ecom.events.valid.v1 process","processID":"p3"}],
 "processes":{"p1":{"serviceName":"ingest-clickstream","tags":[]},"p2":{"serviceName":"validator"},"p3":{"serviceName":"bq-writer"}},"warnings":null}],
 "total":0,"limit":0,"offset":0,"errors":null}`

const notFoundJSON = `{"data":null,"total":0,"limit":0,"offset":0,"errors":[{"code":404,"msg":"trace not found"}]}`

func TestTrace(t *testing.T) {
	tests := []struct {
		name         string
		id           string
		status       int
		body         string
		wantServices []string
		wantSpans    int
		wantErr      string // substring; "" = none
		wantNotFound bool
	}{
		{name: "found", id: "4bf92f3577b34da6a3ce929d0e0e4736", status: 200, body: traceJSON,
			wantServices: []string{"bq-writer", "ingest-clickstream", "validator"}, wantSpans: 3},
		{name: "upper case id is lowered", id: "4BF92F3577B34DA6A3CE929D0E0E4736", status: 200, body: traceJSON,
			wantServices: []string{"bq-writer", "ingest-clickstream", "validator"}, wantSpans: 3},
		{name: "not found", id: "4bf92f3577b34da6a3ce929d0e0e4737", status: 404, body: notFoundJSON, wantNotFound: true, wantErr: "not found"},
		{name: "empty data", id: "abc", status: 200, body: `{"data":[],"errors":null}`, wantNotFound: true, wantErr: "not found"},
		{name: "server error", id: "abc", status: 500, body: `{"data":null,"errors":[{"code":500,"msg":"storage down"}]}`, wantErr: "storage down"},
		{name: "not JSON", id: "abc", status: 502, body: `<html>bad gateway</html>`, wantErr: "not the query API's JSON"},
		{name: "bad id", id: "not-hex", wantErr: "not a hex trace id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var gotPath string
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				gotPath = r.URL.Path
				w.WriteHeader(tt.status)
				_, _ = w.Write([]byte(tt.body))
			}))
			defer srv.Close()
			tr, err := New(srv.URL+"/").Trace(context.Background(), tt.id)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				if errors.Is(err, ErrNotFound) != tt.wantNotFound {
					t.Errorf("errors.Is(err, ErrNotFound) = %v, want %v", !tt.wantNotFound, tt.wantNotFound)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if want := "/api/traces/" + strings.ToLower(tt.id); gotPath != want {
				t.Errorf("path %q, want %q", gotPath, want)
			}
			if len(tr.Spans) != tt.wantSpans {
				t.Errorf("%d spans, want %d", len(tr.Spans), tt.wantSpans)
			}
			if got := sortedKeys(tr.Services()); !slices.Equal(got, tt.wantServices) {
				t.Errorf("services %v, want %v", got, tt.wantServices)
			}
			if tr.Spans[0].Operation != "clickstream publish" || tr.Spans[0].SpanID != "00f067aa0ba902b7" {
				t.Errorf("first span %+v", tr.Spans[0])
			}
		})
	}
}

func TestMissing(t *testing.T) {
	tr := Trace{Spans: []Span{{Service: "validator"}, {Service: "validator"}, {Service: "bq-writer"}}}
	tests := []struct {
		want []string
		miss []string
	}{
		{[]string{"validator", "bq-writer"}, nil},
		{[]string{"ingest-clickstream", "validator", "dlq-handler"}, []string{"ingest-clickstream", "dlq-handler"}},
		{nil, nil},
	}
	for _, tt := range tests {
		if got := tr.Missing(tt.want); !slices.Equal(got, tt.miss) {
			t.Errorf("Missing(%v) = %v, want %v", tt.want, got, tt.miss)
		}
	}
}

// partialThenFull answers 404, then a trace with only the first service, then the whole trace.
func partialThenFull(calls *atomic.Int32) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		switch calls.Add(1) {
		case 1:
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(notFoundJSON))
		case 2:
			_, _ = w.Write([]byte(`{"data":[{"traceID":"ab","spans":[{"spanID":"1","operationName":"x","processID":"p1"}],
				"processes":{"p1":{"serviceName":"ingest-clickstream"}}}],"errors":null}`))
		default:
			_, _ = w.Write([]byte(traceJSON))
		}
	}
}

func TestWaitServices(t *testing.T) {
	all := []string{"ingest-clickstream", "validator", "bq-writer"}
	tests := []struct {
		name      string
		handler   func(*atomic.Int32) http.HandlerFunc
		want      []string
		timeout   time.Duration
		wantErr   string
		wantCalls int32 // at least
	}{
		{name: "arrives after retries", handler: partialThenFull, want: all, timeout: 10 * time.Second, wantCalls: 3},
		{name: "never complete", handler: func(c *atomic.Int32) http.HandlerFunc {
			return func(w http.ResponseWriter, _ *http.Request) {
				c.Add(1)
				_, _ = w.Write([]byte(traceJSON))
			}
		}, want: append(slices.Clone(all), "dlq-handler"), timeout: 400 * time.Millisecond, wantErr: "has no span from dlq-handler", wantCalls: 2},
		{name: "never there", handler: func(c *atomic.Int32) http.HandlerFunc {
			return func(w http.ResponseWriter, _ *http.Request) {
				c.Add(1)
				w.WriteHeader(http.StatusNotFound)
			}
		}, want: all, timeout: 400 * time.Millisecond, wantErr: "trace not found", wantCalls: 2},
		{name: "API broken: no waiting", handler: func(c *atomic.Int32) http.HandlerFunc {
			return func(w http.ResponseWriter, _ *http.Request) {
				c.Add(1)
				w.WriteHeader(http.StatusInternalServerError)
				_, _ = w.Write([]byte(`{"data":null,"errors":[{"code":500,"msg":"boom"}]}`))
			}
		}, want: all, timeout: 10 * time.Second, wantErr: "boom", wantCalls: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var calls atomic.Int32
			srv := httptest.NewServer(tt.handler(&calls))
			defer srv.Close()
			start := time.Now()
			tr, err := New(srv.URL).WaitServices(context.Background(), "4bf92f3577b34da6a3ce929d0e0e4736", tt.want, tt.timeout)
			if tt.wantErr == "" && err != nil {
				t.Fatal(err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
			}
			if tt.wantErr == "" && len(tr.Missing(tt.want)) > 0 {
				t.Errorf("trace misses %v", tr.Missing(tt.want))
			}
			if calls.Load() < tt.wantCalls {
				t.Errorf("%d calls, want at least %d", calls.Load(), tt.wantCalls)
			}
			if took := time.Since(start); took > tt.timeout+2*time.Second {
				t.Errorf("took %s, over its %s bound", took, tt.timeout)
			}
		})
	}
}

func TestCheck(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/services" {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write([]byte(`{"data":["validator","bq-writer"],"total":2,"errors":null}`))
	}))
	defer up.Close()
	down := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	downURL := down.URL
	down.Close() // nothing listens there now

	tests := []struct {
		name    string
		url     string
		wantErr string
	}{
		{"up", up.URL, ""},
		{"down", downURL, "deploy/local/stack.sh up jaeger"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := New(tt.url).Check(context.Background())
			if tt.wantErr == "" && err != nil {
				t.Fatal(err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
	got, err := New(up.URL).Services(context.Background())
	if err != nil || !slices.Equal(got, []string{"bq-writer", "validator"}) {
		t.Errorf("Services = %v, %v; want sorted [bq-writer validator]", got, err)
	}
}

func TestURLs(t *testing.T) {
	tests := []struct {
		env, want string
	}{
		{"", DefaultURL},
		{"http://127.0.0.1:36686/", "http://127.0.0.1:36686"},
	}
	for _, tt := range tests {
		t.Setenv(EnvURL, tt.env)
		if got := URLFromEnv(); got != tt.want {
			t.Errorf("URLFromEnv with %q = %q, want %q", tt.env, got, tt.want)
		}
	}
	if got := TraceURL("http://127.0.0.1:16686/", "4bf9"); got != "http://127.0.0.1:16686/trace/4bf9" {
		t.Errorf("TraceURL = %q", got)
	}
}
