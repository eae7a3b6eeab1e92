package config

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"reflect"
	"slices"
	"strings"
)

// Redacted replaces a secret wherever a Redactor prints it.
const Redacted = "[REDACTED]"

// A secret is found two ways, so no caller has to remember a special case:
//
//   - a field tagged `secret:"true"` (passwords, bearer tokens): its whole value;
//   - any string value holding a URL with credentials: the password of its
//     userinfo (or a lone userinfo, which is often a token, as in
//     https://TOKEN@host), and the values of query parameters named like a
//     credential (token, key, secret, password, sig, auth, credential).
//
// Load and LoadFrom never return an error that echoes either kind; a service
// builds a Redactor from its loaded config and passes everything it prints
// (its logs, its exit line, its readiness detail) through it.

// Redactor hides a configuration's secrets in text about to be printed.
// The zero value and nil hide nothing.
type Redactor struct {
	rep *strings.Replacer
}

// NewRedactor returns a Redactor for the secrets of cfg (a struct or a
// pointer to one, walked like Load walks it).
func NewRedactor(cfg any) *Redactor {
	var secrets []string
	v := reflect.ValueOf(cfg)
	for v.Kind() == reflect.Pointer || v.Kind() == reflect.Interface {
		if v.IsNil() {
			return newRedactor(nil)
		}
		v = v.Elem()
	}
	if v.Kind() == reflect.Struct {
		collect(v, &secrets)
	}
	return newRedactor(secrets)
}

func collect(v reflect.Value, out *[]string) {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		fv := v.Field(i)
		switch {
		case f.Type.Kind() == reflect.Struct && f.Type != durationType:
			collect(fv, out)
		case fv.Kind() == reflect.String:
			*out = append(*out, secretsOf(fv.String(), isSecret(f))...)
		case fv.Kind() == reflect.Slice && fv.Type().Elem().Kind() == reflect.String:
			for j := 0; j < fv.Len(); j++ {
				*out = append(*out, secretsOf(fv.Index(j).String(), isSecret(f))...)
			}
		}
	}
}

func isSecret(f reflect.StructField) bool { return f.Tag.Get("secret") == "true" }

// secretsOf is what must never be printed of raw: all of it for a secret
// field, else the credentials of the URLs it holds.
func secretsOf(raw string, secret bool) []string {
	if secret {
		return []string{raw, strings.TrimSpace(raw)}
	}
	return urlSecrets(raw)
}

func newRedactor(secrets []string) *Redactor {
	secrets = slices.DeleteFunc(secrets, func(s string) bool { return s == "" })
	if len(secrets) == 0 {
		return &Redactor{}
	}
	// Longest first: strings.Replacer tries its pairs in order at each
	// position, and a secret must not be half-hidden by a shorter one
	// that it contains.
	slices.SortFunc(secrets, func(a, b string) int { return cmp.Compare(len(b), len(a)) })
	secrets = slices.Compact(secrets)
	pairs := make([]string, 0, 2*len(secrets))
	for _, s := range secrets {
		pairs = append(pairs, s, Redacted)
	}
	return &Redactor{rep: strings.NewReplacer(pairs...)}
}

// String returns s with every secret replaced by [Redacted].
func (r *Redactor) String(s string) string {
	if r == nil || r.rep == nil {
		return s
	}
	return r.rep.Replace(s)
}

// Error returns err unchanged when its message holds no secret, else an
// error with the redacted message. The original stays reachable with
// errors.Is and errors.As for control flow; print the returned error itself.
// A *Error is returned as a redacted *Error, so callers that take Var and
// Msg apart still get a safe Msg.
func (r *Redactor) Error(err error) error {
	if err == nil || r == nil || r.rep == nil {
		return err
	}
	if ce, ok := err.(*Error); ok {
		if msg := r.String(ce.Msg); msg != ce.Msg {
			return &Error{Var: ce.Var, Msg: msg}
		}
		return err
	}
	msg := err.Error()
	red := r.String(msg)
	if red == msg {
		return err
	}
	return &redactedError{msg: red, err: err}
}

