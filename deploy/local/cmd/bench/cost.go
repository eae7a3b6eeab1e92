package main

import (
	"fmt"
	"io"
	"runtime"
	"strings"
)

// watched is a process whose CPU a phase reports.
type watched struct {
	name string
	pid  int
	// self counts only the process's own time: the bench's children are the
	// services, which have rows of their own. Otherwise the whole process
	// tree counts (PostgreSQL's backends, a wrapper's program).
	self bool
	how  string // how it was found, for the reader
}

// costRow is one process's CPU over a phase.
type costRow struct {
	name, main string // main: the busiest process of the tree, "comm pid N"
	procs      int    // processes in the tree at the end
	cpuSeconds float64
	cores      float64 // cpuSeconds / wall seconds
	rssKB      int64
	how        string
	err        error
}

// cost is the CPU of every watched process between two snapshots.
type cost struct {
	wall         float64 // seconds between the snapshots
	cpus         int
	rows         []costRow
	machineCores float64 // busy cores of the whole machine, every process
}

// measure computes each watched process's CPU between start and end. rss
// reads the resident memory of a set of pids at the end (rssKB in the bench).
func measure(start, end snapshot, ws []watched, cpus int, rss func([]int) int64) cost {
	c := cost{wall: end.at.Sub(start.at).Seconds(), cpus: cpus}
	if c.wall <= 0 {
		c.wall = 1e-9
	}
	c.machineCores = float64(end.busy-start.busy) / userHZ / c.wall
	for _, w := range ws {
		r := costRow{name: w.name, how: w.how}
		p0, ok0 := start.procs[w.pid]
		p1, ok1 := end.procs[w.pid]
		switch {
		case !ok0 || !ok1:
			r.err = fmt.Errorf("pid %d exited during the phase", w.pid)
		case p0.start != p1.start:
			r.err = fmt.Errorf("pid %d was restarted during the phase", w.pid)
		}
		if r.err != nil {
			c.rows = append(c.rows, r)
			continue
		}
		members := []int{w.pid}
		var before, after uint64
		if w.self {
			before, after = p0.ticks, p1.ticks
		} else {
			members = end.tree(w.pid)
			before, after = start.treeTicks(w.pid), end.treeTicks(w.pid)
		}
		if after < before { // a child re-parented away mid-phase took its time along
			after = before
		}
		r.procs = len(members)
		r.cpuSeconds = float64(after-before) / userHZ
		r.cores = r.cpuSeconds / c.wall
		busiest, most := w.pid, -1.0
		for _, m := range members {
			d := float64(end.procs[m].ticks)
			if q, ok := start.procs[m]; ok && q.start == end.procs[m].start {
				d -= float64(q.ticks)
			}
			if d > most {
				busiest, most = m, d
			}
		}
		r.main = fmt.Sprintf("%s pid %d", end.procs[busiest].comm, busiest)
		if rss != nil {
			r.rssKB = rss(members)
		}
		c.rows = append(c.rows, r)
	}
	return c
}

// total is the cores used by the listed processes.
func (c cost) total() float64 {
	var t float64
	for _, r := range c.rows {
		t += r.cores
	}
	return t
}

// print writes the table: cores (CPU seconds per wall second), share of the
// machine, CPU seconds, resident memory, and which process it is.
func (c cost) print(w io.Writer, title string) {
	fmt.Fprintf(w, "  CPU, %s: %.1f s wall, %d cores (from /proc)\n", title, c.wall, c.cpus)
	fmt.Fprintf(w, "    %-20s %6s %8s %8s %9s  %s\n", "process", "cores", "machine", "cpu s", "rss", "which")
	for _, r := range c.rows {
		if r.err != nil {
			fmt.Fprintf(w, "    %-20s %6s %8s %8s %9s  %v\n", r.name, "?", "?", "?", "?", r.err)
			continue
		}
		which := r.main
		if r.procs > 1 {
			which += fmt.Sprintf(" +%d more", r.procs-1)
		}
		if r.how != "" {
			which += "; " + r.how
		}
		fmt.Fprintf(w, "    %-20s %6.2f %7.1f%% %8.1f %9s  %s\n", r.name, r.cores, 100*r.cores/float64(c.cpus), r.cpuSeconds, mb(r.rssKB), which)
	}
	t := c.total()
	fmt.Fprintf(w, "    %-20s %6.2f %7.1f%%\n", "total", t, 100*t/float64(c.cpus))
	fmt.Fprintf(w, "    %-20s %6.2f %7.1f%%           %9s  every process on the machine, not listed ones too (%.2f cores)\n",
		"machine busy", c.machineCores, 100*c.machineCores/float64(c.cpus), "", max(c.machineCores-t, 0))
}

func mb(kb int64) string {
	if kb <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f MB", float64(kb)/1024)
}

// figures are the phase's CPU figures for -json, prefixed by phase.
func (c cost) figures(prefix string) []figure {
	var out []figure
	for _, r := range c.rows {
		if r.err == nil {
			out = append(out, figure{Name: prefix + "cpu " + r.name, Unit: "cores", Value: r.cores, Lower: true})
		}
	}
	return append(out,
		figure{Name: prefix + "cpu total", Unit: "cores", Value: c.total(), Lower: true},
		figure{Name: prefix + "machine busy", Unit: "cores", Value: c.machineCores, Lower: true})
}

// numCPU is the machine's cores the bench may use.
func numCPU() int { return runtime.NumCPU() }

// label of a watched list, for one line: "ingest-clickstream 1234, ...".
func describe(ws []watched) string {
	var parts []string
	for _, w := range ws {
		parts = append(parts, fmt.Sprintf("%s %d", w.name, w.pid))
	}
	return strings.Join(parts, ", ")
}
