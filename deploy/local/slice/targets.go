package slice

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/ecomstream/platform/deploy/local/svcrun"
)

// OTLPNone as Options.OTLP exports no traces, even when the stack's Jaeger
// is there (JAEGER_OTLP_ENDPOINT set): the benchmark measures without the
// export's cost unless told otherwise.
const OTLPNone = "none"

// Environment variables `deploy/local/stack.sh env` prints, read when the
// matching Options field is empty.
const (
	EnvJaegerOTLP        = "JAEGER_OTLP_ENDPOINT"   // the stack's Jaeger, OTLP/HTTP
	EnvPrometheusTargets = "PROMETHEUS_TARGETS_DIR" // the stack's Prometheus, file_sd folder
)

// resolveOTLP is the endpoint the services export traces to: opts' own, else
// the stack's Jaeger; OTLPNone is none.
func resolveOTLP(otlp string) string {
	switch otlp {
	case OTLPNone:
		return ""
	case "":
		return strings.TrimSpace(os.Getenv(EnvJaegerOTLP))
	default:
		return otlp
	}
}

// sliceID names a slice in Prometheus (label slice, file <id>.json): the
// topic prefix without its trailing dots ("e2e-TestE2E-1a2b." ->
// "e2e-TestE2E-1a2b"), else the run folder's name (the demo's ".run/demo"
// -> "demo"). Characters a file name should not hold become "_".
func sliceID(prefix, runDir string) string {
	id := strings.TrimRight(prefix, ".")
	if id == "" {
		id = filepath.Base(filepath.Clean(runDir))
	}
	if id == "" || id == "." || id == "/" {
		id = "slice"
	}
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			return r
		default:
			return '_'
		}
	}, id)
}

// scraped are the processes with a Prometheus /metrics endpoint: the
// services (the storefront simulator has none).
var scraped = slices.Concat(svcrun.Services, svcrun.OrderServices, svcrun.CatalogServices, svcrun.DLQServices)

// targetGroup is one entry of a Prometheus file_sd file.
type targetGroup struct {
	Targets []string          `json:"targets"`
	Labels  map[string]string `json:"labels"`
}

// targetGroups are the file_sd entries of the services in started (by name:
// HTTP address), in scraped's order: job = the service, slice = id.
func targetGroups(id string, started map[string]string) []targetGroup {
	groups := []targetGroup{}
	for _, name := range scraped {
		if addr, ok := started[name]; ok {
			groups = append(groups, targetGroup{Targets: []string{addr}, Labels: map[string]string{"job": name, "slice": id}})
		}
	}
	return groups
}

// writeTargets replaces <dir>/<id>.json atomically (write and rename:
// Prometheus re-reads the folder every 2 s and must never see half a file),
// beside <id>.owner holding this process's pid, after sweeping the files of
// slices whose process is gone.
func writeTargets(dir, id string, started map[string]string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("prometheus targets: %w", err)
	}
	sweepTargets(dir, id)
	if err := os.WriteFile(filepath.Join(dir, id+ownerSuffix), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return fmt.Errorf("prometheus targets: %w", err)
	}
	b, err := json.MarshalIndent(targetGroups(id, started), "", "  ")
	if err != nil {
		return fmt.Errorf("prometheus targets: %w", err)
	}
	path := filepath.Join(dir, id+".json")
	// The scratch name does not end in .json, so file_sd's glob skips it.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("prometheus targets: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("prometheus targets: %w", err)
	}
	return nil
}

// removeTargets deletes <dir>/<id>.json and its owner file (gone already is
// fine).
func removeTargets(dir, id string) error {
	for _, suffix := range []string{".json", ownerSuffix} {
		if err := os.Remove(filepath.Join(dir, id+suffix)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("prometheus targets: %w", err)
		}
	}
	return nil
}

// ownerSuffix names the file beside <id>.json holding the pid of the process
// that wrote it (not .json: file_sd's glob skips it).
const ownerSuffix = ".owner"

// sweepTargets deletes the targets of slices whose owning process is gone
// (a test killed before its Stop): left behind, their services would show
// as down in Prometheus, on the health page and in the ServiceDown alert
// for good. A file without an owner file is left alone; so is own.
func sweepTargets(dir, own string) {
	owners, _ := filepath.Glob(filepath.Join(dir, "*"+ownerSuffix))
	for _, path := range owners {
		id := strings.TrimSuffix(filepath.Base(path), ownerSuffix)
		if id == own {
			continue
		}
		b, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid <= 0 || processAlive(pid) {
			continue
		}
		_ = removeTargets(dir, id)
	}
}

// processAlive reports whether a process with pid exists (signal 0; EPERM
// means it exists under another user).
func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// TargetsFile is the slice's file_sd file, "" without a targets folder.
func (s *Slice) TargetsFile() string {
	if s.Opts.PrometheusTargetsDir == "" {
		return ""
	}
	return filepath.Join(s.Opts.PrometheusTargetsDir, s.ID+".json")
}

// registerTarget records a started service's address and rewrites the
// slice's targets file (no-op without a targets folder, or for a process
// Prometheus does not scrape). A restart on another address replaces the
// old one.
func (s *Slice) registerTarget(name string) error {
	if s.Opts.PrometheusTargetsDir == "" || !slices.Contains(scraped, name) {
		return nil
	}
	s.targets[name] = s.Procs[name].HTTPAddr
	return writeTargets(s.Opts.PrometheusTargetsDir, s.ID, s.targets)
}
