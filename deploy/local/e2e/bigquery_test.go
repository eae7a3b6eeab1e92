package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ecomstream/platform/deploy/local/clickgen"
	"github.com/ecomstream/platform/deploy/local/slice"
	"github.com/ecomstream/platform/deploy/local/stacktest"
	"github.com/ecomstream/platform/deploy/local/svcrun"
)

// The BigQuery scenario: a clickstream of about 8 s; bq-writer killed after
// 1.5 s and, once it is back (a start takes 2-3 s: the emulator applies the
// DDL) and the stream is at 5 s, stopped and started again.
const (
	bqTotal       = 8000 // raw records sent, broken ones and source duplicates included
	bqRate        = 1000 // records per second
	bqKillAt      = 1500 // kill -9 bq-writer after this many records
	bqRestartAt   = 5000 // stop it gracefully and start it again after this many
	bqSettleLimit = 60 * time.Second
)

// TestE2EBigQuery runs the clickstream slice (generator -> ingest-clickstream
// -> validator -> bq-writer) with bq-writer on WAREHOUSE=bigquery against the
// local stack's BigQuery emulator, in datasets of its own (dropped after),
// with source duplicates and invalid events, across a kill -9 and a graceful
// restart of bq-writer while events flow. Read back through the BigQuery
// client on the emulator's REST endpoint, it proves:
//   - raw.fact_events holds every valid Kafka record exactly once (by source
//     coordinates; the restarts' claims finalized the old streams and skipped
//     what was already appended), and no invalid one;
//   - staging.fact_events has one row per Kafka record;
//   - prod.fact_events has one row per event_id, and its ids are exactly the
//     valid events sent.
//
// Every count is asked for explicitly: the emulator answers a failed query
// with an empty result, which must not pass for "nothing there".
//
// It does not assert that the reconciliation balances (assertReconciled, as
// the other end-to-end tests do): package reconcile reads the DuckDB
// warehouse through bq-writer's query endpoint, which answers 501 on
// WAREHOUSE=bigquery, and has no reader of the BigQuery datasets yet
// (reconcile/DESIGN.md, "Where it lives"). Its counts above are the same
// equation for this path, by source coordinates: every valid Kafka record
// once in raw.fact_events, one prod row per event.
func TestE2EBigQuery(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test: runs without -short, against the local stack and its BigQuery emulator")
	}
	eps := stacktest.Require(t)
	emu := slice.EmulatorFromEnv()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := slice.CheckEmulator(ctx, emu); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	root, binDir, _, err := svcrun.BuildTree(ctx)
	if err != nil {
		t.Fatal(err)
	}
	runDir := filepath.Join(root, ".run", "e2e", t.Name()+"-"+time.Now().Format("20060102-150405"))
	prefix := "e2e-" + stacktest.UniqueName(t, "") + "."
	// Dataset names allow letters, digits and underscores only.
	emu.DatasetPrefix = "e2e_" + strings.NewReplacer("-", "_", ".", "_").Replace(stacktest.UniqueName(t, "bq"))
	sl, err := slice.New(slice.Options{
		BinDir: binDir, RunDir: runDir, Brokers: eps.KafkaBrokers, Registry: eps.SchemaRegistryURL,
		Prefix: prefix, QueryToken: token, BigQuery: &emu,
		// Small polls: many batches, so the kill lands between and inside appends.
		Env: map[string][]string{"bq-writer": {"KAFKA_MAX_POLL_RECORDS=200"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	bq := sl.BigQuery
	t.Logf("service logs: %s; datasets %s, %s, %s", runDir, bq.Raw, bq.Staging, bq.Prod)
	defer func() {
		if err := bq.Drop(context.WithoutCancel(ctx)); err != nil {
			t.Errorf("drop the datasets: %v", err)
		}
	}()
	defer sl.Stop()
	if err := sl.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("slice ready after %s", time.Since(began).Round(time.Millisecond))
	// Later starts apply no DDL (the datasets exist; as where Terraform applies
	// it): a DDL job on the emulator while an append is still being inserted
	// deadlocks it, and a restart mid-stream is exactly that moment.
	sl.Procs["bq-writer"].Env = append(sl.Procs["bq-writer"].Env, "BIGQUERY_APPLY_DDL=false")

	prod, err := kgo.NewClient(kgo.SeedBrokers(eps.KafkaBrokers...), kgo.ProducerLinger(5*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	gen := clickgen.New(clickgen.WithSeed(uint64(time.Now().UnixNano())), clickgen.WithBrokenFraction(0.05), clickgen.WithDuplicateFraction(0.04))
	var produceErrs atomic.Int64
	wantIDs := map[string]int{} // valid event id -> Kafka records carrying it
	validRecords, broken := 0, 0
	bw := sl.Procs["bq-writer"]
	killRestarted, restarted := make(chan error, 1), make(chan error, 1)
	tick := time.NewTicker(time.Second / 100)
	defer tick.Stop()
	for sent := 0; sent < bqTotal; {
		<-tick.C
		for i := 0; i < bqRate/100 && sent < bqTotal; i++ {
			r := gen.Next()
			sent++
			if r.Expect.Valid {
				wantIDs[r.EventID]++
				validRecords++
			} else {
				broken++
			}
			prod.Produce(ctx, &kgo.Record{Topic: sl.Topics.Raw, Key: r.Key, Value: r.Value}, func(_ *kgo.Record, err error) {
				if err != nil {
					produceErrs.Add(1)
				}
			})
			switch sent {
			case bqKillAt:
				t.Logf("kill -9 bq-writer after %d records", sent)
				if err := bw.Kill(); err != nil {
					t.Fatal(err)
				}
				go func() { killRestarted <- sl.StartOne(ctx, "bq-writer") }()
			case bqRestartAt:
				// The stream goes on while it stops and starts (in the background).
				go func() {
					if err := <-killRestarted; err != nil {
						restarted <- fmt.Errorf("after the kill: %w", err)
						return
					}
					t.Logf("graceful restart of bq-writer after %d records", bqRestartAt)
					restarted <- sl.Restart(ctx, "bq-writer")
				}()
			}
		}
	}
	if err := prod.Flush(ctx); err != nil || produceErrs.Load() > 0 {
		t.Fatalf("producing: %v (%d failed)", err, produceErrs.Load())
	}
	if err := <-restarted; err != nil {
		t.Fatalf("restarting bq-writer: %v", err)
	}
	t.Logf("sent %d records: %d valid (%d distinct events), %d broken; produced after %s",
		bqTotal, validRecords, len(wantIDs), broken, time.Since(began).Round(time.Millisecond))

	// Wait until every stage has committed its whole input, through Kafka
	// alone: bq-writer commits after its appends are acknowledged, so then no
	// append is in flight. Polling the emulator instead would query it while
	// bq-writer appends, and bqemulator 1.4.0 deadlocks on that (a REST job
	// and an AppendRows on its one DuckDB connection; see deploy/local/README.md).
	waitFor := time.Now().Add(bqSettleLimit)
	for {
		ok, line, err := groupsCaughtUp(ctx, eps.KafkaBrokers,
			groupTopic{prefix + "ingest-clickstream", sl.Topics.Raw},
			groupTopic{prefix + "validator", sl.Topics.Events},
			groupTopic{prefix + "bq-writer", sl.Topics.Valid})
		if err == nil && ok {
			break
		}
		if time.Now().After(waitFor) {
			var appends []string
			if series, err := slice.Scrape(ctx, bw.HTTPAddr, "ecom_bigquery_"); err == nil {
				for _, x := range series {
					if !strings.HasSuffix(x.Name, "_bucket") {
						appends = append(appends, fmt.Sprintf("%s%v=%g", x.Name, x.Labels, x.Value))
					}
				}
			}
			t.Fatalf("not caught up after %s: %s (%v); bq-writer's BigQuery metrics: %v; see %s",
				bqSettleLimit, line, err, appends, filepath.Join(runDir, "bq-writer.log"))
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Logf("every stage committed its input after %s", time.Since(began).Round(time.Millisecond))
	// The last start claimed the partitions from the previous life's commits:
	// it finalized the streams they name, and found none gone.
	series, err := slice.Scrape(ctx, bw.HTTPAddr, "ecom_bigquery_streams")
	if err != nil {
		t.Fatalf("bq-writer metrics: %v", err)
	}
	finalized := slice.Sum(series, "ecom_bigquery_streams_total", map[string]string{"event": "finalized"})
	gone := slice.Sum(series, "ecom_bigquery_streams_total", map[string]string{"event": "gone"})
	if finalized == 0 || gone != 0 {
		t.Errorf("bq-writer's last claim: %v streams finalized, %v gone; want some finalized, none gone", finalized, gone)
	}
	// Stop bq-writer, so nothing appends while the test queries.
	if err := bw.Stop(30 * time.Second); err != nil {
		t.Errorf("graceful stop of bq-writer: %v", err)
	}

	distinct := "SELECT COUNT(*) FROM (SELECT DISTINCT source_topic, source_partition, source_offset FROM raw.fact_events)"
	counts := []struct {
		what string
		sql  string
		want int
	}{
		{"raw.fact_events rows (one per valid Kafka record, no replay)", "SELECT COUNT(*) FROM raw.fact_events", validRecords},
		{"raw.fact_events distinct source coordinates", distinct, validRecords},
		{"raw.fact_events rows of other topics", fmt.Sprintf("SELECT COUNT(*) FROM raw.fact_events WHERE source_topic != '%s'", sl.Topics.Valid), 0},
		{"staging.fact_events rows (one per Kafka record)", "SELECT COUNT(*) FROM staging.fact_events", validRecords},
		{"prod.fact_events rows (one per event)", "SELECT COUNT(*) FROM prod.fact_events", len(wantIDs)},
		{"prod.fact_events distinct event ids", "SELECT COUNT(DISTINCT event_id) FROM prod.fact_events", len(wantIDs)},
	}
	for _, c := range counts {
		n, err := bq.Count(ctx, c.sql)
		if err != nil {
			t.Errorf("%s: %v", c.what, err)
			continue
		}
		if n != int64(c.want) {
			t.Errorf("%s: %d, want %d", c.what, n, c.want)
		}
	}

	// Per event: as many raw rows as Kafka records carried it (source duplicates).
	rows, err := bq.Query(ctx, "SELECT event_id, COUNT(*) FROM raw.fact_events GROUP BY event_id")
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) == 0 {
		t.Fatal("raw.fact_events per event_id: no rows (a failed query on the emulator?)")
	}
	var wrongCopies []string
	for _, r := range rows {
		id, _ := r[0].(string)
		if n, _ := r[1].(int64); int(n) != wantIDs[id] {
			wrongCopies = append(wrongCopies, fmt.Sprintf("%s: %d rows, %d records", id, n, wantIDs[id]))
		}
	}
	if len(wrongCopies) > 0 {
		t.Errorf("raw.fact_events: %d events with the wrong number of copies, e.g. %v", len(wrongCopies), first(wrongCopies))
	}

	ids, err := bq.Strings(ctx, "SELECT event_id FROM prod.fact_events")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, id := range ids {
		seen[id]++
	}
	var missing, extra, dups []string
	for id := range wantIDs {
		if seen[id] == 0 {
			missing = append(missing, id)
		}
	}
	for id, n := range seen {
		if wantIDs[id] == 0 {
			extra = append(extra, id)
		}
		if n > 1 {
			dups = append(dups, id)
		}
	}
	if len(ids) == 0 || len(missing)+len(extra)+len(dups) > 0 {
		t.Errorf("prod.fact_events: %d rows for %d events; %d missing (e.g. %v), %d not sent (e.g. %v), %d duplicated (e.g. %v)",
			len(ids), len(wantIDs), len(missing), first(missing), len(extra), first(extra), len(dups), first(dups))
	}
	t.Logf("prod %d events; checked after %s", len(ids), time.Since(began).Round(time.Millisecond))
}
