package health

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// MaxResponseBytes bounds one answer of Prometheus: the page's queries
// return a few series each, so a larger body is a misconfigured URL (or an
// unbounded selector), read no further.
const MaxResponseBytes = 1 << 20

// ErrorKind says why a query failed.
type ErrorKind string

// Kinds of Error.
const (
	// Unreachable: no answer (connection refused, DNS, timeout).
	Unreachable ErrorKind = "unreachable"
	// BadStatus: an HTTP status other than 200 without a Prometheus error
	// body (a proxy's 502, a wrong path's 404).
	BadStatus ErrorKind = "bad_status"
	// BadResponse: a body that is not Prometheus's JSON, or too large.
	BadResponse ErrorKind = "bad_response"
	// QueryFailed: Prometheus answered status "error" (bad_data, timeout,
	// execution).
	QueryFailed ErrorKind = "query_failed"
)

// Error is a failed query. Its message never holds the URL's credentials.
type Error struct {
	Kind   ErrorKind
	Status int    // the HTTP status, when one came
	Msg    string // what Prometheus or the transport said
	Err    error  // the cause, when there is one
}

func (e *Error) Error() string {
	if e.Status != 0 {
		return fmt.Sprintf("prometheus: %s (HTTP %d): %s", e.Kind, e.Status, e.Msg)
	}
	return fmt.Sprintf("prometheus: %s: %s", e.Kind, e.Msg)
}

func (e *Error) Unwrap() error { return e.Err }

// IsUnreachable reports whether err is a query that got no answer.
func IsUnreachable(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Kind == Unreachable
}

// Sample is one series of an instant vector (or the scalar, with no
// labels).
type Sample struct {
	Labels map[string]string
	Value  float64
}

// Client queries Prometheus's HTTP API: instant queries only
// (/api/v1/query), each under a timeout and with its answer's size bounded.
type Client struct {
	base    *url.URL
	http    *http.Client
	timeout time.Duration
}

// NewClient returns a client of the Prometheus at base (http(s)://host[:port][/prefix]).
// httpClient nil = a client of its own; timeout bounds each query (and is
// passed to Prometheus as the query's timeout).
func NewClient(base string, timeout time.Duration, httpClient *http.Client) (*Client, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, errors.New("prometheus: the URL must be http(s)://host[:port]")
	}
	if httpClient == nil {
		httpClient = &http.Client{}
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	u.RawQuery, u.Fragment = "", ""
	return &Client{base: u, http: httpClient, timeout: timeout}, nil
}

// Query runs the instant query q at time at (zero: Prometheus's now) and
// returns its samples; NaN and infinite values are dropped (a ratio over no
// traffic, a quantile over no observations: no data, not a number to show).
func (c *Client) Query(ctx context.Context, q string, at time.Time) ([]Sample, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	form := url.Values{"query": {q}, "timeout": {strconv.FormatInt(max(c.timeout.Milliseconds(), 1), 10) + "ms"}}
	if !at.IsZero() {
		form.Set("time", strconv.FormatFloat(float64(at.UnixMilli())/1000, 'f', 3, 64))
	}
	u := *c.base
	u.Path += "/api/v1/query"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), strings.NewReader(form.Encode()))
	if err != nil {
		return nil, &Error{Kind: Unreachable, Msg: "cannot build the request", Err: err}
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, &Error{Kind: Unreachable, Msg: transportMessage(err), Err: err}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponseBytes+1))
	if err != nil {
		return nil, &Error{Kind: Unreachable, Status: resp.StatusCode, Msg: "reading the answer: " + transportMessage(err), Err: err}
	}
	if len(body) > MaxResponseBytes {
		return nil, &Error{Kind: BadResponse, Status: resp.StatusCode, Msg: fmt.Sprintf("answer larger than %d bytes", MaxResponseBytes)}
	}
	var r apiResponse
	if err := json.Unmarshal(body, &r); err != nil || r.Status == "" {
		if resp.StatusCode != http.StatusOK {
			return nil, &Error{Kind: BadStatus, Status: resp.StatusCode, Msg: http.StatusText(resp.StatusCode)}
		}
		return nil, &Error{Kind: BadResponse, Status: resp.StatusCode, Msg: "not a Prometheus API answer", Err: err}
	}
	if r.Status != "success" {
		return nil, &Error{Kind: QueryFailed, Status: resp.StatusCode, Msg: clip(r.ErrorType + ": " + r.Error)}
	}
	return r.Data.samples()
}

type apiResponse struct {
	Status    string  `json:"status"`
	ErrorType string  `json:"errorType"`
	Error     string  `json:"error"`
	Data      apiData `json:"data"`
}

type apiData struct {
	ResultType string          `json:"resultType"`
	Result     json.RawMessage `json:"result"`
}

func (d apiData) samples() ([]Sample, error) {
	bad := func(err error) error {
		return &Error{Kind: BadResponse, Msg: "cannot decode the " + d.ResultType + " result", Err: err}
	}
	switch d.ResultType {
	case "vector":
		var vs []struct {
			Metric map[string]string `json:"metric"`
			Value  [2]any            `json:"value"`
		}
		if err := json.Unmarshal(d.Result, &vs); err != nil {
			return nil, bad(err)
		}
		out := make([]Sample, 0, len(vs))
		for _, v := range vs {
			f, err := value(v.Value)
			if err != nil {
				return nil, bad(err)
			}
			if math.IsNaN(f) || math.IsInf(f, 0) {
				continue
			}
			out = append(out, Sample{Labels: v.Metric, Value: f})
		}
		return out, nil
	case "scalar":
		var v [2]any
		if err := json.Unmarshal(d.Result, &v); err != nil {
			return nil, bad(err)
		}
		f, err := value(v)
		if err != nil {
			return nil, bad(err)
		}
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return nil, nil
		}
		return []Sample{{Value: f}}, nil
	default:
		return nil, &Error{Kind: BadResponse, Msg: fmt.Sprintf("result type %q, want vector or scalar", d.ResultType)}
	}
}

// value reads the [<unix time>, "<value>"] pair of the API.
func value(v [2]any) (float64, error) {
	s, ok := v[1].(string)
	if !ok {
		return 0, fmt.Errorf("value %v is not a string", v[1])
	}
	return strconv.ParseFloat(s, 64)
}

// transportMessage is a transport error without the URL (which may hold
// credentials): the net package's own words.
func transportMessage(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "timed out"
	}
	return clip(err.Error())
}

// clip bounds a message from elsewhere before it reaches a page or a log.
func clip(s string) string {
	const max = 300
	if len(s) > max {
		return s[:max] + "…"
	}
	return s
}
