package main

import (
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestParseStat(t *testing.T) {
	tail := " 12 13 14 15 20 0 12 0 970 123456789 4321 18446744073709551615 1 1 0"
	tests := []struct {
		name    string
		give    string
		want    procStat
		wantErr string
	}{
		{name: "plain", give: "100 (java) S 99 99 99 0 -1 4194560 1200 0 3 0" + tail,
			want: procStat{pid: 100, ppid: 99, comm: "java", ticks: 25, reaped: 29, start: 970}},
		{name: "comm with spaces and parentheses", give: "400 (a) (b c) R 1 1 1 0 -1 4194560 1200 0 3 0" + tail,
			want: procStat{pid: 400, ppid: 1, comm: "a) (b c", ticks: 25, reaped: 29, start: 970}},
		{name: "comm that looks like fields", give: "7 (x) S 5 5 5) S 1 1 1 0 -1 4194560 1200 0 3 0" + tail,
			want: procStat{pid: 7, ppid: 1, comm: "x) S 5 5 5", ticks: 25, reaped: 29, start: 970}},
		{name: "empty comm", give: "8 () Z 1 1 1 0 -1 4194560 1200 0 3 0" + tail + "\n",
			want: procStat{pid: 8, ppid: 1, comm: "", ticks: 25, reaped: 29, start: 970}},
		{name: "no parentheses", give: "9 java S 1 1 1", wantErr: "no (comm)"},
		{name: "too few fields", give: "9 (java) S 1 1 1 0", wantErr: "fields after the command name"},
		{name: "not a number", give: "9 (java) S 1 1 1 0 -1 4194560 1200 0 3 0 x 13 14 15 20 0 12 0 970 1 2", wantErr: "field 14"},
		{name: "bad pid", give: "x9 (java) S 1 1 1 0 -1 4194560 1200 0 3 0" + tail, wantErr: "pid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStat([]byte(tt.give))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parseStat() error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("parseStat() = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestParseMachine(t *testing.T) {
	tests := []struct {
		name              string
		give              string
		wantBusy, wantAll uint64
		wantErr           bool
	}{
		// user nice system idle iowait irq softirq steal guest guest_nice
		{name: "ten fields", give: "cpu  16834 1 5695 75727 319 2 99 41 7 8\ncpu0 1 2 3 4 5 6 7 8 0 0\n", wantBusy: 16834 + 1 + 5695 + 2 + 99 + 41, wantAll: 16834 + 1 + 5695 + 75727 + 319 + 2 + 99 + 41},
		{name: "old kernel, eight fields", give: "cpu 10 0 5 100 1 0 0 0\n", wantBusy: 15, wantAll: 116},
		{name: "per-cpu line first", give: "cpu0 10 0 5 100 1 0 0 0\n", wantErr: true},
		{name: "short", give: "cpu 10 0 5\n", wantErr: true},
		{name: "garbage", give: "cpu 10 0 five 100 1 0 0 0\n", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			busy, total, err := parseMachine([]byte(tt.give))
			if (err != nil) != tt.wantErr {
				t.Fatalf("parseMachine() error = %v, want error %v", err, tt.wantErr)
			}
			if busy != tt.wantBusy || total != tt.wantAll {
				t.Errorf("parseMachine() = %d, %d, want %d, %d", busy, total, tt.wantBusy, tt.wantAll)
			}
		})
	}
}

func TestParseVmRSS(t *testing.T) {
	tests := []struct {
		name string
		give string
		want int64
	}{
		{name: "process", give: "Name:\tjava\nVmPeak:\t 999 kB\nVmRSS:\t  469920 kB\nRssAnon:\t 1 kB\n", want: 469920},
		{name: "kernel thread", give: "Name:\tkworker/0:1\nState:\tI (idle)\n", want: 0},
		{name: "unexpected unit", give: "VmRSS:\t12 MB\n", want: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := parseVmRSS(strings.NewReader(tt.give)); got != tt.want {
				t.Errorf("parseVmRSS() = %d, want %d", got, tt.want)
			}
		})
	}
}

// fixtureSnapshots reads testdata/proc-start and proc-end, 10 s apart. The
// fixture: 99 is a wrapper (sh) that started the broker 100; PostgreSQL 200
// has a checkpointer 201, a backend 202 that exits during the phase (its
// time moves into 200's reaped counters) and a backend 203 born during it;
// 300 is the bench with its service 301; 400's command name holds spaces
// and ')'; 500 is a reused pid; 600 exits.
func fixtureSnapshots(t *testing.T) (snapshot, snapshot) {
	t.Helper()
	start, err := readSnapshot(filepath.Join("testdata", "proc-start"))
	if err != nil {
		t.Fatal(err)
	}
	end, err := readSnapshot(filepath.Join("testdata", "proc-end"))
	if err != nil {
		t.Fatal(err)
	}
	start.at = time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)
	end.at = start.at.Add(10 * time.Second)
	return start, end
}

func TestMeasure(t *testing.T) {
	start, end := fixtureSnapshots(t)
	ws := []watched{
		{name: "kafka", pid: 99},
		{name: "postgres", pid: 200},
		{name: "bench", pid: 300, self: true},
		{name: "validator", pid: 301},
		{name: "odd name", pid: 400},
		{name: "reused", pid: 500},
		{name: "exited", pid: 600},
	}
	c := measure(start, end, ws, 2, func(pids []int) int64 { return rssKB(filepath.Join("testdata", "proc-end"), pids) })
	tests := []struct {
		name    string
		cores   float64
		procs   int
		main    string
		rssKB   int64
		wantErr string
	}{
		// sh 5 -> 5 ticks, java 1200 -> 2000: 8 s in 10 s.
		{name: "kafka", cores: 0.80, procs: 2, main: "java pid 100", rssKB: 401000},
		// 200 +20 own +40 reaped (202: 30 before, 10 during), 201 +30, 202 -30, 203 +20 = 80 ticks.
		{name: "postgres", cores: 0.08, procs: 3, main: "postgres: checkpointer pid 201", rssKB: 35000},
		// own 500 -> 550; its reaped counters and its child 301 are not its CPU.
		{name: "bench", cores: 0.05, procs: 1, main: "bench pid 300", rssKB: 0},
		{name: "validator", cores: 0.30, procs: 1, main: "validator pid 301", rssKB: 30720},
		{name: "odd name", cores: 0.05, procs: 1, main: "a) (b c pid 400"},
		{name: "reused", wantErr: "restarted"},
		{name: "exited", wantErr: "exited"},
	}
	if len(c.rows) != len(tests) {
		t.Fatalf("measure() returned %d rows, want %d", len(c.rows), len(tests))
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := c.rows[i]
			if tt.wantErr != "" {
				if r.err == nil || !strings.Contains(r.err.Error(), tt.wantErr) {
					t.Fatalf("row %s: error = %v, want %q", r.name, r.err, tt.wantErr)
				}
				return
			}
			if r.err != nil {
				t.Fatal(r.err)
			}
			if math.Abs(r.cores-tt.cores) > 1e-9 || r.procs != tt.procs || r.main != tt.main || r.rssKB != tt.rssKB {
				t.Errorf("row = %+v, want cores %.2f, procs %d, main %q, rss %d", r, tt.cores, tt.procs, tt.main, tt.rssKB)
			}
		})
	}
	if c.wall != 10 {
		t.Errorf("wall = %v, want 10", c.wall)
	}
	// /proc/stat: busy 1510 -> 3010 ticks = 15 s in 10 s.
	if math.Abs(c.machineCores-1.5) > 1e-9 {
		t.Errorf("machineCores = %v, want 1.5", c.machineCores)
	}
	if got := c.total(); math.Abs(got-1.28) > 1e-9 {
		t.Errorf("total() = %v, want 1.28", got)
	}
	var b strings.Builder
	c.print(&b, "test")
	for _, want := range []string{
		"kafka                  0.80    40.0%      8.0    392 MB  java pid 100 +1 more",
		"total                  1.28    64.0%",
		"machine busy           1.50    75.0%",
		"(0.22 cores)",
		"reused                    ?        ?        ?         ?  pid 500 was restarted during the phase",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("print() lacks %q:\n%s", want, b.String())
		}
	}
}

