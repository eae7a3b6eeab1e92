package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/ecomstream/platform/deploy/local/slice"
	"github.com/ecomstream/platform/deploy/local/svcrun"
)

// Comparison of two revisions on the same running stack, in one session:
// base, head, base, head, ... so that drift of the shared machine (other
// load, the broker's JIT, its growing log) falls on both alike. Only the
// service binaries differ between runs: the driver is this bench for both,
// with the same flags, the same environment for the services (slice.New of
// this tree) and the same warm-up, so the figures measure the services and
// nothing else. The base revision is exported with git archive into a
// temporary folder, which registers no worktree in the shared repository.

// compareOnly are the flags of the comparison itself, not passed to the runs.
var compareOnly = []string{"compare", "runs", "json", "bin-dir"}

// passThrough returns the flags set on the command line, for every run.
func passThrough(fs *flag.FlagSet) []string {
	var args []string
	fs.Visit(func(f *flag.Flag) {
		if !slices.Contains(compareOnly, f.Name) {
			args = append(args, "-"+f.Name+"="+f.Value.String())
		}
	})
	return args
}

// revision is one side of the comparison.
type revision struct {
	label  string // "base 79700c6 (main)", "head 1a2b3c4-dirty"
	binDir string
	runs   [][]figure
}

func runCompare(ctx context.Context, o options, args []string) error {
	if o.runs < 1 {
		return fmt.Errorf("-runs %d: want at least 1", o.runs)
	}
	root, _, err := slice.CheckStack(ctx)
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	sha, err := git(ctx, root, "rev-parse", "--short", "--verify", o.compare+"^{commit}")
	if err != nil {
		return fmt.Errorf("-compare %s: %w", o.compare, err)
	}
	headDesc, err := git(ctx, root, "describe", "--always", "--dirty")
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "bench-compare-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	baseSrc := filepath.Join(tmp, "base-src")
	if err := os.MkdirAll(baseSrc, 0o755); err != nil {
		return err
	}
	fmt.Printf("exporting %s (%s) into %s…\n", o.compare, sha, baseSrc)
	export := exec.CommandContext(ctx, "bash", "-o", "pipefail", "-c", `git -C "$1" archive "$2" | tar -x -C "$3"`, "export", root, sha, baseSrc)
	if out, err := export.CombinedOutput(); err != nil {
		return fmt.Errorf("export %s: %w\n%s", sha, err, out)
	}
	base := &revision{label: fmt.Sprintf("base %s (%s)", sha, o.compare), binDir: filepath.Join(tmp, "base-bin")}
	head := &revision{label: "head " + headDesc + " (this tree)", binDir: filepath.Join(tmp, "head-bin")}
	for _, b := range []struct {
		rev *revision
		src string
	}{{base, baseSrc}, {head, root}} {
		fmt.Printf("building the services of %s…\n", b.rev.label)
		names, missing := servicesIn(b.src)
		if _, err := svcrun.Build(ctx, b.src, b.rev.binDir, names...); err != nil {
			return fmt.Errorf("%s: %w", b.rev.label, err)
		}
		if len(missing) > 0 {
			fmt.Printf("  %s has no %s: its runs skip the phases that need them (orders, catalog)\n", b.rev.label, strings.Join(missing, ", "))
		}
		// The storefront simulator is the orders phase's load, like this
		// bench is the clickstream's: this tree's for both revisions.
		for name, dir := range svcrun.Tools {
			if err := buildTool(ctx, filepath.Join(root, dir), filepath.Join(b.rev.binDir, name)); err != nil {
				return fmt.Errorf("build %s: %w", name, err)
			}
		}
	}

	order := make([]*revision, 0, 2*o.runs)
	for range o.runs {
		order = append(order, base, head)
	}
	fmt.Printf("\n%d runs alternating base and head, each: bench %s\n", len(order), strings.Join(args, " "))
	for i, rev := range order {
		fmt.Printf("\n===== run %d of %d: %s =====\n", i+1, len(order), rev.label)
		out := filepath.Join(tmp, fmt.Sprintf("run-%d.json", i+1))
		cmd := exec.CommandContext(ctx, self, append(slices.Clone(args), "-bin-dir="+rev.binDir, "-json="+out)...)
		cmd.Dir = filepath.Join(root, "deploy", "local")
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		// On Ctrl-C the run stops its services itself; SIGKILL would orphan them.
		cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
		cmd.WaitDelay = 2 * time.Minute
		if err := cmd.Run(); err != nil {
			printComparison(os.Stdout, base, head)
			return fmt.Errorf("run %d (%s): %w", i+1, rev.label, err)
		}
		figs, err := readFigures(out)
		if err != nil {
			return fmt.Errorf("run %d (%s): %w", i+1, rev.label, err)
		}
		rev.runs = append(rev.runs, figs)
	}
	fmt.Println()
	printComparison(os.Stdout, base, head)
	return nil
}

