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

func TestConfigOrdersTopic(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		wantErr string
	}{
		{name: "default", env: nil},
		{name: "off", env: map[string]string{"ORDERS_INPUT_TOPIC": ""}},
		{name: "same as events", env: map[string]string{"INPUT_TOPIC": "t", "ORDERS_INPUT_TOPIC": "t"}, wantErr: "ORDERS_INPUT_TOPIC"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var cfg Config
			err := config.LoadFrom(config.MapLookup(tt.env), &cfg)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want one naming %s", err, tt.wantErr)
			}
		})
	}
}
