package main

import (
	"bytes"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/ecomstream/platform/deploy/local/stacktest"
)

// stackRunDirEnv overrides where the stack keeps its state (default
// <repo>/.run); its pid files are read from <dir>/*/*.pid.
const stackRunDirEnv = "STACK_RUN_DIR"

// endpoint is a stack component the bench talks to, and how to recognise its
// process when no pid file names it.
type endpoint struct {
	name    string
	addr    string   // host:port it listens on
	needles []string // command-line fragments, the last resort
}

func stackEndpoints(eps stacktest.Endpoints) []endpoint {
	var out []endpoint
	for _, b := range eps.KafkaBrokers {
		out = append(out, endpoint{name: "kafka", addr: b, needles: []string{"kafka.Kafka"}})
	}
	if u, err := url.Parse(eps.SchemaRegistryURL); err == nil {
		out = append(out, endpoint{name: "registry", addr: hostPort(u, "80"), needles: []string{"apicurio"}})
	}
	if u, err := url.Parse(eps.DatabaseURL); err == nil {
		out = append(out, endpoint{name: "postgres", addr: hostPort(u, "5432"), needles: []string{"bin/postgres "}})
	}
	return out
}

func hostPort(u *url.URL, defPort string) string {
	if u.Port() == "" {
		return net.JoinHostPort(u.Hostname(), defPort)
	}
	return u.Host
}

// stackProcesses finds the processes of the local stack, in this order of
// trust: the stack's pid files (every component it starts, under runDir);
// then, for an endpoint the bench uses that no pid file's process tree
// covers, the process listening on its port (exact even when engineers run
// private brokers beside the shared one); then a unique command-line match.
// Each result is measured as a process tree, so a pid file that names a
// wrapper still counts the program it started. notes say what was not found.
func stackProcesses(procRoot, runDir string, eps []endpoint, s snapshot) (found []watched, notes []string) {
	covered := func(pid int) bool {
		for _, w := range found {
			if slices.Contains(s.tree(w.pid), pid) {
				return true
			}
		}
		return false
	}
	files, _ := filepath.Glob(filepath.Join(runDir, "*", "*.pid")) // pids/kafka.pid today
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		line, _, _ := strings.Cut(string(b), "\n")
		pid, err := strconv.Atoi(strings.TrimSpace(line))
		if err != nil {
			notes = append(notes, fmt.Sprintf("%s: not a pid", f))
			continue
		}
		if _, ok := s.procs[pid]; !ok {
			notes = append(notes, fmt.Sprintf("%s: pid %d is not running", f, pid))
			continue
		}
		if covered(pid) {
			continue
		}
		found = append(found, watched{name: strings.TrimSuffix(filepath.Base(f), ".pid"), pid: pid, how: "pid file " + f})
	}

	owners := listeners(procRoot, eps)
	for _, e := range eps {
		pid, how := owners[e.addr], "listening on "+e.addr
		if pid == 0 {
			pid, how = byCommandLine(procRoot, s, e.needles), "command line"
		}
		switch {
		case pid == 0:
			notes = append(notes, fmt.Sprintf("%s (%s): no process found on this machine", e.name, e.addr))
		case !covered(pid):
			found = append(found, watched{name: e.name, pid: pid, how: how})
		}
	}
	return found, notes
}

// listeners maps each endpoint's address to the pid holding its listening
// socket: the socket's inode from /proc/net/tcp{,6}, then the process with a
// file descriptor on it. Endpoints on other hosts, or sockets of processes
// this user may not inspect, are left out.
func listeners(procRoot string, eps []endpoint) map[string]int {
	inodes := map[string]string{} // socket inode -> endpoint address
	for _, table := range []string{"net/tcp", "net/tcp6"} {
		b, err := os.ReadFile(filepath.Join(procRoot, table))
		if err != nil {
			continue
		}
		for _, l := range parseListen(b) {
			for _, e := range eps {
				host, port, err := net.SplitHostPort(e.addr)
				if err == nil && isLocal(host) && port == strconv.Itoa(l.port) {
					inodes[l.inode] = e.addr
				}
			}
		}
	}
	out := map[string]int{}
	if len(inodes) == 0 {
		return out
	}
	fds, _ := filepath.Glob(filepath.Join(procRoot, "[0-9]*", "fd", "*"))
	for _, fd := range fds {
		target, err := os.Readlink(fd)
		if err != nil || !strings.HasPrefix(target, "socket:[") {
			continue
		}
		addr, ok := inodes[strings.TrimSuffix(strings.TrimPrefix(target, "socket:["), "]")]
		if !ok || out[addr] != 0 {
			continue
		}
		if pid, err := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(fd)))); err == nil {
			out[addr] = pid
		}
	}
	return out
}

func isLocal(host string) bool {
	if host == "localhost" || host == "" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && (ip.IsLoopback() || ip.IsUnspecified())
}

type listenSocket struct {
	port  int
	inode string
}

// parseListen returns the listening sockets (state 0A) of a /proc/net/tcp or
// tcp6 table: "sl local_address rem_address st ... uid timeout inode ...",
// the local address as hex IP:port.
func parseListen(b []byte) []listenSocket {
	var out []listenSocket
	for i, line := range bytes.Split(b, []byte("\n")) {
		f := strings.Fields(string(line))
		if i == 0 || len(f) < 10 || f[3] != "0A" {
			continue
		}
		_, hexPort, ok := strings.Cut(f[1], ":")
		port, err := strconv.ParseUint(hexPort, 16, 16)
		if !ok || err != nil {
			continue
		}
		out = append(out, listenSocket{port: int(port), inode: f[9]})
	}
	return out
}

// byCommandLine returns the one process whose command line contains a
// needle and whose parent does not (the main process, not its workers), or 0
// when none or several match: private brokers of other tests look the same.
func byCommandLine(procRoot string, s snapshot, needles []string) int {
	match := func(pid int) bool {
		b, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(pid), "cmdline"))
		if err != nil {
			return false
		}
		cmd := string(bytes.ReplaceAll(b, []byte{0}, []byte{' '}))
		return slices.ContainsFunc(needles, func(n string) bool { return strings.Contains(cmd, n) })
	}
	var hits []int
	for pid, p := range s.procs {
		if match(pid) && !match(p.ppid) {
			hits = append(hits, pid)
		}
	}
	if len(hits) != 1 {
		return 0
	}
	return hits[0]
}
