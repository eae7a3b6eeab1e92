package warehouse

import (
	"cmp"
	"slices"
	"strings"
	"time"
)

// Source duplicates: the rule, independent of the backend.
//
// The copies of one event_id are put in dedup order (compareCopies): event_timestamp, then
// received_at, then the other business columns in table order. Walking them in that order, a copy
// is kept when its event_timestamp is more than the window after that of the last kept copy;
// every other copy is a duplicate of that last kept copy (within the window of it). Kept copies
// go to fact_events, duplicates to fact_events_duplicates, so nothing is dropped unseen.
//
// The kept set is a function of the set of copies alone: the order they arrive in, the batches
// they are cut into and their partitions and offsets do not enter it (offsets of different
// partitions say nothing about which copy was produced first). Source coordinates and load time
// are left out of the order: copies equal in everything else are the same business row, and the
// one already stored stays.
//
// Incremental: the walk starts afresh after every gap wider than the window between consecutive
// copies (the copy after such a gap is kept whatever came before it), so the decisions within one
// component — copies linked by gaps of at most the window — depend on that component only. A new
// copy changes at most the component it joins; Write recomputes exactly those components from
// both tables and moves stored copies between them when the choice changes (a preferred copy that
// arrives after a worse one replaces it; a duplicate whose kept copy is replaced may become kept).
//
// Timestamps are compared in microseconds, the precision the warehouse stores, so that a copy
// compares the same way in a batch and after a round trip through the table.

// copyOrigin says where a copy of an event_id is.
type copyOrigin uint8

const (
	storedKept    copyOrigin = iota // a row of fact_events
	storedDropped                   // a row of fact_events_duplicates
	inBatch                         // a row of the batch being written
)

// dedupCopy is one copy of an event_id taking part in the decision.
type dedupCopy struct {
	row    *EventRow
	origin copyOrigin
	// ref identifies the copy: for stored copies the backend's row reference (DuckDB's rowid),
	// for batch copies the index into Batch.Events.
	ref  int64
	keep bool // the decision
}

// compareCopies is the dedup order of two copies of one event_id. Only business columns count:
// not the source coordinates, not the load time. NULL sorts before any value; strings compare
// bytewise.
func compareCopies(a, b *EventRow) int {
	ea, eb := &a.ClickEvent, &b.ClickEvent
	if c := cmp.Compare(ea.EventTimestamp.UnixMicro(), eb.EventTimestamp.UnixMicro()); c != 0 {
		return c
	}
	if c := cmp.Compare(ea.ReceivedAt.UnixMicro(), eb.ReceivedAt.UnixMicro()); c != 0 {
		return c
	}
	if c := strings.Compare(ea.EventType, eb.EventType); c != 0 {
		return c
	}
	for _, f := range [...][2]*string{
		{ea.UserID, eb.UserID}, {ea.AnonymousID, eb.AnonymousID}, {&ea.SessionID, &eb.SessionID},
		{&ea.PageURL, &eb.PageURL}, {ea.Referrer, eb.Referrer}, {ea.UserAgent, eb.UserAgent},
		{ea.DeviceType, eb.DeviceType}, {ea.Os, eb.Os}, {ea.Browser, eb.Browser},
		{ea.Country, eb.Country}, {ea.Region, eb.Region}, {ea.City, eb.City},
		{ea.ProductID, eb.ProductID}, {ea.SearchQuery, eb.SearchQuery},
	} {
		if c := compareOpt(f[0], f[1], strings.Compare); c != 0 {
			return c
		}
	}
	if c := compareOpt(ea.Quantity, eb.Quantity, cmp.Compare[int]); c != 0 {
		return c
	}
	if c := compareOpt(ea.PriceMinor, eb.PriceMinor, cmp.Compare[int64]); c != 0 {
		return c
	}
	for _, f := range [...][2]*string{{ea.Currency, eb.Currency}, {ea.OrderID, eb.OrderID}, {&ea.Source, &eb.Source},
		{ea.ClientIP, eb.ClientIP}, {ea.CollectorSource, eb.CollectorSource}} {
		if c := compareOpt(f[0], f[1], strings.Compare); c != 0 {
			return c
		}
	}
	// trace_id, dq_warnings: "" is stored as NULL, which sorts first, as "" does.
	if c := strings.Compare(a.TraceID, b.TraceID); c != 0 {
		return c
	}
	return strings.Compare(a.DQWarnings, b.DQWarnings)
}

