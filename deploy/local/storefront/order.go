package storefront

import "time"

// Order statuses. The legal moves between them are in LegalTransition.
const (
	StatusCreated           = "created"
	StatusPaid              = "paid"
	StatusShipped           = "shipped"
	StatusDelivered         = "delivered"
	StatusCancelled         = "cancelled"
	StatusPartiallyRefunded = "partially_refunded"
	StatusRefunded          = "refunded"
)

// Statuses lists every status an order can have.
func Statuses() []string {
	return []string{StatusCreated, StatusPaid, StatusShipped, StatusDelivered, StatusCancelled, StatusPartiallyRefunded, StatusRefunded}
}

// LegalTransition reports whether an order may move from one status to the
// next. An order is cancelled only before it ships (after payment the
// cancellation refunds it in full); refunds come only after delivery, and a
// partial refund may be followed by more partial refunds or a full one.
func LegalTransition(from, to string) bool {
	switch from {
	case StatusCreated:
		return to == StatusPaid || to == StatusCancelled
	case StatusPaid:
		return to == StatusShipped || to == StatusCancelled
	case StatusShipped:
		return to == StatusDelivered
	case StatusDelivered, StatusPartiallyRefunded:
		return to == StatusPartiallyRefunded || to == StatusRefunded
	}
	return false
}

// Order is an order as the API and the webhooks show it. Amounts are integer
// minor units of Currency (cents; yen for JPY). For a well-formed order:
// line_total_minor = quantity * unit_price_minor, subtotal_minor = sum of
// line totals, total_minor = subtotal + tax + shipping - discount, every
// amount >= 0, refunded_minor <= total_minor, and a stage timestamp is set
// exactly when the order has reached that stage.
type Order struct {
	ID            string `json:"id"`
	Version       int    `json:"version"` // 1 at creation, +1 on every change
	CustomerID    string `json:"customer_id"`
	Status        string `json:"status"`
	Currency      string `json:"currency"`
	Lines         []Line `json:"lines"`
	SubtotalMinor int64  `json:"subtotal_minor"`
	TaxMinor      int64  `json:"tax_minor"`
	ShippingMinor int64  `json:"shipping_minor"`
	DiscountMinor int64  `json:"discount_minor"`
	TotalMinor    int64  `json:"total_minor"`
	RefundedMinor int64  `json:"refunded_minor"`

	CreatedAt   time.Time  `json:"created_at"`
	UpdatedAt   time.Time  `json:"updated_at"`
	PaidAt      *time.Time `json:"paid_at"`
	ShippedAt   *time.Time `json:"shipped_at"`
	DeliveredAt *time.Time `json:"delivered_at"`
	CancelledAt *time.Time `json:"cancelled_at"`
	RefundedAt  *time.Time `json:"refunded_at"` // the latest refund, partial or full
}

// Line is one order line.
type Line struct {
	LineID         string `json:"line_id"` // "<order id>-<n>", n from 1
	ProductID      string `json:"product_id"`
	Quantity       int64  `json:"quantity"`
	UnitPriceMinor int64  `json:"unit_price_minor"`
	LineTotalMinor int64  `json:"line_total_minor"`
}

// clone returns a deep copy: versions kept in the log must not change when
// the live order does.
func (o *Order) clone() Order {
	c := *o
	c.Lines = append([]Line(nil), o.Lines...)
	for _, p := range []**time.Time{&c.PaidAt, &c.ShippedAt, &c.DeliveredAt, &c.CancelledAt, &c.RefundedAt} {
		if *p != nil {
			t := **p
			*p = &t
		}
	}
	return c
}

// Problems lists what is wrong with an order by the rules above (empty for a
// well-formed order). The simulator's tests use it on non-broken orders; it
// is also a reference for the validator's order rules.
func (o *Order) Problems() []string {
	var out []string
	add := func(s string) { out = append(out, s) }
	if len(o.Lines) == 0 {
		add("no lines")
	}
	if !knownCurrency(o.Currency) {
		add("unknown currency " + o.Currency)
	}
	var sum int64
	for _, l := range o.Lines {
		if l.Quantity <= 0 || l.UnitPriceMinor < 0 || l.LineTotalMinor != l.Quantity*l.UnitPriceMinor {
			add("bad line " + l.LineID)
		}
		sum += l.LineTotalMinor
	}
	if sum != o.SubtotalMinor {
		add("subtotal != sum of lines")
	}
	if o.SubtotalMinor < 0 || o.TaxMinor < 0 || o.ShippingMinor < 0 || o.DiscountMinor < 0 || o.TotalMinor < 0 || o.RefundedMinor < 0 {
		add("negative amount")
	}
	if o.TotalMinor != o.SubtotalMinor+o.TaxMinor+o.ShippingMinor-o.DiscountMinor {
		add("total != subtotal + tax + shipping - discount")
	}
	if o.RefundedMinor > o.TotalMinor {
		add("refunded more than the total")
	}
	reached := map[string][]*time.Time{
		StatusCreated:           {},
		StatusPaid:              {o.PaidAt},
		StatusShipped:           {o.PaidAt, o.ShippedAt},
		StatusDelivered:         {o.PaidAt, o.ShippedAt, o.DeliveredAt},
		StatusPartiallyRefunded: {o.PaidAt, o.ShippedAt, o.DeliveredAt, o.RefundedAt},
		StatusRefunded:          {o.PaidAt, o.ShippedAt, o.DeliveredAt, o.RefundedAt},
		StatusCancelled:         {o.CancelledAt},
	}
	need, ok := reached[o.Status]
	if !ok {
		add("unknown status " + o.Status)
	}
	for _, t := range need {
		if t == nil {
			add("status " + o.Status + " without the timestamps of the stages before it")
			break
		}
	}
	if o.Status != StatusCancelled && o.CancelledAt != nil {
		add("cancelled_at on a " + o.Status + " order")
	}
	if o.UpdatedAt.Before(o.CreatedAt) {
		add("updated_at before created_at")
	}
	return out
}

func knownCurrency(c string) bool {
	return c == "USD" || c == "EUR" || c == "GBP" || c == "JPY"
}
