package reconcile

import (
	"context"
	"fmt"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"

	"github.com/ecomstream/platform/pkg/avroserde"
	"github.com/ecomstream/platform/pkg/deadletter"
	"github.com/ecomstream/platform/pkg/events"
)

// SourceCatalog is the catalog source's name in reports and metrics.
const SourceCatalog = "catalog"

// StageCatalog is catalog-sync.
const StageCatalog = "catalog-sync"

// ChangeKey names one change of a dimension: the entity's id and its source sequence.
type ChangeKey struct {
	ID       string
	LSN, Ord int64
}

func (k ChangeKey) String() string { return fmt.Sprintf("%s@%d.%d", k.ID, k.LSN, k.Ord) }

// StoredChanges is what the warehouse holds of some ids' changes: the coordinates each change
// was logged from (dim_*_changes keeps a change once per key), and the changes that started a
// version of the dimension (dim_*'s source_lsn, source_ordinal).
type StoredChanges struct {
	Logged   map[ChangeKey][]Coord
	Versions map[ChangeKey]bool
}

// CatalogWarehouse is what the catalog reconciliation reads of the warehouse.
type CatalogWarehouse interface {
	Positions(ctx context.Context, group, topic string) (map[int32]int64, error)
	// Changes returns what dim (dim_products or dim_users) and its change log hold of ids.
	Changes(ctx context.Context, dim string, ids []string) (StoredChanges, error)
}

// Catalog reconciles the catalog path, one mechanism for its entities: catalog-sync's
// snapshot and CDC changes -> the entity's topic -> validator -> its valid topic -> bq-writer
// -> the change log dim_*_changes and the SCD Type 2 dimension. A consumed change is written
// (logged from its coordinates and starting a version, or a hard delete, which ends one),
// superseded (logged, but a no-op: the dimension's attributes did not change, so no version
// starts), deduplicated (the same change logged from other coordinates: a snapshot and CDC,
// or a re-read, delivered it twice) or dead-lettered; a change not logged at all is lost.
type Catalog struct {
	Entities                    []CatalogEntity
	ValidatorGroup, WriterGroup string
	DeadLetters                 string
	Log                         *Log
	Warehouse                   CatalogWarehouse
	DeadLetter                  *avroserde.Codec
}

// CatalogEntity is one entity of the catalog path.
type CatalogEntity struct {
	Name         string // products, customers
	Topic, Valid string
	Dim          string           // dim_products, dim_users
	Codec        *avroserde.Codec // decodes Topic and Valid
	// Decode reads a change's key and whether it is a hard delete.
	Decode func(ctx context.Context, c *avroserde.Codec, b []byte) (ChangeKey, bool, error)
}

// CatalogNames sets c's groups and dead-letter topic, and its entities' topics (products and
// customers), to the platform's names with prefix in front; the caller sets each entity's Codec.
func (c *Catalog) CatalogNames(prefix string) {
	c.ValidatorGroup, c.WriterGroup, c.DeadLetters = prefix+"validator", prefix+"bq-writer", deadletter.Topic
	c.Entities = []CatalogEntity{
		{Name: "products", Topic: prefix + "ecom.products.v1", Valid: prefix + "ecom.products.valid.v1", Dim: "dim_products",
			Decode: func(ctx context.Context, codec *avroserde.Codec, b []byte) (ChangeKey, bool, error) {
				var ch events.ProductChange
				_, err := codec.Decode(ctx, b, &ch)
				return ChangeKey{ch.ProductID, ch.SourceLsn, ch.SourceOrdinal}, ch.Op == "delete", err
			}},
		{Name: "customers", Topic: prefix + "ecom.customers.v1", Valid: prefix + "ecom.customers.valid.v1", Dim: "dim_users",
			Decode: func(ctx context.Context, codec *avroserde.Codec, b []byte) (ChangeKey, bool, error) {
				var ch events.CustomerChange
				_, err := codec.Decode(ctx, b, &ch)
				return ChangeKey{ch.CustomerID, ch.SourceLsn, ch.SourceOrdinal}, ch.Op == "delete", err
			}},
	}
}

