package slice

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func TestSliceID(t *testing.T) {
	tests := []struct {
		name, prefix, runDir, want string
	}{
		{"prefix", "e2e-TestE2EClickstreamSlice-1a2b.", "/x/.run/e2e/T", "e2e-TestE2EClickstreamSlice-1a2b"},
		{"no prefix: the run folder", "", "/repo/.run/demo", "demo"},
		{"run folder with a slash at the end", "", "/repo/.run/demo/", "demo"},
		{"unsafe characters", "bench/a b:", "", "bench_a_b_"},
		{"nothing", "", "", "slice"},
		{"root", "", "/", "slice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := sliceID(tt.prefix, tt.runDir); got != tt.want {
				t.Errorf("sliceID(%q, %q) = %q, want %q", tt.prefix, tt.runDir, got, tt.want)
			}
		})
	}
}

func TestResolveOTLP(t *testing.T) {
	tests := []struct {
		name, opt, env, want string
	}{
		{"given wins", "http://127.0.0.1:4318", "http://127.0.0.1:14318", "http://127.0.0.1:4318"},
		{"empty: the stack's Jaeger", "", "http://127.0.0.1:14318", "http://127.0.0.1:14318"},
		{"empty and no Jaeger: none", "", "", ""},
		{"none, Jaeger or not", OTLPNone, "http://127.0.0.1:14318", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(EnvJaegerOTLP, tt.env)
			if got := resolveOTLP(tt.opt); got != tt.want {
				t.Errorf("resolveOTLP(%q) with %s=%q = %q, want %q", tt.opt, EnvJaegerOTLP, tt.env, got, tt.want)
			}
			s, err := New(Options{RunDir: t.TempDir(), Prefix: "t.", OTLP: tt.opt})
			if err != nil {
				t.Fatal(err)
			}
			if s.Opts.OTLP != tt.want {
				t.Errorf("Opts.OTLP = %q, want %q", s.Opts.OTLP, tt.want)
			}
			for _, p := range s.Procs {
				if !slices.Contains(p.Env, "OTEL_EXPORTER_OTLP_ENDPOINT="+tt.want) {
					t.Errorf("%s's env lacks OTEL_EXPORTER_OTLP_ENDPOINT=%s", p.Name, tt.want)
				}
			}
		})
	}
}

func readTargets(t *testing.T, path string) []targetGroup {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []targetGroup
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("%s is not file_sd JSON: %v\n%s", path, err, b)
	}
	return out
}

// TestTargetsFile: each started service is added to <dir>/<id>.json with
// job and slice labels, the storefront never is, a restart on another
// address replaces the old one, and Stop deletes the file.
func TestTargetsFile(t *testing.T) {
	tests := []struct {
		name    string
		fromEnv bool
	}{
		{"Options.PrometheusTargetsDir", false},
		{"PROMETHEUS_TARGETS_DIR", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "targets") // created by the slice
			opts := Options{RunDir: t.TempDir(), Prefix: "e2e-x.", Orders: &OrdersOptions{}}
			if tt.fromEnv {
				t.Setenv(EnvPrometheusTargets, dir)
			} else {
				t.Setenv(EnvPrometheusTargets, "")
				opts.PrometheusTargetsDir = dir
			}
			s, err := New(opts)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, "e2e-x.json")
			if s.TargetsFile() != path {
				t.Fatalf("TargetsFile() = %q, want %q", s.TargetsFile(), path)
			}
			for _, name := range []string{"bq-writer", "validator", "storefront"} {
				if err := s.registerTarget(name); err != nil {
					t.Fatal(err)
				}
			}
			got := readTargets(t, path)
			want := []targetGroup{
				{Targets: []string{s.Procs["validator"].HTTPAddr}, Labels: map[string]string{"job": "validator", "slice": "e2e-x"}},
				{Targets: []string{s.Procs["bq-writer"].HTTPAddr}, Labels: map[string]string{"job": "bq-writer", "slice": "e2e-x"}},
			}
			if !equalGroups(got, want) {
				t.Errorf("targets %+v, want %+v", got, want)
			}

			s.Procs["validator"].HTTPAddr = "127.0.0.1:1" // restarted elsewhere
			if err := s.registerTarget("validator"); err != nil {
				t.Fatal(err)
			}
			got = readTargets(t, path)
			want[0].Targets = []string{"127.0.0.1:1"}
			if !equalGroups(got, want) {
				t.Errorf("after the restart: targets %+v, want %+v", got, want)
			}
			if leftovers, _ := filepath.Glob(filepath.Join(dir, "*.tmp")); len(leftovers) > 0 {
				t.Errorf("scratch files left: %v", leftovers)
			}

			if err := s.Stop(); err != nil { // nothing runs: only the file goes
				t.Fatal(err)
			}
			if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("after Stop: stat %s: %v, want it gone", path, err)
			}
			if err := s.Stop(); err != nil {
				t.Errorf("a second Stop: %v", err)
			}
		})
	}
}

// TestSweepTargets: writing a slice's targets deletes those of slices whose
// process is gone (their services would show as down for good), and keeps
// those of live processes and files without an owner.
func TestSweepTargets(t *testing.T) {
	dir := t.TempDir()
	// A process that has exited: its pid is free (until reused, which a
	// test run does not reach).
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	gone := cmd.Process.Pid
	files := map[string]string{
		"dead.json": "[]", "dead.owner": strconv.Itoa(gone),
		"live.json": "[]", "live.owner": strconv.Itoa(os.Getppid()),
		"manual.json": "[]",
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := writeTargets(dir, "mine", map[string]string{"validator": "127.0.0.1:1"}); err != nil {
		t.Fatal(err)
	}
	var left []string
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		left = append(left, e.Name())
	}
	want := []string{"live.json", "live.owner", "manual.json", "mine.json", "mine.owner"}
	if !slices.Equal(left, want) {
		t.Errorf("files after the sweep: %v, want %v", left, want)
	}
	if err := removeTargets(dir, "mine"); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"mine.json", "mine.owner"} {
		if _, err := os.Stat(filepath.Join(dir, name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("after removeTargets: %s: %v, want it gone", name, err)
		}
	}
}

func TestNoTargetsDir(t *testing.T) {
	t.Setenv(EnvPrometheusTargets, "")
	runDir := t.TempDir()
	s, err := New(Options{RunDir: runDir, Prefix: "t."})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.registerTarget("validator"); err != nil {
		t.Fatal(err)
	}
	if s.TargetsFile() != "" {
		t.Errorf("TargetsFile() = %q without a targets folder", s.TargetsFile())
	}
	entries, err := os.ReadDir(runDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".json") && e.Name() != "write-keys.json" {
			t.Errorf("unexpected file %s", e.Name())
		}
	}
}

func equalGroups(a, b []targetGroup) bool {
	return slices.EqualFunc(a, b, func(x, y targetGroup) bool {
		return slices.Equal(x.Targets, y.Targets) && len(x.Labels) == len(y.Labels) &&
			x.Labels["job"] == y.Labels["job"] && x.Labels["slice"] == y.Labels["slice"]
	})
}
