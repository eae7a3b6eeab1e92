// Package configtest holds the checks every service runs on its Config.
package configtest

import (
	"os"
	"testing"

	"github.com/ecomstream/platform/pkg/config"
)

// Check fails t unless cfg (a pointer to a zero Config) loads and validates
// with no environment at all, and every variable it reads appears as `NAME`
// in readme, the service README's configuration table.
func Check(t *testing.T, cfg any, readme string) {
	t.Helper()
	if err := config.LoadFrom(config.MapLookup(nil), cfg); err != nil {
		t.Errorf("defaults do not validate: %v", err)
	}
	doc, err := os.ReadFile(readme)
	if err != nil {
		t.Fatal(err)
	}
	if missing := config.Undocumented(cfg, string(doc)); len(missing) > 0 {
		t.Errorf("%s does not document %v", readme, missing)
	}
}
