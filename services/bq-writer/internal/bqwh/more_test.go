package bqwh

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/bigquery/storage/apiv1/storagepb"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/ecomstream/platform/services/bq-writer/internal/bqfake"
	"github.com/ecomstream/platform/services/bq-writer/internal/warehouse"
)

// counter sums an Int64 counter's points whose attribute key has value val.
func counter(t *testing.T, r *sdkmetric.ManualReader, name, key, val string) int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != name {
				continue
			}
			for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
				if v, ok := dp.Attributes.Value(attributeKey(key)); ok && v.AsString() == val {
					n += dp.Value
				}
			}
		}
	}
	return n
}

// TestStreamGone: a stream the commit names and the service no longer has is at-least-once from
// the commit: the rows past it are appended again (the staging views keep one per source record),
// and the writer counts it.
func TestStreamGone(t *testing.T) {
	e := newEnv(t)
	w := e.open(t, Config{})
	write(t, e, w, 0, 10, true)
	write(t, e, w, 10, 20, false) // past the commit, then the streams vanish
	for p, c := range e.commits {
		md, err := decodeMetadata(c.Metadata)
		if err != nil {
			t.Fatal(err)
		}
		for table, name := range md.S {
			md.S[table] = name + "-gone"
		}
		if c.Metadata, err = md.encode(); err != nil {
			t.Fatal(err)
		}
		e.commits[p] = c
	}
	reader := sdkmetric.NewManualReader()
	w2 := e.open(t, Config{Meter: sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)).Meter("test")})
	write(t, e, w2, 10, total, true)
	if got := counter(t, reader, "ecom.bigquery.streams", "event", "gone"); got != int64(len(Tables)) {
		t.Errorf("gone streams counted %d, want %d", got, len(Tables))
	}
	for _, table := range Tables {
		per := copies(e.rows(table))
		lines := int64(1)
		if table == TableOrderItems {
			lines = 2
		}
		if int64(len(per)) != total*lines {
			t.Errorf("%s: %d distinct records, want %d", table, len(per), total*lines)
		}
		for off := range int64(total) {
			k := fmt.Sprint(map[string]string{TableEvents: pEvents.Topic, TableOrders: pOrders.Topic, TableOrderItems: pOrders.Topic,
				TableProducts: pProducts.Topic, TableUsers: pUsers.Topic}[table], "/0@", off)
			if table == TableOrderItems {
				k += "#0"
			}
			want := 1
			if off >= 10 && off < 20 {
				want = 2
			}
			if per[k] != want {
				t.Errorf("%s %s: %d copies, want %d", table, k, per[k], want)
			}
		}
	}
}

// TestZombieOnATableNotFedBefore: a partition whose orders had no lines yet has its
// fact_order_items stream opened and named at the claim, so a zombie that appends its first lines
// after a takeover is fenced there too, and every line is stored once.
func TestZombieOnATableNotFedBefore(t *testing.T) {
	noLines := func(b warehouse.Batch) warehouse.Batch {
		for i := range b.Orders {
			b.Orders[i].Items = nil
		}
		return b
	}
	e := newEnv(t)
	zombie := e.open(t, Config{})
	b := noLines(batch(0, 10))
	res, err := zombie.Write(context.Background(), group, b)
	if err != nil {
		t.Fatal(err)
	}
	e.commit(t, b, res)
	md, err := decodeMetadata(e.commits[pOrders].Metadata)
	if err != nil || md.S[TableOrderItems] == "" || md.R[TableOrderItems] != 0 {
		t.Fatalf("orders partition's commit %q names no empty fact_order_items stream: %v", e.commits[pOrders].Metadata, err)
	}
	owner := e.open(t, Config{})
	if _, err := zombie.Write(context.Background(), group, batch(10, 20)); !errors.Is(err, ErrFenced) {
		t.Fatalf("zombie's first lines: %v, want ErrFenced", err)
	}
	if n := len(e.rows(TableOrderItems)); n != 0 {
		t.Fatalf("the fenced zombie stored %d order lines", n)
	}
	write(t, e, owner, 10, total, true)
	lines := copies(e.rows(TableOrderItems))
	if len(lines) != 2*(total-10) {
		t.Errorf("%d distinct order lines, want %d", len(lines), 2*(total-10))
	}
	for k, n := range lines {
		if n != 1 {
			t.Errorf("line %s stored %d times", k, n)
		}
	}
	if got := len(copies(e.rows(TableOrders))); got != total {
		t.Errorf("%d distinct orders, want %d", got, total)
	}
}

