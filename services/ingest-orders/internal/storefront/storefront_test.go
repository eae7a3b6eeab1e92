package storefront

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"
	"time"

	"github.com/ecomstream/platform/pkg/events"
)

func TestEvent(t *testing.T) {
	created := time.Date(2026, 12, 1, 10, 0, 0, 0, time.FixedZone("CET", 3600))
	paid := created.Add(time.Minute)
	received := time.Date(2026, 12, 1, 9, 5, 0, 0, time.UTC)
	delivery := "d-1"
	o := Order{ID: "o-1", Version: 3, CustomerID: "u-000007", Status: "paid", Currency: "EUR",
		Lines: []Line{
			{LineID: "o-1-1", ProductID: "p-00001", Quantity: 2, UnitPriceMinor: 150, LineTotalMinor: 300},
			{LineID: "o-1-2", ProductID: "p-00002", Quantity: 1, UnitPriceMinor: 99, LineTotalMinor: 99},
		},
		SubtotalMinor: 399, TaxMinor: 40, ShippingMinor: 500, DiscountMinor: 10, TotalMinor: 929, RefundedMinor: 0,
		CreatedAt: created, UpdatedAt: paid, PaidAt: &paid}
	tests := []struct {
		name       string
		source     string
		deliveryID *string
	}{
		{name: "poll", source: SourceAPI},
		{name: "webhook", source: SourceWebhook, deliveryID: &delivery},
		{name: "backfill", source: SourceBackfill},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := o.Event(tt.source, received, tt.deliveryID)
			paidUTC, cr, lt1, lt2, l1, l2 := paid.UTC(), received, int64(300), int64(99), "o-1-1", "o-1-2"
			want := events.Order{OrderID: "o-1", UserID: "u-000007", Status: "paid", OrderTimestamp: created.UTC(), UpdatedAt: paid.UTC(),
				Currency: "EUR", SubtotalMinor: 399, TaxMinor: 40, ShippingMinor: 500, TotalMinor: 929, DiscountMinor: 10,
				Items: []events.OrderItem{
					{ProductID: "p-00001", Quantity: 2, UnitPriceMinor: 150, LineID: &l1, LineTotalMinor: &lt1},
					{ProductID: "p-00002", Quantity: 1, UnitPriceMinor: 99, LineID: &l2, LineTotalMinor: &lt2},
				},
				Source: tt.source, OrderVersion: 3, PaidAt: &paidUTC, ReceivedAt: &cr, WebhookDeliveryID: tt.deliveryID}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("Event() =\n%+v\nwant\n%+v", got, want)
			}
		})
	}
}

func TestList(t *testing.T) {
	since := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		name      string
		status    int
		header    map[string]string
		body      string
		token     string
		wantQuery string
		check     func(t *testing.T, p *Page, err error)
	}{
		{
			name: "page with shop time", status: 200, header: map[string]string{"X-Storefront-Shop-Time": "2026-12-01T12:00:00Z"},
			body:      `{"orders":[{"id":"o-1","version":2,"updated_at":"2026-12-01T10:00:01Z"}],"next_page_token":"n","has_more":true}`,
			wantQuery: "limit=10&updated_since=2026-12-01T10%3A00%3A00Z",
			check: func(t *testing.T, p *Page, err error) {
				if err != nil || len(p.Orders) != 1 || p.Orders[0].Version != 2 || p.NextPageToken != "n" || !p.HasMore ||
					!p.ShopTime.Equal(since.Add(2*time.Hour)) || p.ReceivedAt.IsZero() {
					t.Errorf("page %+v, err %v", p, err)
				}
			},
		},
		{
			name: "token passed with its updated_since", status: 200, body: `{"orders":[],"has_more":false}`, token: "tok/1",
			wantQuery: "limit=10&page_token=tok%2F1&updated_since=2026-12-01T10%3A00%3A00Z",
			check: func(t *testing.T, p *Page, err error) {
				if err != nil || len(p.Orders) != 0 {
					t.Errorf("page %+v, err %v", p, err)
				}
			},
		},
		{
			name: "429 with Retry-After", status: 429, header: map[string]string{"Retry-After": "3"},
			body:      `{"error":{"code":"rate_limited","message":"m"}}`,
			wantQuery: "limit=10&updated_since=2026-12-01T10%3A00%3A00Z",
			check: func(t *testing.T, _ *Page, err error) {
				var se *StatusError
				if !errors.As(err, &se) || se.Status != 429 || se.RetryAfter != 3*time.Second || se.Code != "rate_limited" || !se.Retryable() {
					t.Errorf("err %#v", err)
				}
			},
		},
		{
			name: "bad page token", status: 400, body: `{"error":{"code":"bad_page_token","message":"m"}}`,
			wantQuery: "limit=10&updated_since=2026-12-01T10%3A00%3A00Z",
			check: func(t *testing.T, _ *Page, err error) {
				var se *StatusError
				if !errors.Is(err, ErrBadPageToken) || !errors.As(err, &se) || se.Retryable() {
					t.Errorf("err %v", err)
				}
			},
		},
		{
			name: "cut-off body", status: 200, body: `{"orders":[{"id":"o-1","ver`,
			wantQuery: "limit=10&updated_since=2026-12-01T10%3A00%3A00Z",
			check: func(t *testing.T, _ *Page, err error) {
				var be *BodyError
				if !errors.As(err, &be) {
					t.Errorf("err %v", err)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/v1/orders" || r.Header.Get("Authorization") != "Bearer secret-token" || r.URL.RawQuery != tt.wantQuery {
					t.Errorf("request %s %q auth %q", r.URL.Path, r.URL.RawQuery, r.Header.Get("Authorization"))
				}
				for k, v := range tt.header {
					w.Header().Set(k, v)
				}
				w.WriteHeader(tt.status)
				io.WriteString(w, tt.body)
			}))
			defer srv.Close()
			c := New(Config{URL: srv.URL + "/", Token: "secret-token", Timeout: time.Second}, nil)
			p, err := c.List(context.Background(), since, tt.token, 10)
			tt.check(t, p, err)
		})
	}
}

// TestListDroppedConnection: a 200 whose connection closes mid-body (the
// storefront's drop fault) is a BodyError, retried by the Reader.
func TestListDroppedConnection(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100")
		w.WriteHeader(200)
		io.WriteString(w, `{"orders":[`)
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	}))
	defer srv.Close()
	_, err := New(Config{URL: srv.URL, Token: "t", Timeout: time.Second}, nil).List(context.Background(), time.Time{}, "", 1)
	var be *BodyError
	if !errors.As(err, &be) {
		t.Errorf("err %v, want a BodyError", err)
	}
}
