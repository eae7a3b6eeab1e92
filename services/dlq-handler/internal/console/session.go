package console

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/ecomstream/platform/pkg/config"
	"github.com/ecomstream/platform/services/dlq-handler/internal/auth"
)

// Cookie names.
const (
	sessionCookie = "dlq_console"       // the session id
	loginCookie   = "dlq_console_login" // the login form's CSRF token
	csrfField     = "csrf"
)

// session is one signed-in browser.
type session struct {
	sid     string
	token   string // the login token, re-checked on every request
	id      auth.Identity
	csrf    string
	expires time.Time
}

// sessions is the server-side session map: at most max, each expiring ttl
// after its login; when full, the one expiring first makes room.
type sessions struct {
	ttl time.Duration
	max int
	now func() time.Time

	mu sync.Mutex
	m  map[string]*session
}

func newSessions(ttl time.Duration, max int, now func() time.Time) *sessions {
	return &sessions{ttl: ttl, max: max, now: now, m: map[string]*session{}}
}

func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read does not fail
	return base64.RawURLEncoding.EncodeToString(b)
}

func (ss *sessions) create(token string, id auth.Identity) *session {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	now := ss.now()
	if len(ss.m) >= ss.max {
		for k, s := range ss.m {
			if !now.Before(s.expires) {
				delete(ss.m, k)
			}
		}
	}
	for len(ss.m) >= ss.max {
		var first *session
		for _, s := range ss.m {
			if first == nil || s.expires.Before(first.expires) {
				first = s
			}
		}
		delete(ss.m, first.sid)
	}
	s := &session{sid: randomToken(), token: token, id: id, csrf: randomToken(), expires: now.Add(ss.ttl)}
	ss.m[s.sid] = s
	return s
}

// get returns a copy of the live session sid (a request may change its
// copy without a lock); an expired one is removed.
func (ss *sessions) get(sid string) (*session, bool) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	s, ok := ss.m[sid]
	if !ok {
		return nil, false
	}
	if !ss.now().Before(s.expires) {
		delete(ss.m, sid)
		return nil, false
	}
	c := *s
	return &c, true
}

// setIdentity records the identity the session's token maps to now.
func (ss *sessions) setIdentity(sid string, id auth.Identity) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if s, ok := ss.m[sid]; ok {
		s.id = id
	}
}

func (ss *sessions) remove(sid string) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	delete(ss.m, sid)
}

func (ss *sessions) len() int {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return len(ss.m)
}

type sessionKey struct{}

// current is the request's session (authenticate ran before).
func current(r *http.Request) *session {
	s, _ := r.Context().Value(sessionKey{}).(*session)
	return s
}

func cookie(r *http.Request, name, value string, maxAge int) *http.Cookie {
	return &http.Cookie{Name: name, Value: value, Path: Prefix + "/", MaxAge: maxAge,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: secureCookie(r)}
}

// secureCookie: the cookies are Secure unless the request came over plain
// HTTP to a loopback listener and names a loopback host (a browser on the
// same machine, http://127.0.0.1:8080/: the local stack). Behind a
// TLS-terminating proxy the request arrives in plain HTTP, but on a
// non-loopback listener or with the public Host the proxy forwards, so the
// cookie stays Secure without trusting any X-Forwarded-Proto; a browser
// reaching a non-loopback listener over plain HTTP gets no session, which
// is right (the token would cross the network in clear).
func secureCookie(r *http.Request) bool {
	if r.TLS != nil {
		return true
	}
	la, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	if !ok || !loopback(la.String()) {
		return true
	}
	return !loopback(r.Host)
}

// loopback reports whether hostport (host or host:port) is a loopback
// address or localhost.
func loopback(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	return config.LoopbackHost(strings.TrimSuffix(strings.TrimPrefix(host, "["), "]"))
}

