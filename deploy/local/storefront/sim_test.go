package storefront_test

import (
	"errors"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ecomstream/platform/deploy/local/seed"
	"github.com/ecomstream/platform/deploy/local/storefront"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var (
	shopOpens = time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	smallSeed = seed.Generate(seed.DefaultSeed, 2000, 300)
)

// newSim returns a simulator on a manual clock, by default at 3600 shop
// seconds per wall second and 600 orders per wall minute: one order every 6
// shop minutes.
func newSim(t *testing.T, cfg storefront.SimConfig) (*storefront.Simulator, *storefront.ManualClock) {
	t.Helper()
	clock := storefront.NewManualClock(shopOpens)
	cfg.Clock = clock
	if cfg.IDs == nil {
		cfg.IDs = smallSeed
	}
	if cfg.Speed == 0 {
		cfg.Speed = 3600
	}
	if cfg.RatePerMinute == 0 {
		cfg.RatePerMinute = 600
	}
	return storefront.NewSimulator(cfg), clock
}

// run advances the simulator by total shop time in steps.
func run(sim *storefront.Simulator, clock *storefront.ManualClock, total, step time.Duration) {
	for d := time.Duration(0); d < total; d += step {
		sim.Advance(clock.Add(step))
	}
}

func byOrder(vs []storefront.Version) (map[string][]storefront.Version, []string) {
	m := map[string][]storefront.Version{}
	var ids []string
	for _, v := range vs {
		if _, ok := m[v.Order.ID]; !ok {
			ids = append(ids, v.Order.ID)
		}
		m[v.Order.ID] = append(m[v.Order.ID], v)
	}
	return m, ids
}

func TestLifeCycles(t *testing.T) {
	sim, clock := newSim(t, storefront.SimConfig{Seed: 1, BrokenFraction: 0.02})
	run(sim, clock, 20*24*time.Hour, 10*time.Minute) // 20 shop days: ~4800 orders, all done
	versions := sim.Versions()
	orders, ids := byOrder(versions)
	if len(ids) < 3000 {
		t.Fatalf("only %d orders", len(ids))
	}
	customers := map[string]bool{}
	for _, c := range smallSeed.Customers {
		customers[c.CustomerID] = true
	}
	products := map[string]bool{}
	for _, p := range smallSeed.Products {
		products[p.ProductID] = true
	}
	statuses := map[string]int{}
	broken := map[string]int{}
	var late, quick int
	for _, id := range ids {
		vs := orders[id]
		kind := ""
		for _, v := range vs {
			if v.Broken != "" {
				kind = v.Broken
			}
		}
		broken[kind]++
		for i, v := range vs {
			o := v.Order
			statuses[o.Status]++
			if v.Late {
				late++
			}
			if o.Version != i+1 {
				t.Fatalf("%s: version %d at position %d", id, o.Version, i)
			}
			if !customers[o.CustomerID] {
				t.Fatalf("%s: customer %s not in the seed", id, o.CustomerID)
			}
			for _, l := range o.Lines {
				if !products[l.ProductID] {
					t.Fatalf("%s: product %s not in the seed", id, l.ProductID)
				}
			}
			if i == 0 {
				if o.Status != storefront.StatusCreated || !o.CreatedAt.Equal(o.UpdatedAt) {
					t.Fatalf("%s: first version %+v", id, o)
				}
				continue
			}
			prev := vs[i-1].Order
			if !o.UpdatedAt.After(prev.UpdatedAt) {
				t.Fatalf("%s v%d: updated_at %s not after %s", id, o.Version, o.UpdatedAt, prev.UpdatedAt)
			}
			if i == 1 && o.Status == storefront.StatusPaid && o.UpdatedAt.Sub(o.CreatedAt) < time.Minute {
				quick++
			}
			legal := storefront.LegalTransition(prev.Status, o.Status)
			if (kind == storefront.BrokenIllegalTransition) == legal {
				t.Fatalf("%s (%q): %s -> %s, legal %v", id, kind, prev.Status, o.Status, legal)
			}
		}
		for _, v := range vs {
			problems := v.Order.Problems()
			if (v.Broken == "") != (len(problems) == 0) {
				t.Fatalf("%s v%d broken %q has problems %v", id, v.Order.Version, v.Broken, problems)
			}
		}
	}
	for _, s := range storefront.Statuses() {
		if statuses[s] == 0 {
			t.Errorf("no version with status %s: %v", s, statuses)
		}
	}
	checkCursorGuarantee(t, versions, storefront.DefaultMaxLateness)
	for _, k := range storefront.BrokenKinds() {
		if broken[k] == 0 {
			t.Errorf("no %s order: %v", k, broken)
		}
	}
	if late == 0 || quick == 0 {
		t.Errorf("%d late versions, %d orders paid within a shop minute", late, quick)
	}
	t.Logf("%d orders, %d versions, statuses %v, broken %v, %d late", len(ids), len(versions), statuses, broken, late)
}

// checkCursorGuarantee checks the cursor guarantee: a version is stamped
// after every version before it, unless late, and then by less than
// maxLateness before the newest. It returns the number of late versions.
func checkCursorGuarantee(t *testing.T, versions []storefront.Version, maxLateness time.Duration) int {
	t.Helper()
	var newest time.Time
	late := 0
	for _, v := range versions {
		switch {
		case v.Order.UpdatedAt.After(newest):
			if v.Late {
				t.Fatalf("late version %s v%d is the newest", v.Order.ID, v.Order.Version)
			}
			newest = v.Order.UpdatedAt
		case !v.Late:
			t.Fatalf("version %s v%d at %s, not after %s, but not late", v.Order.ID, v.Order.Version, v.Order.UpdatedAt, newest)
		case newest.Sub(v.Order.UpdatedAt) >= maxLateness:
			t.Fatalf("late version %s v%d %s behind the newest stamp, max lateness %s", v.Order.ID, v.Order.Version, newest.Sub(v.Order.UpdatedAt), maxLateness)
		default:
			late++
		}
	}
	return late
}

// TestCursorGuaranteeWithPlace: orders placed between Advance ticks on a fast
// clock are stamped at the clock's now, ahead of the changes the next tick
// makes; those changes' late stamps still stay within MaxLateness of the
// newest stamp (they used to go back from their own shop time, up to a tick
// of shop time further: 72 shop minutes at speed 86400).
func TestCursorGuaranteeWithPlace(t *testing.T) {
	const speed = 86400
	tick := time.Duration(speed * float64(50*time.Millisecond))
	sim, clock := newSim(t, storefront.SimConfig{Seed: 11, Speed: speed, RatePerMinute: 600, LateFraction: 0.2, BrokenFraction: -1})
	req := storefront.PlaceRequest{CustomerID: "u-000002", Lines: []storefront.PlaceLine{{ProductID: "p-00003", Quantity: 1}}}
	for range 2400 { // two wall minutes of 50 ms ticks
		for range 2 {
			clock.Add(tick / 2)
			if _, err := sim.Place(req); err != nil {
				t.Fatal(err)
			}
		}
		sim.Advance(clock.Now())
	}
	versions := sim.Versions()
	late := checkCursorGuarantee(t, versions, storefront.DefaultMaxLateness)
	later := 0 // changes after an order's first version
	for _, v := range versions {
		if v.Order.Version > 1 {
			later++
		}
	}
	// The -late share holds here too.
	if later < 500 || float64(late)/float64(later) < 0.12 {
		t.Fatalf("%d of %d changes late, want about 20%%", late, later)
	}
	t.Logf("%d versions, %d of %d changes late", len(versions), late, later)
}

func TestDeterminism(t *testing.T) {
	a, ca := newSim(t, storefront.SimConfig{Seed: 7})
	b, cb := newSim(t, storefront.SimConfig{Seed: 7})
	run(a, ca, 48*time.Hour, time.Minute)
	run(b, cb, 48*time.Hour, 8*time.Minute) // other steps, same shop history
	if va, vb := a.Versions(), b.Versions(); !reflect.DeepEqual(va, vb) {
		t.Fatalf("same seed, different versions (%d vs %d)", len(va), len(vb))
	}
}

func TestRateAndBurst(t *testing.T) {
	tests := []struct {
		name     string
		burst    bool
		min, max int
	}{
		{"normal", false, 35, 65},  // 50 per wall minute
		{"burst", true, 900, 1100}, // 20x
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sim, clock := newSim(t, storefront.SimConfig{Seed: 3, Speed: 60, RatePerMinute: 50, LateFraction: -1})
			sim.SetBurst(tt.burst)
			run(sim, clock, time.Hour, time.Minute) // one shop hour = one wall minute
			n := 0
			for _, v := range sim.Versions() {
				if v.Order.Version == 1 {
					n++
				}
			}
			if n < tt.min || n > tt.max {
				t.Fatalf("%d orders in a wall minute, want %d..%d", n, tt.min, tt.max)
			}
		})
	}
}

