// Package clickgen simulates storefront traffic as raw clickstream records
// (proto/json/clickstream-raw.schema.json), each labelled with the outcome the
// platform must produce for it.
//
// The simulation is a population of visitors running sessions through a
// shopping funnel (landing page, browsing and search, product views, cart,
// checkout, purchase) with realistic drop-off, so the warehouse tables and
// funnel dashboards fed by it look like real traffic. A configurable fraction
// of records is deliberately broken, one defect per record, and a fraction can
// be re-sent byte for byte as source duplicates. End-to-end tests use the
// labels to check that every record ends up exactly where it should: valid
// ones once in the warehouse, broken ones in the dead-letter topic with the
// right stage, code and rule.
//
// Given the same seed and clock, a Generator produces the same records, so a
// failing test can be replayed. Reusing a seed against a live platform
// reproduces event ids, which the platform rightly treats as duplicates.
package clickgen

import (
	"math/rand/v2"
	"slices"
	"time"

	// Aliased: this package has its own storefront type (a country's shop).
	sf "github.com/ecomstream/platform/deploy/local/storefront"
)

// Defaults for the options.
const (
	DefaultBrokenFraction     = 0.01
	DefaultUsers              = 5000
	DefaultConcurrentSessions = 200
)

// recentSize bounds the memory of records eligible for duplication; source
// duplicates in practice are retries of recent sends, not of old ones.
const recentSize = 4096

// Record is one Kafka record to produce on the clickstream topic.
type Record struct {
	Key       []byte // session_id, so a session's events stay in order on one partition
	Value     []byte // the raw JSON (or deliberately not JSON) event
	EventID   string // "" when the value has no usable event_id; match those by Value
	Expect    Expectation
	Duplicate bool // a byte-identical re-send of an earlier valid record
	// Purchase is set on a valid purchase event (and on its duplicates): the
	// order the shop must hold for the event's order_id to name a real order.
	// The generator does no I/O; cmd/clickgen places it with the storefront
	// (storefront.Placer). Broken records never carry one: they come from
	// throwaway sessions that never reach checkout.
	Purchase *Purchase
}

// Purchase is the order behind a purchase event: the event's order_id, its
// user_id (always a customer of the shared id seed: see Generator) and the
// cart at checkout, after removals, one line per product in the order the
// products were first added.
type Purchase struct {
	OrderID    string
	CustomerID string
	Lines      []PurchaseLine
	At         time.Time // the purchase event's timestamp
}

// PurchaseLine is one product of a Purchase.
type PurchaseLine struct {
	ProductID string
	Quantity  int64
}

// PlaceRequest is the storefront order behind the purchase (POST
// /v1/admin/orders): the same id, customer and lines.
func (p *Purchase) PlaceRequest() sf.PlaceRequest {
	req := sf.PlaceRequest{ID: p.OrderID, CustomerID: p.CustomerID, Lines: make([]sf.PlaceLine, len(p.Lines))}
	for i, l := range p.Lines {
		req.Lines[i] = sf.PlaceLine{ProductID: l.ProductID, Quantity: l.Quantity}
	}
	return req
}

func (p *Purchase) clone() *Purchase {
	if p == nil {
		return nil
	}
	c := *p
	c.Lines = slices.Clone(p.Lines)
	return &c
}

// Option configures a Generator.
type Option interface{ apply(*options) }

type optionFunc func(*options)

func (f optionFunc) apply(o *options) { f(o) }

type options struct {
	seed     uint64
	seeded   bool
	broken   float64
	dup      float64
	now      func() time.Time
	users    int
	kinds    []string
	sessions int
}

// WithSeed makes the generator deterministic. Without it the seed is random.
func WithSeed(seed uint64) Option {
	return optionFunc(func(o *options) { o.seed, o.seeded = seed, true })
}

// WithBrokenFraction sets the share of records that are broken (default
// 0.01). Values are clamped to [0, 1].
func WithBrokenFraction(f float64) Option {
	return optionFunc(func(o *options) { o.broken = clamp01(f) })
}

// WithDuplicateFraction sets the share of records that re-send an earlier
// valid record byte for byte (default 0). Values are clamped to [0, 1]; the
// broken fraction takes precedence when both add up to more than 1.
func WithDuplicateFraction(f float64) Option {
	return optionFunc(func(o *options) { o.dup = clamp01(f) })
}

// WithClock sets the source of event timestamps (default time.Now). Tests pass
// a fixed clock to make the output byte-for-byte reproducible.
func WithClock(now func() time.Time) Option {
	return optionFunc(func(o *options) {
		if now != nil {
			o.now = now
		}
	})
}

// WithUsers sets the number of distinct visitors (browsers) in the population
// (default 5000). About 30% of them are registered customers. Values below 1
// are ignored.
func WithUsers(n int) Option {
	return optionFunc(func(o *options) {
		if n > 0 {
			o.users = n
		}
	})
}

// WithConcurrentSessions sets how many sessions are in flight at once (default
// 200); their events interleave the way concurrent visitors' events do.
// Values below 1 are ignored.
func WithConcurrentSessions(n int) Option {
	return optionFunc(func(o *options) {
		if n > 0 {
			o.sessions = n
		}
	})
}

// WithBrokenKinds restricts broken records to the given kinds (default: all
// of BrokenKinds). Names that are not broken kinds are ignored, and with no
// kind left no record is broken; check names with ExpectationFor first when
// they come from user input.
func WithBrokenKinds(kinds ...string) Option {
	return optionFunc(func(o *options) {
		o.kinds = o.kinds[:0]
		for _, k := range kinds {
			if exp, ok := ExpectationFor(k); ok && !exp.Valid {
				o.kinds = append(o.kinds, k)
			}
		}
	})
}

