package e2e

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/sr"

	"github.com/ecomstream/platform/deploy/local/stacktest"
	"github.com/ecomstream/platform/deploy/local/svcrun"
)

// olderIncompatibleClickEvent is a ClickEvent "v0" none of whose data the
// current schema can read (its required fields have no defaults), so the
// real registry refuses the current schema after it under BACKWARD.
const olderIncompatibleClickEvent = `{"type":"record","name":"ClickEvent","namespace":"ecom.events","fields":[{"name":"legacy","type":"string"}]}`

// TestE2EServiceStopsWhenRegistryRefusesSchema starts each service binary
// against the local stack's registry with its subject already holding an
// incompatible version: the registry refuses the service's schema, and the
// service must exit 1 at once with one line naming the subject and the
// registry's error code.
func TestE2EServiceStopsWhenRegistryRefusesSchema(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the local stack and builds the service binaries")
	}
	eps := stacktest.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	_, _, bins, err := svcrun.BuildTree(ctx)
	if err != nil {
		t.Fatal(err)
	}
	reg, err := sr.NewClient(sr.URLs(eps.SchemaRegistryURL), sr.HTTPClient(&http.Client{Timeout: 10 * time.Second}))
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		service  string
		topicVar string // the topic whose "-value" subject the service registers ClickEvent under
	}{
		{"ingest-clickstream", "OUTPUT_TOPIC"},
		{"validator", "OUTPUT_TOPIC"},
		{"bq-writer", "INPUT_TOPIC"},
	}
	for _, tt := range tests {
		t.Run(tt.service, func(t *testing.T) {
			topic := stacktest.UniqueName(t, "refused")
			subject := topic + "-value"
			if _, err := reg.CreateSchema(ctx, subject, sr.Schema{Schema: olderIncompatibleClickEvent, Type: sr.TypeAvro}); err != nil {
				t.Fatalf("register the older version under %s: %v", subject, err)
			}
			t.Cleanup(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				_, _ = reg.DeleteSubject(ctx, subject, sr.SoftDelete)
				_, _ = reg.DeleteSubject(ctx, subject, sr.HardDelete)
			})

			// A service that is not refused runs until killed: give it a minute.
			sctx, scancel := context.WithTimeout(ctx, time.Minute)
			defer scancel()
			cmd := exec.CommandContext(sctx, bins[tt.service])
			cmd.Env = append(os.Environ(),
				"KAFKA_BROKERS="+strings.Join(eps.KafkaBrokers, ","),
				"SCHEMA_REGISTRY_URL="+eps.SchemaRegistryURL,
				tt.topicVar+"="+topic,
				"KAFKA_CONSUMER_GROUP="+topic, "KAFKA_TRANSACTIONAL_ID="+topic,
				"HTTP_ADDR=127.0.0.1:0",
				"DUCKDB_PATH="+filepath.Join(t.TempDir(), "w.duckdb"),
			)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			err := cmd.Run()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != 1 {
				t.Fatalf("exit: %v, want status 1; stderr:\n%s", err, stderr.String())
			}
			// The JSON "starting" log line comes first; the reason is the last line.
			lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
			last := lines[len(lines)-1]
			for _, want := range []string{tt.service + ": ", "schema registry refused the schema", subject, "error code 409"} {
				if !strings.Contains(last, want) {
					t.Errorf("last stderr line %q does not contain %q", last, want)
				}
			}
		})
	}
}
