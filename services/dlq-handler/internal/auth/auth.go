// Package auth is dlq-handler's access control: the tokens callers present
// (a tokens file of named, hashed tokens, re-read when it changes, and two
// simple tokens from the environment), the Identity a token stands for
// (name, role, whether it may see personal data), and HTTP middleware that
// puts the Identity into the request context and checks a role.
//
// The middleware is split in two on purpose: Bearer authenticates and
// Require authorises by reading the Identity from the context only. A later
// web console logs in with a token (Tokens.Lookup), keeps the Identity in a
// cookie session, puts it into the context with WithIdentity and reuses
// Require unchanged.
package auth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/ecomstream/platform/pkg/config"
)

// Role is what a caller may do.
type Role string

// The roles; an operator may do everything a viewer may.
const (
	Viewer   Role = "viewer"
	Operator Role = "operator"
)

func (r Role) rank() int {
	switch r {
	case Viewer:
		return 1
	case Operator:
		return 2
	}
	return 0
}

// Valid reports whether r is a known role.
func (r Role) Valid() bool { return r.rank() > 0 }

// Identity is who a request acts as: Name goes to the audit log, Role says
// what it may do, PII whether it sees personal data unredacted.
type Identity struct {
	Name string `json:"name"`
	Role Role   `json:"role"`
	PII  bool   `json:"pii"`
}

// Can reports whether the identity holds role r (or a higher one).
func (i Identity) Can(r Role) bool { return i.Role.rank() >= r.rank() && r.Valid() }

// MinTokenLen is the shortest token DLQ_OPERATOR_TOKEN and DLQ_VIEWER_TOKEN take.
const MinTokenLen = 16

// Config is the API's part of the service config.
type Config struct {
	TokensFile    string `env:"DLQ_TOKENS_FILE" default:"" usage:"JSON file of API tokens: [{\"name\", \"role\": viewer|operator, \"pii\": bool, \"sha256\": hex of the token}]; re-read when it changes"`
	OperatorToken string `env:"DLQ_OPERATOR_TOKEN" default:"" secret:"true" usage:"operator token (name operator, no PII), at least 16 characters; for a simple setup beside or instead of DLQ_TOKENS_FILE"`
	ViewerToken   string `env:"DLQ_VIEWER_TOKEN" default:"" secret:"true" usage:"viewer token (name viewer, no PII), at least 16 characters"`
}

// Validate implements config.Validator: the file must load, the simple
// tokens be long enough, and at least one token be configured.
func (c *Config) Validate() error {
	for _, t := range []struct{ name, v string }{{"DLQ_OPERATOR_TOKEN", c.OperatorToken}, {"DLQ_VIEWER_TOKEN", c.ViewerToken}} {
		if t.v != "" && len(t.v) < MinTokenLen {
			return config.Errorf(t.name, "must be at least %d characters", MinTokenLen)
		}
	}
	if c.OperatorToken != "" && c.OperatorToken == c.ViewerToken {
		return config.Errorf("DLQ_VIEWER_TOKEN", "must differ from DLQ_OPERATOR_TOKEN")
	}
	if c.TokensFile != "" {
		if _, err := readFile(c.TokensFile); err != nil {
			return config.Errorf("DLQ_TOKENS_FILE", "%v", err)
		}
	}
	// No token at all is valid: the store still fills (its main job), and
	// the API refuses every request (main warns at start).
	return nil
}

// entry is one accepted token: its hash and who it is.
type entry struct {
	sum [sha256.Size]byte
	id  Identity
}

// fileEntry is one element of the tokens file.
type fileEntry struct {
	Name   string `json:"name"`
	Role   Role   `json:"role"`
	PII    bool   `json:"pii"`
	SHA256 string `json:"sha256"`
}

// Tokens maps presented tokens to identities. Safe for concurrent use.
type Tokens struct {
	file   string
	static []entry
	log    *slog.Logger
	every  time.Duration
	now    func() time.Time

	mu        sync.Mutex
	fromFile  []entry
	content   [sha256.Size]byte // of the file last read (good or bad)
	checked   time.Time
	lastError string
}

// Option configures Tokens.
type Option interface{ apply(*Tokens) }

type optionFunc func(*Tokens)

func (f optionFunc) apply(t *Tokens) { f(t) }

// WithLogger logs reloads of the tokens file and why a changed file was
// refused.
func WithLogger(l *slog.Logger) Option { return optionFunc(func(t *Tokens) { t.log = l }) }

// WithCheckInterval sets how often (at most) the tokens file is re-read to
// see whether it changed; default 2s.
func WithCheckInterval(d time.Duration) Option { return optionFunc(func(t *Tokens) { t.every = d }) }

// withClock is for tests.
func withClock(now func() time.Time) Option { return optionFunc(func(t *Tokens) { t.now = now }) }

