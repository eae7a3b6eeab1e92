package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// userHZ is the unit of the times in /proc/<pid>/stat and /proc/stat. Linux
// has exported 100 to user space on every architecture for decades; reading
// sysconf(_SC_CLK_TCK) would need cgo for a constant.
const userHZ = 100

// procStat is what the bench needs from one /proc/<pid>/stat line.
type procStat struct {
	pid, ppid int
	comm      string
	ticks     uint64 // utime + stime: the process's own CPU, all threads
	reaped    uint64 // cutime + cstime: CPU of children it has waited for
	start     uint64 // starttime, tells a reused pid from the process we saw before
}

// parseStat parses /proc/<pid>/stat. The command name is in parentheses and
// may itself contain spaces and ')', so the fields are counted from the last
// ')' (proc_pid_stat(5)).
func parseStat(b []byte) (procStat, error) {
	open, end := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if open < 1 || end < open {
		return procStat{}, fmt.Errorf("stat %q: no (comm)", truncate(b))
	}
	var p procStat
	var err error
	if p.pid, err = strconv.Atoi(string(bytes.TrimSpace(b[:open]))); err != nil {
		return procStat{}, fmt.Errorf("stat %q: pid: %w", truncate(b), err)
	}
	p.comm = string(b[open+1 : end])
	// f[0] is field 3 (state): field n of the man page is f[n-3].
	f := strings.Fields(string(b[end+1:]))
	if len(f) < 20 {
		return procStat{}, fmt.Errorf("stat %q: %d fields after the command name, want at least 20", truncate(b), len(f))
	}
	num := func(field int) uint64 {
		if err != nil {
			return 0
		}
		var v uint64
		if v, err = strconv.ParseUint(f[field-3], 10, 64); err != nil {
			err = fmt.Errorf("stat %q: field %d: %w", truncate(b), field, err)
		}
		return v
	}
	p.ppid = int(num(4))
	p.ticks = num(14) + num(15)
	p.reaped = num(16) + num(17)
	p.start = num(22)
	if err != nil {
		return procStat{}, err
	}
	return p, nil
}

func truncate(b []byte) string {
	if len(b) > 80 {
		return string(b[:80]) + "…"
	}
	return string(b)
}

// snapshot is every process's CPU and the machine's, at one instant.
type snapshot struct {
	at    time.Time
	procs map[int]procStat
	// busy and total CPU ticks of the whole machine, all cores, from /proc/stat.
	busy, total uint64
}

// readSnapshot reads /proc/stat and every /proc/<pid>/stat under procRoot.
// Processes that exit while it reads are skipped.
func readSnapshot(procRoot string) (snapshot, error) {
	s := snapshot{at: time.Now(), procs: map[int]procStat{}}
	b, err := os.ReadFile(filepath.Join(procRoot, "stat"))
	if err != nil {
		return snapshot{}, err
	}
	if s.busy, s.total, err = parseMachine(b); err != nil {
		return snapshot{}, err
	}
	entries, err := os.ReadDir(procRoot)
	if err != nil {
		return snapshot{}, err
	}
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join(procRoot, e.Name(), "stat"))
		if err != nil {
			continue // exited meanwhile
		}
		p, err := parseStat(b)
		if err != nil {
			return snapshot{}, err
		}
		s.procs[p.pid] = p
	}
	return s, nil
}

// parseMachine reads the aggregate "cpu" line of /proc/stat: user nice system
// idle iowait irq softirq steal (guest time is already inside user and nice).
// Busy is everything but idle and iowait.
func parseMachine(b []byte) (busy, total uint64, err error) {
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 9 || f[0] != "cpu" {
		return 0, 0, fmt.Errorf("/proc/stat: first line %q is not the cpu total", truncate(line))
	}
	for i, v := range f[1:9] {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("/proc/stat: cpu field %d: %w", i+1, err)
		}
		total += n
		if i != 3 && i != 4 { // idle, iowait
			busy += n
		}
	}
	return busy, total, nil
}

// tree returns pid and all its descendants in s.
func (s snapshot) tree(pid int) []int {
	children := map[int][]int{}
	for _, p := range s.procs {
		children[p.ppid] = append(children[p.ppid], p.pid)
	}
	var out []int
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		if _, ok := s.procs[p]; !ok {
			continue
		}
		out = append(out, p)
		queue = append(queue, children[p]...)
	}
	return out
}

// treeTicks is the CPU of a process tree: each member's own time plus what
// it has reaped from children that exited. The difference of two such sums is
// exactly the tree's CPU in between, even when children (PostgreSQL backends,
// say) come and go: a child that exits moves its time into its parent's
// reaped counter.
func (s snapshot) treeTicks(pid int) uint64 {
	var t uint64
	for _, p := range s.tree(pid) {
		t += s.procs[p].ticks + s.procs[p].reaped
	}
	return t
}

// rssKB sums VmRSS over the given processes (shared pages count once per
// process, as top shows them). Unreadable processes count zero.
func rssKB(procRoot string, pids []int) int64 {
	var total int64
	for _, pid := range pids {
		f, err := os.Open(filepath.Join(procRoot, strconv.Itoa(pid), "status"))
		if err != nil {
			continue
		}
		total += parseVmRSS(f)
		_ = f.Close()
	}
	return total
}

// parseVmRSS returns the VmRSS of a /proc/<pid>/status in kB, 0 if absent
// (kernel threads, zombies).
func parseVmRSS(r io.Reader) int64 {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			fs := strings.Fields(v)
			if len(fs) == 2 && fs[1] == "kB" {
				n, _ := strconv.ParseInt(fs[0], 10, 64)
				return n
			}
		}
	}
	return 0
}
