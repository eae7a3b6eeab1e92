package reconcile

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"

	"github.com/ecomstream/platform/pkg/avroserde"
	"github.com/ecomstream/platform/pkg/deadletter"
	"github.com/ecomstream/platform/pkg/events"
)

// SourceOrders is the orders source's name in reports and metrics.
const SourceOrders = "orders"

// StageOrders is ingest-orders, as its dead letters name it.
const StageOrders = "ingest-orders"

// StoredOrder is an order's row in fact_orders: the version the warehouse kept, and where that
// version was read from.
type StoredOrder struct {
	Version   int64
	UpdatedUS int64 // updated_at, unix microseconds
	At        Coord
}

// OrderWarehouse is what the orders reconciliation reads of the warehouse.
type OrderWarehouse interface {
	// Positions is Warehouse.Positions.
	Positions(ctx context.Context, group, topic string) (map[int32]int64, error)
	// StoredOrders returns the fact_orders row of each of ids that has one.
	StoredOrders(ctx context.Context, ids []string) (map[string]StoredOrder, error)
}

// Orders reconciles the orders path: the storefront's API pages and webhooks -> ingest-orders
// -> the orders topic -> validator -> the valid topic -> bq-writer -> fact_orders, which keeps
// one row per order, its latest version. A version the warehouse does not keep leaves no row,
// so bq-writer's outcomes are judged against the row kept, which is durable: a consumed version
// is written (it is the row), superseded (the row is a later version), deduplicated (the row
// is the same version from other coordinates: the poll and the webhook both delivered it) or
// dead-lettered; a version later than the row, or of an order without one, is lost.
type Orders struct {
	Topic, Valid, DeadLetters   string // topics
	ValidatorGroup, WriterGroup string // consumer groups
	// WebhookSource is the source_topic of ingest-orders' webhook dead letters (a rejected
	// body has no position); it is not per slice, so a slice sharing the dead-letter topic
	// with another one sets it "" and those dead letters are not counted.
	WebhookSource string
	Log           *Log
	Warehouse     OrderWarehouse
	Order         *avroserde.Codec // decodes the orders and valid topics
	DeadLetter    *avroserde.Codec
}

// OrdersNames sets o's topics and groups to the platform's names with prefix in front.
func (o *Orders) OrdersNames(prefix string) {
	o.Topic, o.Valid, o.DeadLetters = prefix+"ecom.orders.v1", prefix+"ecom.orders.valid.v1", deadletter.Topic
	o.ValidatorGroup, o.WriterGroup = prefix+"validator", prefix+"bq-writer"
	if prefix == "" {
		o.WebhookSource = "http:/v1/webhooks/orders"
	}
}

// orderRec is an order version as a record of the path.
type orderRec struct {
	at        Coord
	id        string
	version   int64
	updatedUS int64
	replay    bool // dlq-handler replayed it
}

// key names the version: id, version and updated_at.
func (r orderRec) key() string { return fmt.Sprintf("%s@%d/%d", r.id, r.version, r.updatedUS) }

// Reconcile builds the window's report (positions first, as Clickstream.Reconcile).
func (o *Orders) Reconcile(ctx context.Context, w Window) (*Report, error) {
	var validatorAt, writerAt map[int32]int64
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() (err error) { validatorAt, err = o.Log.Consumed(gctx, o.ValidatorGroup, o.Topic); return })
	g.Go(func() (err error) { writerAt, err = o.Warehouse.Positions(gctx, o.WriterGroup, o.Valid); return })
	if err := g.Wait(); err != nil {
		return nil, err
	}
	var in, valid []orderRec
	var dead []deadRec
	g, gctx = errgroup.WithContext(ctx)
	for _, t := range []struct {
		topic string
		into  *[]orderRec
	}{{o.Topic, &in}, {o.Valid, &valid}} {
		g.Go(func() error {
			return o.Log.Read(gctx, t.topic, w, func(r *kgo.Record) error {
				var ev events.Order
				if _, err := o.Order.Decode(gctx, r.Value, &ev); err != nil {
					return fmt.Errorf("reconcile: %s: %w", coord(r), err)
				}
				*t.into = append(*t.into, orderRec{at: coord(r), id: ev.OrderID, version: ev.OrderVersion, updatedUS: ev.UpdatedAt.UnixMicro(), replay: isReplay(r)})
				return nil
			})
		})
	}
	g.Go(func() error {
		all := Window{From: w.From, To: w.To.Add(farFuture)}
		return o.Log.Read(gctx, o.DeadLetters, all, func(r *kgo.Record) error {
			dl, ok, err := decodeDeadLetter(gctx, o.DeadLetter, r)
			if !ok {
				return err
			}
			if !w.Contains(dl.SourceTimestamp) {
				return nil
			}
			if dl.SourceTopic == o.Topic || dl.SourceTopic == o.Valid || (o.WebhookSource != "" && dl.SourceTopic == o.WebhookSource) {
				dead = append(dead, deadRec{stage: dl.Stage, id: dl.DeadLetterID,
					of: Coord{Topic: dl.SourceTopic, Partition: int32(dl.SourcePartition), Offset: dl.SourceOffset}})
			}
			return nil
		})
	})
	if err := g.Wait(); err != nil {
		return nil, err
	}
	ids := map[string]bool{}
	for _, r := range valid {
		ids[r.id] = true
	}
	stored, err := o.Warehouse.StoredOrders(ctx, sortedKeys(ids))
	if err != nil {
		return nil, err
	}
	byStage := map[string][]deadRec{}
	for _, d := range dead {
		byStage[d.stage] = append(byStage[d.stage], d)
	}
	// Replays into either topic enter the path there: not ingest-orders' outputs, nor the
	// validator's.
	ins, valids := asClicks(in), asClicks(valid)
	inOut, inReplays := splitReplays(ins)
	validOut, validReplays := splitReplays(valids)
	ingest := &Hop{Stage: StageOrders, Input: "the storefront's API and webhooks", Consumed: int64(len(inOut) + len(byStage[StageOrders])),
		Out: map[string]int64{TermWritten: int64(len(inOut)), TermDeadLettered: int64(len(byStage[StageOrders]))}}
	replays := replayHop(len(inReplays) + len(validReplays))
	validator := kafkaHop(StageValidator, o.Topic, ins, validatorAt, validOut, byStage[StageValidator])
	writer := ordersHop(o.Valid, valid, writerAt, stored, byStage[StageWriter])
	hops := []*Hop{ingest, replays, validator, writer}
	r := &Report{Source: SourceOrders, Window: w, Hops: hops, Terms: map[string]int64{
		TermConsumed:     ingest.Consumed + replays.Consumed,
		TermWritten:      writer.Out[TermWritten],
		TermDeduplicated: writer.Out[TermDeduplicated],
		TermSuperseded:   writer.Out[TermSuperseded],
		TermStale:        0, // as for clicks: a re-read below the position is a coordinate already counted
		TermInFlight:     validator.InFlight + writer.InFlight,
	}}
	for _, h := range hops {
		r.Terms[TermDeadLettered] += h.Out[TermDeadLettered]
	}
	return r, nil
}

