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

// TestInvalidConfig: a bad setting stops the service with one line naming
// the variable, and never echoes the database password.
func TestInvalidConfig(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		wantVar string
	}{
		{name: "bad cron expression", env: map[string]string{"CATALOG_SNAPSHOT_SCHEDULE": "every hour"}, wantVar: "CATALOG_SNAPSHOT_SCHEDULE"},
		{name: "cron minute out of range", env: map[string]string{"CATALOG_SNAPSHOT_SCHEDULE": "75 * * * *"}, wantVar: "CATALOG_SNAPSHOT_SCHEDULE"},
		{name: "page size zero", env: map[string]string{"CATALOG_SNAPSHOT_PAGE_SIZE": "0"}, wantVar: "CATALOG_SNAPSHOT_PAGE_SIZE"},
		{name: "not a postgres URL", env: map[string]string{"CATALOG_DATABASE_URL": "mysql://db:3306/ecom"}, wantVar: "CATALOG_DATABASE_URL"},
		{name: "remote database with the local password", env: map[string]string{"CATALOG_DATABASE_URL": "postgres://ecom_cdc:ecom_cdc@db.internal:5432/ecom"},
			wantVar: "CATALOG_DATABASE_PASSWORD"},
		{name: "empty history", env: map[string]string{"CATALOG_RUN_HISTORY": "0"}, wantVar: "CATALOG_RUN_HISTORY"},
		{name: "no state topic", env: map[string]string{"CATALOG_STATE_TOPIC": ""}, wantVar: "CATALOG_STATE_TOPIC"},
		{name: "slot name with a dash", env: map[string]string{"CATALOG_SLOT": "catalog-sync"}, wantVar: "CATALOG_SLOT"},
		{name: "publication in upper case", env: map[string]string{"CATALOG_PUBLICATION": "Catalog"}, wantVar: "CATALOG_PUBLICATION"},
		{name: "schema whose default publication is no name", env: map[string]string{"CATALOG_SCHEMA": "Store-Front"}, wantVar: "CATALOG_PUBLICATION"},
		{name: "no WAL threshold", env: map[string]string{"CATALOG_SLOT_WAL_WARN_BYTES": "0"}, wantVar: "CATALOG_SLOT_WAL_WARN_BYTES"},
		{name: "negative confirm delay", env: map[string]string{"CATALOG_CDC_CONFIRM_DELAY": "-1s"}, wantVar: "CATALOG_CDC_CONFIRM_DELAY"},
	}
	for _, tt := range tests {
		var cfg Config
		err := config.LoadFrom(config.MapLookup(tt.env), &cfg)
		if err == nil || !strings.Contains(err.Error(), tt.wantVar) {
			t.Errorf("%s: Load() = %v, want an error naming %s", tt.name, err, tt.wantVar)
			continue
		}
		if strings.Contains(err.Error(), "\n") || strings.Contains(err.Error(), "ecom_cdc@") {
			t.Errorf("%s: %q is not one line without the password", tt.name, err)
		}
	}
}

// TestValidConfig: settings that must start.
func TestValidConfig(t *testing.T) {
	for _, env := range []map[string]string{
		{"CATALOG_SNAPSHOT_SCHEDULE": "off"},
		{"CATALOG_SNAPSHOT_SCHEDULE": ""},
		{"CATALOG_SNAPSHOT_SCHEDULE": "@daily"},
		{"CATALOG_DATABASE_URL": "postgres://ecom_cdc@db.internal:5432/ecom?sslmode=verify-full", "CATALOG_DATABASE_PASSWORD": "from-a-secret"},
		{"CATALOG_DATABASE_URL": "postgres://ecom_cdc:ecom_cdc@localhost:15432/ecom"},
		{"CATALOG_SCHEMA": "Store-Front", "CATALOG_CDC_ENABLED": "false"},
		{"CATALOG_SCHEMA": "Store-Front", "CATALOG_PUBLICATION": "storefront_catalog"},
	} {
		var cfg Config
		if err := config.LoadFrom(config.MapLookup(env), &cfg); err != nil {
			t.Errorf("%v: %v", env, err)
		}
	}
}

// TestReplicationURL: the secret password replaces the URL's, for the
// replication connection too.
func TestReplicationURL(t *testing.T) {
	tests := []struct{ url, pass, want string }{
		{"postgres://ecom_cdc:ecom_cdc@127.0.0.1:15432/ecom?sslmode=disable", "", "postgres://ecom_cdc:ecom_cdc@127.0.0.1:15432/ecom?sslmode=disable"},
		{"postgres://ecom_cdc@db.internal:5432/ecom?sslmode=verify-full", "s3cr:t", "postgres://ecom_cdc:s3cr%3At@db.internal:5432/ecom?sslmode=verify-full"},
	}
	for _, tt := range tests {
		if got := replicationURL(&Config{DatabaseURL: tt.url, DatabasePass: tt.pass}); got != tt.want {
			t.Errorf("replicationURL(%s) = %s, want %s", tt.url, got, tt.want)
		}
	}
}
