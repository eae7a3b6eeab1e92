package bqfake_test

import (
	"testing"

	"go.uber.org/goleak"
)

// Every test closes its client and fake: the gRPC server, its connections
// and the client's receive processors must be gone. Two goroutines belong to
// the client library and outlive any Close: opencensus's process-wide stats
// worker, and managedwriter's delayed cancel of a replaced connection (a
// fixed 20 s sleep in connection.getStream).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("go.opencensus.io/stats/view.(*worker).start"),
		goleak.IgnoreAnyFunction("cloud.google.com/go/bigquery/storage/managedwriter.(*connection).getStream.func1"))
}
