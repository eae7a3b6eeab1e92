package config

import (
	"errors"
	"reflect"
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
