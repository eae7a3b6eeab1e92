package poller

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/ecomstream/platform/services/ingest-orders/internal/storefront"
)

type metrics struct {
	pages, orders, apiErrors metric.Int64Counter
	lag                      *cursorLag
}

// cursorLag is the gauge ecom.orders.cursor_lag (Prometheus ecom_orders_cursor_lag_seconds):
// now minus the cursor's updated_at high-water mark, 0 before the first poll. "Now" is the
// shop's clock, since the cursor is: the X-Storefront-Shop-Time of the latest page plus the wall
// time since that page (the simulator's shop clock runs faster than ours; against a real shop
// the two agree), or the wall clock when the API sends no shop time. It is computed at every
// scrape, so it grows while the poller is stuck (API down, Kafka refusing the transaction)
// instead of keeping the figure of the last good page.
type cursorLag struct {
	now func() time.Time

	mu     sync.Mutex
	polled bool
	since  time.Time // the committed cursor
	shop   time.Time // the latest page's shop time; zero when the API sent none
	seen   time.Time // wall time of that page
}

// page records a polled page: the cursor after it, the page's shop time, and when.
func (l *cursorLag) page(since, shop, at time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.polled, l.since, l.shop, l.seen = true, since, shop, at
}

// seconds is the lag at wall time now.
func (l *cursorLag) seconds(now time.Time) float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.polled || l.since.IsZero() {
		return 0
	}
	shopNow := now
	if !l.shop.IsZero() {
		shopNow = l.shop.Add(now.Sub(l.seen))
	}
	return max(shopNow.Sub(l.since).Seconds(), 0)
}

func newMetrics(meter metric.Meter, now func() time.Time) (metrics, error) {
	m := metrics{lag: &cursorLag{now: now}}
	var err error
	if m.pages, err = meter.Int64Counter("ecom.orders.pages_polled", metric.WithDescription("order pages read from the storefront API")); err != nil {
		return m, err
	}
	if m.orders, err = meter.Int64Counter("ecom.orders.produced", metric.WithDescription("order versions produced, by source")); err != nil {
		return m, err
	}
	if m.apiErrors, err = meter.Int64Counter("ecom.orders.api_errors", metric.WithDescription("failed storefront API requests, by status (HTTP code, body or transport)")); err != nil {
		return m, err
	}
	// A series at 0 (no status label) from the start: OrdersAPIErrors and the dashboards rate
	// it, and a shop whose API has not failed yet is not "no data".
	m.apiErrors.Add(context.Background(), 0)
	_, err = meter.Float64ObservableGauge("ecom.orders.cursor_lag", metric.WithUnit("s"),
		metric.WithDescription("now on the shop's clock (the latest page's X-Storefront-Shop-Time plus the wall time since) minus the committed cursor (the updated_at high-water mark); 0 before the first poll"),
		metric.WithFloat64Callback(func(_ context.Context, o metric.Float64Observer) error {
			o.Observe(m.lag.seconds(m.lag.now()))
			return nil
		}))
	return m, err
}

func (m metrics) apiError(ctx context.Context, err error) {
	status := "transport"
	var se *storefront.StatusError
	var be *storefront.BodyError
	switch {
	case errors.As(err, &se):
		status = strconv.Itoa(se.Status)
	case errors.As(err, &be):
		status = "body"
	}
	m.apiErrors.Add(ctx, 1, metric.WithAttributes(attribute.String("status", status)))
}
