// Package config reads a service's configuration from environment variables.
//
// A service declares one Config struct whose fields carry `env` and `default`
// tags (and `usage` for the generated docs, `secret:"true"` for passwords and
// tokens); Load fills it and calls its Validate method. Any failure is an
// *Error naming the variable, so main can stop the service with one line that
// tells the operator what to fix. That line never echoes a secret: see
// Redactor.
package config

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// Error is a configuration problem with one variable.
type Error struct {
	Var string // environment variable name, e.g. KAFKA_BROKERS
	Msg string // what is wrong, e.g. "must not be empty"
}

func (e *Error) Error() string { return fmt.Sprintf("config: %s: %s", e.Var, e.Msg) }

// Errorf returns an *Error for variable name.
func Errorf(name, format string, args ...any) error {
	return &Error{Var: name, Msg: fmt.Sprintf(format, args...)}
}

// Validator is implemented by configs (and sub-configs) that check their
// values after loading.
type Validator interface {
	Validate() error
}

// Lookup is the environment source; os.LookupEnv in production, a map in tests.
type Lookup func(key string) (string, bool)

// MapLookup adapts a map to Lookup, for tests.
func MapLookup(m map[string]string) Lookup {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

// Load fills cfg (a pointer to a struct) from the process environment and
// validates it.
func Load(cfg any) error { return LoadFrom(os.LookupEnv, cfg) }

// LoadFrom fills cfg from lookup and validates it. Nested structs are walked;
// a nested struct's `env` tag, if any, is used as a prefix for its fields.
// Every Validator found (nested first, then the outer struct) is called.
// The error never holds the value of a `secret:"true"` variable or the
// credentials of a URL, whichever check produced it.
func LoadFrom(lookup Lookup, cfg any) error {
	v := reflect.ValueOf(cfg)
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		return errors.New("config: Load needs a pointer to a struct")
	}
	// The raw values, not the parsed ones: a secret that failed to parse
	// is exactly the one an error would quote.
	var secrets []string
	err := load(lookup, v.Elem(), "", &secrets)
	return newRedactor(secrets).Error(err)
}

var durationType = reflect.TypeFor[time.Duration]()

func load(lookup Lookup, v reflect.Value, prefix string, secrets *[]string) error {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		fv := v.Field(i)
		name, hasEnv := f.Tag.Lookup("env")
		if f.Type.Kind() == reflect.Struct && f.Type != durationType {
			if err := load(lookup, fv, prefix+name, secrets); err != nil {
				return err
			}
			continue
		}
		if !hasEnv {
			continue
		}
		name = prefix + name
		// A variable that is set, even to "", wins over the default: an
		// empty KAFKA_BROKERS from a mis-rendered manifest must fail
		// validation, not quietly fall back to localhost.
		raw, ok := lookup(name)
		if !ok {
			def, hasDef := f.Tag.Lookup("default")
			if !hasDef {
				continue
			}
			raw = def
		}
		*secrets = append(*secrets, secretsOf(raw, isSecret(f))...)
		if err := set(fv, raw); err != nil {
			return &Error{Var: name, Msg: err.Error()}
		}
	}
	if val, ok := v.Addr().Interface().(Validator); ok {
		if err := val.Validate(); err != nil {
			return err
		}
	}
	return nil
}

