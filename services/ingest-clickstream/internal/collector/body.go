package collector

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"encoding/binary"
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
var bufPool = sync.Pool{New: func() any { return new(body) }}

// maxPooled keeps buffers of unusually large bodies out of the pool.
const maxPooled = 1 << 20

// body is a request's bytes: wire holds a gzip body as received, text the
// body to split.
type body struct {
	wire, text []byte
}

func getBody() *body { return bufPool.Get().(*body) }

func (b *body) release() {
	if cap(b.wire) > maxPooled {
		b.wire = nil
	}
	if cap(b.text) > maxPooled {
		b.text = nil
	}
	b.wire, b.text = b.wire[:0], b.text[:0]
	bufPool.Put(b)
}

// readBody reads the request body into b.text: at most maxBody bytes on the
// wire, and at most maxDecompressed once gunzipped. A gzip body is read
// whole first (it is at most maxBody), then inflated from memory through a
// limit, so a bomb inflates to maxDecompressed+1 bytes and no further,
// whatever its ratio; one whose gzip trailer declares a size over the limit
// is refused without inflating at all.
func readBody(w http.ResponseWriter, r *http.Request, b *body, maxBody, maxDecompressed int) *refusal {
	if r.ContentLength > int64(maxBody) {
		return tooLargeBody(maxBody)
	}
	wire := http.MaxBytesReader(w, r.Body, int64(maxBody))
	hint := 0
	if r.ContentLength > 0 {
		hint = int(r.ContentLength)
	}
	switch enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding"))); enc {
	case "", "identity":
		var over bool
		var err error
		if b.text, over, err = readLimited(b.text, wire, maxBody, hint); err != nil {
			return readRefusal(err, maxBody, false)
		} else if over {
			return tooLargeBody(maxBody)
		}
		return nil
	case "gzip":
	default:
		return refuse(http.StatusUnsupportedMediaType, "Content-Encoding %q is not supported: use gzip or none", truncateName(enc))
	}
	var (
		over bool
		err  error
	)
	if b.wire, over, err = readLimited(b.wire, wire, maxBody, hint); err != nil {
		return readRefusal(err, maxBody, false)
	} else if over {
		return tooLargeBody(maxBody)
	}
	tooLarge := refuse(http.StatusRequestEntityTooLarge, "the body is larger than %d bytes after gzip (COLLECTOR_MAX_DECOMPRESSED_BYTES=%d)", maxDecompressed, maxDecompressed)
	// The trailer's ISIZE is the last member's size mod 2^32: a hint only,
	// and an honest bomb's confession.
	if n := len(b.wire); n >= 18 {
		isize := int(binary.LittleEndian.Uint32(b.wire[n-4:]))
		if isize > maxDecompressed {
			return tooLarge
		}
		hint = isize
	}
	zr, err := gzip.NewReader(bytes.NewReader(b.wire))
	if err != nil {
		return readRefusal(err, maxBody, true)
	}
	defer zr.Close()
	if b.text, over, err = readLimited(b.text, zr, maxDecompressed, hint); err != nil {
		return readRefusal(err, maxBody, true)
	} else if over {
		return tooLarge
	}
	return nil
}

// readLimited reads r into buf[:0] until EOF or more than limit bytes,
// growing buf by doubling from about hint but never beyond limit+1 bytes,
// so an endless reader costs at most about twice the limit in allocations.
// over reports that r had more than limit bytes.
func readLimited(buf []byte, r io.Reader, limit, hint int) (_ []byte, over bool, err error) {
	buf = buf[:0]
	if want := min(max(hint, 512), limit) + 1; cap(buf) < want {
		buf = make([]byte, 0, want)
	}
	for {
		if len(buf) == cap(buf) {
			if len(buf) > limit {
				return buf, true, nil
			}
			nb := make([]byte, len(buf), min(2*cap(buf), limit+1))
			copy(nb, buf)
			buf = nb
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		switch {
		case len(buf) > limit:
			return buf, true, nil
		case err == io.EOF:
			return buf, false, nil
		case err != nil:
			return buf, false, err
		}
	}
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
