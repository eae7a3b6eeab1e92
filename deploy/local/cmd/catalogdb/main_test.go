package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/goleak"

	"github.com/ecomstream/platform/deploy/local/catalogdb"
	"github.com/ecomstream/platform/deploy/local/stacktest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestConfig(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		wantErr string
	}{
		{"init defaults", []string{"init"}, nil, ""},
		{"mutate defaults", []string{"mutate"}, nil, ""},
		{"script defaults", []string{"script"}, nil, ""},
		{"no command", nil, nil, "want a command"},
		{"flags before the command", []string{"-schema", "x", "init"}, nil, "want a command"},
		{"unknown command", []string{"drop"}, nil, `unknown command "drop"`},
		{"bad schema", []string{"init", "-schema", "Store-Front"}, nil, "-schema (CATALOGDB_SCHEMA)"},
		{"bad schema from env", []string{"mutate"}, map[string]string{"CATALOGDB_SCHEMA": "a;b"}, "-schema (CATALOGDB_SCHEMA)"},
		{"negative products", []string{"init", "-products", "-1"}, nil, "-products -1"},
		{"script on a tiny seed", []string{"script", "-products", "5"}, nil, "the script needs"},
		{"bad fraction", []string{"mutate", "-bad", "1.5"}, nil, "-bad (CATALOGDB_BAD)"},
		{"negative rate", []string{"mutate", "-rate", "-1"}, nil, "-rate (CATALOGDB_RATE)"},
		{"bad env number", []string{"mutate"}, map[string]string{"CATALOGDB_RATE": "lots"}, "CATALOGDB_RATE: not a number"},
		{"bad env duration", []string{"mutate"}, map[string]string{"CATALOGDB_BURST_EVERY": "often"}, "CATALOGDB_BURST_EVERY: not a duration"},
		{"mutate flag on init", []string{"init", "-rate", "5"}, nil, "flag provided but not defined"},
		{"extra args", []string{"init", "x"}, nil, "unexpected"},
		{"empty url", []string{"init", "-database-url", ""}, nil, "-database-url (DATABASE_URL) is empty"},
		{"reseed", []string{"init", "-reseed"}, nil, ""},
		{"bad env boolean", []string{"init"}, map[string]string{"CATALOGDB_RESEED": "maybe"}, "CATALOGDB_RESEED: not a boolean"},
		{"reseed on mutate", []string{"mutate", "-reseed"}, nil, "flag provided but not defined"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseConfig(tt.args, func(k string) string { return tt.env[k] }, io.Discard)
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("err %v, want %q", err, tt.wantErr)
			}
		})
	}
	env := map[string]string{"CATALOGDB_RATE": "30", "CATALOGDB_BURST_EVERY": "2m", "DATABASE_URL": "postgres://a@b/c"}
	c, err := parseConfig([]string{"mutate", "-bad", "0"}, func(k string) string { return env[k] }, io.Discard)
	if err != nil || c.rate != 30 || c.burstEvery != 2*time.Minute || c.bad != 0 || c.databaseURL != "postgres://a@b/c" || c.schema != "storefront" {
		t.Fatalf("config %+v, %v", c, err)
	}
	env["CATALOGDB_DATABASE_URL"] = "postgres://x@y/z"
	if c, _ = parseConfig([]string{"init"}, func(k string) string { return env[k] }, io.Discard); c.databaseURL != "postgres://x@y/z" {
		t.Fatalf("CATALOGDB_DATABASE_URL does not win over DATABASE_URL: %q", c.databaseURL)
	}
	if _, err := parseConfig([]string{"-h"}, func(string) string { return "" }, io.Discard); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-h: %v, want flag.ErrHelp", err)
	}
}

// TestNever: on the command line 0 is none; the library's 0 is its default.
func TestNever(t *testing.T) {
	if never(0.0) >= 0 || never(0*time.Second) >= 0 || never(2.5) != 2.5 || never(time.Minute) != time.Minute {
		t.Fatal("never() does not map 0 to a negative and keep other values")
	}
}

