package stacktest

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestFromEnv(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want Endpoints
	}{
		{
			name: "defaults",
			want: Endpoints{
				KafkaBrokers:       []string{"127.0.0.1:19092"},
				SchemaRegistryURL:  "http://127.0.0.1:18081/apis/ccompat/v7",
				DatabaseURL:        "postgres://ecom:ecom@127.0.0.1:15432/ecom?sslmode=disable",
				CatalogDatabaseURL: "postgres://ecom_cdc:ecom_cdc@127.0.0.1:15432/ecom?sslmode=disable",
			},
		},
		{
			name: "overrides",
			env: map[string]string{
				"KAFKA_BROKERS":        "a:1, b:2,",
				"SCHEMA_REGISTRY_URL":  "http://sr:8081/",
				"DATABASE_URL":         "postgres://x@db/x",
				"CATALOG_DATABASE_URL": "postgres://cdc@db/x",
			},
			want: Endpoints{
				KafkaBrokers:       []string{"a:1", "b:2"},
				SchemaRegistryURL:  "http://sr:8081",
				DatabaseURL:        "postgres://x@db/x",
				CatalogDatabaseURL: "postgres://cdc@db/x",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, k := range []string{"KAFKA_BROKERS", "SCHEMA_REGISTRY_URL", "DATABASE_URL", "CATALOG_DATABASE_URL"} {
				t.Setenv(k, tt.env[k])
			}
			got := FromEnv()
			if strings.Join(got.KafkaBrokers, ",") != strings.Join(tt.want.KafkaBrokers, ",") ||
				got.SchemaRegistryURL != tt.want.SchemaRegistryURL || got.DatabaseURL != tt.want.DatabaseURL ||
				got.CatalogDatabaseURL != tt.want.CatalogDatabaseURL {
				t.Errorf("FromEnv() = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestUniqueName(t *testing.T) {
	valid := regexp.MustCompile(`^[a-zA-Z0-9._-]{1,249}$`)
	t.Run("sub test/with spaces", func(t *testing.T) {
		a, b := UniqueName(t, "orders"), UniqueName(t, "orders")
		if a == b {
			t.Errorf("two calls gave the same name %q", a)
		}
		for _, n := range []string{a, b} {
			if !valid.MatchString(n) || !strings.HasPrefix(n, "orders-TestUniqueName-sub-test-with-spaces-") {
				t.Errorf("UniqueName = %q: not a valid, recognisable topic name", n)
			}
		}
	})
	t.Run(strings.Repeat("x", 300), func(t *testing.T) {
		if n := UniqueName(t, "p"); !valid.MatchString(n) {
			t.Errorf("long test name gave invalid topic name of length %d", len(n))
		}
	})
}

func TestRedact(t *testing.T) {
	tests := []struct{ give, want string }{
		{"postgres://ecom:ecom@127.0.0.1:15432/ecom", "postgres://ecom:***@127.0.0.1:15432/ecom"},
		{"postgres://ecom@host/db", "postgres://ecom@host/db"},
		{"host=x user=y", "host=x user=y"},
	}
	for _, tt := range tests {
		if got := redact(tt.give); got != tt.want {
			t.Errorf("redact(%q) = %q, want %q", tt.give, got, tt.want)
		}
	}
}

// TestStackFindsRunuserOffPath: as root, stack.sh runs PostgreSQL through
// runuser, which lives in /usr/sbin; a non-login shell's PATH (env -i, some CI
// runners) may lack it, and then initdb failed with "runuser: command not found".
func TestStackFindsRunuserOffPath(t *testing.T) {
	if _, err := os.Stat("/usr/sbin/runuser"); err != nil {
		if _, err := os.Stat("/sbin/runuser"); err != nil {
			t.Skip("no runuser on this machine")
		}
	}
	cmd := exec.Command("bash", "-c", `source ./lib.sh && source ./postgres.sh && PG_OS_USER=nobody && find_runuser && printf '%s' "$RUNUSER"`)
	cmd.Dir = "../stack"
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + t.TempDir()}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("find_runuser with PATH=/usr/bin:/bin: %v\n%s", err, out)
	}
	if got := strings.TrimSpace(string(out)); filepath.Base(got) != "runuser" {
		t.Fatalf("RUNUSER = %q, want a path to runuser", got)
	}
}
