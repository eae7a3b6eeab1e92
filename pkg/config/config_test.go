package config

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

type sub struct {
	Addr string `env:"ADDR" default:":8080"`
}

func (s *sub) Validate() error { return HostPort("HTTP_ADDR", s.Addr) }

type testConfig struct {
	Sub      sub           `env:"HTTP_"`
	Name     string        `env:"NAME" default:"svc" usage:"the name"`
	Brokers  []string      `env:"BROKERS" default:"a:1,b:2"`
	Count    int           `env:"COUNT" default:"3"`
	Ratio    float64       `env:"RATIO" default:"0.5"`
	On       bool          `env:"ON" default:"false"`
	Wait     time.Duration `env:"WAIT" default:"2s"`
	NoEnvTag string
}

func (c *testConfig) Validate() error {
	return First(Positive("COUNT", c.Count), Between("RATIO", c.Ratio, 0, 1))
}

func TestLoadFrom(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		want    testConfig
		wantVar string // variable named by the error, "" = no error
	}{
		{
			name: "defaults",
			want: testConfig{Sub: sub{Addr: ":8080"}, Name: "svc", Brokers: []string{"a:1", "b:2"}, Count: 3, Ratio: 0.5, Wait: 2 * time.Second},
		},
		{
			name: "overrides and prefix",
			env:  map[string]string{"HTTP_ADDR": "127.0.0.1:9", "NAME": "x", "BROKERS": " c:3 , ,d:4", "COUNT": "7", "RATIO": "1", "ON": "true", "WAIT": "150ms"},
			want: testConfig{Sub: sub{Addr: "127.0.0.1:9"}, Name: "x", Brokers: []string{"c:3", "d:4"}, Count: 7, Ratio: 1, On: true, Wait: 150 * time.Millisecond},
		},
		{name: "bad int", env: map[string]string{"COUNT": "many"}, wantVar: "COUNT"},
		{name: "bad duration", env: map[string]string{"WAIT": "5"}, wantVar: "WAIT"},
		{name: "bad bool", env: map[string]string{"ON": "yes please"}, wantVar: "ON"},
		{name: "nested validate", env: map[string]string{"HTTP_ADDR": "nohost"}, wantVar: "HTTP_ADDR"},
		{name: "outer validate", env: map[string]string{"COUNT": "0"}, wantVar: "COUNT"},
		{name: "range", env: map[string]string{"RATIO": "1.5"}, wantVar: "RATIO"},
		{name: "set but empty number", env: map[string]string{"COUNT": ""}, wantVar: "COUNT"},
		{name: "set but empty string is empty", env: map[string]string{"HTTP_ADDR": ""}, wantVar: "HTTP_ADDR"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got testConfig
			err := LoadFrom(MapLookup(tt.env), &got)
			if tt.wantVar != "" {
				var ce *Error
				if !errors.As(err, &ce) || ce.Var != tt.wantVar {
					t.Fatalf("err = %v, want a config error naming %s", err, tt.wantVar)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestErrorIsOneLine(t *testing.T) {
	err := Errorf("KAFKA_BROKERS", "must not be empty")
	if got, want := err.Error(), "config: KAFKA_BROKERS: must not be empty"; got != want {
		t.Errorf("got %q want %q", got, want)
	}
}

func TestDescribe(t *testing.T) {
	docs := Describe(&testConfig{})
	if len(docs) != 7 {
		t.Fatalf("got %d docs: %+v", len(docs), docs)
	}
	if docs[0].Var != "HTTP_ADDR" || docs[1] != (Doc{Var: "NAME", Default: "svc", Usage: "the name"}) {
		t.Errorf("unexpected docs: %+v", docs[:2])
	}
}

func TestChecks(t *testing.T) {
	tests := []struct {
		name string
		err  error
		ok   bool
	}{
		{"hostport ok", HostPort("X", "127.0.0.1:9092"), true},
		{"hostport any", HostPort("X", ":8080"), true},
		{"hostport bad port", HostPort("X", "h:99999"), false},
		{"url ok", HTTPURL("X", "http://h:1"), true},
		{"url scheme", HTTPURL("X", "ftp://h"), false},
		{"oneof", OneOf("X", "b", "a", "b"), true},
		{"oneof bad", OneOf("X", "c", "a", "b"), false},
		{"notempty", NotEmpty("X", "  "), false},
		{"list", NonEmptyList("X", nil), false},
	}
	for _, tt := range tests {
		if (tt.err == nil) != tt.ok {
			t.Errorf("%s: err = %v", tt.name, tt.err)
		}
	}
}

func TestUndocumented(t *testing.T) {
	doc := "| `HTTP_ADDR` | x |\n| `NAME` | y |\n BROKERS without backticks"
	got := Undocumented(&testConfig{}, doc)
	want := []string{"BROKERS", "COUNT", "RATIO", "ON", "WAIT"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

// secretConfig echoes its values in errors the way real checks do: the
// registry URL through HTTPURL, a password through a custom message, and a
// PIN through the parse error of its type.
type secretConfig struct {
	RegistryURL string   `env:"SCHEMA_REGISTRY_URL" default:"http://127.0.0.1:18081"`
	Brokers     []string `env:"KAFKA_BROKERS" default:"127.0.0.1:9092"`
	Password    string   `env:"KAFKA_SASL_PASSWORD" default:"" secret:"true"`
	PIN         int      `env:"PIN" default:"0" secret:"true"`
}

func (c *secretConfig) Validate() error {
	errs := []error{HTTPURL("SCHEMA_REGISTRY_URL", c.RegistryURL)}
	for _, b := range c.Brokers {
		errs = append(errs, HostPort("KAFKA_BROKERS", b))
	}
	if c.Password != "" && len(c.Password) < 12 {
		errs = append(errs, Errorf("KAFKA_SASL_PASSWORD", "%q is shorter than 12 characters", c.Password))
	}
	return First(errs...)
}

// TestLoadNeverEchoesSecrets: whatever check fails, the one-line error names
// the variable but holds neither a secret variable's value nor the
// credentials of a URL.
func TestLoadNeverEchoesSecrets(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		wantVar string
		secret  string // must not appear in the error
	}{
		{"registry URL password", map[string]string{"SCHEMA_REGISTRY_URL": "htp://svc:hunter2-pw@registry:8081"}, "SCHEMA_REGISTRY_URL", "hunter2-pw"},
		{"registry URL token as userinfo", map[string]string{"SCHEMA_REGISTRY_URL": "htp://T0KEN-abcdef@registry"}, "SCHEMA_REGISTRY_URL", "T0KEN-abcdef"},
		{"registry URL query token", map[string]string{"SCHEMA_REGISTRY_URL": "ftp://registry/?api_key=k3y-abcdef"}, "SCHEMA_REGISTRY_URL", "k3y-abcdef"},
		{"escaped URL password", map[string]string{"SCHEMA_REGISTRY_URL": "htp://svc:p%40ss-word@registry"}, "SCHEMA_REGISTRY_URL", "p%40ss-word"},
		{"broker with credentials", map[string]string{"KAFKA_BROKERS": "kafka://u:br0ker-pw@host"}, "KAFKA_BROKERS", "br0ker-pw"},
		{"secret quoted by Validate", map[string]string{"KAFKA_SASL_PASSWORD": "short-pw"}, "KAFKA_SASL_PASSWORD", "short-pw"},
		{"secret quoted by a parse error", map[string]string{"PIN": "12ab34"}, "PIN", "12ab34"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got secretConfig
			err := LoadFrom(MapLookup(tt.env), &got)
			var ce *Error
			if !errors.As(err, &ce) || ce.Var != tt.wantVar {
				t.Fatalf("err = %v, want a config error naming %s", err, tt.wantVar)
			}
			if strings.Contains(err.Error(), tt.secret) || strings.Contains(ce.Msg, tt.secret) {
				t.Errorf("error echoes the secret %q: %v", tt.secret, err)
			}
		})
	}
}