func TestSimClock(t *testing.T) {
	c := storefront.NewSimClock(shopOpens, 3600)
	time.Sleep(20 * time.Millisecond)
	got := c.Now().Sub(shopOpens)
	if got < 72*time.Second || got > 10*time.Hour { // 20 ms wall = 72 shop seconds; a loaded machine may sleep longer
		t.Fatalf("shop time moved %s in ~20ms at 3600x", got)
	}
	m := storefront.NewManualClock(shopOpens)
	if !m.Add(time.Hour).Equal(shopOpens.Add(time.Hour)) || !m.Now().Equal(shopOpens.Add(time.Hour)) {
		t.Fatal("manual clock")
	}
	if slices.Contains(storefront.Statuses(), "") {
		t.Fatal("empty status")
	}
}

func TestPlace(t *testing.T) {
	var mu sync.Mutex
	var seen []storefront.Version
	sim, clock := newSim(t, storefront.SimConfig{Seed: 8, OnChange: func(v storefront.Version) {
		mu.Lock()
		seen = append(seen, v)
		mu.Unlock()
	}})
	var req storefront.PlaceRequest
	req.ID, req.CustomerID = "o-placed", "u-000002"
	req.Lines = []storefront.PlaceLine{{ProductID: "p-00003", Quantity: 1}}
	var wg sync.WaitGroup
	wg.Go(func() { run(sim, clock, 20*24*time.Hour, 10*time.Minute) })
	if _, err := sim.Place(req); err != nil {
		t.Fatal(err)
	}
	if _, err := sim.Place(req); !errors.Is(err, storefront.ErrExists) || !errors.Is(err, storefront.ErrPlace) {
		t.Fatalf("placing the same id twice: %v", err)
	}
	if _, err := sim.Place(storefront.PlaceRequest{CustomerID: "u-000002"}); err == nil || errors.Is(err, storefront.ErrExists) {
		t.Fatalf("no lines: %v, want a plain ErrPlace", err)
	}
	wg.Wait()
	vs := versionsOf(sim, "o-placed")
	if len(vs) < 2 || vs[0].Order.Currency != seed.CurrencyFor(smallSeed.Customers[1].Country) {
		t.Fatalf("placed order versions %+v", vs)
	}
	for i := 1; i < len(vs); i++ {
		if !storefront.LegalTransition(vs[i-1].Order.Status, vs[i].Order.Status) {
			t.Fatalf("%s -> %s", vs[i-1].Order.Status, vs[i].Order.Status)
		}
	}
	// OnChange saw every version, in the order the log has them.
	if !reflect.DeepEqual(seen, sim.Versions()) {
		t.Fatalf("OnChange saw %d versions, the log has %d (or another order)", len(seen), len(sim.Versions()))
	}
}

