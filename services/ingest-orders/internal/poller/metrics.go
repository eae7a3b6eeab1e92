package poller

import (
	"context"
	"errors"
	"math"
	"strconv"
	"sync/atomic"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/ecomstream/platform/services/ingest-orders/internal/storefront"
)

type metrics struct {
	pages, orders, apiErrors metric.Int64Counter
	lagSeconds               *atomicFloat
}

type atomicFloat struct{ bits atomic.Uint64 }

func (f *atomicFloat) Store(v float64) { f.bits.Store(math.Float64bits(v)) }
func (f *atomicFloat) Load() float64   { return math.Float64frombits(f.bits.Load()) }

func newMetrics(meter metric.Meter) (metrics, error) {
	m := metrics{lagSeconds: &atomicFloat{}}
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
	_, err = meter.Float64ObservableGauge("ecom.orders.cursor_lag", metric.WithUnit("s"),
		metric.WithDescription("shop time (X-Storefront-Shop-Time) minus the committed cursor"),
		metric.WithFloat64Callback(func(_ context.Context, o metric.Float64Observer) error {
			o.Observe(m.lagSeconds.Load())
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
