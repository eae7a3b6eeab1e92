package auth

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ecomstream/platform/pkg/config"
)

func sumHex(tok string) string {
	s := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(s[:])
}

func writeTokens(t *testing.T, path string, v any) {
	t.Helper()
	var raw []byte
	switch v := v.(type) {
	case string:
		raw = []byte(v)
	default:
		var err error
		if raw, err = json.Marshal(v); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
}

const (
	aliceTok = "alice-token-0123456789"
	bobTok   = "bob-token-0123456789ab"
	opTok    = "operator-token-0123456789"
	viewTok  = "viewer-token-0123456789"
)

func fileEntries() []fileEntry {
	return []fileEntry{
		{Name: "alice", Role: Operator, PII: true, SHA256: sumHex(aliceTok)},
		{Name: "bob", Role: Viewer, SHA256: sumHex(bobTok)},
	}
}

func TestLookup(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens.json")
	writeTokens(t, path, fileEntries())
	tk, err := New(Config{TokensFile: path, OperatorToken: opTok, ViewerToken: viewTok})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		give   string
		want   Identity
		wantOK bool
	}{
		{give: aliceTok, want: Identity{Name: "alice", Role: Operator, PII: true}, wantOK: true},
		{give: bobTok, want: Identity{Name: "bob", Role: Viewer}, wantOK: true},
		{give: opTok, want: Identity{Name: "operator", Role: Operator}, wantOK: true},
		{give: viewTok, want: Identity{Name: "viewer", Role: Viewer}, wantOK: true},
		{give: "wrong-token-0123456789"},
		{give: ""},
		{give: sumHex(aliceTok)}, // the hash is not the token
	}
	for _, tt := range tests {
		t.Run(tt.give, func(t *testing.T) {
			got, ok := tk.Lookup(tt.give)
			if ok != tt.wantOK || got != tt.want {
				t.Errorf("Lookup = %+v, %v; want %+v, %v", got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestCan(t *testing.T) {
	tests := []struct {
		id   Identity
		role Role
		want bool
	}{
		{Identity{Role: Operator}, Operator, true},
		{Identity{Role: Operator}, Viewer, true},
		{Identity{Role: Viewer}, Viewer, true},
		{Identity{Role: Viewer}, Operator, false},
		{Identity{Role: "admin"}, Viewer, false},
		{Identity{Role: Operator}, "admin", false},
		{Identity{}, Viewer, false},
	}
	for _, tt := range tests {
		if got := tt.id.Can(tt.role); got != tt.want {
			t.Errorf("%+v.Can(%s) = %v, want %v", tt.id, tt.role, got, tt.want)
		}
	}
}

func TestBadFile(t *testing.T) {
	dup := fileEntries()
	dup[1].Name = "alice"
	same := fileEntries()
	same[1].SHA256 = same[0].SHA256
	role := fileEntries()
	role[0].Role = "admin"
	short := fileEntries()
	short[0].SHA256 = "abc"
	tests := []struct {
		name string
		give any
		want string
	}{
		{"not json", "[{", "want a JSON array"},
		{"object", `{"name":"a"}`, "want a JSON array"},
		{"unknown field", `[{"name":"a","role":"viewer","sha256":"` + sumHex("x") + `","token":"x"}]`, "unknown field"},
		{"no name", []fileEntry{{Role: Viewer, SHA256: sumHex("x")}}, "name is empty"},
		{"duplicate name", dup, "used twice"},
		{"duplicate token", same, "same token"},
		{"bad role", role, `role "admin"`},
		{"bad hash", short, "64 hex digits"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "tokens.json")
			writeTokens(t, path, tt.give)
			_, err := New(Config{TokensFile: path})
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "DLQ_TOKENS_FILE") {
				t.Errorf("New: %v, want an error naming DLQ_TOKENS_FILE with %q", err, tt.want)
			}
			cfg := Config{TokensFile: path}
			var ce *config.Error
			if err := cfg.Validate(); !errors.As(err, &ce) || ce.Var != "DLQ_TOKENS_FILE" {
				t.Errorf("Validate: %v, want a config error of DLQ_TOKENS_FILE", err)
			}
		})
	}
	if _, err := New(Config{TokensFile: filepath.Join(t.TempDir(), "missing.json")}); err == nil {
		t.Error("New with a missing tokens file: no error")
	}
}

func TestValidate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens.json")
	writeTokens(t, path, fileEntries())
	tests := []struct {
		name    string
		give    Config
		wantVar string // "" = valid
	}{
		{"file", Config{TokensFile: path}, ""},
		{"operator only", Config{OperatorToken: opTok}, ""},
		{"viewer only", Config{ViewerToken: viewTok}, ""},
		{"nothing: the API refuses every request", Config{}, ""},
		{"short operator", Config{OperatorToken: "short"}, "DLQ_OPERATOR_TOKEN"},
		{"short viewer", Config{OperatorToken: opTok, ViewerToken: "short"}, "DLQ_VIEWER_TOKEN"},
		{"same tokens", Config{OperatorToken: opTok, ViewerToken: opTok}, "DLQ_VIEWER_TOKEN"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.give.Validate()
			var ce *config.Error
			switch {
			case tt.wantVar == "" && err != nil:
				t.Errorf("Validate: %v", err)
			case tt.wantVar != "" && (!errors.As(err, &ce) || ce.Var != tt.wantVar):
				t.Errorf("Validate: %v, want an error of %s", err, tt.wantVar)
			}
		})
	}
}

// TestReload: a changed file takes effect at the next check; a broken one
// is refused and the previous tokens stay; fixing it takes effect again.
func TestReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens.json")
	writeTokens(t, path, fileEntries()[:1])
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tk, err := New(Config{TokensFile: path}, withClock(func() time.Time { return now }), WithCheckInterval(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	has := func(tok string) bool { _, ok := tk.Lookup(tok); return ok }
	if !has(aliceTok) || has(bobTok) {
		t.Fatal("initial file: want alice only")
	}

	writeTokens(t, path, fileEntries()[1:]) // bob replaces alice
	if !has(aliceTok) {
		t.Error("file re-read before the check interval passed")
	}
	now = now.Add(time.Second)
	if has(aliceTok) || !has(bobTok) {
		t.Error("after the interval: want bob only")
	}

	writeTokens(t, path, `[{"name": "broken"`)
	now = now.Add(time.Second)
	if !has(bobTok) {
		t.Error("a broken file dropped the previous tokens")
	}
	if err := tk.Reload(); err == nil || !strings.Contains(err.Error(), "DLQ_TOKENS_FILE") {
		t.Errorf("Reload of a broken file: %v, want an error naming DLQ_TOKENS_FILE", err)
	}
	if !has(bobTok) {
		t.Error("Reload of a broken file dropped the previous tokens")
	}

	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	now = now.Add(time.Second)
	if !has(bobTok) {
		t.Error("a removed file dropped the previous tokens")
	}

	writeTokens(t, path, fileEntries())
	now = now.Add(time.Second)
	if !has(aliceTok) || !has(bobTok) {
		t.Error("the fixed file did not take effect")
	}
}

func TestMiddleware(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens.json")
	writeTokens(t, path, fileEntries())
	tk, err := New(Config{TokensFile: path})
	if err != nil {
		t.Fatal(err)
	}
	var seen Identity
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen, _ = FromContext(r.Context())
		w.WriteHeader(http.StatusNoContent)
	})
	viewer := tk.Bearer(Require(Viewer)(ok))
	operator := tk.Bearer(Require(Operator)(ok))
	tests := []struct {
		name     string
		h        http.Handler
		auth     string
		want     int
		wantCode string
		wantName string
	}{
		{"missing", viewer, "", 401, "unauthorized", ""},
		{"not bearer", viewer, "Basic " + bobTok, 401, "unauthorized", ""},
		{"empty bearer", viewer, "Bearer ", 401, "unauthorized", ""},
		{"wrong", viewer, "Bearer nope-nope-nope-nope", 401, "unauthorized", ""},
		{"viewer reads", viewer, "Bearer " + bobTok, 204, "", "bob"},
		{"operator reads", viewer, "Bearer " + aliceTok, 204, "", "alice"},
		{"viewer operates", operator, "Bearer " + bobTok, 403, "forbidden", ""},
		{"operator operates", operator, "Bearer " + aliceTok, 204, "", "alice"},
		{"no Bearer before Require", Require(Viewer)(ok), "Bearer " + aliceTok, 401, "unauthorized", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			seen = Identity{}
			req := httptest.NewRequest(http.MethodGet, "/v1/x", nil)
			if tt.auth != "" {
				req.Header.Set("Authorization", tt.auth)
			}
			rec := httptest.NewRecorder()
			tt.h.ServeHTTP(rec, req)
			if rec.Code != tt.want {
				t.Fatalf("status %d, want %d (%s)", rec.Code, tt.want, rec.Body)
			}
			if seen.Name != tt.wantName {
				t.Errorf("handler saw %q, want %q", seen.Name, tt.wantName)
			}
			if tt.wantCode == "" {
				return
			}
			var body struct {
				Error struct{ Code, Message string } `json:"error"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || body.Error.Code != tt.wantCode || body.Error.Message == "" {
				t.Errorf("body %s, want error code %s with a message", rec.Body, tt.wantCode)
			}
			if tt.want == 401 && rec.Header().Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
		})
	}
}

// TestSessionIdentity: an identity put into the context by something else
// (the console's cookie session) passes Require like a bearer one.
func TestSessionIdentity(t *testing.T) {
	h := Require(Operator)(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	for _, tt := range []struct {
		id   Identity
		want int
	}{{Identity{Name: "alice", Role: Operator}, 204}, {Identity{Name: "bob", Role: Viewer}, 403}} {
		req := httptest.NewRequest(http.MethodPost, "/", nil)
		req = req.WithContext(WithIdentity(req.Context(), tt.id))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != tt.want {
			t.Errorf("%s: status %d, want %d", tt.id.Name, rec.Code, tt.want)
		}
	}
}

// TestLoadConfig: the Config loads from the environment as part of a
// service config, and an invalid one stops with the variable's name and
// without the token's value.
func TestLoadConfig(t *testing.T) {
	var cfg struct{ API Config }
	if err := config.LoadFrom(config.MapLookup(map[string]string{"DLQ_OPERATOR_TOKEN": opTok}), &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.API.OperatorToken != opTok || cfg.API.TokensFile != "" {
		t.Errorf("loaded %+v", cfg.API)
	}
	err := config.LoadFrom(config.MapLookup(map[string]string{"DLQ_VIEWER_TOKEN": "short-secret"}), &cfg)
	if err == nil || !strings.Contains(err.Error(), "DLQ_VIEWER_TOKEN") || strings.Contains(err.Error(), "short-secret") {
		t.Errorf("short token: %v", err)
	}
}

// TestNoTokensRefusesEverything: with no token configured the service
// starts (the store fills) and the API answers 401 to every request.
func TestNoTokensRefusesEverything(t *testing.T) {
	tk, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	if tk.Configured() {
		t.Error("Configured() = true with no token source")
	}
	h := tk.Bearer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) }))
	for _, authz := range []string{"", "Bearer ", "Bearer " + opTok} {
		w := httptest.NewRecorder()
		r := httptest.NewRequest(http.MethodGet, "/v1/dead-letters", nil)
		if authz != "" {
			r.Header.Set("Authorization", authz)
		}
		h.ServeHTTP(w, r)
		if w.Code != http.StatusUnauthorized {
			t.Errorf("Authorization %q with no tokens configured: %d, want 401", authz, w.Code)
		}
	}
}
