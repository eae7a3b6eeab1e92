package reconcile

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"time"
)

// Window is a half-open time range [From, To) of the time the platform received a record
// (received_at, which every stage keeps as its output record's Kafka timestamp and the warehouse
// as fact_events.received_at; a dead letter's source_timestamp).
type Window struct{ From, To time.Time }

// Contains reports whether t is in w.
func (w Window) Contains(t time.Time) bool { return !t.Before(w.From) && t.Before(w.To) }

func (w Window) String() string {
	return w.From.UTC().Format(time.RFC3339) + " .. " + w.To.UTC().Format(time.RFC3339)
}

// Terms of the equation: Consumed = Written + Deduplicated + DeadLettered + Superseded + Stale
// + InFlight + Difference.
const (
	TermConsumed     = "consumed"
	TermWritten      = "written"
	TermDeduplicated = "deduplicated"
	TermDeadLettered = "dead_lettered"
	TermSuperseded   = "superseded"
	TermStale        = "stale"
	TermInFlight     = "in_flight"
)

// Terms are the right-hand terms in the order the report prints them.
var Terms = []string{TermWritten, TermDeduplicated, TermDeadLettered, TermSuperseded, TermStale, TermInFlight}

// Hop is one stage's equation: the records it consumed from its input topic in the window, and
// where each went. Every term is counted where it is durable: in a topic (read_committed), in
// the warehouse's tables, or in the dead-letter topic.
type Hop struct {
	Stage string
	// Input is the topic it consumed, or what it reads when that is not a topic (HTTP
	// requests, PostgreSQL), which the report cannot count: such a hop's outcomes are its
	// consumed records.
	Input string
	// Consumed counts the input records the stage's group had consumed (committed) when the
	// reconciliation started; InFlight the window's records it had not yet.
	Consumed, InFlight int64
	// Out counts the outcomes: records in its output topic(s) (Written for a Kafka stage), rows
	// in the warehouse, dead letters.
	Out map[string]int64
	// Differences lists each record that does not balance: consumed with no outcome, or with
	// two, or an outcome of nothing consumed.
	Differences []string
}

// Difference is Consumed minus the outcomes: positive = records lost, negative = records
// appearing from nowhere (or counted twice).
func (h *Hop) Difference() int64 {
	d := h.Consumed
	for _, t := range Terms {
		if t != TermInFlight {
			d -= h.Out[t]
		}
	}
	return d
}

// Report is the reconciliation of one source in one window.
type Report struct {
	Source string
	Window Window
	// Terms is the source's equation, end to end: Consumed (what entered the platform) and
	// the terminal outcomes, InFlight = records still in a topic between two stages.
	Terms map[string]int64
	Hops  []*Hop
}

// Difference is the source's difference: Consumed minus every other term. It is the sum of the
// hops' differences.
func (r *Report) Difference() int64 {
	d := r.Terms[TermConsumed]
	for _, t := range Terms {
		d -= r.Terms[t]
	}
	return d
}

// Settled reports whether no stage has records of the window still to consume: only then is a
// difference a loss (or a duplication) rather than records on their way.
func (r *Report) Settled() bool {
	for _, h := range r.Hops {
		if h.InFlight != 0 {
			return false
		}
	}
	return true
}

// Balanced reports whether the window is settled and balances at every hop.
func (r *Report) Balanced() bool {
	if !r.Settled() || r.Difference() != 0 {
		return false
	}
	for _, h := range r.Hops {
		if h.Difference() != 0 || len(h.Differences) > 0 {
			return false
		}
	}
	return true
}

// maxListed bounds the differences printed per hop.
const maxListed = 50

// Print writes the report: the source's equation, each hop's, and every difference.
func (r *Report) Print(w io.Writer) {
	status := "BALANCED"
	switch {
	case !r.Settled():
		status = "NOT SETTLED (records in flight)"
	case !r.Balanced():
		status = "DIFFERENCE"
	}
	fmt.Fprintf(w, "%s %s: %s\n", r.Source, r.Window, status)
	fmt.Fprintf(w, "  %s\n", equation(r.Terms[TermConsumed], r.Terms, r.Difference()))
	for _, h := range r.Hops {
		fmt.Fprintf(w, "  %-30s %-34s %s (in flight %d)\n", h.Stage, "from "+h.Input+":", equation(h.Consumed, h.Out, h.Difference()), h.InFlight)
		for i, d := range h.Differences {
			if i == maxListed {
				fmt.Fprintf(w, "      ... and %d more\n", len(h.Differences)-maxListed)
				break
			}
			fmt.Fprintf(w, "      %s\n", d)
		}
	}
}

func equation(consumed int64, terms map[string]int64, diff int64) string {
	var parts []string
	for _, t := range Terms {
		if t == TermInFlight {
			continue
		}
		if n := terms[t]; n != 0 || t == TermWritten {
			parts = append(parts, fmt.Sprintf("%s %d", t, n))
		}
	}
	if n := terms[TermInFlight]; n != 0 {
		parts = append(parts, fmt.Sprintf("in_flight %d", n))
	}
	return fmt.Sprintf("consumed %d = %s; difference %d", consumed, strings.Join(parts, " + "), diff)
}

// sortedKeys returns m's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
