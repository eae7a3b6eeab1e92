package collector

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// MinKeyLen is the shortest write key accepted.
const MinKeyLen = 16

// keyCheckInterval bounds how often a request looks at the keys file's
// modification time and size.
const keyCheckInterval = 2 * time.Second

// keysFile is the format of COLLECTOR_WRITE_KEYS_FILE.
type keysFile struct {
	Keys []keyEntry `json:"keys"`
}

type keyEntry struct {
	Source    string   `json:"source"`
	Key       string   `json:"key"`
	Origins   []string `json:"origins"`
	RateLimit float64  `json:"rate_limit"`
	Burst     int      `json:"burst"`
}

// writeKey is one key as the collector holds it: never the key itself, only
// its SHA-256, so a comparison takes the same time whatever the key.
type writeKey struct {
	source  string
	sum     [sha256.Size]byte
	origins []string // the key's own, besides the global ones
	limiter *rate.Limiter
}

// keySet is one generation of keys; requests read it without a lock.
type keySet struct {
	keys    []*writeKey
	origins map[string]bool // every origin some key (or the global list) allows, for preflights
}

// keyStore holds the write keys of the inline list and the file, and
// re-reads the file when its modification time or size changes (checked at
// most every keyCheckInterval, on a request). A file that no longer loads
// keeps the previous keys and is logged once.
type keyStore struct {
	file      string
	inline    []keyEntry
	global    []string
	rateLimit float64
	burst     int
	minBurst  int
	log       *slog.Logger
	now       func() time.Time

	set     atomic.Pointer[keySet]
	checked atomic.Int64 // unix nanos of the last look at the file
	mu      sync.Mutex   // one reload at a time
	stamp   string       // file's mtime and size when last loaded (or failed)
	limits  map[[sha256.Size]byte]*rate.Limiter
}

func newKeyStore(cfg *Config, log *slog.Logger, now func() time.Time) (*keyStore, error) {
	inline, err := parseInline(cfg.WriteKeys)
	if err != nil {
		return nil, fmt.Errorf("COLLECTOR_WRITE_KEYS: %w", err)
	}
	global := make([]string, len(cfg.AllowedOrigins))
	for i, o := range cfg.AllowedOrigins {
		global[i] = normOrigin(o)
	}
	s := &keyStore{file: cfg.WriteKeysFile, inline: inline, global: global, rateLimit: cfg.RateLimit,
		burst: cfg.RateBurst, minBurst: cfg.MaxEvents, log: log, now: now, limits: map[[sha256.Size]byte]*rate.Limiter{}}
	var entries []keyEntry
	if s.file != "" {
		st, err := os.Stat(s.file)
		if err != nil {
			return nil, fmt.Errorf("COLLECTOR_WRITE_KEYS_FILE: %w", err)
		}
		if entries, err = readKeysFile(s.file); err != nil {
			return nil, fmt.Errorf("COLLECTOR_WRITE_KEYS_FILE: %w", err)
		}
		s.stamp = stampOf(st)
	}
	if err := s.install(entries); err != nil {
		return nil, err
	}
	s.checked.Store(now().UnixNano())
	return s, nil
}

func stampOf(st os.FileInfo) string { return fmt.Sprint(st.ModTime().UnixNano(), st.Size()) }

// install builds and publishes the key set of the inline keys and entries.
// A key that stays keeps its rate limiter (its bucket's state), so a
// rotation does not refill every bucket.
func (s *keyStore) install(entries []keyEntry) error {
	all := append(append([]keyEntry{}, s.inline...), entries...)
	set := &keySet{origins: map[string]bool{}}
	for _, o := range s.global {
		set.origins[o] = true
	}
	limits := make(map[[sha256.Size]byte]*rate.Limiter, len(all))
	for _, e := range all {
		limit, burst := s.rateLimit, s.burst
		if e.RateLimit > 0 {
			limit = e.RateLimit
		}
		if e.Burst > 0 {
			burst = e.Burst
		}
		if burst < s.minBurst {
			return fmt.Errorf("write key of source %q: burst %d is less than COLLECTOR_MAX_EVENTS=%d (a full request could never pass)", e.Source, burst, s.minBurst)
		}
		k := &writeKey{source: e.Source, sum: sha256.Sum256([]byte(e.Key))}
		for _, o := range e.Origins {
			k.origins = append(k.origins, normOrigin(o))
		}
		lim := s.limits[k.sum]
		if lim == nil {
			lim = rate.NewLimiter(rate.Limit(limit), burst)
		} else {
			lim.SetLimit(rate.Limit(limit))
			lim.SetBurst(burst)
		}
		k.limiter, limits[k.sum] = lim, lim
		for _, o := range k.origins {
			set.origins[o] = true
		}
		set.keys = append(set.keys, k)
	}
	s.limits = limits
	s.set.Store(set)
	return nil
}

