package storefront

import (
	"math/rand/v2"
	"slices"
	"sync"
	"time"
)

// Fault kinds the orders API can inject.
const (
	FaultRateLimit   = "rate_limit"   // 429 with Retry-After
	FaultServerError = "server_error" // 500
	FaultUnavailable = "unavailable"  // 503 with Retry-After
	FaultSlow        = "slow"         // the normal answer, after a delay
	FaultDrop        = "drop"         // 200, half the body, then the connection is cut
	FaultRepeat      = "repeat"       // a page_token page that starts with the previous page's last order
)

// FaultKinds lists every fault kind.
func FaultKinds() []string {
	return []string{FaultRateLimit, FaultServerError, FaultUnavailable, FaultSlow, FaultDrop, FaultRepeat}
}

// Defaults for Faults.
const (
	DefaultFaultRate  = 0.02
	DefaultSlowDelay  = 3 * time.Second
	DefaultRetryAfter = 2 // seconds
)

// Faults decides which orders API requests fail and how: first the queued
// faults, one per request, in order (for tests and operators: POST
// /v1/admin/faults), then at random with Rate. It is safe for concurrent use.
type Faults struct {
	mu         sync.Mutex
	rng        *rand.Rand
	rate       float64
	kinds      []string
	queue      []string
	slow       time.Duration
	retryAfter int
	served     map[string]int
	aborted    int
}

// NewFaults returns faults at the given random rate over kinds (all when
// empty); a negative rate means none.
func NewFaults(seed uint64, rate float64, kinds []string, slow time.Duration, retryAfter int) *Faults {
	if len(kinds) == 0 {
		kinds = FaultKinds()
	}
	if slow <= 0 {
		slow = DefaultSlowDelay
	}
	if retryAfter <= 0 {
		retryAfter = DefaultRetryAfter
	}
	return &Faults{
		rng: rand.New(rand.NewPCG(seed, 0xfa17)), rate: max(rate, 0), kinds: slices.Clone(kinds),
		slow: slow, retryAfter: retryAfter, served: map[string]int{},
	}
}

// Queue makes the next requests fail with these kinds, one each.
func (f *Faults) Queue(kinds ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.queue = append(f.queue, kinds...)
}

// SetRate changes the random fault rate (0 turns random faults off).
func (f *Faults) SetRate(rate float64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rate = max(rate, 0)
}

// Status is what GET /v1/admin/faults shows.
type FaultStatus struct {
	Rate   float64        `json:"rate"`
	Kinds  []string       `json:"kinds"`
	Queued []string       `json:"queued"`
	Served map[string]int `json:"served"`
	// Aborted counts slow answers whose client went away while the delay
	// held them (a timeout, or a poller killed in the middle of the request).
	Aborted int `json:"aborted"`
}

func (f *Faults) Status() FaultStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	served := make(map[string]int, len(f.served))
	for k, v := range f.served {
		served[k] = v
	}
	return FaultStatus{Rate: f.rate, Kinds: slices.Clone(f.kinds), Queued: append([]string{}, f.queue...), Served: served, Aborted: f.aborted}
}

// abort counts a slow answer whose client went away while it was held.
func (f *Faults) abort() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.aborted++
}

// next picks the fault for a request ("" for none). A repeat needs a
// previous page, so without a page token it is not drawn (a queued one waits).
func (f *Faults) next(paged bool) string {
	if f == nil {
		return ""
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var k string
	// The first queued fault this request can take: a repeat needs a paged
	// request and waits for one, without holding up the faults queued after it.
	i := slices.IndexFunc(f.queue, func(q string) bool { return q != FaultRepeat || paged })
	switch {
	case i >= 0:
		k = f.queue[i] // read before Delete, which clears the vacated slot
		f.queue = slices.Delete(f.queue, i, i+1)
	case len(f.queue) == 0 && f.rate > 0 && f.rng.Float64() < f.rate:
		k = f.kinds[f.rng.IntN(len(f.kinds))]
		if k == FaultRepeat && !paged {
			k = ""
		}
	}
	if k != "" {
		f.served[k]++
	}
	return k
}
