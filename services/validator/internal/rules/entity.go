package rules

import (
	"fmt"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/ecomstream/platform/pkg/events"
)

// Entity is one kind of record the validator judges: its dead-letter entity
// name (also the rule files' `entity`) and the generated Go type of its Avro
// contract. Adding an entity is one row in Entities and one rule file.
type Entity struct {
	Name string
	Type reflect.Type // the struct type in pkg/events
}

// Entities is the table of entities rule files may name.
var Entities = []Entity{
	{Name: "click_event", Type: reflect.TypeFor[events.ClickEvent]()},
	{Name: "order", Type: reflect.TypeFor[events.Order]()},
	{Name: "product_change", Type: reflect.TypeFor[events.ProductChange]()},
	{Name: "customer_change", Type: reflect.TypeFor[events.CustomerChange]()},
}

func entityNamed(name string) (Entity, bool) {
	for _, e := range Entities {
		if e.Name == name {
			return e, true
		}
	}
	return Entity{}, false
}

func entityNames() string {
	names := make([]string, len(Entities))
	for i, e := range Entities {
		names[i] = e.Name
	}
	return strings.Join(names, ", ")
}

// RecordTimestamp is the pseudo-field naming the Kafka timestamp of the input
// record (a dotted name, so it can never clash with an Avro field name).
const RecordTimestamp = "record.timestamp"

type kind uint8

const (
	kString kind = iota + 1
	kInt
	kFloat
	kBool
	kTime
	kSlice
	kStruct
)

func (k kind) String() string {
	return [...]string{"?", "string", "integer", "number", "boolean", "timestamp", "array", "record"}[k]
}

// field is an accessor of one Avro field of an entity, resolved at load to
// the index of the Go struct field that carries its `avro` tag.
type field struct {
	name  string
	index int  // struct field index; -1 for RecordTimestamp
	ptr   bool // nullable (a union with null)
	kind  kind
}

// value is a field's value in one record; it lives on the stack.
type value struct {
	null bool
	s    string
	i    int64
	f    float64
	b    bool
	t    time.Time
	n    int // length of an array
}

// Meta is what a verdict may depend on besides the record itself.
type Meta struct {
	RecordTime time.Time // the input Kafka record's timestamp; zero if none
}

func (f *field) get(rec reflect.Value, m Meta) value {
	if f.index < 0 {
		// Records without a timestamp (before 0.10's format) carry -1.
		if m.RecordTime.IsZero() || m.RecordTime.UnixMilli() < 0 {
			return value{null: true}
		}
		return value{t: m.RecordTime}
	}
	v := rec.Field(f.index)
	if f.ptr {
		if v.IsNil() {
			return value{null: true}
		}
		v = v.Elem()
	}
	switch f.kind {
	case kString:
		return value{s: v.String()}
	case kInt:
		return value{i: v.Int()}
	case kFloat:
		return value{f: v.Float()}
	case kBool:
		return value{b: v.Bool()}
	case kTime:
		return value{t: *(*time.Time)(v.Addr().UnsafePointer())}
	case kSlice:
		return value{n: v.Len(), null: v.IsNil()}
	}
	return value{}
}

// missing reports whether the field is null or, with blank, a blank string
// or an empty array: get without building a value (the hot path of required).
func (f *field) missing(rec reflect.Value, m Meta, blank bool) bool {
	if f.index < 0 {
		return m.RecordTime.IsZero() || m.RecordTime.UnixMilli() < 0
	}
	v := rec.Field(f.index)
	if f.ptr {
		if v.IsNil() {
			return true
		}
		v = v.Elem()
	}
	if !blank {
		return f.kind == kSlice && v.IsNil()
	}
	switch f.kind {
	case kString:
		return strings.TrimSpace(v.String()) == ""
	case kSlice:
		return v.Len() == 0
	}
	return false
}

