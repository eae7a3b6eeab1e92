package stacktest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// The checks below are also what deploy/local/stack.sh waits on (through
// stackprobe), so "stack.sh up returned" and "Require passes" mean the same.

// CheckKafka asks the brokers for cluster metadata and wants at least one
// live broker in the answer. A TCP connect alone is not enough: a KRaft
// broker accepts connections before it has registered with its controller.
func CheckKafka(ctx context.Context, brokers []string) error {
	if len(brokers) == 0 {
		return errors.New("no brokers given")
	}
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(brokers...),
		kgo.RequestRetries(0),
	)
	if err != nil {
		return err
	}
	defer cl.Close()
	resp, err := kmsg.NewPtrMetadataRequest().RequestWith(ctx, cl)
	if err != nil {
		return fmt.Errorf("metadata request: %w", err)
	}
	if len(resp.Brokers) == 0 {
		return errors.New("metadata lists no live broker yet")
	}
	return nil
}

// CheckSchemaRegistry wants GET /subjects to answer 200: the Confluent API,
// so the check holds for any Confluent-compatible registry
// SCHEMA_REGISTRY_URL may point at (locally Apicurio's /apis/ccompat/v7).
func CheckSchemaRegistry(ctx context.Context, baseURL string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, baseURL+"/subjects", nil)
	if err != nil {
		return err
	}
	return getOK(req)
}

// CheckHTTP wants GET url to answer 200 (stack.sh uses it for the
// registry's /health/ready).
func CheckHTTP(ctx context.Context, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	return getOK(req)
}

func getOK(req *http.Request) error {
	// No keep-alive: a check leaves no idle connection (or goroutine) behind.
	cl := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := cl.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", req.URL, resp.Status)
	}
	return nil
}

// CheckPostgres logs in with dsn and pings.
func CheckPostgres(ctx context.Context, dsn string) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return conn.Ping(ctx)
}
