package storefront

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"time"
)

// pageToken is what an opaque page token holds: the position after the last
// order of the page, and the query it belongs to. Clients must treat tokens
// as opaque; the HMAC makes a forged or edited token a 400, not a silent
// jump in the listing.
type pageToken struct {
	UpdatedAt time.Time `json:"t"`
	ID        string    `json:"id"`
	Since     time.Time `json:"s"`
	Limit     int       `json:"l"`
}

var errBadToken = errors.New("page_token is not valid")

type tokenCodec struct{ secret []byte }

// encode is base64url(JSON) "." base64url(HMAC-SHA256(secret, JSON part)).
func (c tokenCodec) encode(t pageToken) string {
	b, _ := json.Marshal(t) // plain struct: cannot fail
	p := base64.RawURLEncoding.EncodeToString(b)
	return p + "." + base64.RawURLEncoding.EncodeToString(c.mac(p))
}

func (c tokenCodec) decode(s string) (pageToken, error) {
	p, sig, ok := strings.Cut(s, ".")
	if !ok {
		return pageToken{}, errBadToken
	}
	got, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil || !hmac.Equal(got, c.mac(p)) {
		return pageToken{}, errBadToken
	}
	b, err := base64.RawURLEncoding.DecodeString(p)
	if err != nil {
		return pageToken{}, errBadToken
	}
	var t pageToken
	if err := json.Unmarshal(b, &t); err != nil || t.ID == "" {
		return pageToken{}, errBadToken
	}
	return t, nil
}

func (c tokenCodec) mac(p string) []byte {
	m := hmac.New(sha256.New, c.secret)
	m.Write([]byte("storefront-page-token.v1|" + p))
	return m.Sum(nil)
}
