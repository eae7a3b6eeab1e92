package e2e

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ecomstream/platform/deploy/local/svcrun"
)

// TestE2EInvalidConfigStopsWithOneLine runs each real service binary with a
// bad setting: it must exit non-zero at once, printing one line that names
// the variable.
func TestE2EInvalidConfigStopsWithOneLine(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the service binaries")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	_, _, bins, err := svcrun.BuildTree(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		service string
		env     string
		wantVar string
	}{
		{"ingest-clickstream", "KAFKA_BROKERS=not-a-host-port", "KAFKA_BROKERS"},
		{"ingest-clickstream", "MAX_EVENT_BYTES=lots", "MAX_EVENT_BYTES"},
		{"ingest-clickstream", "COLLECTOR_MAX_EVENTS=0", "COLLECTOR_MAX_EVENTS"},
		{"ingest-clickstream", "COLLECTOR_CLIENT_IP=full", "COLLECTOR_CLIENT_IP"},
		{"ingest-clickstream", "COLLECTOR_ADDR=0.0.0.0:18099", "COLLECTOR_ADDR"}, // plain HTTP reachable from the network
		{"validator", "MAX_EVENT_AGE=7", "MAX_EVENT_AGE"},
		{"validator", "SCHEMA_REGISTRY_URL=registry:8081", "SCHEMA_REGISTRY_URL"},
		{"bq-writer", "WAREHOUSE=oracle", "WAREHOUSE"},
		{"bq-writer", "WAREHOUSE_QUERY_TOKEN=short", "WAREHOUSE_QUERY_TOKEN"},
		{"bq-writer", "LOG_LEVEL=loud", "LOG_LEVEL"},
	}
	for _, tt := range tests {
		t.Run(tt.service+"/"+tt.wantVar, func(t *testing.T) {
			cmd := exec.CommandContext(ctx, bins[tt.service])
			cmd.Env = append(os.Environ(), tt.env, "DUCKDB_PATH="+filepath.Join(t.TempDir(), "w.duckdb"))
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			err := cmd.Run()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != 1 {
				t.Fatalf("exit: %v, want status 1", err)
			}
			out := strings.TrimSpace(stderr.String())
			if strings.Count(out, "\n") != 0 || !strings.Contains(out, "config: "+tt.wantVar+": ") || !strings.HasPrefix(out, tt.service+": ") {
				t.Errorf("stderr = %q, want one line naming %s", out, tt.wantVar)
			}
		})
	}
}