// current returns the key set, first re-reading the file if it is due.
func (s *keyStore) current() *keySet {
	if s.file != "" {
		now := s.now().UnixNano()
		last := s.checked.Load()
		if time.Duration(now-last) >= keyCheckInterval && s.checked.CompareAndSwap(last, now) {
			s.reload()
		}
	}
	return s.set.Load()
}

// reload re-reads the file if it changed since it was last loaded.
func (s *keyStore) reload() {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, err := os.Stat(s.file)
	if err != nil {
		if s.stamp != "missing" {
			s.stamp = "missing"
			s.log.Warn("collector: write keys file unreadable; keeping the previous keys", "file", s.file, "err", err)
		}
		return
	}
	stamp := stampOf(st)
	if stamp == s.stamp {
		return
	}
	s.stamp = stamp // a bad file is logged once, not on every check
	entries, err := readKeysFile(s.file)
	if err == nil {
		err = s.install(entries)
	}
	if err != nil {
		s.log.Warn("collector: write keys file does not load; keeping the previous keys", "file", s.file, "err", err)
		return
	}
	s.log.Info("collector: write keys reloaded", "file", s.file, "keys", len(s.set.Load().keys))
}

// lookup returns the key presented, or nil. It compares the presented key's
// SHA-256 with every key's in constant time and without stopping at a match,
// so the time taken says nothing about which key, or how much of one, was
// right.
func (set *keySet) lookup(presented string) *writeKey {
	if presented == "" {
		return nil
	}
	sum := sha256.Sum256([]byte(presented))
	var found *writeKey
	for _, k := range set.keys {
		if subtle.ConstantTimeCompare(sum[:], k.sum[:]) == 1 {
			found = k
		}
	}
	return found
}

// originAllowed reports whether a browser at origin (normalised) may send
// with k.
func (s *keyStore) originAllowed(k *writeKey, origin string) bool {
	return slices.Contains(s.global, origin) || slices.Contains(k.origins, origin)
}

// readKeysFile reads and checks a keys file.
func readKeysFile(path string) ([]keyEntry, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var f keysFile
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("%s: not a keys file (%v)", path, redactJSONError(err))
	}
	for i, e := range f.Keys {
		if err := checkEntry(e); err != nil {
			return nil, fmt.Errorf("%s: key %d: %w", path, i, err)
		}
	}
	return f.Keys, nil
}

// redactJSONError keeps a decode error from quoting the file's content
// (a key): only its kind and offset.
func redactJSONError(err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("JSON syntax error at byte %d", se.Offset)
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Sprintf("field %s has the wrong type", te.Field)
	}
	if strings.HasPrefix(err.Error(), "json: unknown field") {
		return err.Error() // names a field, not a value
	}
	return "invalid JSON"
}

func checkEntry(e keyEntry) error {
	switch {
	case e.Source == "":
		return errors.New("source is empty")
	case len(e.Key) < MinKeyLen:
		return fmt.Errorf("the key of source %q is shorter than %d characters", e.Source, MinKeyLen)
	case e.RateLimit < 0 || e.Burst < 0:
		return fmt.Errorf("source %q: rate_limit and burst must not be negative", e.Source)
	}
	for _, o := range e.Origins {
		if err := checkOrigin(o); err != nil {
			return fmt.Errorf("source %q: %w", e.Source, err)
		}
	}
	return nil
}

// parseInline parses source=key,source=key.
func parseInline(s string) ([]keyEntry, error) {
	var out []keyEntry
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part == "" {
			continue
		}
		src, key, ok := strings.Cut(part, "=")
		if !ok {
			return nil, errors.New("each entry must be source=key") // never quote the entry: it holds a key
		}
		e := keyEntry{Source: strings.TrimSpace(src), Key: strings.TrimSpace(key)}
		if err := checkEntry(e); err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

// checkOrigin accepts a browser origin: scheme://host[:port], nothing else.
func checkOrigin(o string) error {
	u, err := url.Parse(o)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Path != "" || u.RawQuery != "" || u.User != nil ||
		strings.HasSuffix(o, "/") {
		return fmt.Errorf("%q is not an origin (scheme://host[:port], no path)", o)
	}
	return nil
}

// normOrigin is origin as a browser compares it: scheme and host in lower
// case, without the scheme's default port. Something that is not an origin
// (a browser's "null") is returned as it is, and matches no allowed one.
func normOrigin(o string) string {
	if o == "" {
		return ""
	}
	u, err := url.Parse(o)
	if err != nil || u.Host == "" {
		return o
	}
	scheme, host := strings.ToLower(u.Scheme), strings.ToLower(u.Host)
	switch {
	case scheme == "http" && strings.HasSuffix(host, ":80"):
		host = strings.TrimSuffix(host, ":80")
	case scheme == "https" && strings.HasSuffix(host, ":443"):
		host = strings.TrimSuffix(host, ":443")
	}
	return scheme + "://" + host
}