func TestParseListen(t *testing.T) {
	tests := []struct {
		file string
		want []listenSocket
	}{
		{file: "net-tcp", want: []listenSocket{{port: 15432, inode: "16183"}, {port: 2024, inode: "1590"}}},
		{file: "net-tcp6", want: []listenSocket{{port: 19093, inode: "16212"}, {port: 19092, inode: "17091"}}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join("testdata", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			got := parseListen(b)
			if len(got) != len(tt.want) {
				t.Fatalf("parseListen() = %v, want %v", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Errorf("parseListen()[%d] = %v, want %v", i, got[i], tt.want[i])
				}
			}
		})
	}
}

// fakeProc is testdata/proc-end plus what discovery reads: the socket
// tables, file descriptors (100 holds the broker's listening socket, 200
// PostgreSQL's, 201 a connection) and command lines.
func fakeProc(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	if err := os.CopyFS(root, os.DirFS(filepath.Join("testdata", "proc-end"))); err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(root, "net"), 0o755))
	for _, f := range []string{"net-tcp", "net-tcp6"} {
		b, err := os.ReadFile(filepath.Join("testdata", f))
		must(err)
		must(os.WriteFile(filepath.Join(root, "net", strings.TrimPrefix(f, "net-")), b, 0o644))
	}
	fds := map[int][]string{100: {"/dev/null", "socket:[17500]", "socket:[17091]"}, 200: {"socket:[16183]"}, 201: {"socket:[16999]"}}
	for pid, targets := range fds {
		dir := filepath.Join(root, strconv.Itoa(pid), "fd")
		must(os.MkdirAll(dir, 0o755))
		for i, target := range targets {
			must(os.Symlink(target, filepath.Join(dir, strconv.Itoa(i))))
		}
	}
	cmdlines := map[int]string{
		99:  "sh\x00-c\x00exec java kafka.Kafka server.properties\x00",
		100: "/usr/bin/java\x00-Xmx768m\x00kafka.Kafka\x00server.properties\x00",
		200: "/usr/lib/postgresql/15/bin/postgres\x00-D\x00/data\x00",
		201: "postgres: checkpointer \x00",
		400: "/repo/.cache/bin/schema-registry\x00-listen\x00127.0.0.1:18081\x00",
	}
	for pid, cmd := range cmdlines {
		must(os.WriteFile(filepath.Join(root, strconv.Itoa(pid), "cmdline"), []byte(cmd), 0o644))
	}
	return root
}

