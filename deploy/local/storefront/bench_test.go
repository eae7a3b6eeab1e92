package storefront_test

import (
	"slices"
	"testing"
	"time"

	"github.com/ecomstream/platform/deploy/local/storefront"
)

// BenchmarkLifeCycles runs -max-orders orders at a given -rate and -speed to
// the end of every life cycle on a manual clock, stepping it as the binary's
// 50 ms tick would, and reports the figures an end-to-end test needs: how
// long the arrivals and the life cycles take in wall time at that speed, the
// life-cycle lengths in shop hours, and the simulator's CPU per version.
//
//	go test -run '^$' -bench LifeCycles -benchtime 1x ./storefront
func BenchmarkLifeCycles(b *testing.B) {
	tests := []struct {
		name      string
		speed     float64 // shop seconds per wall second
		rate      float64 // orders per wall minute
		maxOrders int
		burst     bool // rate x 20
	}{
		{"3000orders_rate6000_speed20000", 20000, 6000, 3000, false},
		{"3000orders_rate6000_speed30000", 30000, 6000, 3000, false},
		{"20000orders_rate1000_burst_speed3600", 3600, 1000, 20000, true},
		{"100000orders_rate1000_burst_speed3600", 3600, 1000, 100000, true},
	}
	const tick = 50 * time.Millisecond
	for _, tt := range tests {
		b.Run(tt.name, func(b *testing.B) {
			for range b.N {
				clock := storefront.NewManualClock(shopOpens)
				sim := storefront.NewSimulator(storefront.SimConfig{
					Seed: 1, Clock: clock, Speed: tt.speed, RatePerMinute: tt.rate, MaxOrders: tt.maxOrders,
				})
				sim.SetBurst(tt.burst)
				step := time.Duration(float64(tick) * tt.speed)
				var ticks, arrivalTicks int
				start := time.Now()
				for {
					sim.Advance(clock.Add(step))
					ticks++
					st := sim.Stats()
					if st.ArrivalsDone && arrivalTicks == 0 {
						arrivalTicks = ticks
					}
					if st.ArrivalsDone && st.Open == 0 {
						break
					}
				}
				cpu := time.Since(start)
				created := map[string]time.Time{}
				var lives []float64
				for _, v := range sim.Versions() {
					if v.Order.Version == 1 {
						created[v.Order.ID] = v.Order.UpdatedAt
					}
				}
				last := map[string]time.Time{}
				for _, v := range sim.Versions() {
					last[v.Order.ID] = v.Order.UpdatedAt
				}
				for id, c := range created {
					lives = append(lives, last[id].Sub(c).Hours())
				}
				slices.Sort(lives)
				q := func(p float64) float64 { return lives[int(p*float64(len(lives)-1))] }
				st := sim.Stats()
				wall := func(n int) float64 { return (time.Duration(n) * tick).Seconds() }
				b.ReportMetric(wall(arrivalTicks), "arrivals_wall_s")
				b.ReportMetric(wall(ticks), "all_done_wall_s")
				b.ReportMetric(q(0.5), "life_p50_shop_h")
				b.ReportMetric(q(0.99), "life_p99_shop_h")
				b.ReportMetric(q(1), "life_max_shop_h")
				b.ReportMetric(float64(st.Versions), "versions")
				b.ReportMetric(float64(cpu.Nanoseconds())/float64(st.Versions), "cpu_ns/version")
			}
		})
	}
}
