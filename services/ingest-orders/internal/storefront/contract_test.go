package storefront

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// The API's order model is written twice: in the simulator
// (deploy/local/storefront) and here. The two are different modules and
// share no Go type, so the contract both are tested against,
// proto/openapi/storefront-orders.v1.yaml, is what keeps them in step: the
// simulator's contract_test.go checks its side, these tests this client's.
const specFile = "../../../../proto/openapi/storefront-orders.v1.yaml"

// schema is the part of a JSON Schema (OpenAPI 3.1) the contract uses.
type schema struct {
	Type       typeList           `yaml:"type"`
	Format     string             `yaml:"format"`
	Ref        string             `yaml:"$ref"`
	Items      *schema            `yaml:"items"`
	Required   []string           `yaml:"required"`
	Properties map[string]*schema `yaml:"properties"`
	Enum       []string           `yaml:"enum"`
}

// typeList is `type: string` or `type: [string, "null"]`.
type typeList []string

func (t *typeList) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		*t = typeList{n.Value}
		return nil
	}
	var l []string
	if err := n.Decode(&l); err != nil {
		return err
	}
	*t = l
	return nil
}

func (t typeList) nullable() bool { return slices.Contains(t, "null") }

// base is the type other than null.
func (t typeList) base() string {
	for _, s := range t {
		if s != "null" {
			return s
		}
	}
	return ""
}

func loadSchemas(t *testing.T) map[string]*schema {
	t.Helper()
	b, err := os.ReadFile(specFile)
	if err != nil {
		t.Fatal(err)
	}
	var spec struct {
		Components struct {
			Schemas map[string]*schema `yaml:"schemas"`
		} `yaml:"components"`
	}
	if err := yaml.Unmarshal(b, &spec); err != nil {
		t.Fatalf("%s: %v", specFile, err)
	}
	return spec.Components.Schemas
}

// resolve follows a local $ref.
func resolve(t *testing.T, all map[string]*schema, s *schema) *schema {
	t.Helper()
	if s.Ref == "" {
		return s
	}
	name, ok := strings.CutPrefix(s.Ref, "#/components/schemas/")
	if !ok || all[name] == nil {
		t.Fatalf("unresolvable $ref %q", s.Ref)
	}
	return all[name]
}

// jsonFields are typ's fields by JSON name.
func jsonFields(typ reflect.Type) map[string]reflect.StructField {
	out := map[string]reflect.StructField{}
	for i := range typ.NumField() {
		f := typ.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = f
	}
	return out
}

// goTypes are the client's type for each schema.
var goTypes = map[string]reflect.Type{
	"OrderPage": reflect.TypeFor[Page](),
	"Order":     reflect.TypeFor[Order](),
	"Line":      reflect.TypeFor[Line](),
}

var timeType = reflect.TypeFor[time.Time]()

// TestContractSchema: every property of the contract's Order and Line (and
// of the page) is a field of the client's type and every field a property;
// each field's Go type is the property's (integer -> int64, date-time ->
// time.Time, string, boolean, arrays of the referenced schema's type); a
// property that may be null is a pointer and one that may not is not, and
// a required property is never omitted (no omitempty), so drift on either
// side fails here.
func TestContractSchema(t *testing.T) {
	all := loadSchemas(t)
	for name, typ := range goTypes {
		s := all[name]
		if s == nil {
			t.Fatalf("schema %s not in %s", name, specFile)
		}
		fields := jsonFields(typ)
		props, names := slices.Sorted(maps.Keys(s.Properties)), slices.Sorted(maps.Keys(fields))
		if !slices.Equal(props, names) {
			t.Errorf("%s: contract properties %v, %s fields %v", name, props, typ, names)
		}
		for _, p := range props {
			f, ok := fields[p]
			if !ok {
				continue
			}
			ps := resolve(t, all, s.Properties[p])
			required := slices.Contains(s.Required, p)
			if err := matches(t, all, ps, s.Properties[p].Type.nullable() || ps.Type.nullable(), f.Type); err != nil {
				t.Errorf("%s.%s (%s %s): %v", name, p, typ.Name(), f.Name, err)
			}
			if required && strings.Contains(f.Tag.Get("json"), ",omitempty") {
				t.Errorf("%s.%s is required but %s.%s is omitempty", name, p, typ.Name(), f.Name)
			}
			if !required && name != "OrderPage" && f.Type.Kind() != reflect.Pointer && f.Type.Kind() != reflect.Slice {
				// Absent must be told from zero; the page's next_page_token
				// is the one optional property, and "" means none.
				t.Errorf("%s.%s is optional but %s.%s cannot be absent", name, p, typ.Name(), f.Name)
			}
		}
	}
}

