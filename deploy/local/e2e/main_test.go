package e2e

import (
	"testing"

	"go.uber.org/goleak"
)

// The tests' HTTP clients keep idle keep-alive connections to the services
// (http.DefaultClient through slice.Query); those are pooled, not leaked.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreAnyFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreAnyFunction("net/http.(*persistConn).writeLoop"))
}
