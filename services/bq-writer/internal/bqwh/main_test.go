package bqwh

import (
	"testing"

	"go.uber.org/goleak"
)

// Every writer closes its streams and client and every fake stops. The goroutines ignored belong
// to the client libraries and outlive any Close (see bqfake's TestMain): the REST clients of the
// emulator test keep idle keep-alive connections in their HTTP transport.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("go.opencensus.io/stats/view.(*worker).start"),
		goleak.IgnoreAnyFunction("cloud.google.com/go/bigquery/storage/managedwriter.(*connection).getStream.func1"),
		goleak.IgnoreAnyFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"))
}