// TestBurstTakesEffectAtOnce: turning the burst on redraws the next arrival,
// so at a low rate the burst does not wait for an arrival planned at the old
// rate (0.5 per wall minute: two shop hours away on average at speed 60).
func TestBurstTakesEffectAtOnce(t *testing.T) {
	sim, clock := newSim(t, storefront.SimConfig{Seed: 5, Speed: 60, RatePerMinute: 0.5, BurstFactor: 1000})
	sim.SetBurst(true)                          // 500 per wall minute, ~8 per wall second
	run(sim, clock, 2*time.Minute, time.Second) // two wall seconds
	if n := sim.Stats().Arrivals; n < 5 || n > 40 {
		t.Fatalf("%d orders in two wall seconds of burst, want about 16", n)
	}
}

// TestMaxOrdersAndStats: with MaxOrders the simulation makes exactly that
// many orders, the stats follow the version log, every life cycle ends
// (Open reaches 0), and Place still works after the arrivals stopped.
func TestMaxOrdersAndStats(t *testing.T) {
	const n = 400
	sim, clock := newSim(t, storefront.SimConfig{Seed: 9, MaxOrders: n, BrokenFraction: 0.05})
	sawOpen := false
	for range 100_000 { // 10-minute steps: about 2 shop years at most
		sim.Advance(clock.Add(10 * time.Minute))
		st := sim.Stats()
		sawOpen = sawOpen || st.Open > 0
		if st.ArrivalsDone && st.Open == 0 {
			break
		}
	}
	st := sim.Stats()
	if !st.ArrivalsDone || st.Open != 0 || !sawOpen {
		t.Fatalf("stats %+v (saw open orders: %v): the life cycles did not all end", st, sawOpen)
	}
	versions := sim.Versions()
	byID, ids := byOrder(versions)
	broken := map[string]int{}
	for _, id := range ids {
		if k := byID[id][len(byID[id])-1].Broken; k != "" {
			broken[k]++
		}
	}
	for _, k := range storefront.BrokenKinds() {
		if st.Broken[k] != broken[k] {
			t.Errorf("broken %s: stats %d, log %d", k, st.Broken[k], broken[k])
		}
	}
	if st.Arrivals != n || st.Orders != n || len(ids) != n || st.Placed != 0 || st.Versions != len(versions) || st.MaxOrders != n {
		t.Fatalf("stats %+v; the log has %d orders and %d versions", st, len(ids), len(versions))
	}
	if !st.ShopTime.Equal(clock.Now()) {
		t.Fatalf("shop time %s, clock %s", st.ShopTime, clock.Now())
	}
	// No more arrivals however long the shop runs, also through a burst;
	// placed orders are still taken and counted apart.
	sim.SetBurst(true)
	run(sim, clock, 24*time.Hour, time.Hour)
	if _, err := sim.Place(storefront.PlaceRequest{CustomerID: "u-000001", Lines: []storefront.PlaceLine{{ProductID: "p-00001", Quantity: 1}}}); err != nil {
		t.Fatal(err)
	}
	if st := sim.Stats(); st.Arrivals != n || st.Orders != n+1 || st.Placed != 1 || st.Open != 1 || !st.Burst {
		t.Fatalf("after a place: %+v", st)
	}
}