// time reads a timestamp field; ok is false when it is null.
func (f *field) time(rec reflect.Value, m Meta) (t time.Time, ok bool) {
	if f.index < 0 {
		if m.RecordTime.IsZero() || m.RecordTime.UnixMilli() < 0 {
			return time.Time{}, false
		}
		return m.RecordTime, true
	}
	v := rec.Field(f.index)
	if f.ptr {
		if v.IsNil() {
			return time.Time{}, false
		}
		v = v.Elem()
	}
	return *(*time.Time)(v.Addr().UnsafePointer()), true
}

// show renders a value for a message (failure path only).
func (f *field) show(v value) string {
	if v.null {
		return "null"
	}
	switch f.kind {
	case kString:
		return fmt.Sprintf("%q", truncate(v.s, 80))
	case kInt:
		return fmt.Sprint(v.i)
	case kFloat:
		return fmt.Sprint(v.f)
	case kBool:
		return fmt.Sprint(v.b)
	case kTime:
		return v.t.UTC().Format(time.RFC3339)
	case kSlice:
		return fmt.Sprintf("%d items", v.n)
	}
	return "?"
}

var timeType = reflect.TypeFor[time.Time]()

// resolve finds the accessor of the Avro field name in entity e.
func resolve(e Entity, name string) (*field, error) {
	if name == RecordTimestamp {
		return &field{name: name, index: -1, ptr: true, kind: kTime}, nil
	}
	for i := range e.Type.NumField() {
		sf := e.Type.Field(i)
		if tag, _, _ := strings.Cut(sf.Tag.Get("avro"), ","); tag != name {
			continue
		}
		f := &field{name: name, index: i}
		t := sf.Type
		if t.Kind() == reflect.Pointer {
			f.ptr, t = true, t.Elem()
		}
		switch {
		case t == timeType:
			f.kind = kTime
		case t.Kind() == reflect.String:
			f.kind = kString
		case t.Kind() >= reflect.Int && t.Kind() <= reflect.Int64:
			f.kind = kInt
		case t.Kind() == reflect.Float32 || t.Kind() == reflect.Float64:
			f.kind = kFloat
		case t.Kind() == reflect.Bool:
			f.kind = kBool
		case t.Kind() == reflect.Slice && t.Elem().Kind() != reflect.Uint8:
			f.kind = kSlice
		case t.Kind() == reflect.Struct:
			f.kind = kStruct
		default:
			return nil, fmt.Errorf("field %s has a type (%s) rules cannot judge", name, sf.Type)
		}
		return f, nil
	}
	return nil, fmt.Errorf("%s has no field %q (fields: %s)", e.Name, name, strings.Join(avroNames(e.Type), ", "))
}

func avroNames(t reflect.Type) []string {
	var names []string
	for i := range t.NumField() {
		if tag, _, _ := strings.Cut(t.Field(i).Tag.Get("avro"), ","); tag != "" {
			names = append(names, tag)
		}
	}
	return names
}

// goNames maps the Avro names of t and of the records nested in it to their
// Go field names, for expressions (expr addresses Go names). A name that
// means two different Go fields in two records is an error.
func goNames(t reflect.Type) (map[string]string, error) {
	out := map[string]string{}
	seen := map[reflect.Type]bool{}
	var walk func(reflect.Type) error
	walk = func(t reflect.Type) error {
		for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct || t == timeType || seen[t] {
			return nil
		}
		seen[t] = true
		for i := range t.NumField() {
			sf := t.Field(i)
			tag, _, _ := strings.Cut(sf.Tag.Get("avro"), ",")
			if tag == "" {
				continue
			}
			if prev, ok := out[tag]; ok && prev != sf.Name {
				return fmt.Errorf("avro name %s means both %s and %s", tag, prev, sf.Name)
			}
			out[tag] = sf.Name
			if err := walk(sf.Type); err != nil {
				return err
			}
		}
		return nil
	}
	err := walk(t)
	return out, err
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// base is the addressable struct a record pointer points to.
func base(ptr any) reflect.Value {
	return reflect.ValueOf(ptr).Elem()
}
