// Package bqemu finds the local BigQuery emulator (bqemulator, a deploy/local stack component)
// for integration tests: its addresses from BIGQUERY_EMULATOR_REST / BIGQUERY_EMULATOR_GRPC (as
// `deploy/local/stack.sh env` exports them), a liveness probe that fails the test with how to
// start it, and the client options that reach it. Test support: only _test files import it.
package bqemu

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// Project is the emulator's project (stack.sh starts it with --project ecom-local).
const Project = "ecom-local"

// Emulator is a running emulator's REST root URL and gRPC address.
type Emulator struct {
	REST, GRPC string
}

// Require returns the emulator, failing the test with how to start it when it does not answer.
func Require(t testing.TB) Emulator {
	t.Helper()
	e := Emulator{
		REST: strings.TrimRight(cmp.Or(os.Getenv("BIGQUERY_EMULATOR_REST"), "http://127.0.0.1:19050"), "/"),
		GRPC: cmp.Or(os.Getenv("BIGQUERY_EMULATOR_GRPC"), "127.0.0.1:19060"),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.REST+"/bigquery/v2/projects/"+Project+"/datasets", nil)
	if err != nil {
		t.Fatalf("BIGQUERY_EMULATOR_REST=%s: %v", e.REST, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("datasets.list answered %s", resp.Status)
		}
	}
	if err != nil {
		t.Fatalf("the BigQuery emulator is not answering at %s (%v): start it with `deploy/local/stack.sh up bqemulator` and "+
			"`eval \"$(deploy/local/stack.sh env)\"`, or point BIGQUERY_EMULATOR_REST / BIGQUERY_EMULATOR_GRPC at a running one", e.REST, err)
	}
	return e
}

// RESTOptions reach the emulator's REST API (the bigquery client), without credentials.
func (e Emulator) RESTOptions() []option.ClientOption {
	return []option.ClientOption{option.WithEndpoint(e.REST + "/bigquery/v2/"), option.WithoutAuthentication()}
}

// GRPCOptions reach its Storage Write API (managedwriter): plaintext, without credentials.
func (e Emulator) GRPCOptions() []option.ClientOption {
	return []option.ClientOption{option.WithEndpoint(e.GRPC), option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials()))}
}
