package storefront

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/ecomstream/platform/deploy/local/seed"
)

// Defaults for SimConfig.
const (
	DefaultRatePerMinute  = 50
	DefaultBurstFactor    = 20
	DefaultBrokenFraction = 0.01
	DefaultLateFraction   = 0.05
	DefaultMaxLateness    = 2 * time.Minute
)

// Broken kinds: the deliberate defects, one per broken order. Each names the
// order rule that must reject it.
const (
	BrokenNegativeAmount    = "negative_amount"    // shipping_minor < 0 (total still adds up)
	BrokenUnknownCurrency   = "unknown_currency"   // currency "ZZZ"
	BrokenTotalMismatch     = "total_mismatch"     // total_minor one more than the sum
	BrokenNoLines           = "no_lines"           // lines empty, subtotal 0
	BrokenIllegalTransition = "illegal_transition" // version 2 is "delivered" straight from "created"
)

// BrokenKinds lists the kinds of deliberately broken orders.
func BrokenKinds() []string {
	return []string{BrokenNegativeAmount, BrokenUnknownCurrency, BrokenTotalMismatch, BrokenNoLines, BrokenIllegalTransition}
}

// SimConfig configures a Simulator. Zero values take the defaults.
type SimConfig struct {
	Seed  uint64    // the random stream; the same seed and clock give the same orders
	IDs   *seed.Set // customers and products (default seed.Default())
	Clock Clock     // shop time (default the wall clock)
	// Speed is shop seconds per wall second (the clock's speed). Arrivals are
	// paced in wall time, so RatePerMinute orders arrive per wall minute at any
	// speed; the life cycle runs in shop time.
	Speed          float64
	RatePerMinute  float64 // orders per wall minute (default 50)
	BurstFactor    float64 // rate multiplier while the burst is on (default 20)
	BrokenFraction float64 // share of orders broken on purpose (default 0.01; negative = none)
	LateFraction   float64 // share of changes stamped in the past (default 0.05; negative = none)
	MaxLateness    time.Duration
	// OnChange is called with every new version, in the order they were made,
	// outside the simulator's lock (webhooks and the version log hang here).
	OnChange func(Version)
}

// Version is one entry of the simulator's own log: an order version as it was
// created, with what the tests need to know about it.
type Version struct {
	Order Order `json:"order"`
	// Broken is the defect of this version ("" when it is well formed): a
	// broken order's versions are all broken, except version 1 of an
	// illegal_transition order, which is a normal created order.
	Broken string `json:"broken,omitempty"`
	// Late is set when updated_at was stamped in the past (up to MaxLateness).
	Late bool `json:"late,omitempty"`
}

// Simulator is the storefront's order book: it creates orders and moves them
// through their life cycles as its clock advances. It is safe for concurrent
// use.
type Simulator struct {
	cfg SimConfig

	emitMu      sync.Mutex // serialises OnChange calls; see emit
	mu          sync.Mutex
	rng         *rand.Rand
	customers   *rand.Zipf
	products    *rand.Zipf
	popular     []int
	orders      map[string]*state
	index       []key // every order's (updated_at, id), sorted
	sched       schedule
	versions    []Version
	lastStamp   time.Time
	lastAdvance time.Time
	nextArrival time.Time
	burst       bool
	seq         uint64

	customerByID, productByID map[string]int // for Place, built on first use
}

type state struct {
	o      Order
	broken string
	next   string // the status of the planned change; "" when the order is done
}

type key struct {
	t  time.Time
	id string
}

func (a key) compare(b key) int {
	if c := a.t.Compare(b.t); c != 0 {
		return c
	}
	switch {
	case a.id < b.id:
		return -1
	case a.id > b.id:
		return 1
	}
	return 0
}

// NewSimulator returns a simulator whose shop opens at the clock's now.
func NewSimulator(cfg SimConfig) *Simulator {
	if cfg.IDs == nil {
		cfg.IDs = seed.Default()
	}
	if cfg.Clock == nil {
		cfg.Clock = NewSimClock(time.Time{}, 1)
	}
	if cfg.Speed <= 0 {
		cfg.Speed = 1
		if c, ok := cfg.Clock.(*SimClock); ok {
			cfg.Speed = c.Speed()
		}
	}
	def := func(v *float64, d float64) {
		switch {
		case *v == 0:
			*v = d
		case *v < 0:
			*v = 0
		}
	}
	def(&cfg.RatePerMinute, DefaultRatePerMinute)
	def(&cfg.BurstFactor, DefaultBurstFactor)
	def(&cfg.BrokenFraction, DefaultBrokenFraction)
	def(&cfg.LateFraction, DefaultLateFraction)
	if cfg.MaxLateness <= 0 {
		cfg.MaxLateness = DefaultMaxLateness
	}
	rng := rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x5f0e))
	s := &Simulator{cfg: cfg, rng: rng, orders: map[string]*state{}}
	// A few customers order often and most rarely; a few products sell most.
	if n := len(cfg.IDs.Customers); n > 1 {
		s.customers = rand.NewZipf(rng, 1.1, 50, uint64(n-1))
	}
	s.popular = rng.Perm(len(cfg.IDs.Products))
	if n := len(cfg.IDs.Products); n > 1 {
		s.products = rand.NewZipf(rng, 1.1, 10, uint64(n-1))
	}
	now := cfg.Clock.Now()
	s.lastAdvance = now
	s.nextArrival = now.Add(s.gap())
	return s
}

