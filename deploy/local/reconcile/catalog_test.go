package reconcile

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ecomstream/platform/pkg/avroserde"
	"github.com/ecomstream/platform/pkg/events"
	protoavro "github.com/ecomstream/platform/proto/avro"
)

// fakeCatalog is a CatalogWarehouse from memory (products only).
type fakeCatalog struct {
	stored    StoredChanges
	positions map[int32]int64
}

func (f *fakeCatalog) Positions(_ context.Context, _, topic string) (map[int32]int64, error) {
	if strings.Contains(topic, "products") {
		return f.positions, nil
	}
	return nil, nil
}

func (f *fakeCatalog) Changes(_ context.Context, dim string, _ []string) (StoredChanges, error) {
	if dim == "dim_products" {
		return f.stored, nil
	}
	return StoredChanges{}, nil
}

func TestCatalog(t *testing.T) {
	tests := []struct {
		name   string
		lose   bool // p2's first change is missing from the change log
		diff   int64
		listed string
	}{
		{name: "healthy run balances"},
		{name: "a change lost", lose: true, diff: 1, listed: "not in the change log"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			c := &Catalog{Log: e.c.Log, DeadLetter: e.c.DeadLetter}
			c.CatalogNames("t.")
			r, err := avroserde.New(avroserde.Config{URL: e.reg, AutoRegister: true, Timeout: time.Second})
			if err != nil {
				t.Fatal(err)
			}
			for i, ent := range []string{protoavro.ProductChange, protoavro.CustomerChange} {
				if c.Entities[i].Codec, err = r.Codec(context.Background(), avroserde.SubjectFor(c.Entities[i].Topic), ent); err != nil {
					t.Fatal(err)
				}
			}
			p := c.Entities[0]
			change := func(topic, id string, lsn int64, op string) *kgo.Record {
				b, err := p.Codec.Encode(&events.ProductChange{ProductID: id, Op: op, Name: "n", Currency: "EUR", IsActive: true,
					UpdatedAt: e.at, SyncedAt: e.at, Source: "cdc", SourceLsn: lsn, SourceOrdinal: 1})
				if err != nil {
					t.Fatal(err)
				}
				return &kgo.Record{Topic: topic, Value: b}
			}
			changes := []struct {
				id  string
				lsn int64
				op  string
			}{{"p1", 1, "upsert"}, {"p1", 2, "upsert"}, {"p1", 2, "upsert"}, {"p2", 1, "upsert"}, {"p2", 3, "upsert"}, {"p3", 1, "upsert"}, {"p4", 1, "delete"}}
			var in, out []*kgo.Record
			for _, ch := range changes {
				in = append(in, change(p.Topic, ch.id, ch.lsn, ch.op))
				if ch.id != "p3" {
					out = append(out, change(p.Valid, ch.id, ch.lsn, ch.op))
				}
			}
			inAt := e.transact(false, in...)
			outAt := e.transact(false, append(out, e.dead(StageValidator, inAt[5]))...)
			outAt = outAt[:len(outAt)-1]
			e.commit(c.ValidatorGroup, p.Topic, inAt[len(inAt)-1].Offset+2)
			k := func(id string, lsn int64) ChangeKey { return ChangeKey{id, lsn, 1} }
			wh := &fakeCatalog{positions: map[int32]int64{0: outAt[len(outAt)-1].Offset + 1}, stored: StoredChanges{
				Logged: map[ChangeKey][]Coord{k("p1", 1): {outAt[0]}, k("p1", 2): {outAt[1]}, k("p2", 1): {outAt[3]}, k("p2", 3): {outAt[4]}, k("p4", 1): {outAt[5]}},
				// p2@3 changed nothing: no version starts at it; p4's delete ended a version.
				Versions: map[ChangeKey]bool{k("p1", 1): true, k("p1", 2): true, k("p2", 1): true},
			}}
			if tt.lose {
				delete(wh.stored.Logged, k("p2", 1))
			}
			c.Warehouse = wh
			rep, err := c.Reconcile(context.Background(), e.window)
			if err != nil {
				t.Fatal(err)
			}
			var b strings.Builder
			rep.Print(&b)
			t.Log("\n" + b.String())
			if !rep.Settled() || rep.Difference() != tt.diff || rep.Balanced() != (tt.diff == 0) {
				t.Fatalf("settled %v, difference %d (balanced %v), want settled, %d", rep.Settled(), rep.Difference(), rep.Balanced(), tt.diff)
			}
			if !strings.Contains(b.String(), tt.listed) {
				t.Errorf("no difference listed with %q", tt.listed)
			}
			if tt.diff == 0 {
				want := map[string]int64{TermConsumed: 7, TermWritten: 4, TermDeduplicated: 1, TermSuperseded: 1, TermDeadLettered: 1}
				for term, n := range want {
					if rep.Terms[term] != n {
						t.Errorf("%s %d, want %d (terms %v)", term, rep.Terms[term], n, rep.Terms)
					}
				}
			}
		})
	}
}