// TestUsageHidesSecrets: a bad flag prints the usage, often into a log; the
// database URL from the environment (with its password) must not be in it, and it still applies.
func TestUsageHidesSecrets(t *testing.T) {
	for _, key := range []string{"DATABASE_URL", "CATALOGDB_DATABASE_URL"} {
		t.Run(key, func(t *testing.T) {
			env := map[string]string{key: "postgres://ecom:pw-from-env-1234@db:5432/ecom"}
			for _, cmd := range []string{"init", "mutate", "script"} {
				var usage strings.Builder
				if _, err := parseConfig([]string{cmd, "-no-such-flag"}, func(k string) string { return env[k] }, &usage); err == nil {
					t.Fatal("a bad flag parsed")
				}
				if strings.Contains(usage.String(), "pw-from-env-1234") {
					t.Errorf("%s usage shows %s's password:\n%s", cmd, key, usage.String())
				}
			}
			c, err := parseConfig([]string{"init"}, func(k string) string { return env[k] }, io.Discard)
			if err != nil || c.databaseURL != env[key] {
				t.Fatalf("the URL from %s not applied: %v %q", key, err, c.databaseURL)
			}
			if c, _ = parseConfig([]string{"init", "-database-url", "postgres://flag@h/d"}, func(k string) string { return env[k] }, io.Discard); c.databaseURL != "postgres://flag@h/d" {
				t.Fatalf("the flag does not win over the environment: %q", c.databaseURL)
			}
		})
	}
}

// TestFlagsDocumented: every flag of every command is in the README's section.
func TestFlagsDocumented(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, _ := strings.Cut(string(readme), "## Catalog database and mutator")
	section, _, _ = strings.Cut(section, "\n## ")
	if section == "" {
		t.Fatal(`README.md has no "## Catalog database and mutator" section`)
	}
	for _, cmd := range []string{"init", "mutate", "script"} {
		var usage strings.Builder
		if _, err := parseConfig([]string{cmd, "-h"}, func(string) string { return "" }, &usage); err == nil {
			t.Fatal("-h did not stop")
		}
		flags := regexp.MustCompile(`(?m)^  -([a-z-]+)`).FindAllStringSubmatch(usage.String(), -1)
		if len(flags) < 3 {
			t.Fatalf("only %d flags in the %s usage", len(flags), cmd)
		}
		for _, f := range flags {
			if !strings.Contains(section, "`-"+f[1]+"`") {
				t.Errorf("flag -%s of %s is not in the README's catalog table", f[1], cmd)
			}
		}
	}
}

// TestIntegrationRun: init, script and mutate against the local stack's PostgreSQL, in a schema of its own.
func TestIntegrationRun(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs the local stack (deploy/local/stack.sh up); skipped under -short")
	}
	eps := stacktest.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pool, err := pgxpool.New(ctx, eps.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	var b [4]byte
	_, _ = rand.Read(b[:])
	schema := "sf_cdbcmd_" + hex.EncodeToString(b[:])
	defer func() {
		if err := catalogdb.Drop(context.Background(), pool, schema); err != nil {
			t.Errorf("drop %s: %v", schema, err)
		}
	}()
	env := func(k string) string {
		if k == "DATABASE_URL" {
			return eps.DatabaseURL
		}
		return ""
	}
	log := slog.New(slog.DiscardHandler)
	dir := t.TempDir()
	steps := [][]string{
		{"init", "-schema", schema, "-products", "100", "-customers", "100"},
		{"script", "-schema", schema, "-products", "100", "-customers", "100", "-log", filepath.Join(dir, "script.jsonl")},
		{"mutate", "-schema", schema, "-rate", "60000", "-burst-every", "0", "-max-changes", "25", "-log", filepath.Join(dir, "mutate.jsonl")},
	}
	for _, args := range steps {
		if err := run(ctx, args, env, io.Discard, log); err != nil {
			t.Fatalf("catalogdb %s: %v", strings.Join(args, " "), err)
		}
	}
	for name, min := range map[string]int{"script.jsonl": 30, "mutate.jsonl": 25} {
		f, err := os.Open(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		entries, err := catalogdb.ReadLog(f)
		f.Close()
		if err != nil || len(entries) < min {
			t.Errorf("%s: %d entries, %v; want at least %d", name, len(entries), err, min)
		}
	}
	var n int
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM "+schema+".customers").Scan(&n); err != nil || n < 100 {
		t.Errorf("%s.customers has %d rows, %v", schema, n, err)
	}
}
