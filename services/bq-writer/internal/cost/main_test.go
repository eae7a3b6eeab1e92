package cost

import (
	"testing"

	"go.uber.org/goleak"
)

// RunStorage, the gRPC server and client of TestGRPC and the REST client of TestBigQuerySizer
// start goroutines: none may outlive its test.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
