package storefront

import (
	"context"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kotel"
	"go.opentelemetry.io/otel/propagation"

	"github.com/ecomstream/platform/pkg/events"
	"github.com/ecomstream/platform/pkg/stream"
)

// Sources of an Order record.
const (
	SourceAPI      = "api"
	SourceWebhook  = "webhook"
	SourceBackfill = "backfill"
)

// Event maps the API order to the platform's Order. receivedAt is when the
// page (or webhook) arrived; deliveryID is the webhook's delivery id, nil for
// polled orders. Values are carried as the API states them: judging them
// (totals, transitions) is the validator's job.
func (o *Order) Event(source string, receivedAt time.Time, deliveryID *string) events.Order {
	items := make([]events.OrderItem, len(o.Lines))
	for i, l := range o.Lines {
		items[i] = events.OrderItem{
			ProductID: l.ProductID, Quantity: int(l.Quantity), UnitPriceMinor: l.UnitPriceMinor,
			LineID: ptr(l.LineID), LineTotalMinor: ptr(l.LineTotalMinor),
		}
	}
	rec := receivedAt.UTC()
	return events.Order{
		OrderID: o.ID, UserID: o.CustomerID, Status: o.Status,
		OrderTimestamp: o.CreatedAt.UTC(), UpdatedAt: o.UpdatedAt.UTC(), Currency: o.Currency,
		SubtotalMinor: o.SubtotalMinor, TaxMinor: o.TaxMinor, ShippingMinor: o.ShippingMinor,
		TotalMinor: o.TotalMinor, Items: items, Source: source, OrderVersion: o.Version,
		DiscountMinor: o.DiscountMinor, RefundedMinor: o.RefundedMinor,
		PaidAt: utc(o.PaidAt), ShippedAt: utc(o.ShippedAt), DeliveredAt: utc(o.DeliveredAt),
		CancelledAt: utc(o.CancelledAt), RefundedAt: utc(o.RefundedAt),
		ReceivedAt: &rec, WebhookDeliveryID: deliveryID,
	}
}

// Record is the order as a record of topic, the one shape the poller, the
// webhook receiver and backfills produce: its Event encoded with enc, keyed
// by order_id, timestamped receivedAt (the Order's received_at: downstream
// stages carry the input's timestamp on, as for clicks), and carrying ctx's span in W3C trace-context headers
// (traceparent, tracestate), as stream.Trace does for every record a stage
// produces, so validator and bq-writer continue the trace of the page or
// the webhook request the order came in.
func (o *Order) Record(ctx context.Context, enc stream.Encoder, topic, source string, receivedAt time.Time, deliveryID *string) (*kgo.Record, error) {
	v, err := enc.Encode(o.Event(source, receivedAt, deliveryID))
	if err != nil {
		return nil, fmt.Errorf("encode order %s: %w", o.ID, err)
	}
	rec := &kgo.Record{Topic: topic, Key: []byte(o.ID), Value: v, Timestamp: receivedAt}
	propagation.TraceContext{}.Inject(ctx, kotel.NewRecordCarrier(rec))
	return rec, nil
}

func ptr[T any](v T) *T { return &v }

func utc(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}
