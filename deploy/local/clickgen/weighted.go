package clickgen

import (
	"math/rand/v2"
	"sort"
)

// weighted picks indices of a fixed table in proportion to their weights.
// Tables are small (a dozen rows), so a binary search over the cumulative sums
// is as fast as an alias table and easier to read.
type weighted struct {
	cum []float64
}

func newWeighted[T any](items []T, weight func(T) float64) weighted {
	cum := make([]float64, len(items))
	total := 0.0
	for i, it := range items {
		total += weight(it)
		cum[i] = total
	}
	return weighted{cum: cum}
}

func (w weighted) pick(rng *rand.Rand) int {
	x := rng.Float64() * w.cum[len(w.cum)-1]
	i := sort.SearchFloat64s(w.cum, x)
	if i >= len(w.cum) { // x == total can only happen through rounding
		i = len(w.cum) - 1
	}
	return i
}