// TestFinalizeAgain: a claim that finalized the streams and died before its commit leaves the
// next claim to finalize them again. bqfake and bqemulator answer the row count again (exactly
// once); BigQuery may answer STREAM_FINALIZED instead: the claim neither fails nor loops, the rows
// past the commit are appended again (counted as unknown), and the same process claiming again
// remembers the counts it read.
func TestFinalizeAgain(t *testing.T) {
	tests := []struct {
		name        string
		refuse      bool // answer a second finalize with STREAM_FINALIZED
		sameProcess bool // the process that finalized claims again
		failSecond  bool // the first claim fails finalizing fact_orders, after fact_order_items (INTERNAL), and is retried
		wantStale   int
		wantCopies  int // of the records 10..19
		wantUnknown int64
	}{
		{name: "the row count again", wantStale: 10, wantCopies: 1},
		{name: "STREAM_FINALIZED: at-least-once", refuse: true, wantCopies: 2, wantUnknown: int64(len(Tables))},
		{name: "STREAM_FINALIZED, the same process claims again", refuse: true, sameProcess: true, wantStale: 10, wantCopies: 1},
		{name: "STREAM_FINALIZED, a claim that failed half way is retried", refuse: true, failSecond: true, wantStale: 10, wantCopies: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			w := e.open(t, Config{})
			write(t, e, w, 0, 10, true)
			write(t, e, w, 10, 20, false) // dies before the commit
			if tt.refuse {
				var mu sync.Mutex
				failed := false
				e.fake.SetHooks(bqfake.Hooks{Finalize: func(f bqfake.Finalize) *bqfake.Fault {
					mu.Lock()
					defer mu.Unlock()
					if f.Finalized {
						return bqfake.FinalizedAgain()
					}
					if tt.failSecond && !failed && strings.Contains(f.Stream, "/"+TableOrders+"/") {
						// The claim finalizes a partition's tables in name order: fact_order_items
						// is finalized already. INTERNAL: managedwriter retries UNAVAILABLE itself.
						failed = true
						return &bqfake.Fault{Code: codes.Internal, Message: "bqfake: internal"}
					}
					return nil
				}})
			}
			reader := sdkmetric.NewManualReader()
			metered := Config{Meter: sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)).Meter("test")}
			var next *Warehouse
			switch {
			case tt.sameProcess:
				next = e.claimed(t, metered)
				e.claim(t, next) // a retried claim: every stream is finalized already
			case tt.failSecond:
				next = e.openUnclaimed(t, metered)
				if _, err := next.Claim(context.Background(), group, e.assignments()); !warehouse.IsTransient(err) {
					t.Fatalf("claim with a finalize INTERNAL: %v, want a transient error", err)
				}
				e.claim(t, next) // the sink's retry
			default:
				e.claimed(t, Config{}) // finalizes, dies before the claim commit
				next = e.claimed(t, metered)
			}
			e.commitClaim(t, next)
			res := write(t, e, next, 10, total, true)
			if res.Stale != tt.wantStale || res.Orders.Stale != tt.wantStale {
				t.Errorf("skipped %d events, %d orders; want %d", res.Stale, res.Orders.Stale, tt.wantStale)
			}
			if got := counter(t, reader, "ecom.bigquery.streams", "event", "unknown"); got != tt.wantUnknown {
				t.Errorf("streams of unknown count: %d, want %d", got, tt.wantUnknown)
			}
			for _, table := range Tables {
				for k, n := range copies(e.rows(table)) {
					off := k[strings.Index(k, "@")+1:]
					want := 1
					if len(off) >= 2 && off[0] == '1' && (len(off) == 2 || off[2] == '#') {
						want = tt.wantCopies
					}
					if n != want {
						t.Errorf("%s %s: %d copies, want %d", table, k, n, want)
					}
				}
			}
		})
	}
}

