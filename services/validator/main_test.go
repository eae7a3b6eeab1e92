package main

import (
	"os"
	"testing"

	"github.com/ecomstream/platform/pkg/config"
	"github.com/ecomstream/platform/pkg/config/configtest"
)

// TestConfig: the service starts with no configuration at all, and its
// README documents every variable it reads.
func TestConfig(t *testing.T) { configtest.Check(t, &Config{}, "README.md") }

// TestRules loads the rule files the validator would load under the
// environment's RULES_DIR (the embedded ones when unset), with the default
// parameters: `RULES_DIR=/path/to/rules go test -run TestRules .` checks a
// directory before it is deployed.
func TestRules(t *testing.T) {
	cfg := &Config{}
	if err := config.LoadFrom(config.MapLookup(map[string]string{"RULES_DIR": os.Getenv("RULES_DIR")}), cfg); err != nil {
		t.Fatal(err)
	}
	sets, err := loadRules(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if sets["click_event"] == nil {
		t.Fatal("no click_event rules")
	}
	for _, s := range sets {
		t.Logf("%s: %d rules", s.Label(), len(s.Rules()))
	}
}

func TestRulesDirMustExist(t *testing.T) {
	cfg := &Config{}
	err := config.LoadFrom(config.MapLookup(map[string]string{"RULES_DIR": "/nonexistent"}), cfg)
	if err == nil {
		err = cfg.Validate()
	}
	if err == nil || err.Error() != `config: RULES_DIR: "/nonexistent" is not a directory` {
		t.Errorf("err = %v", err)
	}
}