type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// Handler wraps h so every record's message and attribute values are
// redacted before h formats them. Logs are rare (the runtime counts bad
// records instead of logging them), so the cost of scanning is negligible.
func (r *Redactor) Handler(h slog.Handler) slog.Handler {
	if r == nil || r.rep == nil {
		return h
	}
	return redactHandler{h: h, r: r}
}

type redactHandler struct {
	h slog.Handler
	r *Redactor
}

func (h redactHandler) Enabled(ctx context.Context, l slog.Level) bool { return h.h.Enabled(ctx, l) }

func (h redactHandler) Handle(ctx context.Context, rec slog.Record) error {
	out := slog.NewRecord(rec.Time, rec.Level, h.r.String(rec.Message), rec.PC)
	rec.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(h.r.attr(a))
		return true
	})
	return h.h.Handle(ctx, out)
}

func (h redactHandler) WithAttrs(as []slog.Attr) slog.Handler {
	red := make([]slog.Attr, len(as))
	for i, a := range as {
		red[i] = h.r.attr(a)
	}
	return redactHandler{h: h.h.WithAttrs(red), r: h.r}
}

func (h redactHandler) WithGroup(name string) slog.Handler {
	return redactHandler{h: h.h.WithGroup(name), r: h.r}
}

func (r *Redactor) attr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		return slog.String(a.Key, r.String(v.String()))
	case slog.KindGroup:
		g := v.Group()
		red := make([]any, len(g))
		for i, ga := range g {
			red[i] = r.attr(ga)
		}
		return slog.Group(a.Key, red...)
	case slog.KindAny:
		if err, ok := v.Any().(error); ok {
			return slog.String(a.Key, r.String(err.Error()))
		}
		// Keep the value's structure (a list stays a JSON list) unless
		// its printed form holds a secret.
		s := fmt.Sprint(v.Any())
		if red := r.String(s); red != s {
			return slog.String(a.Key, red)
		}
	}
	return slog.Attr{Key: a.Key, Value: v}
}

// RedactURL returns s with the credentials of the URLs in it replaced by
// [Redacted]: a userinfo password (or a lone userinfo) and credential-like
// query values. It works on text that does not parse as a URL, so a config
// error about a malformed URL can still quote it.
func RedactURL(s string) string { return newRedactor(urlSecrets(s)).String(s) }

// credentialParams are substrings of query parameter names whose values are
// treated as secrets (api_key, access_token, X-Amz-Signature, ...).
var credentialParams = []string{"token", "key", "secret", "passw", "sig", "auth", "credential"}

// urlSecrets finds the credentials of every scheme://authority in s, by
// string scanning rather than url.Parse, which rejects many of the inputs
// whose errors must not leak them.
func urlSecrets(s string) []string {
	var out []string
	rest := s
	for {
		i := strings.Index(rest, "://")
		if i < 0 {
			return out
		}
		rest = rest[i+3:]
		end := strings.IndexFunc(rest, func(c rune) bool {
			return c == ' ' || c == ',' || c == '"' || c == '\'' || c == '\n' || c == '\t'
		})
		u := rest
		if end >= 0 {
			u = rest[:end]
		}
		authority := u
		if j := strings.IndexAny(authority, "/?#"); j >= 0 {
			authority = authority[:j]
		}
		if at := strings.LastIndexByte(authority, '@'); at >= 0 {
			userinfo := authority[:at]
			secret := userinfo
			if c := strings.IndexByte(userinfo, ':'); c >= 0 {
				secret = userinfo[c+1:]
			}
			out = append(out, secret)
			if dec, err := url.PathUnescape(secret); err == nil {
				out = append(out, dec)
			}
		}
		if q := strings.IndexByte(u, '?'); q >= 0 {
			query := u[q+1:]
			if h := strings.IndexByte(query, '#'); h >= 0 {
				query = query[:h]
			}
			for _, kv := range strings.Split(query, "&") {
				k, v, ok := strings.Cut(kv, "=")
				if !ok || v == "" || !credentialName(k) {
					continue
				}
				out = append(out, v)
				if dec, err := url.QueryUnescape(v); err == nil {
					out = append(out, dec)
				}
			}
		}
	}
}

func credentialName(k string) bool {
	k = strings.ToLower(k)
	for _, c := range credentialParams {
		if strings.Contains(k, c) {
			return true
		}
	}
	return false
}
