package storefront

import (
	"time"

	"github.com/ecomstream/platform/pkg/events"
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

func ptr[T any](v T) *T { return &v }

func utc(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}
