// Package storefront is the client of the storefront's orders API
// (proto/openapi/storefront-orders.v1.yaml) and the mapping of its order JSON
// to the platform's Avro Order.
package storefront

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/ecomstream/platform/pkg/config"
)

// Config is the API connection.
type Config struct {
	URL     string        `env:"STOREFRONT_URL" default:"http://127.0.0.1:8097" usage:"base URL of the storefront API"`
	Token   string        `env:"STOREFRONT_TOKEN" default:"storefront-dev-token" secret:"true" usage:"bearer token of the storefront API (inject from a secret); the default, the local simulator's public token, is refused unless STOREFRONT_URL is a loopback address"`
	Timeout time.Duration `env:"STOREFRONT_TIMEOUT" default:"30s" usage:"timeout of one API request, body included"`
}

// DevToken is the local simulator's default token (deploy/local/storefront's
// -token). It is public, so it is accepted only for a storefront on this
// host: a zero-config start against the local stack works, and a deployment
// that forgot STOREFRONT_TOKEN stops instead of sending a known token away.
const DevToken = "storefront-dev-token"

// Validate implements config.Validator.
func (c *Config) Validate() error {
	err := config.First(
		config.HTTPURL("STOREFRONT_URL", c.URL),
		config.NotEmpty("STOREFRONT_TOKEN", c.Token),
		config.Positive("STOREFRONT_TIMEOUT", c.Timeout),
	)
	if err == nil && c.Token == DevToken && !loopbackURL(c.URL) {
		// The message must not quote the token: config errors are redacted,
		// and a quoted secret would print as [REDACTED].
		err = config.Errorf("STOREFRONT_TOKEN", "set it for a storefront that is not on a loopback address (the default is the local simulator's public dev token)")
	}
	return err
}

// loopbackURL reports whether u's host is localhost or a loopback IP.
func loopbackURL(u string) bool {
	p, err := url.Parse(u)
	if err != nil {
		return false
	}
	host := p.Hostname()
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Page is one answer of GET /v1/orders.
type Page struct {
	Orders        []Order `json:"orders"`
	NextPageToken string  `json:"next_page_token"`
	HasMore       bool    `json:"has_more"`
	// ShopTime is X-Storefront-Shop-Time (zero when absent), ReceivedAt
	// when the body had been read.
	ShopTime   time.Time `json:"-"`
	ReceivedAt time.Time `json:"-"`
}

// Order is the API's order object.
type Order struct {
	ID            string     `json:"id"`
	Version       int64      `json:"version"`
	CustomerID    string     `json:"customer_id"`
	Status        string     `json:"status"`
	Currency      string     `json:"currency"`
	Lines         []Line     `json:"lines"`
	SubtotalMinor int64      `json:"subtotal_minor"`
	TaxMinor      int64      `json:"tax_minor"`
	ShippingMinor int64      `json:"shipping_minor"`
	DiscountMinor int64      `json:"discount_minor"`
	TotalMinor    int64      `json:"total_minor"`
	RefundedMinor int64      `json:"refunded_minor"`
	CreatedAt     time.Time  `json:"created_at"`
	UpdatedAt     time.Time  `json:"updated_at"`
	PaidAt        *time.Time `json:"paid_at"`
	ShippedAt     *time.Time `json:"shipped_at"`
	DeliveredAt   *time.Time `json:"delivered_at"`
	CancelledAt   *time.Time `json:"cancelled_at"`
	RefundedAt    *time.Time `json:"refunded_at"`
}

// Line is one order line.
type Line struct {
	LineID         string `json:"line_id"`
	ProductID      string `json:"product_id"`
	Quantity       int64  `json:"quantity"`
	UnitPriceMinor int64  `json:"unit_price_minor"`
	LineTotalMinor int64  `json:"line_total_minor"`
}

// StatusError is a non-200 answer.
type StatusError struct {
	Status     int
	Code       string        // the error body's code, when it had one
	RetryAfter time.Duration // from Retry-After; 0 when absent
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("storefront: HTTP %d %s", e.Status, e.Code)
}

// Retryable reports whether a later identical request can succeed: 429 and
// 5xx (a 4xx other than 429 is a mistake of this client or its config).
func (e *StatusError) Retryable() bool {
	return e.Status == http.StatusTooManyRequests || e.Status >= 500
}

// ErrBadPageToken is a 400 bad_page_token: the token expired (storefront
// restart); restart the listing from updated_since.
var ErrBadPageToken = errors.New("storefront: bad page token")

// BodyError is a 200 whose body could not be read or decoded (a connection
// dropped mid-body): retry the same request.
type BodyError struct{ Err error }

func (e *BodyError) Error() string { return "storefront: page body: " + e.Err.Error() }
func (e *BodyError) Unwrap() error { return e.Err }

// Client calls the API.
type Client struct {
	cfg  Config
	http *http.Client
	now  func() time.Time
}

// New returns a client; hc nil means a client with cfg.Timeout.
func New(cfg Config, hc *http.Client) *Client {
	if hc == nil {
		hc = &http.Client{Timeout: cfg.Timeout}
	}
	return &Client{cfg: cfg, http: hc, now: time.Now}
}

// maxPageBytes bounds a page body: 500 orders of a few KB each.
const maxPageBytes = 32 << 20

// List fetches one page: from since (inclusive; zero = the beginning) when
// token is empty, else the page after token (since must then be the one the
// token was issued for).
func (c *Client) List(ctx context.Context, since time.Time, token string, limit int) (*Page, error) {
	q := url.Values{"limit": {strconv.Itoa(limit)}}
	if !since.IsZero() {
		q.Set("updated_since", since.UTC().Format(time.RFC3339Nano))
	}
	if token != "" {
		q.Set("page_token", token)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(c.cfg.URL, "/")+"/v1/orders?"+q.Encode(), nil)
	if err != nil {
		return nil, fmt.Errorf("storefront: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+c.cfg.Token)
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("storefront: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxPageBytes))
	if resp.StatusCode != http.StatusOK {
		return nil, statusError(resp, body)
	}
	if err != nil {
		return nil, &BodyError{Err: err}
	}
	var p Page
	if err := json.Unmarshal(body, &p); err != nil {
		return nil, &BodyError{Err: err}
	}
	p.ReceivedAt = c.now()
	if st := resp.Header.Get("X-Storefront-Shop-Time"); st != "" {
		if t, err := time.Parse(time.RFC3339Nano, st); err == nil {
			p.ShopTime = t
		}
	}
	return &p, nil
}

func statusError(resp *http.Response, body []byte) error {
	e := &StatusError{Status: resp.StatusCode}
	var eb struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &eb) == nil {
		e.Code = eb.Error.Code
	}
	if s, err := strconv.Atoi(strings.TrimSpace(resp.Header.Get("Retry-After"))); err == nil && s > 0 {
		e.RetryAfter = time.Duration(s) * time.Second
	}
	if e.Status == http.StatusBadRequest && e.Code == "bad_page_token" {
		return fmt.Errorf("%w: %w", ErrBadPageToken, e)
	}
	return e
}
