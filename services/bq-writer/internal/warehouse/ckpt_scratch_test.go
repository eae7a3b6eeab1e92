package warehouse

import (
	"context"
	"testing"
	"time"
)

func TestScratchCheckpoint(t *testing.T) {
	for _, thr := range []string{"16MB", "128MB"} {
		d, _ := openTest(t, WithThreads(1))
		ctx := context.Background()
		if _, err := d.writer.ExecContext(ctx, "SET checkpoint_threshold = '"+thr+"'"); err != nil { t.Fatal(err) }
		gen := newGenerator(t0, 10000)
		const n = 250
		w := time.Now()
		var slow []string
		var sum time.Duration
		for i := 0; i < n; i++ {
			s := time.Now()
			mustWrite(t, d, gen.next())
			el := time.Since(s)
			sum += el
			if el > 500*time.Millisecond { slow = append(slow, (time.Duration(i+1)*10).String()+"k:"+el.Round(time.Millisecond).String()) }
			if (i+1)%50 == 0 {
				t.Logf("%s: after %dk rows: avg batch %v; slow batches %v", thr, (i+1)*10, (sum/50).Round(time.Millisecond), slow)
				slow = nil; sum = 0
			}
		}
		t.Logf("%s total %v", thr, time.Since(w))
	}
}
