package query

import (
	"encoding/base64"
	"encoding/json"
	"hash/fnv"
	"strconv"
	"strings"
	"time"
)

// A cursor is the position after a page's last row, opaque to callers:
// base64url of "<kind>|<microseconds since epoch>|<key>|<filter hash>". The
// kind keeps a dead-letter cursor out of the audit list, the filter hash
// keeps a cursor from being used with another filter (which would skip or
// repeat rows).
type cursor struct {
	at  time.Time
	key string
}

func encodeCursor(kind string, c cursor, filter any) string {
	s := kind + "|" + strconv.FormatInt(c.at.UnixMicro(), 10) + "|" + c.key + "|" + filterHash(filter)
	return base64.RawURLEncoding.EncodeToString([]byte(s))
}

func decodeCursor(kind, s string, filter any) (cursor, error) {
	bad := badf("cursor", "not a cursor of this list: pass next_cursor of the previous page unchanged, with the same filter")
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return cursor{}, bad
	}
	// The key may hold "|": it is everything between the time and the last "|".
	parts := strings.SplitN(string(raw), "|", 3)
	if len(parts) != 3 || parts[0] != kind {
		return cursor{}, bad
	}
	i := strings.LastIndexByte(parts[2], '|')
	if i < 0 {
		return cursor{}, bad
	}
	parts = append(parts[:2], parts[2][:i], parts[2][i+1:])
	us, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil {
		return cursor{}, bad
	}
	if parts[3] != filterHash(filter) {
		return cursor{}, badf("cursor", "belongs to another filter: start again without a cursor")
	}
	return cursor{at: time.UnixMicro(us).UTC(), key: parts[2]}, nil
}

func filterHash(filter any) string {
	b, _ := json.Marshal(filter)
	h := fnv.New64a()
	_, _ = h.Write(b)
	return strconv.FormatUint(h.Sum64(), 36)
}