// SetBurst turns the burst (sale-day) rate on or off.
func (s *Simulator) SetBurst(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.burst = on
}

// Burst reports whether the burst rate is on.
func (s *Simulator) Burst() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.burst
}

// gap is the shop time to the next arrival: exponential, for a Poisson stream.
func (s *Simulator) gap() time.Duration {
	perWallSecond := s.cfg.RatePerMinute / 60
	if s.burst {
		perWallSecond *= s.cfg.BurstFactor
	}
	if perWallSecond <= 0 {
		return time.Duration(math.MaxInt64 / 4)
	}
	perShopSecond := perWallSecond / s.cfg.Speed
	return time.Duration(s.rng.ExpFloat64() / perShopSecond * float64(time.Second))
}

// Run advances the simulator with its clock every tick until ctx ends.
func (s *Simulator) Run(ctx context.Context, tick time.Duration) error {
	if tick <= 0 {
		tick = 50 * time.Millisecond
	}
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			s.Advance(s.cfg.Clock.Now())
		}
	}
}

// Advance makes every arrival and life-cycle step due up to shop time to, in
// time order, and returns how many versions it made.
func (s *Simulator) Advance(to time.Time) int {
	s.mu.Lock()
	first := len(s.versions)
	for {
		next := s.nextArrival
		if len(s.sched) > 0 && s.sched[0].at.Before(next) {
			next = s.sched[0].at
		}
		if next.After(to) {
			break
		}
		if next.Equal(s.nextArrival) {
			s.create(next)
			s.nextArrival = next.Add(s.gap())
			continue
		}
		ev := heap.Pop(&s.sched).(event)
		s.step(s.orders[ev.id], ev.at)
	}
	if to.After(s.lastAdvance) {
		s.lastAdvance = to
	}
	return s.emit(first)
}

// emit hands the versions from index first on to OnChange and unlocks s.mu.
// emitMu is taken before s.mu is released, so callbacks see versions in the
// order they were made even when Advance and Place race; OnChange must
// therefore not call the Simulator.
func (s *Simulator) emit(first int) int {
	made := slices.Clone(s.versions[first:])
	s.emitMu.Lock()
	s.mu.Unlock()
	defer s.emitMu.Unlock()
	if s.cfg.OnChange != nil {
		for _, v := range made {
			s.cfg.OnChange(v)
		}
	}
	return len(made)
}

// Versions returns a copy of every version made so far, in the order made.
func (s *Simulator) Versions() []Version {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.versions)
}

// Order returns the latest version of an order.
func (s *Simulator) Order(id string) (Order, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.orders[id]
	if !ok {
		return Order{}, false
	}
	return st.o.clone(), true
}

// page returns up to limit orders at their latest version in (updated_at, id)
// order: those at or after since when after is nil, else those after *after
// (or at it, when repeat is set: the cursor-boundary fault).
func (s *Simulator) page(since time.Time, after *key, repeat bool, limit int) (out []Order, more bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var i int
	if after == nil {
		i, _ = slices.BinarySearchFunc(s.index, key{t: since}, key.compare)
	} else {
		var found bool
		i, found = slices.BinarySearchFunc(s.index, *after, key.compare)
		if found && !repeat {
			i++
		}
	}
	for ; i < len(s.index) && len(out) < limit; i++ {
		out = append(out, s.orders[s.index[i].id].o.clone())
	}
	return out, i < len(s.index)
}

// stamp is the updated_at of a change made at shop time at. Changes that are
// not late get a stamp strictly after every stamp before, so a cursor on
// (updated_at, id) never passes over them; late ones go back up to
// MaxLateness, but never before the order's previous version.
func (s *Simulator) stamp(at time.Time, prev time.Time) (time.Time, bool) {
	at = at.UTC().Truncate(time.Microsecond)
	if s.cfg.LateFraction > 0 && !prev.IsZero() && s.rng.Float64() < s.cfg.LateFraction {
		// Back from the newest stamp so far, by less than MaxLateness: the
		// documented bound a poller's overlap window relies on.
		back := time.Duration(s.rng.Int64N(int64(s.cfg.MaxLateness/time.Microsecond))) * time.Microsecond
		t := at
		if s.lastStamp.After(t) {
			t = s.lastStamp
		}
		t = t.Add(-back)
		if min := prev.Add(time.Microsecond); t.Before(min) {
			t = min
		}
		if t.Before(s.lastStamp) {
			return t, true
		}
	}
	if !at.After(s.lastStamp) {
		at = s.lastStamp.Add(time.Microsecond)
	}
	s.lastStamp = at
	return at, false
}

