package config

import (
	"errors"
	"testing"
)

func TestLoopbackHost(t *testing.T) {
	for host, want := range map[string]bool{
		"localhost": true, "LocalHost": true, "127.0.0.1": true, "127.1.2.3": true, "::1": true,
		"10.0.0.1": false, "db.internal": false, "": false, "0.0.0.0": false,
	} {
		if got := LoopbackHost(host); got != want {
			t.Errorf("LoopbackHost(%q) = %v, want %v", host, got, want)
		}
	}
}

func TestPostgresURL(t *testing.T) {
	ok := func(string) error { return nil }
	bad := func(string) error { return errors.New("no") }
	tests := []struct {
		name, url, pass string
		parse           func(string) error
		wantVar         string // "" = valid
	}{
		{"local stack", "postgres://ecom:ecom@127.0.0.1:15432/ecom", "", ok, ""},
		{"postgresql scheme", "postgresql://u@db:5432/x", "", ok, ""},
		{"not postgres", "mysql://u@db/x", "", ok, "URL"},
		{"no host", "postgres:///x", "", ok, "URL"},
		{"driver refuses", "postgres://u@db/x", "", bad, "URL"},
		{"local password off loopback", "postgres://ecom:ecom@db.internal/ecom", "", ok, "PASS"},
		{"local password off loopback, overridden", "postgres://ecom:ecom@db.internal/ecom", "s3cret", ok, ""},
		{"another password off loopback", "postgres://ecom:other@db.internal/ecom", "", ok, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := PostgresURL("URL", "PASS", tt.url, tt.pass, "ecom", tt.parse)
			var ce *Error
			switch {
			case tt.wantVar == "" && err != nil:
				t.Errorf("PostgresURL = %v, want nil", err)
			case tt.wantVar != "" && (!errors.As(err, &ce) || ce.Var != tt.wantVar):
				t.Errorf("PostgresURL = %v, want an error of %s", err, tt.wantVar)
			}
		})
	}
}
