package avro

// The compatibility gate against a real schema registry (the local stack's
// Apicurio Registry, or any Confluent-compatible one SCHEMA_REGISTRY_URL
// names): every kept version of every entity is registered in order under
// the registry's BACKWARD rule, and the deliberately incompatible testdata
// pair is refused with the registry's error code. The Confluent REST API is
// spoken directly (net/http), so this module keeps no client dependency.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"
)

const defaultRegistryURL = "http://127.0.0.1:18081/apis/ccompat/v7"

type registry struct {
	t    *testing.T
	base string
	cl   *http.Client
}

// registryError is the Confluent API's error body.
type registryError struct {
	Status    int    `json:"-"`
	ErrorCode int    `json:"error_code"`
	Message   string `json:"message"`
}

func (e *registryError) Error() string {
	return fmt.Sprintf("HTTP %d, error code %d: %s", e.Status, e.ErrorCode, e.Message)
}

func requireRegistry(t *testing.T) *registry {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: needs the local stack's schema registry; skipped under -short")
	}
	base := strings.TrimRight(strings.TrimSpace(os.Getenv("SCHEMA_REGISTRY_URL")), "/")
	if base == "" {
		base = defaultRegistryURL
	}
	r := &registry{t: t, base: base, cl: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}}
	var subjects []string
	if err := r.do(http.MethodGet, "/subjects", nil, &subjects); err != nil {
		t.Fatalf("schema registry %s not reachable: %v\nstart the local stack with: deploy/local/stack.sh up   (or: make stack-up)", base, err)
	}
	return r
}

// do sends body (JSON) and decodes a 200 answer into out; any other answer
// is a *registryError.
func (r *registry) do(method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, r.base+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/vnd.schemaregistry.v1+json")
	resp, err := r.cl.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		re := &registryError{Status: resp.StatusCode}
		if json.Unmarshal(b, re) != nil || re.Message == "" {
			re.Message = string(b)
		}
		return re
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(b, out)
}

// subject returns a fresh subject, deleted (soft, then hard) when the test
// ends: the registry keeps its subjects across restarts.
func (r *registry) subject(name string) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	s := "compat-" + strings.NewReplacer("/", "-", " ", "-", "_", "-").Replace(r.t.Name()) + "-" + name + "-" + hex.EncodeToString(b[:]) + "-value"
	r.t.Cleanup(func() {
		p := "/subjects/" + url.PathEscape(s)
		if err := r.do(http.MethodDelete, p, nil, nil); err != nil {
			r.t.Logf("soft delete %s: %v", s, err)
		}
		if err := r.do(http.MethodDelete, p+"?permanent=true", nil, nil); err != nil {
			r.t.Logf("hard delete %s: %v", s, err)
		}
	})
	return s
}

type schemaBody struct {
	Schema string `json:"schema"`
}

// compatible asks whether schema may follow the subject's latest version.
func (r *registry) compatible(subject, schema string) (bool, error) {
	var ans struct {
		IsCompatible bool `json:"is_compatible"`
	}
	err := r.do(http.MethodPost, "/compatibility/subjects/"+url.PathEscape(subject)+"/versions/latest", schemaBody{schema}, &ans)
	return ans.IsCompatible, err
}

// register adds schema as the subject's next version and returns its id.
func (r *registry) register(subject, schema string) (int, error) {
	var ans struct {
		ID int `json:"id"`
	}
	err := r.do(http.MethodPost, "/subjects/"+url.PathEscape(subject)+"/versions", schemaBody{schema}, &ans)
	return ans.ID, err
}

func TestIntegrationRegistryCompatibilityGate(t *testing.T) {
	r := requireRegistry(t)

	// The gate is only as strict as the registry's rule: the local stack
	// sets BACKWARD globally (Apicurio's own default is NONE).
	var cfg struct {
		CompatibilityLevel string `json:"compatibilityLevel"`
	}
	if err := r.do(http.MethodGet, "/config", nil, &cfg); err != nil {
		t.Fatalf("GET /config: %v", err)
	}
	if cfg.CompatibilityLevel != "BACKWARD" {
		t.Fatalf("the registry's global compatibility is %q, want BACKWARD (deploy/local/stack/registry.sh sets it)", cfg.CompatibilityLevel)
	}

	t.Run("every kept version in order", func(t *testing.T) {
		all, err := All()
		if err != nil {
			t.Fatal(err)
		}
		byEntity := map[string][]Version{}
		var entities []string
		for _, v := range all {
			if byEntity[v.Entity] == nil {
				entities = append(entities, v.Entity)
			}
			byEntity[v.Entity] = append(byEntity[v.Entity], v)
		}
		for _, e := range entities {
			subject := r.subject(e)
			for i, v := range byEntity[e] {
				// Apicurio answers "compatible" for a subject without
				// versions (Confluent: 40401), so ask only from v2 on.
				if i > 0 {
					ok, err := r.compatible(subject, v.Schema)
					if err != nil || !ok {
						t.Errorf("%s v%d: registry compatibility check = %v, %v; want compatible with v%d under BACKWARD", e, v.Version, ok, err, v.Version-1)
					}
				}
				if _, err := r.register(subject, v.Schema); err != nil {
					t.Errorf("%s v%d: registry refused it under BACKWARD: %v", e, v.Version, err)
				}
			}
			var versions []int
			if err := r.do(http.MethodGet, "/subjects/"+url.PathEscape(subject)+"/versions", nil, &versions); err != nil {
				t.Fatalf("%s: list versions: %v", e, err)
			}
			if len(versions) != len(byEntity[e]) {
				t.Errorf("%s: registry holds versions %v, want %d", e, versions, len(byEntity[e]))
			}
		}
	})

	tests := []struct {
		name     string
		prefix   string
		wantCode int // 0: accepted
	}{
		{name: "promotion and optional field accepted", prefix: "testdata/compatible"},
		{name: "new required field refused", prefix: "testdata/incompatible", wantCode: 409},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v1, v2 := readFile(t, tt.prefix+".v1.avsc"), readFile(t, tt.prefix+".v2.avsc")
			subject := r.subject(strings.TrimPrefix(tt.prefix, "testdata/"))
			id1, err := r.register(subject, v1)
			if err != nil {
				t.Fatalf("register v1: %v", err)
			}
			ok, err := r.compatible(subject, v2)
			if err != nil {
				t.Fatalf("compatibility check of v2: %v", err)
			}
			if ok != (tt.wantCode == 0) {
				t.Errorf("compatibility check of v2 = %v, want %v", ok, tt.wantCode == 0)
			}
			id2, err := r.register(subject, v2)
			if tt.wantCode == 0 {
				if err != nil || id2 == id1 {
					t.Errorf("register v2 = id %d, %v; want a new id (v1 is %d)", id2, err, id1)
				}
				return
			}
			re, isRE := err.(*registryError)
			if !isRE || re.ErrorCode != tt.wantCode || re.Status != http.StatusConflict {
				t.Fatalf("register v2 = id %d, %v; want refused with error code %d (HTTP 409)", id2, err, tt.wantCode)
			}
			t.Logf("refused as expected: %v", re)
		})
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