func TestSchemaEvolution(t *testing.T) {
	e := newEnv(t)
	// fact_events predates dq_warnings and has a column the writer does not know; fact_order_items
	// predates the source coordinates.
	ev := tableSchemaFor(TableEvents)
	var kept []*storagepb.TableFieldSchema
	for _, f := range ev.Fields {
		if f.Name != "dq_warnings" {
			kept = append(kept, f)
		}
	}
	ev.Fields = append(kept, &storagepb.TableFieldSchema{Name: "campaign", Type: tString, Mode: storagepb.TableFieldSchema_NULLABLE})
	e.cat.schemas[TableEvents] = ev
	items := tableSchemaFor(TableOrderItems)
	items.Fields = items.Fields[:len(items.Fields)-3]
	e.cat.schemas[TableOrderItems] = items

	w := e.open(t, Config{})
	if got := strings.Join(e.cat.added[TableEvents], ","); got != "dq_warnings" {
		t.Errorf("added to fact_events: %q, want dq_warnings", got)
	}
	if got := strings.Join(e.cat.added[TableOrderItems], ","); got != "source_topic,source_partition,source_offset" {
		t.Errorf("added to fact_order_items: %q", got)
	}
	write(t, e, w, 0, 3, true)
	for _, r := range e.rows(TableEvents) {
		if r["dq_warnings"] != "click.commerce_fields" {
			t.Errorf("dq_warnings %v, want the batch's", r["dq_warnings"])
		}
		if _, ok := r["campaign"]; ok {
			t.Errorf("campaign %v, want NULL", r["campaign"])
		}
	}
	for _, r := range e.rows(TableOrderItems) {
		if r["source_topic"] != pOrders.Topic || r["source_offset"] == nil {
			t.Errorf("order line without its order's coordinates: %v", r)
		}
	}
	checkExactlyOnce(t, e, 3)
}

// TestRowValues checks the conversions: DATE and date_key from the UTC day, TIMESTAMP in
// microseconds, NULLs, surrogate keys.
func TestRowValues(t *testing.T) {
	e := newEnv(t)
	w := e.open(t, Config{})
	write(t, e, w, 0, 1, true)
	ev := e.rows(TableEvents)[0]
	ts := t0
	tests := []struct {
		name string
		got  any
		want any
	}{
		{"event_date", ev["event_date"], int32(ts.Unix() / 86400)},
		{"date_key", ev["date_key"], int64(20261130)},
		{"event_timestamp", ev["event_timestamp"], ts.UnixMicro()},
		{"referrer", ev["referrer"], nil},
		{"user_id", ev["user_id"], "u-1"},
		{"product_key", e.rows(TableProducts)[0]["product_key"], warehouse.SurrogateKey("p-0", warehouse.Seq{LSN: 100, Ordinal: 1})},
		{"user_key", e.rows(TableUsers)[0]["user_key"], warehouse.SurrogateKey("c-0", warehouse.Seq{LSN: 100, Ordinal: 1})},
		{"line_id", e.rows(TableOrderItems)[1]["line_id"], "l-2"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s = %v (%T), want %v (%T)", tt.name, tt.got, tt.got, tt.want, tt.want)
		}
	}
}

