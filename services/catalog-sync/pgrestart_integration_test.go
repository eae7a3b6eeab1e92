package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// pgBin is where Debian's postgresql-15 puts the server binaries (the
// local stack uses the same).
const pgBin = "/usr/lib/postgresql/15/bin"

// privatePG is a PostgreSQL cluster of the test's own, so the test can
// restart it (the local stack's is shared).
type privatePG struct {
	t         *testing.T
	dir, data string
	port      int
	osUser    string // run as this user when the test runs as root
}

func startPrivatePG(t *testing.T) *privatePG {
	t.Helper()
	if _, err := os.Stat(filepath.Join(pgBin, "initdb")); err != nil {
		t.Skipf("no PostgreSQL 15 server binaries in %s (package postgresql-15): %v", pgBin, err)
	}
	dir, err := os.MkdirTemp("", "catalog-sync-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	p := &privatePG{t: t, dir: dir, data: filepath.Join(dir, "data"), port: port}
	if os.Geteuid() == 0 { // PostgreSQL refuses to run as root
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Skipf("running as root and there is no postgres OS user to run PostgreSQL as: %v", err)
		}
		p.osUser = u.Username
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	p.run("initdb", "-D", p.data, "-U", "postgres", "-E", "UTF8", "--no-locale", "--auth-local=trust", "--auth-host=trust")
	p.ctl("start")
	t.Cleanup(func() { p.ctlQuiet("stop", "-m", "immediate") })
	p.sql("postgres", `CREATE ROLE ecom LOGIN PASSWORD 'ecom'; CREATE ROLE ecom_cdc LOGIN REPLICATION PASSWORD 'ecom_cdc'`)
	p.sql("postgres", `CREATE DATABASE ecom OWNER ecom`)
	return p
}

func (p *privatePG) cmd(name string, args ...string) *exec.Cmd {
	bin := filepath.Join(pgBin, name)
	if p.osUser != "" {
		return exec.Command(runuser(), append([]string{"-u", p.osUser, "--", bin}, args...)...)
	}
	return exec.Command(bin, args...)
}

// runuser finds util-linux's runuser, which lives in /usr/sbin: a non-login
// root shell's PATH (env -i, some CI runners) may lack it.
func runuser() string {
	if p, err := exec.LookPath("runuser"); err == nil {
		return p
	}
	for _, p := range []string{"/usr/sbin/runuser", "/sbin/runuser"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return "runuser"
}

func (p *privatePG) run(name string, args ...string) {
	p.t.Helper()
	c := p.cmd(name, args...)
	c.Dir = p.dir
	if out, err := c.CombinedOutput(); err != nil {
		p.t.Fatalf("%s: %v\n%s", name, err, out)
	}
}

func (p *privatePG) ctlArgs(action string, extra ...string) []string {
	args := []string{"-D", p.data, "-l", filepath.Join(p.dir, "postgres.log"), "-w", "-t", "60", action}
	if action == "start" || action == "restart" {
		args = append(args, "-o", fmt.Sprintf("-p %d -c listen_addresses=127.0.0.1 -c unix_socket_directories=%s "+
			"-c wal_level=logical -c max_replication_slots=4 -c max_wal_senders=4 -c track_commit_timestamp=on", p.port, p.dir))
	}
	return append(args, extra...)
}

func (p *privatePG) ctl(action string, extra ...string) {
	p.run("pg_ctl", p.ctlArgs(action, extra...)...)
}

func (p *privatePG) ctlQuiet(action string, extra ...string) {
	c := p.cmd("pg_ctl", p.ctlArgs(action, extra...)...)
	c.Dir = p.dir
	_ = c.Run()
}

func (p *privatePG) url(role, db string) string {
	return fmt.Sprintf("postgres://%s:%s@127.0.0.1:%d/%s?sslmode=disable", role, role, p.port, db)
}

func (p *privatePG) sql(db, stmt string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, p.url("postgres", db))
	if err != nil {
		p.t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, stmt); err != nil {
		p.t.Fatalf("%s: %v", stmt, err)
	}
}

// TestIntegrationCDCPostgresRestart: the slot survives a restart of
// PostgreSQL (a fast shutdown and a crash, immediate mode), and
// catalog-sync reconnects by itself: changes made before, during the
// outage's aftermath and after arrive, nothing confirmed is lost. Runs on a
// private PostgreSQL (initdb into a temporary directory), with the local
// stack's Kafka and registry.
func TestIntegrationCDCPostgresRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs the local stack's Kafka and PostgreSQL 15 binaries; skipped under -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	pg := startPrivatePG(t)
	e := newCDCEnvAt(t, ctx, pg.url("postgres", "ecom"), pg.url("ecom_cdc", "ecom"))
	p := e.start("pg-restart", "KAFKA_RETRY_BACKOFF_MAX=1s")

	e.exec(`INSERT INTO $S.products (product_id, sku, name, price_minor, currency) VALUES ('p-1', 'S-1', 'before', 1, 'EUR')`)
	e.waitFor("the change before the restart", 1, func(r cdcRecord) bool { return r.key == "p-1" && r.name == "before" })

	for i, mode := range []string{"fast", "immediate"} {
		pg.ctl("stop", "-m", mode)
		pg.ctl("start")
		e.owner.Reset() // the pools' connections died with the server
		e.repl.Reset()
		name := "after " + mode
		e.exec(fmt.Sprintf(`UPDATE $S.products SET name = '%s' WHERE product_id = 'p-1'`, name))
		at := e.commitTime("products", "product_id", "p-1")
		r := e.waitFor(name, 1, func(r cdcRecord) bool { return r.key == "p-1" && r.name == name })[0]
		if r.source != "cdc" || !r.changedAt.Equal(at) || r.ordinal != 1 {
			t.Errorf("restart %d (%s): record %+v, want cdc at the commit time %v", i, mode, r, at)
		}
		select {
		case err := <-p.done:
			t.Fatalf("catalog-sync exited on the PostgreSQL restart: %v", err)
		default:
		}
	}
	// Every change arrived; a re-delivery after the crash (the slot may
	// stand before the last confirm) repeats a sequence, never skips one.
	seen := map[string]bool{}
	for _, r := range e.waitFor("all", 3, func(r cdcRecord) bool { return r.key == "p-1" }) {
		seen[r.name] = true
	}
	for _, n := range []string{"before", "after fast", "after immediate"} {
		if !seen[n] {
			t.Errorf("change %q missing", n)
		}
	}
	log, _ := os.ReadFile(p.log)
	if strings.Count(string(log), "cdc: stream stopped; reconnecting") < 2 {
		t.Errorf("the log shows no reconnect per restart")
	}
	// The slot survived: created once, found by every reconnect.
	if n, m := strings.Count(string(log), `"created":true`), strings.Count(string(log), `"created":false`); n != 1 || m < 2 {
		t.Errorf("slot created %d times, found %d times; want 1 and at least 2", n, m)
	}
}
