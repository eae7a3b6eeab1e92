package collector

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"sync"
)

// refusal is a request refused whole: its status and the sentence of its
// {"error": ...} body.
type refusal struct {
	status     int
	msg        string
	retryAfter int // seconds, for 429 and 503
}

func (r *refusal) Error() string { return r.msg }

func refuse(status int, format string, args ...any) *refusal {
	return &refusal{status: status, msg: fmt.Sprintf(format, args...)}
}

// formatOf maps a Content-Type to how its body is split.
func formatOf(contentType string) (bodyFormat, *refusal) {
	if contentType == "" {
		return formatSniff, nil // sendBeacon of a Blob without a type
	}
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return 0, refuse(http.StatusUnsupportedMediaType, "unreadable Content-Type %q", truncateName(contentType))
	}
	switch mt {
	case "application/json":
		return formatJSON, nil
	case "text/plain":
		return formatSniff, nil
	case "application/x-ndjson":
		return formatNDJSON, nil
	}
	return 0, refuse(http.StatusUnsupportedMediaType, "Content-Type %q is not supported: use application/json, text/plain or application/x-ndjson", truncateName(mt))
}

// bufPool recycles request buffers: a body is read into one, split, parsed
// and encoded, and the buffer is free again before the produce is awaited
// (what is produced is the encoded copy).
var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// maxPooled keeps buffers of unusually large bodies out of the pool.
const maxPooled = 1 << 20

func putBuf(b *bytes.Buffer) {
	if b.Cap() <= maxPooled {
		b.Reset()
		bufPool.Put(b)
	}
}

// readBody reads the request body into buf: at most maxBody bytes on the
// wire, and at most maxDecompressed once gunzipped. The gzip stream is read
// through a limit, so a bomb inflates to maxDecompressed+1 bytes and no
// further, whatever its ratio.
func readBody(w http.ResponseWriter, r *http.Request, buf *bytes.Buffer, maxBody, maxDecompressed int) *refusal {
	if r.ContentLength > int64(maxBody) {
		return tooLargeBody(maxBody)
	}
	var src io.Reader = http.MaxBytesReader(w, r.Body, int64(maxBody))
	limit, gz := maxDecompressed, false
	switch enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding"))); enc {
	case "", "identity":
		limit = maxBody
		if r.ContentLength > 0 {
			buf.Grow(int(r.ContentLength))
		}
	case "gzip":
		zr, err := gzip.NewReader(src)
		if err != nil {
			return readRefusal(err, maxBody, true)
		}
		defer zr.Close()
		src, gz = zr, true
	default:
		return refuse(http.StatusUnsupportedMediaType, "Content-Encoding %q is not supported: use gzip or none", truncateName(enc))
	}
	n, err := buf.ReadFrom(io.LimitReader(src, int64(limit)+1))
	if err != nil {
		return readRefusal(err, maxBody, gz)
	}
	if n > int64(limit) {
		if !gz {
			return tooLargeBody(maxBody)
		}
		return refuse(http.StatusRequestEntityTooLarge, "the body is larger than %d bytes after gzip (COLLECTOR_MAX_DECOMPRESSED_BYTES=%d)", maxDecompressed, maxDecompressed)
	}
	return nil
}

func tooLargeBody(maxBody int) *refusal {
	return refuse(http.StatusRequestEntityTooLarge, "the body is larger than %d bytes (COLLECTOR_MAX_BODY_BYTES=%d)", maxBody, maxBody)
}

func readRefusal(err error, maxBody int, gz bool) *refusal {
	var (
		mbe     *http.MaxBytesError
		corrupt flate.CorruptInputError
	)
	switch {
	case errors.As(err, &mbe):
		return tooLargeBody(maxBody)
	case gz && (errors.Is(err, gzip.ErrHeader) || errors.Is(err, gzip.ErrChecksum) || errors.As(err, &corrupt) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF)):
		return refuse(http.StatusBadRequest, "the body is not valid gzip, or was cut short")
	}
	return refuse(http.StatusBadRequest, "the body could not be read: %v", err)
}
