package avroserde

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	protoavro "github.com/ecomstream/platform/proto/avro"
)

// TestCodecRefusedByRegistry: when the registry refuses a service's schema at
// start, Codec says so, with the subject, the entity's version and the
// registry's error code, and the error is ErrRefused (the service stops).
// The bodies are what Apicurio Registry's ccompat API answers; srfake itself
// accepts everything, so an interceptor gives the answer.
func TestCodecRefusedByRegistry(t *testing.T) {
	latest, err := protoavro.Latest(protoavro.ClickEvent)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name        string
		register    bool
		status      int
		body        string
		wantRefused bool
		wantIn      []string
	}{
		{
			name: "incompatible", register: true, status: http.StatusConflict,
			body:        `{"message":"io.apicurio.registry.rules.violation.RuleViolationException: Incompatible artifact: ecom.events.v1-value [AVRO], num of incompatible diffs: {1}, list of diff types: [owner at /fields/2]","error_code":409}`,
			wantRefused: true,
			wantIn:      []string{"ecom.events.v1-value", fmt.Sprintf("click_event v%d", latest.Version), "incompatible", "error code 409", "owner at /fields/2"},
		},
		{
			name: "invalid", register: true, status: http.StatusUnprocessableEntity,
			body:        `{"message":"Failed to discover artifact type from content.","error_code":42201}`,
			wantRefused: true,
			wantIn:      []string{"invalid", "error code 42201"},
		},
		{
			name: "not registered, look-up only", register: false, status: http.StatusNotFound,
			body:        `{"message":"No artifact with ID 'ecom.events.v1-value' in group 'null' was found.","error_code":40401}`,
			wantRefused: true,
			wantIn:      []string{"SCHEMA_REGISTRY_AUTO_REGISTER=false", "error code 40401"},
		},
		{
			name: "server error is no refusal", register: true, status: http.StatusInternalServerError,
			body:   `{"message":"storage not ready","error_code":50001}`,
			wantIn: []string{"ecom.events.v1-value", "storage not ready"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg := srfake.New()
			defer reg.Close()
			reg.Intercept(func(w http.ResponseWriter, r *http.Request) bool {
				if r.Method != http.MethodPost || !strings.HasPrefix(r.URL.Path, "/subjects/") {
					return false
				}
				w.Header().Set("Content-Type", "application/vnd.schemaregistry.v1+json")
				w.WriteHeader(tt.status)
				_, _ = w.Write([]byte(tt.body))
				return true
			})
			r, err := New(Config{URL: reg.URL(), AutoRegister: tt.register, Timeout: 2 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			_, err = r.Codec(context.Background(), SubjectFor("ecom.events.v1"), protoavro.ClickEvent)
			if err == nil {
				t.Fatal("Codec succeeded, want the registry's refusal")
			}
			if got := errors.Is(err, ErrRefused); got != tt.wantRefused {
				t.Errorf("errors.Is(err, ErrRefused) = %v, want %v; err: %v", got, tt.wantRefused, err)
			}
			var re *sr.ResponseError
			if !errors.As(err, &re) || re.StatusCode != tt.status {
				t.Errorf("err = %v, want it to wrap the registry's HTTP %d answer", err, tt.status)
			}
			for _, s := range tt.wantIn {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not mention %q", err, s)
				}
			}
		})
	}
}
