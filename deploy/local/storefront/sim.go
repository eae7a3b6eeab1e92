package storefront

import (
	"container/heap"
	"context"
	"math"
	"math/rand/v2"
	"slices"
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
	// MinMaxLateness is the smallest MaxLateness: a late stamp goes back at
	// least a microsecond (the stamps' resolution) and less than MaxLateness.
	MinMaxLateness = 2 * time.Microsecond
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
	// MaxLateness bounds how far a late stamp goes back from the newest
	// (default 2m; below MinMaxLateness it is MinMaxLateness).
	MaxLateness time.Duration
	// MaxOrders stops the simulation's own arrivals after that many orders
	// (0 = never), so a test can make exactly N orders and wait for their
	// life cycles to end (Stats.Open reaches 0). Orders placed with Place are
	// not counted and are still accepted.
	MaxOrders int
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
	nextArrival time.Time
	burst       bool
	seq         uint64
	arrivals    int            // orders the simulation created
	placed      int            // orders made by Place
	broken      map[string]int // orders per broken kind

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
	switch {
	case cfg.MaxLateness <= 0:
		cfg.MaxLateness = DefaultMaxLateness
	case cfg.MaxLateness < MinMaxLateness:
		cfg.MaxLateness = MinMaxLateness
	}
	rng := rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x5f0e))
	if cfg.MaxOrders < 0 {
		cfg.MaxOrders = 0
	}
	s := &Simulator{cfg: cfg, rng: rng, orders: map[string]*state{}, broken: map[string]int{}}
	// A few customers order often and most rarely; a few products sell most.
	if n := len(cfg.IDs.Customers); n > 1 {
		s.customers = rand.NewZipf(rng, 1.1, 50, uint64(n-1))
	}
	s.popular = rng.Perm(len(cfg.IDs.Products))
	if n := len(cfg.IDs.Products); n > 1 {
		s.products = rand.NewZipf(rng, 1.1, 10, uint64(n-1))
	}
	now := cfg.Clock.Now()
	s.nextArrival = now.Add(s.gap())
	return s
}

// SetBurst turns the burst (sale-day) rate on or off. The next arrival is
// drawn again at the new rate from now (arrivals are a Poisson stream, so this
// is exact): otherwise, at a low rate, the burst would wait for an arrival
// that was planned at the old rate, possibly minutes away.
func (s *Simulator) SetBurst(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.burst == on {
		return
	}
	s.burst = on
	if !s.arrivalsDone() {
		s.nextArrival = s.cfg.Clock.Now().Add(s.gap())
	}
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
			s.arrivals++
			s.nextArrival = next.Add(s.gap())
			if s.arrivalsDone() {
				s.nextArrival = never
			}
			continue
		}
		ev := heap.Pop(&s.sched).(event)
		s.step(s.orders[ev.id], ev.at)
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

// never is an arrival time that does not come.
var never = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)

func (s *Simulator) arrivalsDone() bool {
	return s.cfg.MaxOrders > 0 && s.arrivals >= s.cfg.MaxOrders
}

// Stats is the body of GET /v1/admin/stats: how far the simulation is.
type Stats struct {
	Orders       int            `json:"orders"`        // orders created in total: arrivals + placed
	Arrivals     int            `json:"arrivals"`      // orders the simulation made on its own
	Placed       int            `json:"placed"`        // orders made by Place (POST /v1/admin/orders)
	Open         int            `json:"open"`          // orders whose life cycle is not finished (a next change is planned)
	Versions     int            `json:"versions"`      // versions made (the length of the version log)
	Broken       map[string]int `json:"broken"`        // broken orders per kind, every kind listed
	MaxOrders    int            `json:"max_orders"`    // the arrivals cap, 0 = none
	ArrivalsDone bool           `json:"arrivals_done"` // the cap is reached: no more arrivals
	ShopTime     time.Time      `json:"shop_time"`
	Burst        bool           `json:"burst"`
	// Webhooks counts the webhook deliveries (GET /v1/admin/stats with webhooks on).
	Webhooks *WebhookStats `json:"webhooks,omitempty"`
}

// Stats returns the counters so far.
func (s *Simulator) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Stats{
		Orders: len(s.orders), Arrivals: s.arrivals, Placed: s.placed,
		Open:     len(s.sched), // every unfinished order has exactly one planned change
		Versions: len(s.versions), Broken: make(map[string]int, len(BrokenKinds())),
		MaxOrders: s.cfg.MaxOrders, ArrivalsDone: s.arrivalsDone(),
		ShopTime: s.cfg.Clock.Now(), Burst: s.burst,
	}
	for _, k := range BrokenKinds() {
		st.Broken[k] = s.broken[k]
	}
	return st
}

// Now is the shop time.
func (s *Simulator) Now() time.Time { return s.cfg.Clock.Now() }

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
		// Back from the newest stamp so far by less than MaxLateness: the
		// documented bound a poller's overlap window relies on. From the
		// newest stamp, not from now (at): when changes are sparse (a fast
		// clock) now is far past the newest stamp, and a change stamped back
		// from now would not be in the past of anything the API has shown;
		// when now is behind the newest stamp (Place stamps at the clock's
		// now, which runs up to a tick ahead of Advance), a stamp back from
		// now would be further back than MaxLateness. The stamp may then be
		// after now, as an on-time stamp (after the newest) would be too.
		back := time.Duration(1+s.rng.Int64N(int64(s.cfg.MaxLateness/time.Microsecond)-1)) * time.Microsecond
		t := s.lastStamp.Add(-back)
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