// servicesIn are the services a revision's source tree has: always
// svcrun.Services, and those of svcrun.OrderServices and
// svcrun.CatalogServices it has (a revision before the orders or the catalog
// path has none of them; missing lists them).
func servicesIn(src string) (names, missing []string) {
	names = slices.Clone(svcrun.Services)
	for _, n := range slices.Concat(svcrun.OrderServices, svcrun.CatalogServices) {
		if _, err := os.Stat(filepath.Join(src, "services", n, "main.go")); err == nil {
			names = append(names, n)
		} else {
			missing = append(missing, n)
		}
	}
	return names, missing
}

// buildTool builds the Go program in dir into out.
func buildTool(ctx context.Context, dir, out string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, ".")
	cmd.Dir = dir
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%w\n%s", err, b)
	}
	return nil
}

func git(ctx context.Context, dir string, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, "git", append([]string{"-C", dir}, args...)...).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return "", fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(ee.Stderr)))
		}
		return "", fmt.Errorf("git %s: %w", strings.Join(args, " "), err)
	}
	return strings.TrimSpace(string(out)), nil
}

func readFigures(path string) ([]figure, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r struct {
		Figures []figure `json:"figures"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return r.Figures, nil
}

// printComparison prints every figure of every run, then each side's median
// and the head's change against the base.
func printComparison(w io.Writer, base, head *revision) {
	if len(base.runs) == 0 && len(head.runs) == 0 {
		return
	}
	fmt.Fprintf(w, "comparison (%d and %d runs, in the order base, head, base, ...)\n", len(base.runs), len(head.runs))
	fmt.Fprintf(w, "  base: %s\n  head: %s\n", base.label, head.label)
	var names []string
	units, lower := map[string]string{}, map[string]bool{}
	for _, run := range append(slices.Clone(base.runs), head.runs...) {
		for _, f := range run {
			if _, ok := units[f.Name]; !ok {
				names = append(names, f.Name)
				units[f.Name], lower[f.Name] = f.Unit, f.Lower
			}
		}
	}
	width := 6
	for _, n := range names {
		width = max(width, len(n))
	}
	runsW := 9 * max(len(base.runs), len(head.runs))
	fmt.Fprintf(w, "  %-*s %-8s %-*s %-*s %9s %9s %8s\n", width, "figure", "unit", runsW, "base runs", runsW, "head runs", "base med", "head med", "change")
	for _, n := range names {
		bv, hv := values(base.runs, n), values(head.runs, n)
		bm, bok := median(bv)
		hm, hok := median(hv)
		change := ""
		if bok && hok && bm != 0 {
			d := 100 * (hm - bm) / bm
			change = fmt.Sprintf("%+.1f%%", d)
			if better := (d < 0) == lower[n]; d != 0 {
				change += map[bool]string{true: " better", false: " worse"}[better]
			}
		}
		fmt.Fprintf(w, "  %-*s %-8s %-*s %-*s %9s %9s %s\n", width, n, units[n], runsW, join(bv), runsW, join(hv), num(bm, bok), num(hm, hok), change)
	}
	bt, bok := median(values(base.runs, "throughput end to end"))
	ht, hok := median(values(head.runs, "throughput end to end"))
	if bok && hok && bt > 0 {
		d := 100 * (ht - bt) / bt
		verdict := "within"
		if d < -10 {
			verdict = "NOT within"
		}
		fmt.Fprintf(w, "  throughput: head median %.0f vs base median %.0f events/s, %+.1f%%: %s 10%% of the base (a drop beyond 10%% is a regression)\n", ht, bt, d, verdict)
	}
}

// values is the figure's value in each run, NaN-free: a run without it is
// left out.
func values(runs [][]figure, name string) []float64 {
	var out []float64
	for _, run := range runs {
		for _, f := range run {
			if f.Name == name {
				out = append(out, f.Value)
				break
			}
		}
	}
	return out
}

// median of the values; false when there are none.
func median(v []float64) (float64, bool) {
	if len(v) == 0 {
		return 0, false
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2], true
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2, true
}

func num(v float64, ok bool) string {
	switch {
	case !ok:
		return "-"
	case v >= 100 || v <= -100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10 || v <= -10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

func join(v []float64) string {
	parts := make([]string, len(v))
	for i, x := range v {
		parts[i] = num(x, true)
	}
	return strings.Join(parts, " ")
}
