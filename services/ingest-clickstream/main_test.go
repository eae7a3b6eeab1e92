package main

import (
	"strings"
	"testing"

	"github.com/ecomstream/platform/pkg/config"
	"github.com/ecomstream/platform/pkg/config/configtest"
)

// TestConfig: the service starts with no configuration at all, and its
// README documents every variable it reads.
func TestConfig(t *testing.T) { configtest.Check(t, &Config{}, "README.md") }

// TestMaxEventBytesFitsTheProducerLimit: an event limit the producer's record
// limit cannot carry (with its dead letter) stops the service at start.
func TestMaxEventBytesFitsTheProducerLimit(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		wantErr bool
	}{
		{name: "defaults", env: map[string]string{}},
		{name: "event limit as large as the record limit", env: map[string]string{"MAX_EVENT_BYTES": "1048576"}, wantErr: true},
		{name: "record limit lowered under the event limit", env: map[string]string{"MAX_EVENT_BYTES": "65536", "KAFKA_PRODUCER_MAX_RECORD_BYTES": "100000"}, wantErr: true},
		{name: "both raised", env: map[string]string{"MAX_EVENT_BYTES": "1048576", "KAFKA_PRODUCER_MAX_RECORD_BYTES": "4194304"}},
	}
	for _, tt := range tests {
		var cfg Config
		err := config.LoadFrom(config.MapLookup(tt.env), &cfg) // validates
		if (err != nil) != tt.wantErr || (err != nil && !strings.Contains(err.Error(), "MAX_EVENT_BYTES")) {
			t.Errorf("%s: Validate() = %v, want error %v", tt.name, err, tt.wantErr)
		}
	}
}
