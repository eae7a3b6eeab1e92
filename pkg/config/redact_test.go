package config

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func TestRedactURL(t *testing.T) {
	tests := []struct {
		give, want string
	}{
		{"http://127.0.0.1:18081", "http://127.0.0.1:18081"},
		{"https://user:pa55word@registry:8081/apis", "https://user:[REDACTED]@registry:8081/apis"},
		{"https://ghp_T0KEN@host/x", "https://[REDACTED]@host/x"},
		{"https://host/p?api_key=abc123&region=eu", "https://host/p?api_key=[REDACTED]&region=eu"},
		{"https://host/p?X-Amz-Signature=s1g#frag", "https://host/p?X-Amz-Signature=[REDACTED]#frag"},
		{`unable to GET "http://u:pw-9@h/subjects": refused`, `unable to GET "http://u:[REDACTED]@h/subjects": refused`},
		{"a http://u:one@h, b http://v:two@k", "a http://u:[REDACTED]@h, b http://v:[REDACTED]@k"},
		{"no url at all", "no url at all"},
		{"user@example.com", "user@example.com"},
	}
	for _, tt := range tests {
		if got := RedactURL(tt.give); got != tt.want {
			t.Errorf("RedactURL(%q) = %q, want %q", tt.give, got, tt.want)
		}
	}
}

type redactCfg struct {
	Nested struct {
		URL string `env:"URL"`
	}
	Token   string   `env:"TOKEN" secret:"true"`
	Plain   string   `env:"PLAIN"`
	Brokers []string `env:"BROKERS"`
}

func TestRedactor(t *testing.T) {
	var cfg redactCfg
	cfg.Nested.URL = "http://svc:url-secret@registry"
	cfg.Token = "token-0123456789abcdef"
	cfg.Plain = "visible"
	cfg.Brokers = []string{"sasl://k:broker-secret@b1:9092"}
	r := NewRedactor(&cfg)

	msg := "dial http://svc:url-secret@registry with token-0123456789abcdef and broker-secret: visible"
	want := "dial http://svc:[REDACTED]@registry with [REDACTED] and [REDACTED]: visible"
	if got := r.String(msg); got != want {
		t.Errorf("String = %q, want %q", got, want)
	}

	base := errors.New("boom")
	err := r.Error(fmt.Errorf("GET http://svc:url-secret@registry: %w", base))
	if strings.Contains(err.Error(), "url-secret") || !errors.Is(err, base) {
		t.Errorf("Error = %v (Is base: %v)", err, errors.Is(err, base))
	}
	if clean := errors.New("clean"); r.Error(clean) != clean {
		t.Error("an error without secrets is rewrapped")
	}
	ce := r.Error(Errorf("TOKEN", "bad %s", cfg.Token))
	if e, ok := ce.(*Error); !ok || e.Var != "TOKEN" || strings.Contains(e.Msg, cfg.Token) {
		t.Errorf("config error = %#v", ce)
	}

	var none *Redactor
	if none.String(msg) != msg || NewRedactor(&redactCfg{}).String(msg) != msg {
		t.Error("a redactor without secrets changes text")
	}
}

func TestRedactorHandler(t *testing.T) {
	var cfg redactCfg
	cfg.Token = "token-0123456789abcdef"
	cfg.Nested.URL = "http://svc:url-secret@registry"
	var buf bytes.Buffer
	log := slog.New(NewRedactor(&cfg).Handler(slog.NewJSONHandler(&buf, nil)))
	log = log.With("url", cfg.Nested.URL).WithGroup("g")
	log.InfoContext(context.Background(), "using token-0123456789abcdef",
		"err", errors.New("GET http://svc:url-secret@registry/subjects: 401"),
		"list", []string{"a", cfg.Token},
		"n", 3,
		slog.Group("sub", "tok", cfg.Token))
	out := buf.String()
	for _, s := range []string{"url-secret", cfg.Token} {
		if strings.Contains(out, s) {
			t.Errorf("log holds %q: %s", s, out)
		}
	}
	for _, s := range []string{`"url":"http://svc:[REDACTED]@registry"`, `"n":3`, `"msg":"using [REDACTED]"`, `"tok":"[REDACTED]"`} {
		if !strings.Contains(out, s) {
			t.Errorf("log lacks %s: %s", s, out)
		}
	}
}
