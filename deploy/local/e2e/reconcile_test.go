package e2e

import (
	"bytes"
	"context"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ecomstream/platform/deploy/local/clickgen"
	"github.com/ecomstream/platform/deploy/local/reconcile"
	"github.com/ecomstream/platform/deploy/local/slice"
	"github.com/ecomstream/platform/deploy/local/stacktest"
	"github.com/ecomstream/platform/deploy/local/svcrun"
	"github.com/ecomstream/platform/pkg/avroserde"
	"github.com/ecomstream/platform/pkg/deadletter"
	protoavro "github.com/ecomstream/platform/proto/avro"
)

// TestE2EReconcileClickstream: raw events (broken ones and source duplicates among them) sent
// through the clickstream slice while ingest-clickstream, the validator and bq-writer are
// killed with -9 and restarted balance in the reconciliation, at every stage and end to end;
// and a raw record ingest-clickstream consumed without passing it on (its committed offset
// moved past it while it was down) shows as a difference of 1, at that stage, listed by event id.
func TestE2EReconcileClickstream(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test: runs without -short, against the local stack")
	}
	const (
		total  = 3000
		rate   = 1500
		killAt = 1000
	)
	eps := stacktest.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	root, binDir, _, err := svcrun.BuildTree(ctx)
	if err != nil {
		t.Fatal(err)
	}
	runDir := filepath.Join(root, ".run", "e2e", t.Name()+"-"+time.Now().Format("20060102-150405"))
	prefix := "e2e-" + stacktest.UniqueName(t, "") + "."
	sl, err := slice.New(slice.Options{BinDir: binDir, RunDir: runDir, Brokers: eps.KafkaBrokers, Registry: eps.SchemaRegistryURL,
		Prefix: prefix, QueryToken: token,
		Env: map[string][]string{"validator": {"KAFKA_MAX_POLL_RECORDS=200"}, "bq-writer": {"KAFKA_MAX_POLL_RECORDS=300"}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("service logs: %s", runDir)
	if err := sl.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer sl.Stop()

	opts := []kgo.Opt{kgo.SeedBrokers(eps.KafkaBrokers...)}
	prod, err := kgo.NewClient(append(opts, kgo.ProducerLinger(5*time.Millisecond))...)
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	adm := kadm.NewClient(prod)
	reg, err := avroserde.New(avroserde.Config{URL: eps.SchemaRegistryURL, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	rc := &reconcile.Clickstream{Log: &reconcile.Log{Opts: opts, Adm: adm, Lateness: time.Minute},
		Warehouse: &reconcile.QueryAPI{URL: "http://" + sl.Procs["bq-writer"].HTTPAddr, Token: token}}
	rc.ClickstreamNames(prefix)
	if rc.Click, err = reg.Codec(ctx, avroserde.SubjectFor(rc.Events), protoavro.ClickEvent); err != nil {
		t.Fatal(err)
	}
	if rc.DeadLetter, err = reg.Codec(ctx, avroserde.SubjectFor(deadletter.Topic), protoavro.DeadLetter); err != nil {
		t.Fatal(err)
	}

	start := time.Now().Add(-time.Second)
	gen := clickgen.New(clickgen.WithSeed(uint64(time.Now().UnixNano())), clickgen.WithBrokenFraction(0.06), clickgen.WithDuplicateFraction(0.02))
	var failed atomic.Int64
	tick := time.NewTicker(time.Second / 100)
	defer tick.Stop()
	stages := []string{"ingest-clickstream", "validator", "bq-writer"}
	killed := false
	for sent := 0; sent < total; {
		<-tick.C
		for i := 0; i < rate/100 && sent < total; i++ {
			r := gen.Next()
			prod.Produce(ctx, &kgo.Record{Topic: rc.Raw, Key: r.Key, Value: r.Value}, func(_ *kgo.Record, err error) {
				if err != nil {
					failed.Add(1)
				}
			})
			sent++
		}
		if sent >= killAt && !killed {
			killed = true
			t.Logf("kill -9 %v after %d records", stages, sent)
			for _, n := range stages {
				if err := sl.Procs[n].Kill(); err != nil {
					t.Fatal(err)
				}
			}
			go func() {
				time.Sleep(300 * time.Millisecond)
				for _, n := range stages {
					if err := sl.StartOne(ctx, n); err != nil {
						t.Errorf("restart %s: %v", n, err)
					}
				}
			}()
		}
	}
	if err := prod.Flush(ctx); err != nil || failed.Load() > 0 {
		t.Fatalf("producing: %v (%d failed)", err, failed.Load())
	}
	// And a batch through the HTTP collector, whose input is requests, not a topic.
	const viaHTTP = 20
	goods := clickgen.New(clickgen.WithSeed(11), clickgen.WithBrokenFraction(0))
	var vals [][]byte
	for range viaHTTP {
		vals = append(vals, goods.Next().Value)
	}
	body := slices.Concat([]byte(`{"events":[`), bytes.Join(vals, []byte(",")), []byte("]}"))
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, sl.CollectorURL(), bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Write-Key", sl.WriteKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("collector: %s", resp.Status)
	}
	w := reconcile.Window{From: start, To: time.Now().Add(time.Second)}

	rep := settleReport(ctx, t, rc.Reconcile, w)
	if !rep.Balanced() {
		t.Fatalf("the run does not balance:\n%s", reportText(rep))
	}
	if rep.Hops[1].Stage != reconcile.StageCollector || rep.Hops[1].Consumed != viaHTTP {
		t.Errorf("collector: %+v, want %d consumed", rep.Hops[1], viaHTTP)
	}
	if rep.Terms[reconcile.TermConsumed] != total+viaHTTP || rep.Terms[reconcile.TermDeduplicated] == 0 || rep.Terms[reconcile.TermDeadLettered] == 0 {
		t.Errorf("terms %v: want %d consumed, some deduplicated and some dead-lettered", rep.Terms, total+viaHTTP)
	}
	t.Logf("balanced after kill -9:\n%s", reportText(rep))

	// The loss: ingest-clickstream, stopped, has its committed offset moved past a raw record it
	// never handled, as a stage that commits without producing would.
	ingest := "ingest-clickstream"
	if err := sl.Procs[ingest].Stop(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := adm.LeaveGroup(ctx, kadm.LeaveGroup(rc.IngestGroup).InstanceIDs(prefix+ingest+"-0")); err != nil {
		t.Fatal(err)
	}
	lostID := "reconcile-lost-" + stacktest.UniqueName(t, "")
	raw := `{"event_id":"` + lostID + `","event_type":"page_view","event_timestamp":"` + time.Now().UTC().Format(time.RFC3339Nano) +
		`","session_id":"s-lost","page_url":"https://shop.example.com/"}`
	lost, err := prod.ProduceSync(ctx, &kgo.Record{Topic: rc.Raw, Key: []byte("s-lost"), Value: []byte(raw)}).First()
	if err != nil {
		t.Fatal(err)
	}
	offs := kadm.Offsets{}
	offs.Add(kadm.Offset{Topic: rc.Raw, Partition: lost.Partition, At: lost.Offset + 1, LeaderEpoch: -1})
	if err := adm.CommitAllOffsets(ctx, rc.IngestGroup, offs); err != nil {
		t.Fatalf("moving ingest-clickstream's offset past the record: %v", err)
	}
	if err := sl.StartOne(ctx, ingest); err != nil {
		t.Fatal(err)
	}
	w.To = time.Now().Add(time.Second)
	rep = settleReport(ctx, t, rc.Reconcile, w)
	out := reportText(rep)
	if rep.Balanced() || rep.Difference() != 1 {
		t.Fatalf("a lost record: difference %d, want 1:\n%s", rep.Difference(), out)
	}
	for _, h := range rep.Hops {
		want := int64(0)
		if h.Stage == reconcile.StageIngest {
			want = 1
		}
		if h.Difference() != want {
			t.Errorf("%s: difference %d, want %d", h.Stage, h.Difference(), want)
		}
	}
	if !strings.Contains(out, lostID) {
		t.Errorf("the lost record %s is not listed:\n%s", lostID, out)
	}
	t.Logf("the injected loss:\n%s", out)
}

func reportText(r *reconcile.Report) string {
	var b strings.Builder
	r.Print(&b)
	return b.String()
}