// TestLateShareOnAFastClock: -late is the share of changes stamped in the past
// also when changes are sparse in shop time (a fast clock), where a stamp
// taken back from "now" would still be newer than anything the API showed.
func TestLateShareOnAFastClock(t *testing.T) {
	for _, speed := range []float64{60, 86400} {
		sim, clock := newSim(t, storefront.SimConfig{Seed: 5, Speed: speed, RatePerMinute: 600, LateFraction: 0.2, BrokenFraction: -1})
		run(sim, clock, time.Duration(speed*float64(2*time.Minute)), time.Duration(speed*float64(50*time.Millisecond)))
		var late, later int // later: changes after an order's first version
		for _, v := range sim.Versions() {
			if v.Order.Version > 1 {
				later++
			}
			if v.Late {
				late++
			}
		}
		if later < 500 {
			t.Fatalf("speed %g: only %d changes", speed, later)
		}
		if share := float64(late) / float64(later); share < 0.12 {
			t.Errorf("speed %g: %d of %d changes late (%.1f%%), want about 20%%", speed, late, later, 100*share)
		}
	}
}

// TestTinyMaxLateness: a MaxLateness below MinMaxLateness is raised to it
// (a late stamp needs room for at least a microsecond back) instead of
// panicking in the random draw, and the cursor guarantee holds at each.
func TestTinyMaxLateness(t *testing.T) {
	tests := []struct {
		name  string
		give  time.Duration
		bound time.Duration
	}{
		{"1ns", time.Nanosecond, storefront.MinMaxLateness},
		{"1us", time.Microsecond, storefront.MinMaxLateness},
		{"1.5us", 1500 * time.Nanosecond, storefront.MinMaxLateness},
		{"2us", 2 * time.Microsecond, 2 * time.Microsecond},
		{"3us", 3 * time.Microsecond, 3 * time.Microsecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sim, clock := newSim(t, storefront.SimConfig{Seed: 4, LateFraction: 0.5, MaxLateness: tt.give, MaxOrders: 200})
			run(sim, clock, 10*24*time.Hour, 10*time.Minute)
			if late := checkCursorGuarantee(t, sim.Versions(), tt.bound); late == 0 {
				t.Fatalf("no late version of %d", len(sim.Versions()))
			}
		})
	}
}