// matches checks Go type typ against property schema s.
func matches(t *testing.T, all map[string]*schema, s *schema, nullable bool, typ reflect.Type) error {
	if nullable != (typ.Kind() == reflect.Pointer) {
		return fmt.Errorf("nullable %v but Go type %s", nullable, typ)
	}
	if typ.Kind() == reflect.Pointer {
		typ = typ.Elem()
	}
	switch base := s.Type.base(); {
	case base == "string" && s.Format == "date-time":
		if typ != timeType {
			return fmt.Errorf("date-time is %s, want time.Time", typ)
		}
	case base == "string":
		if typ.Kind() != reflect.String {
			return fmt.Errorf("string is %s", typ)
		}
	case base == "integer":
		if typ.Kind() != reflect.Int64 {
			return fmt.Errorf("integer is %s, want int64", typ)
		}
	case base == "boolean":
		if typ.Kind() != reflect.Bool {
			return fmt.Errorf("boolean is %s", typ)
		}
	case base == "array":
		if typ.Kind() != reflect.Slice || s.Items == nil {
			return fmt.Errorf("array is %s", typ)
		}
		item := resolve(t, all, s.Items)
		if s.Items.Ref != "" {
			name := strings.TrimPrefix(s.Items.Ref, "#/components/schemas/")
			if want := goTypes[name]; want != nil && typ.Elem() != want {
				return fmt.Errorf("array of %s is []%s, want []%s", name, typ.Elem(), want)
			}
		}
		return matches(t, all, item, false, typ.Elem())
	case base == "object":
		if typ.Kind() != reflect.Struct {
			return fmt.Errorf("object is %s", typ)
		}
	default:
		return fmt.Errorf("type %v not handled by this test", s.Type)
	}
	return nil
}

// example builds an instance of schema s: every property set, a value per
// type (nullable ones null when nulls), distinct integers so a field read
// twice would show.
func example(t *testing.T, all map[string]*schema, s *schema, nulls bool, n *int) any {
	t.Helper()
	s = resolve(t, all, s)
	if s.Type.nullable() && nulls {
		return nil
	}
	if len(s.Enum) > 0 {
		return s.Enum[len(s.Enum)-1]
	}
	*n++
	switch base := s.Type.base(); {
	case base == "string" && s.Format == "date-time":
		return time.Date(2026, 12, 1, 10, 0, *n, 0, time.UTC).Format(time.RFC3339Nano)
	case base == "string":
		return fmt.Sprintf("s-%d", *n)
	case base == "integer":
		return *n
	case base == "boolean":
		return true
	case base == "array":
		return []any{example(t, all, s.Items, nulls, n), example(t, all, s.Items, nulls, n)}
	case base == "object":
		o := map[string]any{}
		for _, p := range slices.Sorted(maps.Keys(s.Properties)) { // sorted: the same example every run
			o[p] = example(t, all, s.Properties[p], nulls, n)
		}
		return o
	}
	t.Fatalf("type %v not handled by this test", s.Type)
	return nil
}

// TestContractExample: an order built from the contract, every property
// set (once with the nullable timestamps null, once not), decodes into the
// client's Order with no unknown field and encodes back to the same JSON.
func TestContractExample(t *testing.T) {
	all := loadSchemas(t)
	for _, nulls := range []bool{true, false} {
		t.Run(fmt.Sprintf("nulls=%v", nulls), func(t *testing.T) {
			n := 0
			want, err := json.Marshal(example(t, all, all["Order"], nulls, &n))
			if err != nil {
				t.Fatal(err)
			}
			dec := json.NewDecoder(bytes.NewReader(want))
			dec.DisallowUnknownFields()
			var o Order
			if err := dec.Decode(&o); err != nil {
				t.Fatalf("the contract's order does not decode: %v\n%s", err, want)
			}
			got, err := json.Marshal(o)
			if err != nil {
				t.Fatal(err)
			}
			var g, w any
			_ = json.Unmarshal(got, &g)
			_ = json.Unmarshal(want, &w)
			if !reflect.DeepEqual(g, w) {
				t.Errorf("round trip\n got %s\nwant %s", got, want)
			}
		})
	}
}
