package stacktest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestPrometheusFetchRefreshesStaleLists: when the package lists name a
// .deb the mirror no longer serves (after a Debian point release), the
// download fails; prometheus-fetch.sh then runs apt-get update once and
// installs the version the fresh lists name, instead of dying. Fake apt
// tools on PATH play the mirror.
func TestPrometheusFetchRefreshesStaleLists(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the refresh runs only as root (CI runs as root)")
	}
	bin, cache, state := t.TempDir(), t.TempDir(), t.TempDir()
	fakes := map[string]string{
		// Before an update the lists name deb12u1, after it deb12u2.
		"apt-cache": `#!/bin/sh
if [ -e ` + state + `/updated ]; then echo "Version: 2.42.0+ds-5+deb12u2"; else echo "Version: 2.42.0+ds-5+deb12u1"; fi
`,
		"apt-get": `#!/bin/sh
case "$1" in
update) touch ` + state + `/updated ;;
download) case "$3" in
	*deb12u2) touch "prometheus_2.42.0+ds-5+deb12u2_amd64.deb" ;;
	*) echo "E: Failed to fetch ... 404 Not Found" >&2; exit 100 ;;
	esac ;;
esac
`,
		"dpkg-deb": `#!/bin/sh
mkdir -p "$3/usr/bin"
printf '#!/bin/sh\necho promtool\n' > "$3/usr/bin/promtool"
printf '#!/bin/sh\necho prometheus\n' > "$3/usr/bin/prometheus"
chmod +x "$3/usr/bin/promtool" "$3/usr/bin/prometheus"
`,
	}
	for name, body := range fakes {
		if err := os.WriteFile(filepath.Join(bin, name), []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("bash", "../stack/prometheus-fetch.sh")
	cmd.Env = []string{"PATH=" + bin + ":/usr/bin:/bin", "HOME=" + t.TempDir(), "STACK_CACHE_DIR=" + cache, "TMPDIR=" + t.TempDir()}
	out, err := cmd.Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("prometheus-fetch.sh with stale lists: %v\n%s", err, stderr)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	want := filepath.Join(cache, "prometheus-2.42.0+ds-5+deb12u2", "usr", "bin")
	if got := lines[len(lines)-1]; got != want {
		t.Fatalf("printed %q, want %q", got, want)
	}
	if _, err := os.Stat(filepath.Join(state, "updated")); err != nil {
		t.Errorf("apt-get update was not run: %v", err)
	}
}
