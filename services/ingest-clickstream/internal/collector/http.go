package collector

// The wire around a request: where its write key is, CORS, and the JSON of
// the answers.

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
)

// keyFromRequest is the write key of the headers or the query string.
func keyFromRequest(r *http.Request) string {
	if auth := r.Header.Get("Authorization"); auth != "" {
		if k, ok := cutBearer(auth); ok {
			return k
		}
	}
	if k := r.Header.Get("X-Write-Key"); k != "" {
		return k
	}
	if r.URL.RawQuery != "" {
		return r.URL.Query().Get("write_key")
	}
	return ""
}

func cutBearer(auth string) (string, bool) {
	const p = "Bearer "
	if len(auth) > len(p) && (auth[:len(p)] == p || auth[:len(p)] == "bearer ") {
		return auth[len(p):], true
	}
	return "", false
}

// allowedHeaders are the request headers a browser may send.
var allowedHeaders = map[string]bool{"content-type": true, "authorization": true, "x-write-key": true, "content-encoding": true}

// preflight answers a CORS preflight: 204 for an origin some key (or the
// global list) allows, asking for POST with allowed headers only. Which key
// is not known yet (a preflight carries no credentials); the POST checks
// the origin against its key.
func (c *Collector) preflight(w http.ResponseWriter, r *http.Request) int {
	origin := normOrigin(r.Header.Get("Origin"))
	w.Header().Add("Vary", "Origin")
	w.Header().Add("Vary", "Access-Control-Request-Method")
	w.Header().Add("Vary", "Access-Control-Request-Headers")
	if origin == "" || !c.keys.current().origins[origin] {
		writeError(w, http.StatusForbidden, "origin not allowed (COLLECTOR_ALLOWED_ORIGINS or a write key's origins)")
		return http.StatusForbidden
	}
	if m := r.Header.Get("Access-Control-Request-Method"); m != http.MethodPost {
		writeError(w, http.StatusForbidden, "preflight for method "+strconv.Quote(truncateName(m))+": only POST is allowed")
		return http.StatusForbidden
	}
	for _, line := range r.Header.Values("Access-Control-Request-Headers") {
		for _, h := range strings.Split(line, ",") {
			if h = strings.ToLower(strings.TrimSpace(h)); h != "" && !allowedHeaders[h] {
				writeError(w, http.StatusForbidden, "preflight for header "+strconv.Quote(truncateName(h))+": allowed are Content-Type, Authorization, X-Write-Key, Content-Encoding")
				return http.StatusForbidden
			}
		}
	}
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", origin)
	h.Set("Access-Control-Allow-Methods", "POST, OPTIONS")
	h.Set("Access-Control-Allow-Headers", "Content-Type, Authorization, X-Write-Key, Content-Encoding")
	h.Set("Access-Control-Max-Age", "600")
	w.WriteHeader(http.StatusNoContent)
	return http.StatusNoContent
}

// setCORS lets a browser at origin read the answer, Retry-After included
// (a browser hides other headers than a few). No credentials: cookies are
// never used.
func setCORS(w http.ResponseWriter, origin string) {
	w.Header().Set("Access-Control-Allow-Origin", origin)
	w.Header().Set("Access-Control-Expose-Headers", "Retry-After")
}

// eventResult is one event's line of a 200 answer.
type eventResult struct {
	Index   int          `json:"index"`
	EventID string       `json:"event_id,omitempty"`
	Status  string       `json:"status"`
	Reasons []reasonJSON `json:"reasons,omitempty"`
}

type reasonJSON struct {
	Code    string `json:"code"`
	RuleID  string `json:"rule_id,omitempty"`
	Field   string `json:"field,omitempty"`
	Message string `json:"message"`
}

type answer struct {
	Accepted int           `json:"accepted"`
	Rejected int           `json:"rejected"`
	Events   []eventResult `json:"events"`
}

func writeResults(w http.ResponseWriter, accepted, rejected int, results []eventResult) {
	b, err := json.Marshal(answer{Accepted: accepted, Rejected: rejected, Events: results})
	if err != nil { // cannot happen: strings and ints
		writeError(w, http.StatusInternalServerError, "answer could not be encoded")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(append(b, '\n'))
}

func writeError(w http.ResponseWriter, status int, msg string) {
	b, _ := json.Marshal(map[string]string{"error": msg})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}
