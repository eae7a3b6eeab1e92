package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/ecomstream/platform/deploy/local/stacktest"
)

// TestIntegrationEndOffsetsOfAMissingTopic: on a fresh stack the first e2e test
// may run before any service created the dead-letter topic; its "read after
// now" position is then the topic's start (nil), not a failure.
func TestIntegrationEndOffsetsOfAMissingTopic(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs the local stack")
	}
	eps := stacktest.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if got := endOffsets(ctx, t, eps.KafkaBrokers, "e2e-no-such-topic-"+randHex(6)); got != nil {
		t.Fatalf("end offsets of a topic that does not exist: %v, want nil", got)
	}
}