// compareCoords orders two rows by their Kafka source coordinates.
func compareCoords(a, b *EventRow) int {
	if c := strings.Compare(a.SourceTopic, b.SourceTopic); c != 0 {
		return c
	}
	if c := cmp.Compare(a.SourcePartition, b.SourcePartition); c != 0 {
		return c
	}
	return cmp.Compare(a.SourceOffset, b.SourceOffset)
}

func compareOpt[T any](a, b *T, compare func(T, T) int) int {
	switch {
	case a == nil && b == nil:
		return 0
	case a == nil:
		return -1
	case b == nil:
		return 1
	}
	return compare(*a, *b)
}

// sortCopies puts copies in dedup order. Copies equal in it are the same business row; among
// them the lowest source coordinates come first (compareCoords), so the copy kept does not depend
// on arrival order or batching and is the one BigQuery's prod.fact_events shows; a copy that
// arrives later from lower coordinates replaces the stored one (WriteResult.Replaced). Copies
// equal in that too (a replay of one record) keep the stored kept copy first (nothing moves),
// then stored duplicates, then batch copies in batch order.
func sortCopies(copies []dedupCopy) {
	slices.SortStableFunc(copies, func(a, b dedupCopy) int {
		if c := compareCopies(a.row, b.row); c != 0 {
			return c
		}
		if c := compareCoords(a.row, b.row); c != 0 {
			return c
		}
		if c := cmp.Compare(a.origin, b.origin); c != 0 {
			return c
		}
		return cmp.Compare(a.ref, b.ref)
	})
}

// sweep decides the copies of one component (or any run of copies in dedup order that starts
// at a component's first copy): a copy is kept when it is more than w after the last kept one.
func sweep(copies []dedupCopy, w time.Duration) {
	win := w.Microseconds()
	var last int64
	for i := range copies {
		t := copies[i].row.EventTimestamp.UnixMicro()
		copies[i].keep = i == 0 || t-last > win
		if copies[i].keep {
			last = t
		}
	}
}

// span is an inclusive range of event_timestamps.
type span struct{ from, to time.Time }

// coverage is the union of the spans of event_timestamps whose stored copies of one event_id
// have been read.
type coverage []span

// contains reports whether s lies within the union of c.
func (c coverage) contains(s span) bool {
	merged := slices.Clone(c)
	slices.SortFunc(merged, func(a, b span) int { return a.from.Compare(b.from) })
	reach := s.from // everything in [s.from, reach) is covered
	for _, m := range merged {
		if m.from.After(reach) {
			break
		}
		if !m.to.Before(reach) {
			if !m.to.Before(s.to) {
				return true
			}
			reach = m.to.Add(time.Microsecond)
		}
	}
	return false
}

// decide sorts the copies of one event_id (stored ones read from the tables, plus the batch's)
// and decides every component that holds a batch copy. A component is only decided when every
// stored copy that could join it has been read: its span widened by w on both sides must be in
// covered. Otherwise decide returns the spans still to read, and the caller reads them and calls
// again. Components without batch copies are left alone: they are decided already, and may have
// been read only in part.
func decide(copies []dedupCopy, w time.Duration, covered coverage) (decided []dedupCopy, missing []span) {
	sortCopies(copies)
	win := w.Microseconds()
	for start := 0; start < len(copies); {
		end := start + 1
		for end < len(copies) && copies[end].row.EventTimestamp.UnixMicro()-copies[end-1].row.EventTimestamp.UnixMicro() <= win {
			end++
		}
		comp := copies[start:end]
		start = end
		if !slices.ContainsFunc(comp, func(c dedupCopy) bool { return c.origin == inBatch }) {
			continue
		}
		need := span{
			time.UnixMicro(comp[0].row.EventTimestamp.UnixMicro() - win),
			time.UnixMicro(comp[len(comp)-1].row.EventTimestamp.UnixMicro() + win),
		}
		if !covered.contains(need) {
			missing = append(missing, need)
			continue
		}
		sweep(comp, w)
		decided = append(decided, comp...)
	}
	if len(missing) > 0 {
		return nil, missing
	}
	return decided, nil
}
