package service

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/ecomstream/platform/pkg/config"
)

const (
	operatorToken = "operator-token-0123456789"
	queryToken    = "query-token-0123456789abc"
)

// testConfig is a service config with a secret of its own, like
// bq-writer's WAREHOUSE_QUERY_TOKEN.
type testConfig struct {
	Base
	QueryToken string `env:"QUERY_TOKEN" default:"" secret:"true"`
}

// TestRunRedactsEverythingPrinted: a registry error quoting its URL, met in
// the readiness detail, the log and the exit line, and a service's own
// secret in its exit error, all come out redacted.
func TestRunRedactsEverythingPrinted(t *testing.T) {
	env := map[string]string{
		"SCHEMA_REGISTRY_URL": registryURL,
		"HTTP_ADDR":           "127.0.0.1:0",
		"HTTP_OPERATOR_TOKEN": operatorToken,
		"QUERY_TOKEN":         queryToken,
	}
	load := func(cfg any) error { return config.LoadFrom(config.MapLookup(env), cfg) }
	var detail string
	var runErr error
	out := captureStderr(t, func() {
		runErr = run(context.Background(), "svc", "test", load, &testConfig{}, func(ctx context.Context, rt *Runtime) error {
			ctx, cancel := context.WithCancel(ctx)
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- rt.Run(ctx) }()
			addr, err := rt.HTTP.Addr(ctx)
			if err != nil {
				return err
			}
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/readyz", nil)
			req.Header.Set("Authorization", "Bearer "+operatorToken)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return err
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			http.DefaultClient.CloseIdleConnections()
			detail = string(b)
			cancel()
			if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
				return err
			}
			pingErr := rt.Registry.Ping(context.Background())
			return fmt.Errorf("giving up with token %s: %w", queryToken, pingErr)
		})
	})

	if !strings.Contains(detail, `"schema_registry":{"status":"failing","error":"unable to GET`) {
		t.Errorf("operator gets no registry detail: %s", detail)
	}
	if runErr == nil || !strings.Contains(runErr.Error(), "giving up") {
		t.Fatalf("run: %v", runErr)
	}
	for where, text := range map[string]string{"readyz detail": detail, "log": out, "exit error": runErr.Error()} {
		for _, secret := range []string{registryPassword, queryToken, operatorToken} {
			if strings.Contains(text, secret) {
				t.Errorf("%s holds %q:\n%s", where, secret, text)
			}
		}
	}
	if !strings.Contains(out, "readiness check failing") {
		t.Errorf("registry failure not logged:\n%s", out)
	}
}

func TestRunRedactsConfigErrors(t *testing.T) {
	env := map[string]string{"SCHEMA_REGISTRY_URL": "htp://svc-user:" + registryPassword + "@registry"}
	load := func(cfg any) error { return config.LoadFrom(config.MapLookup(env), cfg) }
	err := run(context.Background(), "svc", "test", load, &testConfig{}, func(context.Context, *Runtime) error {
		t.Error("body ran with an invalid config")
		return nil
	})
	var ce *config.Error
	if !errors.As(err, &ce) || ce.Var != "SCHEMA_REGISTRY_URL" || strings.Contains(err.Error(), registryPassword) {
		t.Errorf("err = %v", err)
	}
}
