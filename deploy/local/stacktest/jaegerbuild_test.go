package stacktest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestJaegerBuildStopsItsBuild: jaeger-build.sh stopped (SIGTERM, a
// timeout, Ctrl-C) stops the go build it runs in the background. Left
// running, it would hold no lock, and the next `stack.sh up` would start a
// second build beside it. A fake go records its pid and sleeps.
func TestJaegerBuildStopsItsBuild(t *testing.T) {
	bin, cache := t.TempDir(), t.TempDir()
	pidFile := filepath.Join(t.TempDir(), "go.pid")
	fake := "#!/bin/sh\necho $$ > " + pidFile + "\nexec sleep 60\n"
	if err := os.WriteFile(filepath.Join(bin, "go"), []byte(fake), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("bash", "../stack/jaeger-build.sh")
	cmd.Env = []string{"PATH=" + bin + ":/usr/bin:/bin", "HOME=" + t.TempDir(), "STACK_CACHE_DIR=" + cache}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var goPid int
	for start := time.Now(); goPid == 0; time.Sleep(20 * time.Millisecond) {
		if time.Since(start) > 10*time.Second {
			_ = cmd.Process.Kill()
			t.Fatal("the fake go build did not start within 10 s")
		}
		if b, err := os.ReadFile(pidFile); err == nil && strings.HasSuffix(string(b), "\n") {
			goPid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		}
	}
	defer syscall.Kill(goPid, syscall.SIGKILL)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	for start := time.Now(); syscall.Kill(goPid, 0) == nil; time.Sleep(20 * time.Millisecond) {
		if time.Since(start) > 5*time.Second {
			t.Fatalf("the build (pid %d) still runs 5 s after jaeger-build.sh was stopped", goPid)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(cache, "jaeger-*.tmp.*")); len(left) > 0 {
		t.Errorf("scratch folders left: %v", left)
	}
}