func TestStackProcesses(t *testing.T) {
	proc := fakeProc(t)
	_, snap := fixtureSnapshots(t)
	eps := []endpoint{
		{name: "kafka", addr: "127.0.0.1:19092", needles: []string{"kafka.Kafka"}},
		{name: "schema-registry", addr: "127.0.0.1:18081", needles: []string{"bin/schema-registry"}},
		{name: "postgres", addr: "localhost:15432", needles: []string{"bin/postgres "}},
		{name: "remote", addr: "10.1.2.3:9092", needles: []string{"nothing matches this"}},
	}
	tests := []struct {
		name      string
		pidFiles  map[string]string // path under the run dir -> content
		want      []watched
		wantNotes []string
	}{
		{
			name: "no pid files: listening sockets, then the command line",
			want: []watched{
				{name: "kafka", pid: 100, how: "listening on 127.0.0.1:19092"},
				{name: "schema-registry", pid: 400, how: "command line"},
				{name: "postgres", pid: 200, how: "listening on localhost:15432"},
			},
			wantNotes: []string{"remote (10.1.2.3:9092): no process found on this machine"},
		},
		{
			name: "pid files first, a wrapper's tree covers its program's socket",
			pidFiles: map[string]string{
				"pids/kafka.pid":    "99\n",
				"pids/stale.pid":    "12345\n",
				"pids/broken.pid":   "not a pid",
				"jaeger/jaeger.pid": "201", // a component in its own folder
			},
			want: []watched{
				{name: "jaeger", pid: 201, how: "pid file jaeger/jaeger.pid"},
				{name: "kafka", pid: 99, how: "pid file pids/kafka.pid"},
				{name: "schema-registry", pid: 400, how: "command line"},
				// 201 is PostgreSQL's child, but its tree does not hold 200.
				{name: "postgres", pid: 200, how: "listening on localhost:15432"},
			},
			wantNotes: []string{
				"pids/broken.pid: not a pid",
				"pids/stale.pid: pid 12345 is not running",
				"remote (10.1.2.3:9092): no process found on this machine",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			runDir := t.TempDir()
			for path, content := range tt.pidFiles {
				p := filepath.Join(runDir, path)
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			got, notes := stackProcesses(proc, runDir, eps, snap)
			for i := range got {
				got[i].how = strings.ReplaceAll(got[i].how, runDir+"/", "")
			}
			for i := range notes {
				notes[i] = strings.ReplaceAll(notes[i], runDir+"/", "")
			}
			if len(got) != len(tt.want) {
				t.Fatalf("stackProcesses() = %+v, want %+v", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Errorf("stackProcesses()[%d] = %+v, want %+v", i, got[i], tt.want[i])
				}
			}
			if strings.Join(notes, "\n") != strings.Join(tt.wantNotes, "\n") {
				t.Errorf("notes = %q, want %q", notes, tt.wantNotes)
			}
		})
	}
}

func TestByCommandLineAmbiguous(t *testing.T) {
	proc := fakeProc(t)
	_, snap := fixtureSnapshots(t)
	// 99 (sh -c exec java kafka.Kafka) is the parent of 100: one match, the top.
	if got := byCommandLine(proc, snap, []string{"kafka.Kafka"}); got != 99 {
		t.Errorf("byCommandLine(kafka.Kafka) = %d, want 99", got)
	}
	// Two unrelated processes match: a private broker beside the shared one
	// looks the same, so refuse to guess.
	if got := byCommandLine(proc, snap, []string{"kafka.Kafka", "bin/postgres "}); got != 0 {
		t.Errorf("byCommandLine(two matches) = %d, want 0", got)
	}
}
