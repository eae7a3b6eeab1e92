package collector

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"
)

// BenchmarkHandler is the handler path of one request of 50 (or 1) events
// against kfake: read, split, parse, encode, produce and wait for the acks,
// answer, with 32 concurrent clients on 2 CPUs. It reports events/s and allocations per request; run with
// go test -run '^$' -bench Handler -benchmem ./internal/collector/.
func BenchmarkHandler(b *testing.B) {
	for _, n := range []int{1, 50} {
		b.Run("batch="+strconv.Itoa(n), func(b *testing.B) {
			e := newEnv(b, map[string]string{"COLLECTOR_RATE_LIMIT": "1e9", "COLLECTOR_RATE_BURST": "1000000000"})
			e.writeKeys(`{"keys":[{"source":"server","key":"` + srvKey + `","rate_limit":1e9,"burst":1000000000}]}`)
			e.now = e.now.Add(keyCheckInterval)
			e.c.keys.current() // the keys above, read once; then the real clock for the buckets
			e.c.d.Now = time.Now
			body := []byte(batch(manyEvents("b", n)...))
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			b.SetParallelism(16) // 16 clients per CPU: each request waits for its acks
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					r := httptest.NewRequest(http.MethodPost, Path, bytes.NewReader(body))
					r.Header.Set("Content-Type", "application/json")
					r.Header.Set("Authorization", "Bearer "+srvKey)
					w := httptest.NewRecorder()
					e.c.ServeHTTP(w, r)
					if w.Code != http.StatusOK {
						b.Errorf("status %d: %s", w.Code, w.Body)
						return
					}
				}
			})
			took := time.Since(start)
			b.ReportMetric(float64(b.N*n)/took.Seconds(), "events/s")
			b.ReportMetric(float64(b.N)/took.Seconds(), "req/s")
		})
	}
}
