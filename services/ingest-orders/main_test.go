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
		{name: "remote storefront with the default token", env: map[string]string{"STOREFRONT_URL": "https://shop.example.com"}, wantVar: "STOREFRONT_TOKEN"},
		{name: "remote storefront by IP with the default token", env: map[string]string{"STOREFRONT_URL": "http://10.0.0.7:8097"}, wantVar: "STOREFRONT_TOKEN"},
		{name: "remote storefront given the dev token", env: map[string]string{"STOREFRONT_URL": "http://storefront:8097", "STOREFRONT_TOKEN": "storefront-dev-token"},
			wantVar: "STOREFRONT_TOKEN"},
		{name: "a host merely named like loopback", env: map[string]string{"STOREFRONT_URL": "http://127.0.0.1.example.com"}, wantVar: "STOREFRONT_TOKEN"},
		{name: "empty token", env: map[string]string{"STOREFRONT_TOKEN": ""}, wantVar: "STOREFRONT_TOKEN"},
	}
	for _, tt := range tests {
		var cfg Config
		err := config.LoadFrom(config.MapLookup(tt.env), &cfg)
		if err == nil || !strings.Contains(err.Error(), tt.wantVar) {
			t.Errorf("%s: Load() = %v, want an error naming %s", tt.name, err, tt.wantVar)
		}
		if err != nil && (strings.Contains(err.Error(), "\n") || strings.Contains(err.Error(), "storefront-dev-token")) {
			t.Errorf("%s: %q is not one line without the token", tt.name, err)
		}
	}
}

// TestStorefrontToken: the simulator's public dev token (the default) is
// accepted only for a storefront on a loopback address; any other token
// for any storefront.
func TestStorefrontToken(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
	}{
		{name: "defaults: the local simulator", env: nil},
		{name: "localhost", env: map[string]string{"STOREFRONT_URL": "http://localhost:8097"}},
		{name: "IPv6 loopback", env: map[string]string{"STOREFRONT_URL": "http://[::1]:8097"}},
		{name: "127.0.0.0/8", env: map[string]string{"STOREFRONT_URL": "http://127.0.0.2:8097/"}},
		{name: "remote with its token", env: map[string]string{"STOREFRONT_URL": "https://shop.example.com", "STOREFRONT_TOKEN": "shop-issued-token"}},
	}
	for _, tt := range tests {
		var cfg Config
		if err := config.LoadFrom(config.MapLookup(tt.env), &cfg); err != nil {
			t.Errorf("%s: Load() = %v", tt.name, err)
		}
	}
}
