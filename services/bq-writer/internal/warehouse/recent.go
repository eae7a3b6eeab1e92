package warehouse

import (
	"hash/maphash"
	"math"
	"time"
)

// recentIDs is an in-memory index of the event_ids stored in fact_events with an event_timestamp
// at or after coveredFrom, with their event_timestamp and received_at, so that the dedup check of
// live traffic costs a map lookup instead of a scan of every row stored within the window (at
// 20,000 events/s a ±1m window holds 2.4M rows; scanning them took ~100ms per batch on the 2-core
// target). received_at lets the check settle the usual duplicate, a resend received after the
// kept copy, without reading the tables (see lookup).
//
// Invariant: every row in fact_events with event_timestamp >= coveredFrom has an entry in the
// index that matches it. It holds because the index is loaded from the table inside the writer's
// transaction, changes are applied only after their transaction commits (rows added to
// fact_events are added, rows moved out to the duplicates table removed), and bq-writer is the
// table's only writer (DuckDB locks the file to one process; Query cannot write). Rows whose window
// reaches below coveredFrom (late events, or everything before the index is loaded) are checked by
// the scan instead. An entry may also match a row that is no longer kept (see add): a false
// positive only sends the event_id to the exact check against the tables.
//
// Keys are 128-bit hashes of the event_id (two maphash seeds) rather than the strings, to halve the
// memory; the chance that two different ids of the index collide is about n²/2¹²⁹ (1e-26 for 4M
// ids), far below any other failure mode, so a hit is treated as exact.
type recentIDs struct {
	seeds   [2]maphash.Seed
	window  time.Duration
	slack   time.Duration // how far behind the newest event a row may be and still be checked here
	width   int64         // bucket width in µs
	buckets map[int64]map[idHash]recentEntry
	size    int
	max     int

	loaded      bool
	coveredFrom time.Time
	newest      time.Time // newest event_timestamp added
}

type idHash [2]uint64

// recentEntry packs a kept row's event_timestamp and received_at into 8 bytes, so the index costs
// what it did with the timestamp alone (~47 bytes an id): the high 32 bits are the event_timestamp
// in µs from the start of its bucket (buckets are at most maxBucketWidth wide), the low 32 bits
// received_at minus event_timestamp in ms, rounded up, or unknownRecv when that does not fit.
// Rounding up keeps "received before" exact: a kept row whose rounded-up receipt is still before
// a new row's was certainly received first; within a millisecond the tables decide.
type recentEntry uint64

const (
	// ambiguous marks an id with several kept rows in one bucket (kept copies more than the
	// window apart can share a bucket when the window is under one second, the narrowest bucket): it is near any row.
	ambiguous recentEntry = math.MaxUint64
	// unknownRecv is the receipt of a row received more than ~24 days from its event_timestamp.
	unknownRecv = math.MinInt32
	// maxBucketWidth keeps a bucket offset below 2³¹ µs (~36 minutes).
	maxBucketWidth = time.Duration(math.MaxInt32) * time.Microsecond
)

func (r *recentIDs) entry(b, ts, recv int64) recentEntry {
	ms := -floorDiv(ts-recv, 1000) // ceiling of (recv-ts)/1000
	d := int32(unknownRecv)
	if ms > math.MinInt32 && ms <= math.MaxInt32 {
		d = int32(ms)
	}
	return recentEntry(uint64(ts-b*r.width)<<32 | uint64(uint32(d)))
}

// decode returns the entry's event_timestamp and an upper bound of its received_at, in µs
// (math.MaxInt64 when unknown).
func (r *recentIDs) decode(b int64, e recentEntry) (ts, recvUpper int64) {
	ts = b*r.width + int64(e>>32)
	d := int32(uint32(e))
	if d == unknownRecv {
		return ts, math.MaxInt64
	}
	return ts, ts + int64(d)*1000
}

// neighbour is what a row has among the kept rows of its event_id within the window.
type neighbour uint8

const (
	noNeighbour neighbour = iota // no kept row within the window
	keptNear                     // one that may come after the row in dedup order
	keptBefore                   // one that comes before the row in dedup order
)

// nearness classifies a kept row (event_timestamp kts, received_at krecv or an upper bound of
// it) against a batch row (ts, recv), all in µs, for a window of win µs. Before means earlier in
// event_timestamp, or equal and received earlier: then the batch row is certainly later in dedup
// order. Equal in both, the other business columns decide, which only the tables hold: near.
func nearness(kts, krecv, ts, recv, win int64) neighbour {
	switch {
	case abs(kts-ts) > win:
		return noNeighbour
	case kts < ts || (kts == ts && krecv < recv):
		return keptBefore
	}
	return keptNear
}