// authenticate lets through requests with a live session whose token is
// still accepted, with the identity in the context (auth.WithIdentity);
// the others go to the login page.
func (s *server) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := r.Cookie(sessionCookie)
		var sess *session
		ok := err == nil
		if ok {
			sess, ok = s.sessions.get(c.Value)
		}
		if ok {
			var id auth.Identity
			if id, ok = s.cfg.Tokens.Lookup(sess.token); ok {
				// A changed role or pii right applies at once; the request
				// reads its own copy (get returned one), other requests of
				// the session theirs.
				sess.id = id
				s.sessions.setIdentity(sess.sid, id)
			} else {
				s.sessions.remove(sess.sid)
			}
		}
		if !ok {
			if r.Method != http.MethodGet {
				s.errorPage(w, r, http.StatusUnauthorized, "Your session ended; sign in again.")
				return
			}
			login := Prefix + "/login"
			if r.URL.Path == HealthPath {
				login += "?next=" + nextHealth
			}
			http.Redirect(w, r, login, http.StatusSeeOther)
			return
		}
		ctx := context.WithValue(auth.WithIdentity(r.Context(), sess.id), sessionKey{}, sess)
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// checkCSRF refuses a POST without the session's CSRF token or from
// another origin.
func (s *server) checkCSRF(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && !validPost(r, current(r).csrf) {
			s.errorPage(w, r, http.StatusForbidden, "The form was refused (a missing or stale security token, or another site's form). Reload the page and try again.")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// validPost: the form's CSRF token equals want (constant time) and the
// Origin, else the Referer, when sent, is this host.
func validPost(r *http.Request, want string) bool {
	if want == "" || !sameOrigin(r) {
		return false
	}
	r.Body = http.MaxBytesReader(nil, r.Body, maxFormBytes)
	got := r.PostFormValue(csrfField)
	return subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

const maxFormBytes = 64 << 10

func sameOrigin(r *http.Request) bool {
	src := r.Header.Get("Origin")
	if src == "" {
		src = r.Header.Get("Referer")
	}
	if src == "" {
		return true // neither sent: the token decides
	}
	u, err := url.Parse(src)
	if err != nil || u.Host == "" {
		return false // includes Origin: null
	}
	return strings.EqualFold(u.Host, r.Host)
}

type loginData struct {
	CSRF  string
	Error string
	Next  string // where the sign-in leads: "" = the overview, nextHealth = the health page
}

// nextHealth is the login's next for the health page: a name, not a URL,
// so the sign-in can lead nowhere else (no open redirect).
const nextHealth = "health"

// afterLogin is where a sign-in with next leads.
func afterLogin(next string) string {
	if next == nextHealth {
		return HealthPath
	}
	return Prefix + "/"
}

// loginForm shows the login page with a fresh login CSRF token in a cookie
// (double submit: there is no session yet).
func (s *server) loginForm(w http.ResponseWriter, r *http.Request) {
	s.renderLogin(w, r, http.StatusOK, "", r.URL.Query().Get("next"))
}

func (s *server) renderLogin(w http.ResponseWriter, r *http.Request, status int, msg, next string) {
	tok := randomToken()
	http.SetCookie(w, cookie(r, loginCookie, tok, 3600))
	if next != nextHealth {
		next = ""
	}
	s.render(w, r, status, "login", page{Title: "Sign in", Data: loginData{CSRF: tok, Error: msg, Next: next}})
}

func (s *server) login(w http.ResponseWriter, r *http.Request) {
	c, err := r.Cookie(loginCookie)
	if err != nil || !validPost(r, c.Value) {
		s.renderLogin(w, r, http.StatusForbidden, "The form was refused (a missing or stale security token). Try again.", "")
		return
	}
	token := strings.TrimSpace(r.PostFormValue("token"))
	id, ok := s.cfg.Tokens.Lookup(token)
	if !ok {
		s.log.InfoContext(r.Context(), "console login refused")
		s.renderLogin(w, r, http.StatusUnauthorized, "That token is not known.", r.PostFormValue("next"))
		return
	}
	if old, err := r.Cookie(sessionCookie); err == nil {
		s.sessions.remove(old.Value) // no session fixation
	}
	sess := s.sessions.create(token, id)
	http.SetCookie(w, cookie(r, loginCookie, "", -1))
	http.SetCookie(w, cookie(r, sessionCookie, sess.sid, int(s.cfg.SessionTTL/time.Second)))
	s.log.InfoContext(r.Context(), "console login", "name", id.Name, "role", string(id.Role))
	http.Redirect(w, r, afterLogin(r.PostFormValue("next")), http.StatusSeeOther)
}

func (s *server) logout(w http.ResponseWriter, r *http.Request) {
	s.sessions.remove(current(r).sid)
	http.SetCookie(w, cookie(r, sessionCookie, "", -1))
	http.Redirect(w, r, Prefix+"/login", http.StatusSeeOther)
}