// changeRec is a change as a record of the path.
type changeRec struct {
	at     Coord
	key    ChangeKey
	delete bool
	replay bool // dlq-handler replayed it
}

// Reconcile builds the window's report: per entity a catalog-sync, a validator and a bq-writer
// hop, the source's terms summed over the entities.
func (c *Catalog) Reconcile(ctx context.Context, w Window) (*Report, error) {
	r := &Report{Source: SourceCatalog, Window: w, Terms: map[string]int64{TermStale: 0}}
	for _, e := range c.Entities {
		hops, err := c.entity(ctx, e, w)
		if err != nil {
			return nil, err
		}
		r.Hops = append(r.Hops, hops...)
		sync, replays, validator, writer := hops[0], hops[1], hops[2], hops[3]
		r.Terms[TermConsumed] += sync.Consumed + replays.Consumed
		for _, t := range []string{TermWritten, TermDeduplicated, TermSuperseded} {
			r.Terms[t] += writer.Out[t]
		}
		r.Terms[TermInFlight] += validator.InFlight + writer.InFlight
		for _, h := range hops {
			r.Terms[TermDeadLettered] += h.Out[TermDeadLettered]
		}
	}
	return r, nil
}

func (c *Catalog) entity(ctx context.Context, e CatalogEntity, w Window) ([]*Hop, error) {
	var validatorAt, writerAt map[int32]int64
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() (err error) { validatorAt, err = c.Log.Consumed(gctx, c.ValidatorGroup, e.Topic); return })
	g.Go(func() (err error) { writerAt, err = c.Warehouse.Positions(gctx, c.WriterGroup, e.Valid); return })
	if err := g.Wait(); err != nil {
		return nil, err
	}
	var in, valid []changeRec
	var dead []deadRec
	g, gctx = errgroup.WithContext(ctx)
	for _, t := range []struct {
		topic string
		into  *[]changeRec
	}{{e.Topic, &in}, {e.Valid, &valid}} {
		g.Go(func() error {
			return c.Log.Read(gctx, t.topic, w, func(r *kgo.Record) error {
				k, del, err := e.Decode(gctx, e.Codec, r.Value)
				if err != nil {
					return fmt.Errorf("reconcile: %s: %w", coord(r), err)
				}
				*t.into = append(*t.into, changeRec{at: coord(r), key: k, delete: del, replay: isReplay(r)})
				return nil
			})
		})
	}
	g.Go(func() error {
		all := Window{From: w.From, To: w.To.Add(farFuture)}
		return c.Log.Read(gctx, c.DeadLetters, all, func(r *kgo.Record) error {
			dl, ok, err := decodeDeadLetter(gctx, c.DeadLetter, r)
			if !ok {
				return err
			}
			if w.Contains(dl.SourceTimestamp) && (dl.SourceTopic == e.Topic || dl.SourceTopic == e.Valid) {
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
		ids[r.key.ID] = true
	}
	stored, err := c.Warehouse.Changes(ctx, e.Dim, sortedKeys(ids))
	if err != nil {
		return nil, err
	}
	byStage := map[string][]deadRec{}
	for _, d := range dead {
		byStage[d.stage] = append(byStage[d.stage], d)
	}
	name := func(stage string) string { return stage + " (" + e.Name + ")" }
	asClick := func(rs []changeRec) []clickRec {
		out := make([]clickRec, len(rs))
		for i, r := range rs {
			out[i] = clickRec{at: r.at, eventID: r.key.String(), replay: r.replay}
		}
		return out
	}
	ins := asClick(in)
	inOut, inReplays := splitReplays(ins)
	validOut, validReplays := splitReplays(asClick(valid))
	// catalog-sync's input is PostgreSQL (a snapshot, the replication slot), not a topic: its
	// hop is its outcomes, as the HTTP collector's; dlq-handler's replays into either topic
	// are not its outcomes (nor the validator's) but records entering the path there.
	sync := &Hop{Stage: name(StageCatalog), Input: "PostgreSQL", Consumed: int64(len(inOut)), Out: map[string]int64{TermWritten: int64(len(inOut))}}
	replays := replayHop(len(inReplays) + len(validReplays))
	replays.Stage = name(StageReplay)
	validator := kafkaHop(name(StageValidator), e.Topic, ins, validatorAt, validOut, byStage[StageValidator])
	writer := changesHop(name(StageWriter), e.Valid, valid, writerAt, stored, byStage[StageWriter])
	return []*Hop{sync, replays, validator, writer}, nil
}

// changesHop is bq-writer's equation for a dimension, change by change against the change log.
func changesHop(stage, input string, in []changeRec, at map[int32]int64, stored StoredChanges, dead []deadRec) *Hop {
	h := &Hop{Stage: stage, Input: input, Out: map[string]int64{}}
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
		logged := stored.Logged[r.key]
		switch {
		case deadOf[r.at] > 0:
			h.Out[TermDeadLettered]++
		case len(logged) == 0:
			h.Differences = append(h.Differences, fmt.Sprintf("%s (change %s): consumed, but not in the change log and no dead letter", r.at, r.key))
		case logged[0] != r.at:
			h.Out[TermDeduplicated]++
		case r.delete || stored.Versions[r.key]:
			h.Out[TermWritten]++
		default:
			h.Out[TermSuperseded]++ // logged, but a no-op: no version starts at it
		}
	}
	for k, cs := range stored.Logged {
		if len(cs) > 1 {
			h.Differences = append(h.Differences, fmt.Sprintf("change %s logged %d times: %v", k, len(cs), cs))
		}
	}
	for _, d := range dead {
		if !consumedAt[d.of] {
			h.Differences = append(h.Differences, fmt.Sprintf("dead letter %s of %s, which bq-writer had not consumed", d.id, d.of))
			h.Out[TermDeadLettered]++
		}
	}
	return h
}

// Changes implements CatalogWarehouse, in queries of up to 500 ids.
func (q *QueryAPI) Changes(ctx context.Context, dim string, ids []string) (StoredChanges, error) {
	idCol := map[string]string{"dim_products": "product_id", "dim_users": "user_id"}[dim]
	if idCol == "" {
		return StoredChanges{}, fmt.Errorf("reconcile: no dimension %q", dim)
	}
	out := StoredChanges{Logged: map[ChangeKey][]Coord{}, Versions: map[ChangeKey]bool{}}
	for len(ids) > 0 {
		n := min(len(ids), 500)
		quoted := make([]string, n)
		for i, id := range ids[:n] {
			quoted[i] = quote(id)
		}
		ids = ids[n:]
		in := idCol + " IN (" + strings.Join(quoted, ", ") + ")"
		rows, err := q.query(ctx, "SELECT "+idCol+", source_lsn, source_ordinal, source_topic, source_partition, source_offset FROM "+dim+"_changes WHERE "+in)
		if err != nil {
			return StoredChanges{}, err
		}
		for _, r := range rows {
			if len(r) != 6 {
				return StoredChanges{}, fmt.Errorf("reconcile: %s_changes row of %d columns", dim, len(r))
			}
			k, c := ChangeKey{ID: r[0]}, Coord{Topic: r[3]}
			if _, err := fmt.Sscan(r[1]+" "+r[2]+" "+r[4]+" "+r[5], &k.LSN, &k.Ord, &c.Partition, &c.Offset); err != nil {
				return StoredChanges{}, fmt.Errorf("reconcile: %s_changes row %v: %w", dim, r, err)
			}
			out.Logged[k] = append(out.Logged[k], c)
		}
		rows, err = q.query(ctx, "SELECT "+idCol+", source_lsn, source_ordinal FROM "+dim+" WHERE "+in)
		if err != nil {
			return StoredChanges{}, err
		}
		for _, r := range rows {
			if len(r) != 3 {
				return StoredChanges{}, fmt.Errorf("reconcile: %s row of %d columns", dim, len(r))
			}
			k := ChangeKey{ID: r[0]}
			if _, err := fmt.Sscan(r[1]+" "+r[2], &k.LSN, &k.Ord); err != nil {
				return StoredChanges{}, fmt.Errorf("reconcile: %s row %v: %w", dim, r, err)
			}
			out.Versions[k] = true
		}
	}
	return out, nil
}