func TestSplit(t *testing.T) {
	row := func(n int) []byte { return make([]byte, n) }
	tests := []struct {
		name     string
		sizes    []int
		maxBytes int
		maxRows  int
		want     []int // rows per append
	}{
		{"all fit", []int{10, 10, 10}, 100, 0, []int{3}},
		{"exact limit", []int{50, 50, 50}, 100, 0, []int{2, 1}},
		{"one over", []int{60, 50}, 100, 0, []int{1, 1}},
		{"a row above the limit goes alone", []int{10, 200, 10}, 100, 0, []int{1, 1, 1}},
		{"row cap", []int{1, 1, 1, 1, 1}, 100, 2, []int{2, 2, 1}},
		{"none", nil, 100, 0, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var rows [][]byte
			for _, s := range tt.sizes {
				rows = append(rows, row(s))
			}
			var got []int
			for _, c := range split(rows, tt.maxBytes, tt.maxRows) {
				got = append(got, len(c))
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Fatalf("split %v, want %v", got, tt.want)
			}
		})
	}
}

// TestMaxAppendBytes: a batch larger than MaxAppendBytes goes in several appends, each under it.
func TestMaxAppendBytes(t *testing.T) {
	e := newEnv(t)
	const maxBytes = 4096
	w := e.open(t, Config{MaxAppendBytes: maxBytes})
	var mu sync.Mutex
	var appends, rows int
	e.fake.SetHooks(bqfake.Hooks{Acked: func(a bqfake.Append) {
		mu.Lock()
		defer mu.Unlock()
		if strings.Contains(a.Stream, "/"+TableEvents+"/") {
			appends++
			rows += a.Rows
		}
	}})
	res := write(t, e, w, 0, 200, true)
	e.fake.SetHooks(bqfake.Hooks{})
	mu.Lock()
	defer mu.Unlock()
	// Each event row is a few hundred bytes: 200 of them need several 4 KiB appends.
	if appends < int(res.Bytes/5/maxBytes) || appends < 2 || rows != 200 {
		t.Fatalf("%d appends of %d event rows (%d bytes in all tables), want several of 200", appends, rows, res.Bytes)
	}
	checkExactlyOnce(t, e, 200)
	if _, err := Open(context.Background(), Config{Project: project, RawDataset: dataset, Catalog: e.cat, MaxAppendBytes: MaxAppendBytesLimit + 1}); err == nil {
		t.Fatal("MaxAppendBytes above 9 MiB accepted")
	}
}

func TestMetadataSize(t *testing.T) {
	e := newEnv(t)
	w := e.open(t, Config{})
	res := write(t, e, w, 0, 5, true)
	for p, want := range map[warehouse.Partition]int{pEvents: 1, pOrders: 2, pProducts: 1, pUsers: 1} {
		md, err := decodeMetadata(res.Commits[p])
		if err != nil {
			t.Fatal(err)
		}
		if len(md.S) != want || len(md.K) != 0 {
			t.Errorf("%v: metadata %s names %d streams, want %d and no skip", p, res.Commits[p], len(md.S), want)
		}
	}
	t.Logf("orders partition's metadata: %d bytes", len(res.Commits[pOrders]))
	// The largest there is: every table, BigQuery's own names (a 30-character project, a long
	// dataset, ~100-character stream ids) and a skip of every table.
	real := metadata{V: 1, S: map[string]string{}, R: map[string]int64{}, K: map[string]int64{}}
	for _, table := range Tables {
		real.S[table] = "projects/" + strings.Repeat("p", 30) + "/datasets/" + strings.Repeat("d", 64) + "_raw/tables/" + table + "/streams/" + strings.Repeat("S", 100)
		real.R[table], real.K[table] = 1<<40, 1<<40
	}
	if enc, err := real.encode(); err != nil || len(enc) >= MaxMetadataBytes {
		t.Fatalf("metadata with BigQuery-sized names: %d bytes, %v", len(enc), err)
	} else if dec, err := decodeMetadata(enc); err != nil || dec.K[TableOrders] != 1<<40 {
		t.Fatalf("metadata does not round-trip: %v %v", dec, err)
	} else {
		t.Logf("with BigQuery-sized names: %d bytes", len(enc))
	}
	long := metadata{V: 1, S: map[string]string{}, R: map[string]int64{}}
	for _, table := range Tables {
		long.S[table], long.R[table] = strings.Repeat("x", 800), 1
	}
	if _, err := long.encode(); err == nil {
		t.Fatal("metadata over the limit encoded")
	}
	for _, bad := range []string{"x", `{"v":2,"s":{},"r":{}}`, `{"v":1,"s":{"nope":"s"},"r":{"nope":1}}`, `{"v":1,"s":{"fact_events":"s"},"r":{}}`,
		`{"v":1,"s":{"fact_events":"s"},"r":{"fact_events":1},"k":{"fact_orders":2}}`, `{"v":1,"s":{"fact_events":"s"},"r":{"fact_events":1},"k":{"fact_events":-1}}`} {
		if _, err := decodeMetadata(bad); err == nil {
			t.Errorf("metadata %s decoded", bad)
		}
	}
}

