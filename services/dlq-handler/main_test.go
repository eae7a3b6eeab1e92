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
		{name: "not a postgres URL", env: map[string]string{"DLQ_DATABASE_URL": "mysql://db:3306/ecom"}, wantVar: "DLQ_DATABASE_URL"},
		{name: "URL without a host", env: map[string]string{"DLQ_DATABASE_URL": "postgres:///ecom"}, wantVar: "DLQ_DATABASE_URL"},
		{name: "remote database with the local password", env: map[string]string{"DLQ_DATABASE_URL": "postgres://ecom:ecom@db.internal:5432/ecom"},
			wantVar: "DLQ_DATABASE_PASSWORD"},
		{name: "schema with a dash", env: map[string]string{"DLQ_SCHEMA": "dlq-handler"}, wantVar: "DLQ_SCHEMA"},
		{name: "schema in upper case", env: map[string]string{"DLQ_SCHEMA": "DLQ"}, wantVar: "DLQ_SCHEMA"},
		{name: "no topic", env: map[string]string{"DLQ_TOPIC": ""}, wantVar: "DLQ_TOPIC"},
		{name: "no group", env: map[string]string{"KAFKA_CONSUMER_GROUP": ""}, wantVar: "KAFKA_CONSUMER_GROUP"},
		{name: "pii entity that is no name", env: map[string]string{"DLQ_PII_ENTITIES": "order,Customer Change"}, wantVar: "DLQ_PII_ENTITIES"},
		{name: "zero resolved retention", env: map[string]string{"DLQ_RETENTION_RESOLVED": "0s"}, wantVar: "DLQ_RETENTION_RESOLVED"},
		{name: "resolved retention not a duration", env: map[string]string{"DLQ_RETENTION_RESOLVED": "90d"}, wantVar: "DLQ_RETENTION_RESOLVED"},
		{name: "negative pii retention", env: map[string]string{"DLQ_RETENTION_PII": "-1h"}, wantVar: "DLQ_RETENTION_PII"},
		{name: "bad schedule", env: map[string]string{"DLQ_RETENTION_SCHEDULE": "hourly"}, wantVar: "DLQ_RETENTION_SCHEDULE"},
		{name: "schedule minute out of range", env: map[string]string{"DLQ_RETENTION_SCHEDULE": "75 * * * *"}, wantVar: "DLQ_RETENTION_SCHEDULE"},
		{name: "one connection", env: map[string]string{"DLQ_DATABASE_MAX_CONNS": "1"}, wantVar: "DLQ_DATABASE_MAX_CONNS"},
		{name: "no API connection", env: map[string]string{"DLQ_API_MAX_CONNS": "0"}, wantVar: "DLQ_API_MAX_CONNS"},
		{name: "zero API statement timeout", env: map[string]string{"DLQ_API_STATEMENT_TIMEOUT": "0s"}, wantVar: "DLQ_API_STATEMENT_TIMEOUT"},
		{name: "no lag interval", env: map[string]string{"LAG_REFRESH_INTERVAL": "0s"}, wantVar: "LAG_REFRESH_INTERVAL"},
		{name: "zero replay rate", env: map[string]string{"DLQ_REPLAY_RATE": "0"}, wantVar: "DLQ_REPLAY_RATE"},
		{name: "replay topic without target", env: map[string]string{"DLQ_REPLAY_TOPICS": "http:/v1/events"}, wantVar: "DLQ_REPLAY_TOPICS"},
		{name: "stage group twice", env: map[string]string{"DLQ_STAGE_GROUPS": "validator=a,validator=b"}, wantVar: "DLQ_STAGE_GROUPS"},
		{name: "prometheus URL without a scheme", env: map[string]string{"PROMETHEUS_URL": "127.0.0.1:19090"}, wantVar: "PROMETHEUS_URL"},
		{name: "lag threshold zero", env: map[string]string{"HEALTH_LAG_AMBER": "0"}, wantVar: "HEALTH_LAG_AMBER"},
		{name: "error rate above one", env: map[string]string{"HEALTH_ERROR_RATE_AMBER": "2"}, wantVar: "HEALTH_ERROR_RATE_AMBER"},
	}
	for _, tt := range tests {
		var cfg Config
		err := config.LoadFrom(config.MapLookup(tt.env), &cfg)
		if err == nil || !strings.Contains(err.Error(), tt.wantVar) {
			t.Errorf("%s: Load() = %v, want an error naming %s", tt.name, err, tt.wantVar)
			continue
		}
		if strings.Contains(err.Error(), "\n") || strings.Contains(err.Error(), "ecom:ecom@") {
			t.Errorf("%s: %q is not one line without the password", tt.name, err)
		}
	}
}

// TestValidConfig: settings that must start.
func TestValidConfig(t *testing.T) {
	for _, env := range []map[string]string{
		{"DLQ_RETENTION_SCHEDULE": "off"},
		{"DLQ_RETENTION_SCHEDULE": "@daily"},
		{"DLQ_RETENTION_SCHEDULE": "30 3 * * *"},
		{"DLQ_DATABASE_URL": "postgres://dlq@db.internal:5432/ecom?sslmode=verify-full", "DLQ_DATABASE_PASSWORD": "from-a-secret"},
		{"DLQ_DATABASE_URL": "postgres://ecom:ecom@localhost:15432/ecom"},
		{"DLQ_SCHEMA": "dlq_test_1", "DLQ_TOPIC": "it.ecom.dlq.v1", "KAFKA_CONSUMER_GROUP": "it-dlq"},
		{"DLQ_PII_ENTITIES": ""},
		{"DLQ_API_MAX_CONNS": "1", "DLQ_API_STATEMENT_TIMEOUT": "2m"},
		{"DLQ_PII_ENTITIES": "customer_change"},
		{"PROMETHEUS_URL": "http://127.0.0.1:19090", "JAEGER_URL": "http://127.0.0.1:16686", "HEALTH_PROMETHEUS_MATCHERS": "slice=e2e-1a2b",
			"HEALTH_SERVICES": "validator,bq-writer", "HEALTH_LAG_AMBER": "500", "HEALTH_ERROR_RATE_AMBER": "0.05"},
		{"DLQ_REPLAY_RATE": "1000000", "DLQ_REPLAY_TOPICS": "http:/v1/events=it-x.clickstream", "DLQ_STAGE_GROUPS": "validator=it-x-validator"},
	} {
		var cfg Config
		if err := config.LoadFrom(config.MapLookup(env), &cfg); err != nil {
			t.Errorf("%v: %v", env, err)
		}
	}
}
