package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/sr"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestParseConfig(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		want    Config
		wantErr bool
	}{
		{
			name: "defaults",
			want: Config{Listen: "127.0.0.1:18081", Journal: ".run/schema-registry/journal.jsonl"},
		},
		{
			name: "env",
			env:  map[string]string{"SCHEMA_REGISTRY_LISTEN": "127.0.0.1:1", "SCHEMA_REGISTRY_JOURNAL": "/tmp/j"},
			want: Config{Listen: "127.0.0.1:1", Journal: "/tmp/j"},
		},
		{
			name: "flag wins over env",
			args: []string{"-listen", "127.0.0.1:2"},
			env:  map[string]string{"SCHEMA_REGISTRY_LISTEN": "127.0.0.1:1"},
			want: Config{Listen: "127.0.0.1:2", Journal: ".run/schema-registry/journal.jsonl"},
		},
		{name: "bad listen", args: []string{"-listen", "18081"}, wantErr: true},
		{name: "empty journal", args: []string{"-journal", ""}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseConfig(tt.args, func(k string) string { return tt.env[k] }, io.Discard)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if !tt.wantErr && got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

// TestRestartKeepsIDs runs the real program twice on a real port over one
// journal and checks that schema ids survive the restart.
func TestRestartKeepsIDs(t *testing.T) {
	journal := filepath.Join(t.TempDir(), "journal.jsonl")
	addr := freeAddr(t)
	ctx := context.Background()

	stop := runInBackground(t, addr, journal)
	cl := client(t, addr)
	a, err := cl.CreateSchema(ctx, "a-value", sr.Schema{Schema: `{"type":"string"}`})
	if err != nil {
		t.Fatalf("CreateSchema: %v", err)
	}
	b, err := cl.CreateSchema(ctx, "b-value", sr.Schema{Schema: `{"type":"long"}`})
	if err != nil {
		t.Fatalf("CreateSchema: %v", err)
	}
	stop()

	stop = runInBackground(t, addr, journal)
	defer stop()
	cl = client(t, addr)
	for _, want := range []sr.SubjectSchema{a, b} {
		got, err := cl.SchemaByVersion(ctx, want.Subject, want.Version)
		if err != nil || got.ID != want.ID {
			t.Errorf("after restart %s = id %d, %v; want id %d", want.Subject, got.ID, err, want.ID)
		}
	}
	c, err := cl.CreateSchema(ctx, "c-value", sr.Schema{Schema: `{"type":"int"}`})
	if err != nil || c.ID != b.ID+1 {
		t.Errorf("new schema after restart = id %d, %v; want id %d", c.ID, err, b.ID+1)
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func client(t *testing.T, addr string) *sr.Client {
	t.Helper()
	httpcl := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	cl, err := sr.NewClient(sr.URLs("http://"+addr), sr.HTTPClient(httpcl))
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

// runInBackground starts run and waits for /healthz; the returned func stops
// it and waits for run to return nil.
func runInBackground(t *testing.T, addr, journal string) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	go func() {
		done <- run(ctx, log, []string{"-listen", addr, "-journal", journal}, func(string) string { return "" })
	}()
	httpcl := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: time.Second}
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := httpcl.Get("http://" + addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case err := <-done:
			cancel()
			t.Fatalf("run returned early: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("registry on %s not healthy after 10s: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	var stopped bool
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}
	t.Cleanup(stop)
	return stop
}
