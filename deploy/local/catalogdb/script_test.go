package catalogdb

import (
	"strings"
	"testing"

	"github.com/ecomstream/platform/deploy/local/seed"
)

// TestScriptCoverage: the scripted history has every kind, every bad kind and
// the awkward cases the SCD2 end-to-end test needs.
func TestScriptCoverage(t *testing.T) {
	script, err := Script(seed.Default())
	if err != nil {
		t.Fatal(err)
	}
	kinds, bads := map[Kind]bool{}, map[Bad]bool{}
	deleted := map[string]bool{}
	var recreatedLater, recreatedSameTx, multiSameRow, multiTable, touch bool
	for _, tx := range script {
		if tx.Name == "" {
			t.Errorf("script transaction without a name: %+v", tx)
		}
		perKey, tables := map[string]int{}, map[string]bool{}
		deletedHere := map[string]bool{}
		for _, c := range tx.Changes {
			if _, _, err := c.statement("s"); err != nil {
				t.Errorf("%s: %v", tx.Name, err)
			}
			kinds[c.Kind] = true
			if c.Bad != "" {
				bads[c.Bad] = true
			}
			perKey[c.Key]++
			tables[c.Kind.Table()] = true
			switch c.Kind {
			case DeleteProduct, DeleteCustomer:
				deletedHere[c.Key] = true
			case NewProduct, NewCustomer:
				recreatedLater = recreatedLater || deleted[c.Key]
				recreatedSameTx = recreatedSameTx || deletedHere[c.Key]
			case Touch:
				touch = true
			}
		}
		for k := range deletedHere {
			deleted[k] = true
		}
		for _, n := range perKey {
			multiSameRow = multiSameRow || n >= 3
		}
		multiTable = multiTable || len(tables) == 2
	}
	for _, k := range Kinds() {
		if !kinds[k] {
			t.Errorf("kind %s not in the script", k)
		}
	}
	for _, b := range BadKinds() {
		if !bads[b] {
			t.Errorf("bad kind %s not in the script", b)
		}
	}
	for name, ok := range map[string]bool{"delete then re-create": recreatedLater, "delete and re-create in one transaction": recreatedSameTx,
		"three changes of one row in one transaction": multiSameRow, "two tables in one transaction": multiTable, "touch": touch} {
		if !ok {
			t.Errorf("the script has no %s", name)
		}
	}
	again, _ := Script(seed.Default())
	if len(again) != len(script) || again[4].Changes[0].Product.Name != script[4].Changes[0].Product.Name {
		t.Error("Script is not deterministic")
	}
}

func TestScriptNeedsRows(t *testing.T) {
	if _, err := Script(seed.Generate(1, 5, 5)); err == nil || !strings.Contains(err.Error(), "at least") {
		t.Fatalf("Script of a 5-row seed: %v, want an error", err)
	}
}
