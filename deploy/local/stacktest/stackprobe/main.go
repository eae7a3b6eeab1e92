// Command stackprobe runs one readiness check of the local stack and exits 0
// when it passes, 1 (with the reason on stderr) when it does not. It is what
// deploy/local/stack.sh waits on, and it uses the same checks as
// stacktest.Require.
//
//	stackprobe [-timeout 3s] kafka    127.0.0.1:19092[,more]
//	stackprobe [-timeout 3s] http     http://127.0.0.1:18082/health/ready
//	stackprobe [-timeout 3s] registry http://127.0.0.1:18081/apis/ccompat/v7
//	stackprobe [-timeout 3s] postgres postgres://ecom:ecom@127.0.0.1:15432/ecom?sslmode=disable
//
// It lives beside stacktest, not in cmd/, because it is test tooling of the
// local stack and nothing else.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/ecomstream/platform/deploy/local/stacktest"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "stackprobe:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("stackprobe", flag.ContinueOnError)
	timeout := fs.Duration("timeout", 3*time.Second, "time allowed for the check")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 2 {
		return errors.New("usage: stackprobe [-timeout d] kafka|http|registry|postgres TARGET")
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	kind, target := fs.Arg(0), fs.Arg(1)
	switch kind {
	case "kafka":
		return stacktest.CheckKafka(ctx, strings.Split(target, ","))
	case "http":
		return stacktest.CheckHTTP(ctx, target)
	case "registry":
		return stacktest.CheckSchemaRegistry(ctx, strings.TrimRight(target, "/"))
	case "postgres":
		return stacktest.CheckPostgres(ctx, target)
	default:
		return fmt.Errorf("unknown check %q (want kafka, http, registry or postgres)", kind)
	}
}