func BenchmarkWrite100kEvents(b *testing.B) {
	fake, err := bqfake.New()
	if err != nil {
		b.Fatal(err)
	}
	defer fake.Close()
	cat := newCatalog(fake)
	opts, err := fake.ProcessOptions()
	if err != nil {
		b.Fatal(err)
	}
	w, err := Open(context.Background(), Config{Project: project, RawDataset: dataset, Catalog: cat, ApplyDDL: true, ClientOptions: opts})
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = w.Close() }()
	if err := w.Migrate(context.Background()); err != nil {
		b.Fatal(err)
	}
	if _, err := w.Claim(context.Background(), group, map[warehouse.Partition]warehouse.Assignment{pEvents: {Entity: warehouse.EntityEvent}}); err != nil {
		b.Fatal(err)
	}
	const n = 100_000
	full := batch(0, n)
	evb := warehouse.Batch{Events: full.Events, Positions: map[warehouse.Partition]int64{pEvents: n}}
	b.ResetTimer()
	var bytes int64
	start := time.Now()
	for i := range b.N {
		bb := evb
		if i > 0 { // the next n records of the partition
			bb.Events = make([]warehouse.EventRow, n)
			copy(bb.Events, evb.Events)
			for j := range bb.Events {
				bb.Events[j].SourceOffset += int64(i * n)
			}
			bb.Positions = map[warehouse.Partition]int64{pEvents: int64((i + 1) * n)}
		}
		res, err := w.Write(context.Background(), group, bb)
		if err != nil {
			b.Fatal(err)
		}
		bytes += res.Bytes
	}
	secs := time.Since(start).Seconds()
	b.ReportMetric(float64(n*b.N)/secs, "rows/s")
	b.ReportMetric(float64(bytes)/secs, "bytes/s")
}

