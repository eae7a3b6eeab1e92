package service

import (
	"bytes"
	"context"
	"io"
	"os"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/ecomstream/platform/pkg/config"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// registryURL has credentials in its userinfo, as a managed registry's URL
// often does; nothing may print the password.
const (
	registryPassword = "reg-s3cret-pw"
	registryURL      = "http://svc-user:" + registryPassword + "@127.0.0.1:1"
)

// captureStderr runs f with os.Stderr (where services log) going to a pipe
// and returns what was written.
func captureStderr(t *testing.T, f func()) string {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	done := make(chan struct{})
	go func() { _, _ = io.Copy(&buf, r); close(done) }()
	t.Cleanup(func() { w.Close(); <-done; r.Close() })
	prev := os.Stderr
	os.Stderr = w
	defer func() { os.Stderr = prev }()
	f()
	os.Stderr = prev
	w.Close()
	<-done
	return buf.String()
}

// TestStartLogRedactsRegistryURL: the start line shows where the registry is,
// not its password.
func TestStartLogRedactsRegistryURL(t *testing.T) {
	var base Base
	if err := config.LoadFrom(config.MapLookup(map[string]string{"SCHEMA_REGISTRY_URL": registryURL}), &base); err != nil {
		t.Fatal(err)
	}
	out := captureStderr(t, func() {
		rt, err := Start(context.Background(), "svc", "test", base)
		if err != nil {
			t.Fatal(err)
		}
		rt.Close()
	})
	if !strings.Contains(out, `"msg":"starting"`) || !strings.Contains(out, "svc-user") {
		t.Fatalf("no start line with the registry host:\n%s", out)
	}
	if strings.Contains(out, registryPassword) {
		t.Errorf("start log holds the registry password:\n%s", out)
	}
}