// New loads the tokens of cfg. A tokens file that does not load is an error.
func New(cfg Config, opts ...Option) (*Tokens, error) {
	t := &Tokens{file: cfg.TokensFile, log: slog.New(slog.DiscardHandler), every: 2 * time.Second, now: time.Now}
	for _, o := range opts {
		o.apply(t)
	}
	for _, s := range []struct {
		tok  string
		name string
		role Role
	}{{cfg.OperatorToken, "operator", Operator}, {cfg.ViewerToken, "viewer", Viewer}} {
		if s.tok != "" {
			t.static = append(t.static, entry{sum: sha256.Sum256([]byte(s.tok)), id: Identity{Name: s.name, Role: s.role}})
		}
	}
	if t.file != "" {
		if err := t.Reload(); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// Configured reports whether any token source is set (a tokens file, even
// an empty one, counts: tokens can be added to it while the service runs).
// Without one every request is refused.
func (t *Tokens) Configured() bool { return t.file != "" || len(t.static) > 0 }

// Reload re-reads the tokens file now. A file that does not parse or holds
// an invalid entry is an error naming the problem, and the tokens loaded
// before stay in force.
func (t *Tokens) Reload() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.reloadLocked(true)
}

// reloadLocked reads the file and, when its content changed since the last
// read (or force), parses it. Called with t.mu held.
func (t *Tokens) reloadLocked(force bool) error {
	t.checked = t.now()
	raw, err := os.ReadFile(t.file)
	if err != nil {
		return t.refuse(fmt.Errorf("auth: tokens file DLQ_TOKENS_FILE: %w", err))
	}
	sum := sha256.Sum256(raw)
	if !force && sum == t.content {
		return nil
	}
	t.content = sum
	es, err := parse(raw)
	if err != nil {
		return t.refuse(fmt.Errorf("auth: tokens file DLQ_TOKENS_FILE %s: %w", t.file, err))
	}
	t.fromFile, t.lastError = es, ""
	t.log.Info("API tokens loaded", "file", t.file, "tokens", len(es))
	return nil
}

// refuse keeps the previous tokens and logs err once per distinct error.
func (t *Tokens) refuse(err error) error {
	if msg := err.Error(); msg != t.lastError {
		t.lastError = msg
		t.log.Error("API tokens file refused; the previous tokens stay in force", "err", err)
	}
	return err
}

// readFile loads and checks a tokens file (for Config.Validate).
func readFile(path string) ([]entry, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	es, err := parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return es, nil
}

func parse(raw []byte) ([]entry, error) {
	var fes []fileEntry
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&fes); err != nil {
		return nil, fmt.Errorf(`want a JSON array [{"name", "role", "pii", "sha256"}]: %w`, err)
	}
	names := map[string]bool{}
	sums := map[[sha256.Size]byte]bool{}
	es := make([]entry, 0, len(fes))
	for i, fe := range fes {
		at := fmt.Sprintf("entry %d", i)
		if fe.Name == "" {
			return nil, fmt.Errorf("%s: name is empty", at)
		}
		at += " (" + fe.Name + ")"
		if names[fe.Name] {
			return nil, fmt.Errorf("%s: the name is used twice", at)
		}
		if !fe.Role.Valid() {
			return nil, fmt.Errorf("%s: role %q, want viewer or operator", at, fe.Role)
		}
		b, err := hex.DecodeString(fe.SHA256)
		if err != nil || len(b) != sha256.Size {
			return nil, fmt.Errorf("%s: sha256 must be the 64 hex digits of the token's SHA-256", at)
		}
		var sum [sha256.Size]byte
		copy(sum[:], b)
		if sums[sum] {
			return nil, fmt.Errorf("%s: the same token as an earlier entry", at)
		}
		names[fe.Name], sums[sum] = true, true
		es = append(es, entry{sum: sum, id: Identity{Name: fe.Name, Role: fe.Role, PII: fe.PII}})
	}
	return es, nil
}

// Lookup returns the identity of token. It re-reads the tokens file when
// the check interval passed, so a changed file takes effect within it.
// Every configured token is compared, in constant time, whatever matches.
func (t *Tokens) Lookup(token string) (Identity, bool) {
	if token == "" {
		return Identity{}, false
	}
	t.mu.Lock()
	if t.file != "" && t.now().Sub(t.checked) >= t.every {
		_ = t.reloadLocked(false) // logged; the previous tokens stay
	}
	fromFile := t.fromFile
	t.mu.Unlock()
	sum := sha256.Sum256([]byte(token))
	var found Identity
	ok := 0
	for _, es := range [][]entry{t.static, fromFile} {
		for _, e := range es {
			if subtle.ConstantTimeCompare(sum[:], e.sum[:]) == 1 && ok == 0 {
				found, ok = e.id, 1
			}
		}
	}
	return found, ok == 1
}

type ctxKey struct{}

// WithIdentity returns ctx carrying id.
func WithIdentity(ctx context.Context, id Identity) context.Context {
	return context.WithValue(ctx, ctxKey{}, id)
}

// FromContext returns the identity Bearer (or a console session) put into ctx.
func FromContext(ctx context.Context) (Identity, bool) {
	id, ok := ctx.Value(ctxKey{}).(Identity)
	return id, ok
}

// Bearer authenticates "Authorization: Bearer <token>": a known token puts
// its Identity into the request context; a missing or unknown one is 401.
func (t *Tokens) Bearer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || tok == "" {
			unauthorized(w, "a bearer token is required (Authorization: Bearer <token>)")
			return
		}
		id, ok := t.Lookup(tok)
		if !ok {
			unauthorized(w, "the bearer token is not known")
			return
		}
		next.ServeHTTP(w, r.WithContext(WithIdentity(r.Context(), id)))
	})
}

// Require lets through requests whose context identity holds role: none is
// 401, a lower role 403.
func Require(role Role) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			id, ok := FromContext(r.Context())
			if !ok {
				unauthorized(w, "not authenticated")
				return
			}
			if !id.Can(role) {
				WriteError(w, http.StatusForbidden, "forbidden", fmt.Sprintf("this needs the %s role; %s is a %s", role, id.Name, id.Role))
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

func unauthorized(w http.ResponseWriter, msg string) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="dlq-handler"`)
	WriteError(w, http.StatusUnauthorized, "unauthorized", msg)
}

// WriteError writes the API's error body {"error": {"code", "message"}}.
func WriteError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": code, "message": msg}})
}
