// Package webhook receives the storefront's signed order webhooks
// (POST /v1/webhooks/orders) and produces each order version to Kafka before
// answering 2xx.
package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"
	"time"
)

// Headers of a webhook delivery (proto/openapi/storefront-orders.v1.yaml).
const (
	HeaderTimestamp  = "X-Storefront-Timestamp"
	HeaderSignature  = "X-Storefront-Signature"
	HeaderDeliveryID = "X-Storefront-Delivery-Id"
	HeaderEvent      = "X-Storefront-Event"
)

// Result is the outcome of a signature check, the label of the
// verifications metric.
type Result string

// Results.
const (
	Valid          Result = "valid"
	Missing        Result = "missing"         // no timestamp or no signature header
	BadTimestamp   Result = "bad_timestamp"   // not unix seconds
	Stale          Result = "stale"           // outside the replay window (either side)
	BadSignature   Result = "bad_signature"   // not sha256=<64 hex>, or not the MAC of this timestamp and body
	BodyTooLarge   Result = "body_too_large"  // refused before it could be verified
	UnreadableBody Result = "unreadable_body" // the body could not be read
)

// Sign is the X-Storefront-Signature value of a timestamp and raw body:
// "sha256=" + hex(HMAC-SHA256(secret, timestamp + "." + body)).
func Sign(secret []byte, timestamp string, body []byte) string {
	return "sha256=" + hex.EncodeToString(mac(secret, timestamp, body))
}

func mac(secret []byte, timestamp string, body []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(timestamp))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}

// Verify checks a delivery: timestamp (unix seconds) within window of now,
// and signature the MAC of timestamp and the raw body, compared in constant
// time. The timestamp is checked first: a replayed delivery is stale
// whatever its signature.
func Verify(secret []byte, timestamp, signature string, body []byte, now time.Time, window time.Duration) Result {
	if timestamp == "" || signature == "" {
		return Missing
	}
	secs, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		return BadTimestamp
	}
	if d := now.Sub(time.Unix(secs, 0)); d > window || d < -window {
		return Stale
	}
	h, ok := strings.CutPrefix(signature, "sha256=")
	if !ok || len(h) != 2*sha256.Size {
		return BadSignature
	}
	got, err := hex.DecodeString(h)
	if err != nil {
		return BadSignature
	}
	if !hmac.Equal(got, mac(secret, timestamp, body)) {
		return BadSignature
	}
	return Valid
}
