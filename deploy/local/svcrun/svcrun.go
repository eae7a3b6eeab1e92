// Package svcrun builds the platform's service binaries and runs them as
// separate processes, the way the demo, the end-to-end tests and the
// benchmark need them: start, wait until /readyz answers, stop gracefully, or
// kill -9 to prove crash safety.
package svcrun

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// Services are the services of the clickstream slice, in pipeline order.
var Services = []string{"ingest-clickstream", "validator", "bq-writer"}

// OrderServices are the services the orders path adds in front of the
// validator and bq-writer.
var OrderServices = []string{"ingest-orders"}

// CatalogServices are the services the catalog path adds in front of the
// validator and bq-writer.
var CatalogServices = []string{"catalog-sync"}

// DLQServices are the services the dead-letter store adds beside the slice
// (downstream of every stage: it reads what they dead-letter).
var DLQServices = []string{"dlq-handler"}

// Tools are the local stack's own programs the slice runs next to the
// services, by name: the package folder (from the repository root) they build from.
var Tools = map[string]string{"storefront": "deploy/local/cmd/storefront"}

// RepoRoot finds the repository root (the folder holding go.work) from the
// working directory upwards.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("svcrun: go.work not found above the working directory")
		}
		dir = parent
	}
}

// BuildTree builds every service of this checkout into <repo>/.cache/bin, where the tests,
// the demo and the benchmark run them from, and returns the repository root, that folder and
// the binaries' paths by service name.
func BuildTree(ctx context.Context) (root, binDir string, bins map[string]string, err error) {
	if root, err = RepoRoot(); err != nil {
		return "", "", nil, err
	}
	binDir = filepath.Join(root, ".cache", "bin")
	if bins, err = Build(ctx, root, binDir, slices.Concat(Services, OrderServices, CatalogServices, DLQServices)...); err != nil {
		return root, binDir, nil, err
	}
	for name, dir := range Tools {
		out := filepath.Join(binDir, name)
		if err := buildIn(ctx, filepath.Join(root, dir), out); err != nil {
			return root, binDir, nil, fmt.Errorf("build %s: %w", name, err)
		}
		bins[name] = out
	}
	return root, binDir, bins, nil
}

// Build compiles the named services into outDir and returns their paths. A
// binary already there is rebuilt (go build is incremental and cached).
func Build(ctx context.Context, root, outDir string, names ...string) (map[string]string, error) {
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return nil, err
	}
	bins := map[string]string{}
	for _, n := range names {
		out := filepath.Join(outDir, n)
		if err := buildIn(ctx, filepath.Join(root, "services", n), out); err != nil {
			return nil, fmt.Errorf("build %s: %w", n, err)
		}
		bins[n] = out
	}
	return bins, nil
}

// buildIn runs go build in dir, writing the binary to out.
func buildIn(ctx context.Context, dir, out string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%w\n%s", err, b)
	}
	return nil
}

// Process is one running service.
type Process struct {
	Name     string
	Bin      string
	Env      []string // KEY=VALUE, added to the parent's environment
	Args     []string // command-line arguments (the services take none; tools take flags)
	HTTPAddr string   // host:port of its HTTP_ADDR
	LogPath  string

	cmd  *exec.Cmd
	done chan error
	log  *os.File
}

// Start launches the process; its stdout and stderr append to LogPath.
func (p *Process) Start() error {
	if p.cmd != nil && p.done != nil {
		select {
		case <-p.done:
		default:
			return fmt.Errorf("%s is already running", p.Name)
		}
	}
	if err := os.MkdirAll(filepath.Dir(p.LogPath), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(p.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(p.Bin, p.Args...)
	cmd.Env = append(append(os.Environ(), p.Env...), "HTTP_ADDR="+p.HTTPAddr)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("start %s: %w", p.Name, err)
	}
	p.cmd, p.log, p.done = cmd, f, make(chan error, 1)
	go func() { p.done <- cmd.Wait(); f.Close() }()
	return nil
}

// WaitReady polls /readyz until it answers 200, the process exits, or the
// timeout passes.
func (p *Process) WaitReady(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	url := "http://" + p.HTTPAddr + "/readyz"
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case err := <-p.done:
			p.done <- err
			return fmt.Errorf("%s exited before it was ready (%v); log: %s\n%s", p.Name, err, p.LogPath, Tail(p.LogPath, 20))
		case <-ctx.Done():
			return fmt.Errorf("%s not ready after %s; log: %s\n%s", p.Name, timeout, p.LogPath, Tail(p.LogPath, 20))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Running reports whether the process has not exited.
func (p *Process) Running() bool {
	if p.done == nil {
		return false
	}
	select {
	case err := <-p.done:
		p.done <- err
		return false
	default:
		return true
	}
}

// Kill sends SIGKILL (a crash: no shutdown code runs) and waits for the exit.
func (p *Process) Kill() error {
	if !p.Running() {
		return nil
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
	p.done <- nil
	return nil
}

// Stop sends SIGTERM and waits up to timeout for a clean exit, then kills.
// It returns the process's exit error, if any.
func (p *Process) Stop(timeout time.Duration) error {
	if !p.Running() {
		return nil
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		p.done <- err
		return err
	case <-time.After(timeout):
		_ = p.Kill()
		return fmt.Errorf("%s did not stop within %s and was killed", p.Name, timeout)
	}
}

// FreeAddr returns a free 127.0.0.1 port as host:port.
func FreeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// Tail returns the last n lines of a file, for failure messages.
func Tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Pid is the process id, 0 when not started.
func (p *Process) Pid() int {
	if p.cmd == nil || p.cmd.Process == nil {
		return 0
	}
	return p.cmd.Process.Pid
}