// recentSlack is how late (behind the newest stored event_timestamp) a row may arrive and still be
// checked in memory. Later rows take the scan.
const recentSlack = 30 * time.Second

// maxClockSkew bounds how far ahead of the wall clock an event_timestamp may move the index: a
// client with a clock set in the future must not push live traffic out of the covered range.
const maxClockSkew = time.Minute

func newRecentIDs(window time.Duration, maxEntries int) *recentIDs {
	width := min(max(window/2, time.Second), maxBucketWidth)
	return &recentIDs{
		seeds:   [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()},
		window:  window,
		slack:   recentSlack,
		width:   width.Microseconds(),
		buckets: make(map[int64]map[idHash]recentEntry),
		max:     maxEntries,
	}
}

func (r *recentIDs) hash(id string) idHash {
	return idHash{maphash.String(r.seeds[0], id), maphash.String(r.seeds[1], id)}
}

// horizon is how much history behind the newest event the index keeps.
func (r *recentIDs) horizon() time.Duration { return r.window + r.slack }

// covers reports whether every stored row within the window of ts is in the index.
func (r *recentIDs) covers(ts time.Time) bool {
	return r.loaded && !ts.Add(-r.window).Before(r.coveredFrom)
}

// lookup returns the strongest neighbour (keptBefore over keptNear over noNeighbour) of a row
// of id stamped ts, received recv, among the indexed rows. Only meaningful when covers(ts).
func (r *recentIDs) lookup(id string, ts, recv time.Time) neighbour {
	h := r.hash(id)
	t, rc := ts.UnixMicro(), recv.UnixMicro()
	w := r.window.Microseconds()
	best := noNeighbour
	for b := floorDiv(t-w, r.width); b <= floorDiv(t+w, r.width); b++ {
		e, ok := r.buckets[b][h]
		if !ok {
			continue
		}
		n := keptNear
		if e != ambiguous {
			kts, krecv := r.decode(b, e)
			n = nearness(kts, krecv, t, rc, w)
		}
		best = max(best, n)
	}
	return best
}

// add records a committed row of fact_events. Rows below coveredFrom are not needed (and would
// break nothing).
func (r *recentIDs) add(id string, ts, recv time.Time) {
	if ts.Before(r.coveredFrom) {
		return
	}
	t := ts.UnixMicro()
	b := floorDiv(t, r.width)
	e := r.entry(b, t, recv.UnixMicro())
	m := r.buckets[b]
	if m == nil {
		m = make(map[idHash]recentEntry)
		r.buckets[b] = m
	}
	h := r.hash(id)
	switch old, ok := m[h]; {
	case !ok:
		r.size++
		m[h] = e
	case old != e:
		m[h] = ambiguous
	}
	if ts.After(r.newest) {
		r.newest = ts
	}
}

// remove forgets a row moved out of fact_events. An ambiguous entry stays: it may stand for
// another row of the id.
func (r *recentIDs) remove(id string, ts, recv time.Time) {
	t := ts.UnixMicro()
	b := floorDiv(t, r.width)
	e := r.entry(b, t, recv.UnixMicro())
	m := r.buckets[b]
	h := r.hash(id)
	if old, ok := m[h]; ok && old == e {
		delete(m, h)
		r.size--
	}
}

// advance moves coveredFrom up to newest-horizon (newest clamped to the wall clock plus skew) and
// drops the buckets wholly below it; then, while the index is over its size cap, drops the oldest
// bucket and moves coveredFrom past it. Rows that lose coverage fall back to the scan. (Rows
// stamped in the future stay until the cap evicts older buckets before them: an edge case that
// costs scans, never correctness.)
func (r *recentIDs) advance(now time.Time) {
	newest := minTime(r.newest, now.Add(maxClockSkew))
	if from := newest.Add(-r.horizon()); from.After(r.coveredFrom) {
		r.coveredFrom = from
	}
	cut := floorDiv(r.coveredFrom.UnixMicro(), r.width) // buckets < cut end at or before coveredFrom
	for b, m := range r.buckets {
		if b < cut {
			r.size -= len(m)
			delete(r.buckets, b)
		}
	}
	for r.size > r.max && len(r.buckets) > 0 {
		oldest := int64(0)
		first := true
		for b := range r.buckets {
			if first || b < oldest {
				oldest, first = b, false
			}
		}
		r.size -= len(r.buckets[oldest])
		delete(r.buckets, oldest)
		r.coveredFrom = time.UnixMicro((oldest + 1) * r.width)
	}
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

func abs(v int64) int64 {
	if v < 0 {
		return -v
	}
	return v
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
