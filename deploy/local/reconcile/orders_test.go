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

// fakeOrders is an OrderWarehouse from memory.
type fakeOrders struct {
	rows      map[string]StoredOrder
	positions map[int32]int64
}

func (f *fakeOrders) Positions(context.Context, string, string) (map[int32]int64, error) {
	return f.positions, nil
}

func (f *fakeOrders) StoredOrders(_ context.Context, ids []string) (map[string]StoredOrder, error) {
	out := map[string]StoredOrder{}
	for _, id := range ids {
		if s, ok := f.rows[id]; ok {
			out[id] = s
		}
	}
	return out, nil
}

func TestOrders(t *testing.T) {
	tests := []struct {
		name   string
		lose   string // "row": o4's row missing; "newer": fact_orders keeps o5's older version
		diff   int64
		listed string
	}{
		{name: "healthy run balances"},
		{name: "an order's row lost", lose: "row", diff: 1, listed: "has no row in fact_orders"},
		{name: "a newer version lost", lose: "newer", diff: 1, listed: "keeps the older version 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			o := &Orders{Log: e.c.Log, DeadLetter: e.c.DeadLetter}
			o.OrdersNames("t.")
			r, err := avroserde.New(avroserde.Config{URL: e.reg, AutoRegister: true, Timeout: time.Second})
			if err != nil {
				t.Fatal(err)
			}
			if o.Order, err = r.Codec(context.Background(), avroserde.SubjectFor(o.Topic), protoavro.Order); err != nil {
				t.Fatal(err)
			}
			ord := func(topic, id string, v int64) *kgo.Record {
				b, err := o.Order.Encode(&events.Order{OrderID: id, OrderVersion: v, UserID: "u", Status: "paid", Currency: "EUR",
					OrderTimestamp: e.at, UpdatedAt: e.at.Add(time.Duration(v) * time.Minute), Source: "api", Items: []events.OrderItem{}})
				if err != nil {
					t.Fatal(err)
				}
				return &kgo.Record{Topic: topic, Value: b}
			}
			versions := []struct {
				id string
				v  int64
			}{{"o1", 1}, {"o1", 2}, {"o2", 1}, {"o2", 1}, {"o3", 1}, {"o4", 1}, {"o5", 2}}
			var in, out []*kgo.Record
			for _, x := range versions {
				in = append(in, ord(o.Topic, x.id, x.v))
				if x.id != "o3" {
					out = append(out, ord(o.Valid, x.id, x.v))
				}
			}
			inAt := e.transact(false, in...)
			outAt := e.transact(false, append(out, e.dead(StageValidator, inAt[4]))...)
			outAt = outAt[:len(outAt)-1]
			e.commit(o.ValidatorGroup, o.Topic, inAt[len(inAt)-1].Offset+2)
			us := func(v int64) int64 { return e.at.Add(time.Duration(v) * time.Minute).UnixMicro() }
			wh := &fakeOrders{positions: map[int32]int64{0: outAt[len(outAt)-1].Offset + 1}, rows: map[string]StoredOrder{
				"o1": {2, us(2), outAt[1]}, "o2": {1, us(1), outAt[2]}, "o4": {1, us(1), outAt[4]}, "o5": {2, us(2), outAt[5]},
			}}
			switch tt.lose {
			case "row":
				delete(wh.rows, "o4")
			case "newer":
				wh.rows["o5"] = StoredOrder{1, us(1), Coord{Topic: o.Valid, Partition: 0, Offset: 0}}
			}
			o.Warehouse = wh
			rep, err := o.Reconcile(context.Background(), e.window)
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
				want := map[string]int64{TermConsumed: 7, TermWritten: 4, TermSuperseded: 1, TermDeduplicated: 1, TermDeadLettered: 1}
				for term, n := range want {
					if rep.Terms[term] != n {
						t.Errorf("%s %d, want %d (terms %v)", term, rep.Terms[term], n, rep.Terms)
					}
				}
			}
		})
	}
}
