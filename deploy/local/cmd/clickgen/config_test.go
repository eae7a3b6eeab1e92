package main

import (
	"errors"
	"flag"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseConfig(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		check   func(config) bool
		wantErr string // substring; "" means no error
	}{
		{name: "defaults", check: func(c config) bool {
			return reflect.DeepEqual(c.brokers, []string{"127.0.0.1:19092"}) && c.topic == "clickstream" &&
				c.partitions == 3 && c.rate == 1000 && c.broken == 0.01 && c.duplicates == 0 &&
				c.duration == 0 && c.count == 0 && c.seed == 0 && c.progress == 5*time.Second
		}},
		{name: "brokers from env", env: map[string]string{"KAFKA_BROKERS": "k1:9092, k2:9092"},
			check: func(c config) bool { return reflect.DeepEqual(c.brokers, []string{"k1:9092", "k2:9092"}) }},
		{name: "flag beats env", args: []string{"-brokers", "x:1"}, env: map[string]string{"KAFKA_BROKERS": "k1:9092"},
			check: func(c config) bool { return reflect.DeepEqual(c.brokers, []string{"x:1"}) }},
		{name: "unlimited rate and limits", args: []string{"-rate", "0", "-count", "500", "-duration", "30s", "-seed", "9"},
			check: func(c config) bool {
				return c.rate == 0 && c.count == 500 && c.duration == 30*time.Second && c.seed == 9
			}},
		{name: "kinds", args: []string{"-kinds", "bad_url, oversized"},
			check: func(c config) bool { return reflect.DeepEqual(c.kinds, []string{"bad_url", "oversized"}) }},
		{name: "unknown kind", args: []string{"-kinds", "bad_url,hover"}, wantErr: `unknown kind "hover"`},
		{name: "valid is not a broken kind", args: []string{"-kinds", "valid"}, wantErr: `unknown kind "valid"`},
		{name: "negative rate", args: []string{"-rate", "-1"}, wantErr: "-rate"},
		{name: "fractions over 1", args: []string{"-broken", "0.6", "-duplicates", "0.5"}, wantErr: "sum at most 1"},
		{name: "no partitions", args: []string{"-partitions", "0"}, wantErr: "-partitions"},
		{name: "empty brokers", args: []string{"-brokers", " , "}, wantErr: "-brokers"},
		{name: "storefront", args: []string{"-storefront-url", "http://127.0.0.1:8097"}, env: map[string]string{"STOREFRONT_TOKEN": "tok"},
			check: func(c config) bool { return c.storefrontURL == "http://127.0.0.1:8097" && c.storefrontToken == "tok" }},
		{name: "storefront token flag beats env", args: []string{"-storefront-url", "http://x:1", "-storefront-token", "f"}, env: map[string]string{"STOREFRONT_TOKEN": "tok"},
			check: func(c config) bool { return c.storefrontToken == "f" }},
		{name: "storefront off by default", env: map[string]string{"STOREFRONT_TOKEN": "tok"},
			check: func(c config) bool { return c.storefrontURL == "" }},
		{name: "storefront without token", args: []string{"-storefront-url", "http://127.0.0.1:8097"}, wantErr: "STOREFRONT_TOKEN"},
		{name: "storefront url not http", args: []string{"-storefront-url", "127.0.0.1:8097", "-storefront-token", "t"}, wantErr: "-storefront-url"},
		{name: "stray argument", args: []string{"extra"}, wantErr: "unexpected arguments"},
		{name: "bad flag", args: []string{"-nope"}, wantErr: "not defined"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parseConfig(tt.args, env(tt.env), io.Discard)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
			case tt.check != nil && !tt.check(c):
				t.Errorf("unexpected config %+v", c)
			}
		})
	}
}

func TestHelpIsNotAFailure(t *testing.T) {
	var usage strings.Builder
	_, err := parseConfig([]string{"-h"}, func(string) string { return "" }, &usage)
	if !errors.Is(err, flag.ErrHelp) || !strings.Contains(usage.String(), "-expect-out") {
		t.Errorf("err %v, usage %q", err, usage.String())
	}
}

// TestUsageHidesSecrets: a bad flag prints the usage, often into a log; the
// storefront token taken from the environment must not be in it, and it
// still applies.
func TestUsageHidesSecrets(t *testing.T) {
	env := map[string]string{"STOREFRONT_TOKEN": "tok-from-env-1234"}
	var usage strings.Builder
	if _, err := parseConfig([]string{"-no-such-flag"}, func(k string) string { return env[k] }, &usage); err == nil {
		t.Fatal("a bad flag parsed")
	}
	if !strings.Contains(usage.String(), "-storefront-token") {
		t.Fatalf("usage without -storefront-token:\n%s", usage.String())
	}
	for k, v := range env {
		if strings.Contains(usage.String(), v) {
			t.Errorf("usage shows %s's value:\n%s", k, usage.String())
		}
	}
	c, err := parseConfig([]string{"-storefront-url", "http://127.0.0.1:8097"}, func(k string) string { return env[k] }, io.Discard)
	if err != nil || c.storefrontToken != env["STOREFRONT_TOKEN"] {
		t.Fatalf("the token from the environment not applied: %v %q", err, c.storefrontToken)
	}
	if c, err = parseConfig([]string{"-storefront-token", "tok-from-flag-0000"}, func(k string) string { return env[k] }, io.Discard); err != nil || c.storefrontToken != "tok-from-flag-0000" {
		t.Fatalf("the flag does not win over the environment: %v %q", err, c.storefrontToken)
	}
}
