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
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"
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

// readLimits bound one request's body.
type readLimits struct {
	maxBody, maxDecompressed int
	minRate                  int       // bytes per second, on average, once minRateGrace is spent
	start, end               time.Time // when the handler began; the read timeout's end
}

// minRateGrace and minRateCredit are what a body may take before
// COLLECTOR_MIN_BODY_RATE applies: a second, and the first 4 KiB at the rate.
const (
	minRateGrace  = time.Second
	minRateCredit = 4 << 10
)

// rateReader enforces a minimum average data rate on a request body: before
// each read it moves the connection's read deadline to when the bytes so far
// plus a credit are due at minRate, never beyond the read timeout's end. A
// client trickling a byte now and then (to hold a slot) is cut once its
// average falls below the rate, not after COLLECTOR_READ_TIMEOUT.
type rateReader struct {
	r   io.ReadCloser
	rc  *http.ResponseController // nil once the writer cannot set deadlines (a test recorder)
	lim *readLimits
	n   int
}

func (rr *rateReader) Read(p []byte) (int, error) {
	if rr.rc != nil && rr.lim.minRate > 0 {
		due := rr.lim.start.Add(minRateGrace + time.Duration(float64(rr.n+minRateCredit)/float64(rr.lim.minRate)*float64(time.Second)))
		if !rr.lim.end.IsZero() && due.After(rr.lim.end) {
			due = rr.lim.end
		}
		if err := rr.rc.SetReadDeadline(due); err != nil {
			rr.rc = nil
		}
	}
	n, err := rr.r.Read(p)
	rr.n += n
	return n, err
}

func (rr *rateReader) Close() error { return rr.r.Close() }

// readBody reads the request body into b.text: at most lim.maxBody bytes on
// the wire, and at most lim.maxDecompressed once gunzipped, at no less than
// lim.minRate. A gzip body is read whole first (it is at most maxBody), then
// inflated from memory through a limit, so a bomb inflates to
// maxDecompressed+1 bytes and no further, whatever its ratio; one whose gzip
// trailer declares a size over the limit is refused without inflating at
// all.
func readBody(w http.ResponseWriter, r *http.Request, b *body, lim readLimits) *refusal {
	maxBody, maxDecompressed := lim.maxBody, lim.maxDecompressed
	if r.ContentLength > int64(maxBody) {
		return tooLargeBody(maxBody)
	}
	wire := http.MaxBytesReader(w, &rateReader{r: r.Body, rc: http.NewResponseController(w), lim: &lim}, int64(maxBody))
	hint := 0
	if r.ContentLength > 0 {
		hint = int(r.ContentLength)
	}
	switch enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding"))); enc {
	case "", "identity":
		var over bool
		var err error
		if b.text, over, err = readLimited(b.text, wire, maxBody, hint); err != nil {
			return readRefusal(err, lim, false)
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
		return readRefusal(err, lim, false)
	} else if over {
		return tooLargeBody(maxBody)
	}
	tooLarge := refuse(http.StatusRequestEntityTooLarge, "the body is larger than %d bytes after gzip (COLLECTOR_MAX_DECOMPRESSED_BYTES=%d)", maxDecompressed, maxDecompressed)
	// The trailer's ISIZE is the last member's size mod 2^32: a hint only,
	// and an honest bomb's confession. As a hint it is believed no further
	// than deflate can inflate (1032:1), so a short body lying about its
	// size cannot make us allocate the limit.
	if n := len(b.wire); n >= 18 {
		isize := int(binary.LittleEndian.Uint32(b.wire[n-4:]))
		if isize > maxDecompressed {
			return tooLarge
		}
		hint = min(isize, n*maxDeflateRatio)
	}
	zr, err := gzip.NewReader(bytes.NewReader(b.wire))
	if err != nil {
		return readRefusal(err, lim, true)
	}
	defer zr.Close()
	if b.text, over, err = readLimited(b.text, zr, maxDecompressed, hint); err != nil {
		return readRefusal(err, lim, true)
	} else if over {
		return tooLarge
	}
	return nil
}

// maxDeflateRatio is the most deflate can inflate: 258 bytes per 2 bits.
const maxDeflateRatio = 1032

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

func readRefusal(err error, lim readLimits, gz bool) *refusal {
	var (
		mbe     *http.MaxBytesError
		corrupt flate.CorruptInputError
		ne      net.Error
	)
	switch {
	case errors.As(err, &mbe):
		return tooLargeBody(lim.maxBody)
	case errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()):
		return refuse(http.StatusRequestTimeout, "the body arrived slower than COLLECTOR_MIN_BODY_RATE=%d bytes/s or took longer than COLLECTOR_READ_TIMEOUT", lim.minRate)
	case gz && (errors.Is(err, gzip.ErrHeader) || errors.Is(err, gzip.ErrChecksum) || errors.As(err, &corrupt) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF)):
		return refuse(http.StatusBadRequest, "the body is not valid gzip, or was cut short")
	}
	return refuse(http.StatusBadRequest, "the body could not be read: %v", err)
}