func set(fv reflect.Value, raw string) error {
	raw = strings.TrimSpace(raw)
	if raw == "" && fv.Kind() != reflect.String && fv.Kind() != reflect.Slice {
		return errors.New("is set but empty")
	}
	switch {
	case fv.Type() == durationType:
		d, err := time.ParseDuration(raw)
		if err != nil {
			return fmt.Errorf("%q is not a duration (use e.g. 500ms, 10s, 1h)", raw)
		}
		fv.SetInt(int64(d))
		return nil
	}
	switch fv.Kind() {
	case reflect.String:
		fv.SetString(raw)
	case reflect.Bool:
		b, err := strconv.ParseBool(raw)
		if err != nil {
			return fmt.Errorf("%q is not a boolean (use true or false)", raw)
		}
		fv.SetBool(b)
	case reflect.Int, reflect.Int32, reflect.Int64:
		n, err := strconv.ParseInt(raw, 10, fv.Type().Bits())
		if err != nil {
			return fmt.Errorf("%q is not an integer", raw)
		}
		fv.SetInt(n)
	case reflect.Float64:
		n, err := strconv.ParseFloat(raw, 64)
		if err != nil {
			return fmt.Errorf("%q is not a number", raw)
		}
		fv.SetFloat(n)
	case reflect.Slice:
		if fv.Type().Elem().Kind() != reflect.String {
			return fmt.Errorf("unsupported list type %s", fv.Type())
		}
		var out []string
		for _, p := range strings.Split(raw, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
		fv.Set(reflect.ValueOf(out))
	default:
		return fmt.Errorf("unsupported config type %s", fv.Type())
	}
	return nil
}

// Checks used by Validate methods; each returns an *Error for name or nil.

// NotEmpty fails when s is empty.
func NotEmpty(name, s string) error {
	if strings.TrimSpace(s) == "" {
		return Errorf(name, "must not be empty")
	}
	return nil
}

// NonEmptyList fails when l has no elements.
func NonEmptyList(name string, l []string) error {
	if len(l) == 0 {
		return Errorf(name, "must list at least one value")
	}
	return nil
}

// Positive fails when n <= 0.
func Positive[T int | int32 | int64 | float64 | time.Duration](name string, n T) error {
	if n <= 0 {
		return Errorf(name, "must be greater than zero, got %v", n)
	}
	return nil
}

// Between fails when n is outside [lo, hi].
func Between[T int | int32 | int64 | float64 | time.Duration](name string, n, lo, hi T) error {
	if n < lo || n > hi {
		return Errorf(name, "must be between %v and %v, got %v", lo, hi, n)
	}
	return nil
}

// OneOf fails when s is not one of allowed.
func OneOf(name, s string, allowed ...string) error {
	for _, a := range allowed {
		if s == a {
			return nil
		}
	}
	return Errorf(name, "must be one of %s, got %q", strings.Join(allowed, ", "), s)
}

// HTTPURL fails when s is not an absolute http(s) URL.
func HTTPURL(name, s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return Errorf(name, "must be an http(s) URL, got %q", RedactURL(s))
	}
	return nil
}

// HostPort fails when s is not host:port.
func HostPort(name, s string) error {
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return Errorf(name, "must be host:port, got %q", RedactURL(s))
	}
	if p, err := strconv.Atoi(s[i+1:]); err != nil || p < 0 || p > 65535 {
		return Errorf(name, "must be host:port with a valid port, got %q", RedactURL(s))
	}
	return nil
}

// First returns the first non-nil error, so Validate reads as a list.
func First(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// Doc describes one variable for generated documentation.
type Doc struct {
	Var, Default, Usage string
}

// Describe lists the variables cfg reads, with defaults and usage, in field
// order.
func Describe(cfg any) []Doc {
	var out []Doc
	var walk func(t reflect.Type, prefix string)
	walk = func(t reflect.Type, prefix string) {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			name, hasEnv := f.Tag.Lookup("env")
			if f.Type.Kind() == reflect.Struct && f.Type != durationType {
				walk(f.Type, prefix+name)
				continue
			}
			if !hasEnv {
				continue
			}
			out = append(out, Doc{Var: prefix + name, Default: f.Tag.Get("default"), Usage: f.Tag.Get("usage")})
		}
	}
	t := reflect.TypeOf(cfg)
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	walk(t, "")
	return out
}

// Undocumented returns the variables of cfg that doc (a service README) does
// not mention as `NAME`, so a test can keep the README's table true.
func Undocumented(cfg any, doc string) []string {
	var missing []string
	for _, d := range Describe(cfg) {
		if !strings.Contains(doc, "`"+d.Var+"`") {
			missing = append(missing, d.Var)
		}
	}
	return missing
}
