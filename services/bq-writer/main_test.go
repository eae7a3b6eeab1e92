package main

import (
	"os"
	"testing"

	"github.com/ecomstream/platform/pkg/config"
)

// TestREADMEDocumentsEveryVariable keeps the README's configuration table
// true: every variable the service reads must be in it.
func TestREADMEDocumentsEveryVariable(t *testing.T) {
	doc, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	if missing := config.Undocumented(&Config{}, string(doc)); len(missing) > 0 {
		t.Errorf("README.md does not document %v", missing)
	}
}

// TestDefaultsAreValid: the service starts with no configuration at all.
func TestDefaultsAreValid(t *testing.T) {
	var cfg Config
	if err := config.LoadFrom(config.MapLookup(nil), &cfg); err != nil {
		t.Errorf("defaults do not validate: %v", err)
	}
}
