package storefront

// The life of an order: what it is made of when it is created, which change
// comes next and when (in shop time), and which orders are broken on purpose.

import (
	"container/heap"
	"math"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/ecomstream/platform/deploy/local/seed"
)

func (s *Simulator) uniform(lo, hi time.Duration) time.Duration {
	return lo + time.Duration(s.rng.Int64N(int64(hi-lo)+1))
}

func (s *Simulator) schedule(id string, at time.Time) {
	heap.Push(&s.sched, event{at: at, id: id, seq: s.seq})
	s.seq++
}

func addLine(o *Order, p seed.Product, q int64) {
	price := seed.PriceIn(p, o.Currency)
	o.Lines = append(o.Lines, Line{
		LineID:         o.ID + "-" + itoa(len(o.Lines)+1),
		ProductID:      p.ProductID,
		Quantity:       q,
		UnitPriceMinor: price,
		LineTotalMinor: q * price,
	})
	o.SubtotalMinor += q * price
}

// price sets tax, shipping and total from the lines and the discount.
func price(o *Order) {
	cur := o.Currency
	o.TaxMinor = int64(math.Round(float64(o.SubtotalMinor-o.DiscountMinor) * taxRate[cur]))
	o.ShippingMinor = 0
	if o.SubtotalMinor < freeAbove[cur] {
		o.ShippingMinor = shipping[cur]
	}
	o.TotalMinor = o.SubtotalMinor + o.TaxMinor + o.ShippingMinor - o.DiscountMinor
}

var (
	taxRate   = map[string]float64{"USD": 0.08, "EUR": 0.19, "GBP": 0.20, "JPY": 0.10}
	shipping  = map[string]int64{"USD": 499, "EUR": 499, "GBP": 399, "JPY": 500}
	freeAbove = map[string]int64{"USD": 5000, "EUR": 5000, "GBP": 4000, "JPY": 6000}
)

func (s *Simulator) create(at time.Time) {
	ids := s.cfg.IDs
	cust := ids.Customers[s.pickIndex(s.customers, len(ids.Customers))]
	cur := seed.CurrencyFor(cust.Country)
	o := Order{ID: "o-" + seed.UUID(s.rng), CustomerID: cust.CustomerID, Status: StatusCreated, Currency: cur}
	n := min([]int{1, 1, 1, 1, 2, 2, 2, 3, 3, 4}[s.rng.IntN(10)], len(ids.Products))
	seen := map[int]bool{}
	for len(o.Lines) < n {
		p := s.popular[s.pickIndex(s.products, len(ids.Products))]
		if seen[p] {
			continue
		}
		seen[p] = true
		q := []int64{1, 1, 1, 1, 1, 1, 2, 2, 3}[s.rng.IntN(9)]
		addLine(&o, ids.Products[p], q)
	}
	if s.rng.Float64() < 0.15 { // a 10% voucher
		o.DiscountMinor = o.SubtotalMinor / 10
	}
	price(&o)

	st := &state{}
	if s.cfg.BrokenFraction > 0 && s.rng.Float64() < s.cfg.BrokenFraction {
		st.broken = BrokenKinds()[s.rng.IntN(len(BrokenKinds()))]
		s.broken[st.broken]++
	}
	switch st.broken {
	case BrokenNegativeAmount:
		o.ShippingMinor = -shipping[cur]
		o.TotalMinor = o.SubtotalMinor + o.TaxMinor + o.ShippingMinor - o.DiscountMinor
	case BrokenUnknownCurrency:
		o.Currency = "ZZZ"
	case BrokenTotalMismatch:
		o.TotalMinor++
	case BrokenNoLines:
		o.Lines = []Line{}
		o.SubtotalMinor, o.TaxMinor, o.DiscountMinor = 0, 0, 0
		o.ShippingMinor = shipping[cur]
		o.TotalMinor = o.ShippingMinor
	}
	st.o = o
	s.open(st, at)
}