// record stores a new version of st (already changed) stamped at shop time at.
func (s *Simulator) record(st *state, at time.Time, broken string) {
	old := key{st.o.UpdatedAt, st.o.ID}
	t, late := s.stamp(at, st.o.UpdatedAt)
	if st.o.Version > 0 {
		if i, ok := slices.BinarySearchFunc(s.index, old, key.compare); ok {
			s.index = slices.Delete(s.index, i, i+1)
		}
	} else {
		st.o.CreatedAt = t
	}
	st.o.Version++
	st.o.UpdatedAt = t
	// Stage timestamps are set by the step; the stamp owns the exact value, so
	// a stage time equals the updated_at of the version that reached it.
	for _, p := range []**time.Time{&st.o.PaidAt, &st.o.ShippedAt, &st.o.DeliveredAt, &st.o.CancelledAt, &st.o.RefundedAt} {
		if *p != nil && (*p).Equal(stageMarker) {
			v := t
			*p = &v
		}
	}
	k := key{t, st.o.ID}
	i, _ := slices.BinarySearchFunc(s.index, k, key.compare)
	s.index = slices.Insert(s.index, i, k)
	s.versions = append(s.versions, Version{Order: st.o.clone(), Broken: broken, Late: late})
}

// stageMarker marks a stage timestamp for record to fill in with the stamp.
var stageMarker = time.Date(1, 1, 1, 0, 0, 0, 1, time.UTC)

func reached() *time.Time { t := stageMarker; return &t }

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

// PlaceRequest is an order placed from outside the simulation (POST
// /v1/admin/orders), e.g. by whatever turns clickstream purchases into
// orders, so a purchase event's order_id names a real order.
type PlaceRequest struct {
	ID         string `json:"id,omitempty"` // "" = a new "o-<uuid>"
	CustomerID string `json:"customer_id"`
	Lines      []struct {
		ProductID string `json:"product_id"`
		Quantity  int64  `json:"quantity"`
	} `json:"lines"`
}

// ErrPlace is wrapped by every error of Place: the request was wrong.
var ErrPlace = errors.New("cannot place order")

// Place creates a well-formed order now, in the customer's currency at the
// seed's prices, and runs its life cycle like any other order.
func (s *Simulator) Place(req PlaceRequest) (Order, error) {
	s.mu.Lock()
	if s.customerByID == nil {
		s.customerByID = make(map[string]int, len(s.cfg.IDs.Customers))
		for i, c := range s.cfg.IDs.Customers {
			s.customerByID[c.CustomerID] = i
		}
		s.productByID = make(map[string]int, len(s.cfg.IDs.Products))
		for i, p := range s.cfg.IDs.Products {
			s.productByID[p.ProductID] = i
		}
	}
	ci, ok := s.customerByID[req.CustomerID]
	var err error
	switch {
	case !ok:
		err = fmt.Errorf("%w: customer %q is not in the id seed", ErrPlace, req.CustomerID)
	case len(req.Lines) == 0:
		err = fmt.Errorf("%w: no lines", ErrPlace)
	case req.ID != "" && s.orders[req.ID] != nil:
		err = fmt.Errorf("%w: order %s exists", ErrPlace, req.ID)
	}
	if err != nil {
		s.mu.Unlock()
		return Order{}, err
	}
	cust := s.cfg.IDs.Customers[ci]
	o := Order{ID: req.ID, CustomerID: cust.CustomerID, Status: StatusCreated, Currency: seed.CurrencyFor(cust.Country)}
	if o.ID == "" {
		o.ID = "o-" + uuid(s.rng)
	}
	for _, l := range req.Lines {
		pi, ok := s.productByID[l.ProductID]
		if !ok || l.Quantity < 1 {
			s.mu.Unlock()
			return Order{}, fmt.Errorf("%w: line %q x %d: unknown product or quantity below 1", ErrPlace, l.ProductID, l.Quantity)
		}
		addLine(&o, s.cfg.IDs.Products[pi], l.Quantity)
	}
	price(&o)
	st := &state{o: o}
	first := len(s.versions)
	s.open(st, s.cfg.Clock.Now())
	out := st.o.clone()
	s.emit(first) // unlocks
	return out, nil
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
	o := Order{ID: "o-" + uuid(s.rng), CustomerID: cust.CustomerID, Status: StatusCreated, Currency: cur}
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

// uuid returns a random (version 4) UUID from the seeded source, so order
// ids are reproducible with the same seed; the same "o-<uuid>" shape as
// clickgen's order ids.
func uuid(rng *rand.Rand) string {
	const hex = "0123456789abcdef"
	hi := rng.Uint64()&^(0xf<<12) | 0x4<<12
	lo := rng.Uint64()&^(0x3<<62) | 0x2<<62
	var b [36]byte
	j := 0
	for i := range 16 {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			b[j] = '-'
			j++
		}
		var v byte
		if i < 8 {
			v = byte(hi >> (56 - 8*i))
		} else {
			v = byte(lo >> (56 - 8*(i-8)))
		}
		b[j], b[j+1] = hex[v>>4], hex[v&0xf]
		j += 2
	}
	return string(b[:])
}

func itoa(n int) string { return strconv.Itoa(n) }
