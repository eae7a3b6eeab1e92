package avro

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/hamba/avro/v2"
)

// TestEveryVersionReadsThePrevious proves, for every entity, that each kept
// schema version can read data written with the version before it: the
// schema-resolution check, and a real write with the old schema read back
// with the new one.
func TestEveryVersionReadsThePrevious(t *testing.T) {
	all, err := All()
	if err != nil {
		t.Fatal(err)
	}
	byEntity := map[string][]Version{}
	for _, v := range all {
		byEntity[v.Entity] = append(byEntity[v.Entity], v)
	}
	for _, e := range []string{ClickEvent, Order, ProductChange, CustomerChange, DeadLetter} {
		if len(byEntity[e]) == 0 {
			t.Errorf("no schema for %s", e)
		}
	}
	for entity, versions := range byEntity {
		for i, v := range versions {
			if v.Version != i+1 {
				t.Errorf("%s: versions must be 1..N without gaps, found v%d at position %d", entity, v.Version, i+1)
			}
			s, err := avro.Parse(v.Schema)
			if err != nil {
				t.Errorf("%s v%d does not parse: %v", entity, v.Version, err)
				continue
			}
			// Every version reads its own data (the base case).
			if err := readsPrevious(s, s); err != nil {
				t.Errorf("%s v%d cannot read its own data: %v", entity, v.Version, err)
			}
			if i == 0 {
				continue
			}
			prev := avro.MustParse(versions[i-1].Schema)
			if err := readsPrevious(s, prev); err != nil {
				t.Errorf("%s v%d cannot read v%d data: %v", entity, v.Version, versions[i-1].Version, err)
			}
		}
	}
}

// TestCheckDetectsBreakingChanges proves the check above is not vacuous: a
// field added without a default is caught, a promotion plus an optional field
// is accepted.
func TestCheckDetectsBreakingChanges(t *testing.T) {
	tests := []struct {
		name    string
		prefix  string
		wantErr bool
	}{
		{name: "new required field", prefix: "testdata/incompatible", wantErr: true},
		{name: "promotion and optional field", prefix: "testdata/compatible", wantErr: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v1, v2 := mustRead(t, tt.prefix+".v1.avsc"), mustRead(t, tt.prefix+".v2.avsc")
			err := readsPrevious(v2, v1)
			if (err != nil) != tt.wantErr {
				t.Errorf("err = %v, wantErr %v", err, tt.wantErr)
			}
		})
	}
}

func mustRead(t *testing.T, path string) avro.Schema {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return avro.MustParse(string(b))
}

// readsPrevious writes a sample datum with writer and reads it with reader.
func readsPrevious(reader, writer avro.Schema) error {
	if err := avro.NewSchemaCompatibility().Compatible(reader, writer); err != nil {
		return err
	}
	resolved, err := avro.NewSchemaCompatibility().Resolve(reader, writer)
	if err != nil {
		return err
	}
	b, err := avro.Marshal(writer, sample(writer))
	if err != nil {
		return fmt.Errorf("write sample: %w", err)
	}
	var out any
	if err := avro.Unmarshal(resolved, b, &out); err != nil {
		return fmt.Errorf("read sample: %w", err)
	}
	return nil
}

// sample builds a datum exercising every field of s: unions take their last
// (non-null) branch, arrays and maps hold one element.
func sample(s avro.Schema) any {
	switch s := s.(type) {
	case *avro.RecordSchema:
		m := map[string]any{}
		for _, f := range s.Fields() {
			m[f.Name()] = sample(f.Type())
		}
		return m
	case *avro.UnionSchema:
		types := s.Types()
		last := types[len(types)-1]
		if last.Type() == avro.Null {
			return nil
		}
		return map[string]any{unionName(last): sample(last)}
	case *avro.ArraySchema:
		return []any{sample(s.Items())}
	case *avro.MapSchema:
		return map[string]any{"k": sample(s.Values())}
	case *avro.EnumSchema:
		return s.Symbols()[0]
	case *avro.FixedSchema:
		return make([]byte, s.Size())
	case *avro.PrimitiveSchema:
		if lt := s.Logical(); lt != nil {
			switch lt.Type() {
			case avro.TimestampMicros, avro.TimestampMillis:
				return time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
			}
		}
		switch s.Type() {
		case avro.String:
			return "x"
		case avro.Bytes:
			return []byte("x")
		case avro.Int:
			return 1
		case avro.Long:
			return int64(1)
		case avro.Float:
			return float32(1)
		case avro.Double:
			return float64(1)
		case avro.Boolean:
			return true
		}
	}
	return nil
}

func unionName(s avro.Schema) string {
	if n, ok := s.(avro.NamedSchema); ok {
		return n.FullName()
	}
	if p, ok := s.(*avro.PrimitiveSchema); ok && p.Logical() != nil {
		return string(s.Type()) + "." + string(p.Logical().Type())
	}
	return string(s.Type())
}
