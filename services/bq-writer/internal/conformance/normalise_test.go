package conformance

import (
	"math/big"
	"slices"
	"testing"
	"time"

	"cloud.google.com/go/civil"
)

// The two backends' Go types for one value normalise to the same cell, and values that differ
// do not.
func TestNormalise(t *testing.T) {
	at := time.Date(2026, 11, 20, 10, 0, 0, 123456000, time.UTC)
	berlin := time.FixedZone("CET", 3600)
	tests := []struct {
		name     string
		duck, bq any
		same     bool
	}{
		{"int widths", int32(20261120), int64(20261120), true},
		{"small ints", int16(7), int64(7), true},
		{"tiny ints", int8(-1), int64(-1), true},
		{"timestamp in another zone", at.In(berlin), at, true},
		{"timestamp micros differ", at, at.Add(time.Microsecond), false},
		{"date: midnight UTC and civil.Date", time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC), civil.Date{Year: 2026, Month: 11, Day: 20}, true},
		{"date: another day", time.Date(2026, 11, 21, 0, 0, 0, 0, time.UTC), civil.Date{Year: 2026, Month: 11, Day: 20}, false},
		{"NULLs", nil, nil, true},
		{"NULL is not empty", nil, "", false},
		{"string is not int", "1", int64(1), false},
		{"bools", true, true, true},
		{"bools differ", true, false, false},
		{"floats", 1.5, 1.5, true},
		{"numeric", big.NewRat(3, 2), big.NewRat(3, 2), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := normalise(tt.duck)
			if err != nil {
				t.Fatal(err)
			}
			b, err := normalise(tt.bq)
			if err != nil {
				t.Fatal(err)
			}
			if (d == b) != tt.same {
				t.Fatalf("duckdb %v, bigquery %v: same = %t, want %t", d, b, d == b, tt.same)
			}
		})
	}
	if _, err := normalise([]byte("x")); err == nil {
		t.Fatal("a []byte normalised: an unknown type must be an error")
	}
}

// Rows sort by the relation's key numerically (line 10 after line 9), then by the whole row.
func TestNormaliseRowsSortsByKey(t *testing.T) {
	r := relation{name: "fact_order_items", cols: []string{"order_id", "line_number", "product_id"}, key: []int{0, 1}}
	got, err := normaliseRows(r, [][]any{{"o2", int32(0), "p1"}, {"o1", int32(10), "p9"}, {"o1", int32(9), "p8"}, {"o1", int32(9), "p7"}})
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, row := range got {
		order = append(order, row[0].text+"/"+row[1].text+"/"+row[2].text)
	}
	if want := []string{"o1/9/p7", "o1/9/p8", "o1/10/p9", "o2/0/p1"}; !slices.Equal(order, want) {
		t.Fatalf("order %v, want %v", order, want)
	}
	if _, err := normaliseRows(r, [][]any{{"o1", int32(1)}}); err == nil {
		t.Fatal("a short row: no error")
	}
}

// Every relation of the BigQuery prod DDL has a key, and loaded_at is never compared.
func TestRelationsHaveKeys(t *testing.T) {
	rels := relations(t)
	if len(rels) != len(relationKeys) {
		t.Errorf("%d prod relations, %d keys: a key names a relation the DDL no longer has", len(rels), len(relationKeys))
	}
	for _, r := range rels {
		if slices.Contains(r.cols, "loaded_at") {
			t.Errorf("prod.%s: loaded_at is compared", r.name)
		}
	}
}