func clamp01(f float64) float64 {
	switch {
	case f > 1:
		return 1
	case f >= 0:
		return f
	}
	return 0 // negative or NaN
}

// Generator produces clickstream records. It is not safe for concurrent use;
// give each goroutine its own Generator (with different seeds).
type Generator struct {
	rng    *rand.Rand
	now    func() time.Time
	broken float64
	dup    float64
	kinds  []string

	products    []product
	popular     []int   // product indices, most popular first
	byCategory  [][]int // the same per category
	productZipf *rand.Zipf
	catZipf     []*rand.Zipf

	visitors    []visitor
	visitorZipf *rand.Zipf
	registered  int              // visitors given a seed customer at the start (u-000001 on)
	signUps     map[string][]int // per country, the seed customers left for sign-ups at checkout; see signUp

	categoryPick weighted
	channelPick  weighted
	transitions  transitions

	sessions []session

	recent  []Record // ring of emitted valid records, for duplicates
	recentN int

	buf []byte // encoding scratch; every Record gets its own copy
}

// New returns a Generator. Invalid option values fall back to the defaults
// documented on each option rather than failing: a generator for tests and
// demos is more useful when it always starts.
func New(opts ...Option) *Generator {
	o := options{
		broken:   DefaultBrokenFraction,
		now:      time.Now,
		users:    DefaultUsers,
		kinds:    BrokenKinds(),
		sessions: DefaultConcurrentSessions,
	}
	for _, opt := range opts {
		opt.apply(&o)
	}
	if len(o.kinds) == 0 {
		o.broken = 0 // nothing to break with; do not let the share fall through to duplicates
	}
	if !o.seeded {
		o.seed = rand.Uint64()
	}
	rng := rand.New(rand.NewPCG(o.seed, o.seed^0x9e3779b97f4a7c15))
	g := &Generator{
		rng:          rng,
		now:          o.now,
		broken:       o.broken,
		dup:          o.dup,
		kinds:        o.kinds,
		products:     buildCatalog(DefaultProducts),
		categoryPick: newWeighted(categories, func(c category) float64 { return c.weight }),
		channelPick:  newWeighted(channels, func(c channel) float64 { return c.weight }),
		transitions:  newTransitions(),
		sessions:     make([]session, o.sessions),
		recent:       make([]Record, 0, recentSize),
		buf:          make([]byte, 0, 2048),
	}
	g.indexCatalog()
	g.buildVisitors(o.users)
	return g
}

// indexCatalog ranks products by popularity: a seed-dependent shuffle, so
// different runs have different best sellers, sampled with a Zipf law, so a
// few products get most of the views (as they do in real shops).
func (g *Generator) indexCatalog() {
	g.popular = g.rng.Perm(len(g.products))
	g.byCategory = make([][]int, len(categories))
	for _, i := range g.popular {
		c := g.products[i].category
		g.byCategory[c] = append(g.byCategory[c], i)
	}
	g.productZipf = rand.NewZipf(g.rng, 1.1, 8, uint64(len(g.products)-1))
	g.catZipf = make([]*rand.Zipf, len(categories))
	for c, ps := range g.byCategory {
		if len(ps) > 0 {
			g.catZipf[c] = rand.NewZipf(g.rng, 1.2, 3, uint64(len(ps)-1))
		}
	}
}

// Next returns the next record. Broken and duplicate records are drawn
// independently per call with the configured fractions.
func (g *Generator) Next() Record {
	u := g.rng.Float64()
	switch {
	case u < g.broken:
		return g.nextBroken()
	case u < g.broken+g.dup && len(g.recent) > 0:
		return g.nextDuplicate()
	}
	return g.nextValid()
}

func (g *Generator) nextValid() Record {
	s := &g.sessions[g.rng.IntN(len(g.sessions))]
	var e event
	g.advance(s, &e)
	rec := g.record(&e, patch{}, Expectation{Valid: true, Kind: KindValid})
	rec.Purchase = e.purchase
	if g.dup > 0 {
		g.remember(rec)
	}
	return rec
}

func (g *Generator) nextDuplicate() Record {
	rec := g.recent[g.rng.IntN(len(g.recent))]
	// Fresh slices again: the kept copy may be duplicated more than once.
	rec.Key = append([]byte(nil), rec.Key...)
	rec.Value = append([]byte(nil), rec.Value...)
	rec.Purchase = rec.Purchase.clone() // the same order: placing it twice finds it placed
	rec.Duplicate = true
	return rec
}

// remember keeps a private copy of a valid record as a candidate for a later
// duplicate; private because the caller owns the slices it was given.
func (g *Generator) remember(rec Record) {
	rec.Key = append([]byte(nil), rec.Key...)
	rec.Value = append([]byte(nil), rec.Value...)
	rec.Purchase = rec.Purchase.clone()
	if len(g.recent) < recentSize {
		g.recent = append(g.recent, rec)
		return
	}
	g.recent[g.recentN] = rec
	g.recentN = (g.recentN + 1) % recentSize
}

func (g *Generator) record(e *event, p patch, exp Expectation) Record {
	g.buf = appendEvent(g.buf[:0], e, p)
	id := e.id
	if p.field == "event_id" {
		id = ""
	}
	return Record{
		Key:     []byte(e.sessionID),
		Value:   append(make([]byte, 0, len(g.buf)), g.buf...),
		EventID: id,
		Expect:  exp,
	}
}

// timestamp is the event time: the wall clock now, in UTC, at the contract's
// microsecond precision.
func (g *Generator) timestamp() time.Time {
	return g.now().UTC().Truncate(time.Microsecond)
}
