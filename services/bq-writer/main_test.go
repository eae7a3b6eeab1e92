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
		{name: "dimensions off", env: map[string]string{"PRODUCTS_INPUT_TOPIC": "", "CUSTOMERS_INPUT_TOPIC": "", "USER_EMAIL_HASH_KEY": ""}},
		{name: "products same as orders", env: map[string]string{"PRODUCTS_INPUT_TOPIC": "ecom.orders.valid.v1"}, wantErr: "PRODUCTS_INPUT_TOPIC"},
		{name: "customers same as products", env: map[string]string{"PRODUCTS_INPUT_TOPIC": "d", "CUSTOMERS_INPUT_TOPIC": "d"}, wantErr: "CUSTOMERS_INPUT_TOPIC"},
		{name: "customers same as events", env: map[string]string{"CUSTOMERS_INPUT_TOPIC": "ecom.events.valid.v1"}, wantErr: "CUSTOMERS_INPUT_TOPIC"},
		{name: "customers without key", env: map[string]string{"USER_EMAIL_HASH_KEY": ""}, wantErr: "USER_EMAIL_HASH_KEY"},
		{name: "short key", env: map[string]string{"USER_EMAIL_HASH_KEY": "short"}, wantErr: "USER_EMAIL_HASH_KEY"},
		{name: "dev key with a remote Kafka", env: map[string]string{"KAFKA_BROKERS": "kafka-0.prod:9092"}, wantErr: "USER_EMAIL_HASH_KEY"},
		{name: "dev key with one remote broker", env: map[string]string{"KAFKA_BROKERS": "127.0.0.1:9092,10.0.0.5:9092"}, wantErr: "USER_EMAIL_HASH_KEY"},
		{name: "dev key with a name like loopback", env: map[string]string{"KAFKA_BROKERS": "127.0.0.1.example.com:9092"}, wantErr: "USER_EMAIL_HASH_KEY"},
		{name: "dev key on localhost", env: map[string]string{"KAFKA_BROKERS": "localhost:19092,[::1]:19092"}},
		{name: "remote Kafka with its own key", env: map[string]string{"KAFKA_BROKERS": "kafka-0.prod:9092", "USER_EMAIL_HASH_KEY": "a-real-secret-of-at-least-32-bytes!!"}},
		{name: "remote Kafka, customers off", env: map[string]string{"KAFKA_BROKERS": "kafka-0.prod:9092", "CUSTOMERS_INPUT_TOPIC": ""}},
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

// The default key is the one the loopback rule refuses elsewhere: were they to drift apart, a
// public key would be accepted with a production Kafka.
func TestDefaultEmailHashKeyIsTheDevKey(t *testing.T) {
	var cfg Config
	if err := config.LoadFrom(config.MapLookup(nil), &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.EmailHashKey != DevEmailHashKey {
		t.Fatalf("default USER_EMAIL_HASH_KEY %q is not DevEmailHashKey", cfg.EmailHashKey)
	}
}