func TestClassify(t *testing.T) {
	withDetail := func(c codes.Code, sc storagepb.StorageError_StorageErrorCode, entity string) error {
		st, err := status.New(c, "x").WithDetails(&storagepb.StorageError{Code: sc, Entity: entity})
		if err != nil {
			t.Fatal(err)
		}
		return st.Err()
	}
	tests := []struct {
		name string
		give error
		want outcome
	}{
		{"BigQuery: finalized", withDetail(codes.InvalidArgument, storagepb.StorageError_STREAM_FINALIZED, "s"), outcomeFenced},
		{"emulator: finalized", status.Error(codes.FailedPrecondition, "Stream is FINALIZED"), outcomeFenced},
		{"already exists", status.Error(codes.AlreadyExists, "Offset 0 already committed; next expected 2"), outcomeDone},
		{"out of range", status.Error(codes.OutOfRange, "Offset 5 beyond next expected 2"), outcomeFatal},
		{"quota", status.Error(codes.ResourceExhausted, bqfake.QuotaMessage), outcomeRetry},
		{"request too large", status.Error(codes.ResourceExhausted, "grpc: received message larger than max (8525011 vs. 4194304)"), outcomeFatal},
		{"stream not found", withDetail(codes.NotFound, storagepb.StorageError_STREAM_NOT_FOUND, "projects/p/datasets/d/tables/t/streams/s"), outcomeGone},
		{"emulator: NotFound with an empty entity", status.Error(codes.NotFound, "Stream not found: "), outcomeAmbiguous},
		{"unavailable", status.Error(codes.Unavailable, "connection dropped"), outcomeAmbiguous},
		{"not a status", io.EOF, outcomeAmbiguous},
		{"row errors", status.Error(codes.InvalidArgument, "Errors found while processing rows."), outcomeFatal},
	}
	for _, tt := range tests {
		if got := classify(tt.give); got != tt.want {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
}

// TestEncode: the wire encoder gives what the row message decodes to, NULLs absent, set zero
// values present (proto2 presence), and a DATE before 1970 negative.
func TestEncode(t *testing.T) {
	e := newEnv(t)
	s, err := loadSchema(context.Background(), e.cat, TableProducts)
	if err == nil {
		t.Fatal("schema of a table not created yet loaded")
	}
	if err := e.cat.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	if s, err = loadSchema(context.Background(), e.cat, TableProducts); err != nil {
		t.Fatal(err)
	}
	r := batch(0, 1).Products[0]
	r.IsActive, r.PriceMinor, r.Name, r.Sku = false, -5, "", nil
	old := time.Date(1969, 12, 31, 23, 59, 59, 0, time.UTC)
	r.ChangedAt = &old
	vals := productValues(&r, t0)
	b, err := s.encode(vals)
	if err != nil {
		t.Fatal(err)
	}
	m := dynamicpb.NewMessage(s.md)
	if err := proto.Unmarshal(b, m); err != nil {
		t.Fatal(err)
	}
	field := func(n string) protoreflect.FieldDescriptor { return s.md.Fields().ByName(protoreflect.Name(n)) }
	tests := []struct {
		col  string
		has  bool
		want any
	}{
		{"is_active", true, false},
		{"price_minor", true, int64(-5)},
		{"name", true, ""},
		{"sku", false, nil},
		{"valid_from", true, old.UnixMicro()},
		{"product_key", true, warehouse.SurrogateKey("p-0", warehouse.Seq{LSN: 100, Ordinal: 1})},
	}
	for _, tt := range tests {
		fd := field(tt.col)
		if m.Has(fd) != tt.has {
			t.Errorf("%s: set %v, want %v", tt.col, m.Has(fd), tt.has)
			continue
		}
		if tt.has && m.Get(fd).Interface() != tt.want {
			t.Errorf("%s = %v, want %v", tt.col, m.Get(fd).Interface(), tt.want)
		}
	}
	// A DATE before the epoch: the events' event_date.
	es, err := loadSchema(context.Background(), e.cat, TableEvents)
	if err != nil {
		t.Fatal(err)
	}
	ev := batch(0, 1).Events[0]
	ev.EventTimestamp = old
	if b, err = es.encode(eventValues(&ev, t0)); err != nil {
		t.Fatal(err)
	}
	em := dynamicpb.NewMessage(es.md)
	if err := proto.Unmarshal(b, em); err != nil {
		t.Fatal(err)
	}
	if got := em.Get(es.md.Fields().ByName("event_date")).Int(); got != -1 {
		t.Errorf("event_date of 1969-12-31 = %d, want -1", got)
	}
	// A REQUIRED column without a value is refused before it is sent.
	vals[0] = nil
	if _, err := s.encode(vals); err == nil {
		t.Error("row without its REQUIRED product_id encoded")
	}
}

func sumFloat(t *testing.T, r *sdkmetric.ManualReader, name string) float64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	var n float64
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name == name {
				for _, dp := range m.Data.(metricdata.Sum[float64]).DataPoints {
					n += dp.Value
				}
			}
		}
	}
	return n
}

