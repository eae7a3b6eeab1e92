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

// TestInvalidConfig: a bad setting stops the service naming the variable.
func TestInvalidConfig(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		wantVar string
	}{
		{name: "page size above the API's cap", env: map[string]string{"ORDERS_PAGE_SIZE": "1000"}, wantVar: "ORDERS_PAGE_SIZE"},
		{name: "stale check shorter than a poll", env: map[string]string{"ORDERS_POLL_INTERVAL": "10m"}, wantVar: "ORDERS_POLL_STALE_AFTER"},
		{name: "no storefront URL", env: map[string]string{"STOREFRONT_URL": "not a url"}, wantVar: "STOREFRONT_URL"},
		{name: "webhook body over the record limit", env: map[string]string{"WEBHOOK_MAX_BODY_BYTES": "1048576"}, wantVar: "WEBHOOK_MAX_BODY_BYTES"},
	}
	for _, tt := range tests {
		var cfg Config
		err := config.LoadFrom(config.MapLookup(tt.env), &cfg)
		if err == nil || !strings.Contains(err.Error(), tt.wantVar) {
			t.Errorf("%s: Load() = %v, want an error naming %s", tt.name, err, tt.wantVar)
		}
	}
}