// asClicks lets kafkaHop match order versions by key.
func asClicks(rs []orderRec) []clickRec {
	out := make([]clickRec, len(rs))
	for i, r := range rs {
		out[i] = clickRec{at: r.at, eventID: r.key(), replay: r.replay}
	}
	return out
}

// ordersHop is bq-writer's equation for orders, version by version against the kept row.
func ordersHop(input string, in []orderRec, at map[int32]int64, stored map[string]StoredOrder, dead []deadRec) *Hop {
	h := &Hop{Stage: StageWriter, Input: input, Out: map[string]int64{}}
	deadOf := map[Coord]int{}
	for _, d := range dead {
		deadOf[d.of]++
	}
	consumedAt := map[Coord]bool{}
	for _, r := range in {
		if next, ok := at[r.at.Partition]; !ok || r.at.Offset >= next {
			h.InFlight++
			continue
		}
		h.Consumed++
		consumedAt[r.at] = true
		s, ok := stored[r.id]
		newer := ok && (r.version > s.Version || (r.version == s.Version && r.updatedUS > s.UpdatedUS))
		switch {
		case deadOf[r.at] > 0:
			h.Out[TermDeadLettered]++
			if deadOf[r.at] > 1 {
				h.Differences = append(h.Differences, fmt.Sprintf("%s (order %s): dead-lettered %d times", r.at, r.key(), deadOf[r.at]))
			}
		case !ok:
			h.Differences = append(h.Differences, fmt.Sprintf("%s (order %s): consumed, but the order has no row in fact_orders and no dead letter", r.at, r.key()))
		case s.At == r.at:
			h.Out[TermWritten]++
		case newer:
			h.Differences = append(h.Differences, fmt.Sprintf("%s (order %s): consumed, but fact_orders keeps the older version %d (from %s)", r.at, r.key(), s.Version, s.At))
		case r.version == s.Version && r.updatedUS == s.UpdatedUS:
			h.Out[TermDeduplicated]++
		default:
			h.Out[TermSuperseded]++
		}
	}
	for _, d := range dead {
		if !consumedAt[d.of] {
			h.Differences = append(h.Differences, fmt.Sprintf("dead letter %s of %s, which bq-writer had not consumed", d.id, d.of))
			h.Out[TermDeadLettered]++
		}
	}
	sort.Strings(h.Differences)
	return h
}

// StoredOrders implements OrderWarehouse, in queries of up to 500 ids.
func (q *QueryAPI) StoredOrders(ctx context.Context, ids []string) (map[string]StoredOrder, error) {
	out := map[string]StoredOrder{}
	for len(ids) > 0 {
		n := min(len(ids), 500)
		quoted := make([]string, n)
		for i, id := range ids[:n] {
			quoted[i] = quote(id)
		}
		ids = ids[n:]
		rows, err := q.query(ctx, `SELECT order_id, order_version, epoch_us(updated_at), source_topic, source_partition, source_offset
FROM fact_orders WHERE order_id IN (`+strings.Join(quoted, ", ")+`)`)
		if err != nil {
			return nil, err
		}
		for _, r := range rows {
			if len(r) != 6 {
				return nil, fmt.Errorf("reconcile: fact_orders row of %d columns", len(r))
			}
			var s StoredOrder
			var p int64
			if _, err := fmt.Sscan(r[1]+" "+r[2]+" "+r[4]+" "+r[5], &s.Version, &s.UpdatedUS, &p, &s.At.Offset); err != nil {
				return nil, fmt.Errorf("reconcile: fact_orders row %v: %w", r, err)
			}
			s.At.Topic, s.At.Partition = r[3], int32(p)
			out[r[0]] = s
		}
	}
	return out, nil
}