// open records a new order's first version and plans its life.
func (s *Simulator) open(st *state, at time.Time) {
	o := &st.o
	s.orders[o.ID] = st
	v1broken := st.broken
	if st.broken == BrokenIllegalTransition {
		v1broken = ""
	}
	s.record(st, at, v1broken)

	switch {
	case st.broken == BrokenIllegalTransition:
		s.plan(st, at, StatusDelivered, time.Minute, 2*time.Hour)
	case s.rng.Float64() < 0.08: // abandoned before payment
		s.plan(st, at, StatusCancelled, 5*time.Minute, 2*time.Hour)
	case s.rng.Float64() < 0.25: // paid at once: created and paid fall in one poll interval
		s.plan(st, at, StatusPaid, 2*time.Second, time.Minute)
	default:
		s.plan(st, at, StatusPaid, time.Minute, 30*time.Minute)
	}
}

// plan schedules the order's next change, to status next, lo to hi after at.
func (s *Simulator) plan(st *state, at time.Time, next string, lo, hi time.Duration) {
	st.next = next
	s.schedule(st.o.ID, at.Add(s.uniform(lo, hi)))
}

// step makes an order's planned change at shop time at, and plans the next.
func (s *Simulator) step(st *state, at time.Time) {
	o := &st.o
	from, to := o.Status, st.next
	st.next = ""
	o.Status = to
	switch to {
	case StatusPaid:
		o.PaidAt = reached()
	case StatusShipped:
		o.ShippedAt = reached()
	case StatusDelivered:
		o.DeliveredAt = reached()
	case StatusCancelled:
		o.CancelledAt = reached()
		if from == StatusPaid { // cancelling a paid order refunds it in full
			o.RefundedMinor = o.TotalMinor
			o.RefundedAt = reached()
		}
	case StatusPartiallyRefunded:
		o.RefundedMinor += s.partialRefund(o)
		o.RefundedAt = reached()
	case StatusRefunded:
		o.RefundedMinor = o.TotalMinor
		o.RefundedAt = reached()
	}
	broken := st.broken
	if broken == BrokenIllegalTransition {
		s.record(st, at, broken)
		return // the broken order stops here
	}
	s.record(st, at, broken)

	remaining := o.TotalMinor - o.RefundedMinor
	u := s.rng.Float64()
	switch to {
	case StatusPaid:
		if u < 0.03 {
			s.plan(st, at, StatusCancelled, 10*time.Minute, 6*time.Hour)
		} else {
			s.plan(st, at, StatusShipped, 2*time.Hour, 36*time.Hour)
		}
	case StatusShipped:
		s.plan(st, at, StatusDelivered, 12*time.Hour, 4*24*time.Hour)
	case StatusDelivered:
		switch {
		case u < 0.06 && remaining > 1:
			s.plan(st, at, StatusPartiallyRefunded, 24*time.Hour, 10*24*time.Hour)
		case u < 0.09:
			s.plan(st, at, StatusRefunded, 24*time.Hour, 14*24*time.Hour)
		}
	case StatusPartiallyRefunded:
		switch {
		case u < 0.25 && remaining > 1:
			s.plan(st, at, StatusPartiallyRefunded, time.Hour, 5*24*time.Hour)
		case u < 0.40:
			s.plan(st, at, StatusRefunded, time.Hour, 5*24*time.Hour)
		}
	}
}

// partialRefund is one line's value (a returned item), kept below what is
// left to refund so a partial refund never refunds everything.
func (s *Simulator) partialRefund(o *Order) int64 {
	remaining := o.TotalMinor - o.RefundedMinor
	amount := remaining / 2
	if len(o.Lines) > 0 {
		amount = o.Lines[s.rng.IntN(len(o.Lines))].UnitPriceMinor
	}
	return max(min(amount, remaining-1), 1)
}

func (s *Simulator) pickIndex(z *rand.Zipf, n int) int {
	if z == nil {
		return 0
	}
	return int(z.Uint64()) % n
}

type event struct {
	at  time.Time
	id  string
	seq uint64 // ties in time keep scheduling order, for determinism
}

type schedule []event

func (h schedule) Len() int { return len(h) }
func (h schedule) Less(i, j int) bool {
	if c := h[i].at.Compare(h[j].at); c != 0 {
		return c < 0
	}
	return h[i].seq < h[j].seq
}
func (h schedule) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *schedule) Push(x any)   { *h = append(*h, x.(event)) }
func (h *schedule) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}

func itoa(n int) string { return strconv.Itoa(n) }
