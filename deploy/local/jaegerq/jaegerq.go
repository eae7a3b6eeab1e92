// Package jaegerq reads traces back from Jaeger's HTTP query API (the one
// its UI uses: GET /api/traces/<trace id>, /api/services), so the
// end-to-end tests and the demo can check that one event's trace spans every
// service it went through, in the Jaeger the local stack runs.
package jaegerq

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"
)

// DefaultURL is the stack's Jaeger query API and UI (deploy/local/stack.sh,
// component jaeger, JAEGER_QUERY_PORT).
const DefaultURL = "http://127.0.0.1:16686"

// EnvURL is the variable `stack.sh env` prints the query URL in.
const EnvURL = "JAEGER_URL"

// StartHint is how to start the stack's Jaeger; it ends Check's failures.
const StartHint = "start it with: deploy/local/stack.sh up jaeger   (the first start builds it, about 4 minutes), then eval \"$(deploy/local/stack.sh env)\""

// ErrNotFound is Trace's error for a trace Jaeger does not have (yet: its
// batch processor stores spans a moment after they arrive).
var ErrNotFound = errors.New("jaegerq: trace not found")

// URLFromEnv is JAEGER_URL, or DefaultURL when it is unset.
func URLFromEnv() string {
	if v := strings.TrimSpace(os.Getenv(EnvURL)); v != "" {
		return strings.TrimRight(v, "/")
	}
	return DefaultURL
}

// TraceURL is the UI's page of one trace.
func TraceURL(base, traceID string) string {
	return strings.TrimRight(base, "/") + "/trace/" + traceID
}

// Span is what a test needs of a span.
type Span struct {
	SpanID    string
	Operation string
	Service   string // the span's process's service.name
}

// Trace is one trace as Jaeger stores it.
type Trace struct {
	ID    string
	Spans []Span
}

// Services are the service names that reported spans of the trace.
func (t Trace) Services() map[string]bool {
	out := map[string]bool{}
	for _, s := range t.Spans {
		out[s.Service] = true
	}
	return out
}

// Missing are the services of want without a span in the trace, in want's order.
func (t Trace) Missing(want []string) []string {
	got := t.Services()
	var out []string
	for _, s := range want {
		if !got[s] {
			out = append(out, s)
		}
	}
	return out
}

// Client talks to one Jaeger query API.
type Client struct {
	base string
	http *http.Client
}

// New is a client of the query API at base (e.g. DefaultURL).
func New(base string) *Client {
	return &Client{base: strings.TrimRight(base, "/"), http: &http.Client{Timeout: 10 * time.Second}}
}

// URL is the client's base URL.
func (c *Client) URL() string { return c.base }

var traceIDPattern = regexp.MustCompile(`^[0-9a-f]{1,32}$`)

// apiResponse is the query API's envelope ({"data": ..., "errors": [...]}).
type apiResponse struct {
	Data   json.RawMessage `json:"data"`
	Errors []struct {
		Code int    `json:"code"`
		Msg  string `json:"msg"`
	} `json:"errors"`
}

// apiTrace is a trace in the API's (Jaeger's own, not OTLP) JSON model.
type apiTrace struct {
	TraceID string `json:"traceID"`
	Spans   []struct {
		SpanID        string `json:"spanID"`
		OperationName string `json:"operationName"`
		ProcessID     string `json:"processID"`
	} `json:"spans"`
	Processes map[string]struct {
		ServiceName string `json:"serviceName"`
	} `json:"processes"`
}

// get fetches path and decodes the envelope's data into out; a 404 is ErrNotFound.
func (c *Client) get(ctx context.Context, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return fmt.Errorf("jaegerq: %w", err)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("jaegerq: GET %s: %w", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("jaegerq: GET %s: %w", path, err)
	}
	if resp.StatusCode == http.StatusNotFound {
		return ErrNotFound
	}
	var env apiResponse
	if err := json.Unmarshal(body, &env); err != nil {
		return fmt.Errorf("jaegerq: GET %s: %s: not the query API's JSON: %w", path, resp.Status, err)
	}
	if resp.StatusCode != http.StatusOK || len(env.Errors) > 0 {
		msg := resp.Status
		if len(env.Errors) > 0 {
			msg += ": " + env.Errors[0].Msg
		}
		return fmt.Errorf("jaegerq: GET %s: %s", path, msg)
	}
	if err := json.Unmarshal(env.Data, out); err != nil {
		return fmt.Errorf("jaegerq: GET %s: data: %w", path, err)
	}
	return nil
}

// Trace fetches one trace by its hex id (as stored in fact_events.trace_id
// and in dead letters); ErrNotFound when Jaeger has no span of it.
func (c *Client) Trace(ctx context.Context, traceID string) (Trace, error) {
	id := strings.ToLower(strings.TrimSpace(traceID))
	if !traceIDPattern.MatchString(id) {
		return Trace{}, fmt.Errorf("jaegerq: %q is not a hex trace id", traceID)
	}
	var data []apiTrace
	if err := c.get(ctx, "/api/traces/"+id, &data); err != nil {
		return Trace{}, err
	}
	if len(data) == 0 {
		return Trace{}, ErrNotFound
	}
	out := Trace{ID: data[0].TraceID}
	for _, d := range data {
		for _, s := range d.Spans {
			out.Spans = append(out.Spans, Span{SpanID: s.SpanID, Operation: s.OperationName, Service: d.Processes[s.ProcessID].ServiceName})
		}
	}
	return out, nil
}

// Services lists the services Jaeger has spans of.
func (c *Client) Services(ctx context.Context) ([]string, error) {
	var names []string
	if err := c.get(ctx, "/api/services", &names); err != nil {
		return nil, err
	}
	slices.Sort(names)
	return names, nil
}

// Check wants the query API to answer, saying how to start Jaeger when it does not.
func (c *Client) Check(ctx context.Context) error {
	if _, err := c.Services(ctx); err != nil {
		return fmt.Errorf("Jaeger's query API at %s does not answer (%w); %s", c.base, err, StartHint)
	}
	return nil
}

// WaitServices polls the trace until it has a span from every service of
// want, or until timeout: Jaeger stores spans a moment after they arrive (its
// batch processor), and a service exports its spans in batches too. It
// returns the last trace seen and, when want is not complete, an error naming
// what is missing.
func (c *Client) WaitServices(ctx context.Context, traceID string, want []string, timeout time.Duration) (Trace, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	backoff := 100 * time.Millisecond
	var last Trace
	var lastErr error
	for {
		tr, err := c.Trace(ctx, traceID)
		switch {
		case err == nil:
			last, lastErr = tr, nil
			if len(tr.Missing(want)) == 0 {
				return tr, nil
			}
		case errors.Is(err, ErrNotFound):
			lastErr = err
		default:
			if ctx.Err() == nil {
				return last, err // the API itself failed: waiting does not help
			}
		}
		select {
		case <-ctx.Done():
			if lastErr != nil {
				return last, fmt.Errorf("jaegerq: trace %s after %s: %w", traceID, timeout, lastErr)
			}
			return last, fmt.Errorf("jaegerq: trace %s after %s has no span from %s (has %v)",
				traceID, timeout, strings.Join(last.Missing(want), ", "), sortedKeys(last.Services()))
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
	}
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