func TestMetrics(t *testing.T) {
	e := newEnv(t)
	w := e.open(t, Config{})
	write(t, e, w, 0, 10, true)
	_ = w.Close()
	reader := sdkmetric.NewManualReader()
	w = e.open(t, Config{PricePerGiB: 2, Meter: sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)).Meter("test")})
	e.fake.SetHooks(bqfake.Hooks{BeforeAppend: faultFirst(1, bqfake.Quota())})
	res := write(t, e, w, 10, 20, true)
	e.fake.SetHooks(bqfake.Hooks{})
	tests := []struct {
		name      string
		got, want int64
	}{
		{"rows of fact_events", counter(t, reader, "ecom.bigquery.append.rows", "table", TableEvents), 10},
		{"rows of fact_order_items", counter(t, reader, "ecom.bigquery.append.rows", "table", TableOrderItems), 20},
		{"streams finalized at the claim", counter(t, reader, "ecom.bigquery.streams", "event", "finalized"), int64(len(Tables))},
		{"streams opened at the claim", counter(t, reader, "ecom.bigquery.streams", "event", "opened"), int64(len(Tables))},
		{"quota retries", counter(t, reader, "ecom.bigquery.append.retries", "code", "ResourceExhausted"), 1},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s: %d, want %d", tt.name, tt.got, tt.want)
		}
	}
	if got, want := sumFloat(t, reader, "ecom.bigquery.append.cost"), float64(res.Bytes)*2/gib; got < want*0.999 || got > want*1.001 || got == 0 {
		t.Errorf("cost %g, want %g (bytes %d at 2/GiB)", got, want, res.Bytes)
	}
}

func TestFirstError(t *testing.T) {
	transient := fmt.Errorf("quota: %w", warehouse.ErrTransient)
	tests := []struct {
		name          string
		give          []error
		wantFenced    bool
		wantTransient bool
	}{
		{"none", []error{nil, nil}, false, false},
		{"transient only", []error{nil, transient}, false, true},
		{"fenced beside transient", []error{transient, fmt.Errorf("x: %w", ErrFenced)}, true, false},
	}
	for _, tt := range tests {
		err := firstError(tt.give)
		if errors.Is(err, ErrFenced) != tt.wantFenced || warehouse.IsTransient(err) != tt.wantTransient {
			t.Errorf("%s: %v: fenced %v transient %v", tt.name, err, errors.Is(err, ErrFenced), warehouse.IsTransient(err))
		}
	}
}

// TestStreamOpenFails: a claim whose stream cannot be opened fails and leaves nothing claimed,
// so no Write appends to a stream no commit names.
func TestStreamOpenFails(t *testing.T) {
	e := newEnv(t)
	w := e.openUnclaimed(t, Config{})
	w.cfg.RawDataset = "no_such_dataset" // the catalog still answers for the real one
	if _, err := w.Claim(context.Background(), group, e.assignments()); err == nil {
		t.Fatal("claim on a table that does not exist succeeded")
	}
	w.cfg.RawDataset = dataset
	b := batch(0, 2)
	if _, err := w.Write(context.Background(), group, b); err == nil || warehouse.IsTransient(err) {
		t.Fatalf("write to unclaimed partitions: %v, want a permanent error", err)
	}
	for _, table := range Tables {
		if n := len(e.rows(table)); n != 0 {
			t.Errorf("%s: %d rows written without a claim", table, n)
		}
	}
	if _, err := w.Claim(context.Background(), group, map[warehouse.Partition]warehouse.Assignment{pEvents: {Entity: "nope"}}); err == nil {
		t.Error("claim of an entity that feeds no table succeeded")
	}
}
