package bqwh

import (
	"testing"

	"go.uber.org/goleak"
)

// Every writer closes its streams and client and every fake stops. The two goroutines ignored
// belong to the client library and outlive any Close (see bqfake's TestMain).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("go.opencensus.io/stats/view.(*worker).start"),
		goleak.IgnoreAnyFunction("cloud.google.com/go/bigquery/storage/managedwriter.(*connection).getStream.func1"))
}
