package reconcile

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"

	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"

	"github.com/ecomstream/platform/pkg/avroserde"
	"github.com/ecomstream/platform/pkg/deadletter"
	"github.com/ecomstream/platform/pkg/events"
)

// Stages of the clickstream path, as their dead letters name them.
const (
	StageIngest    = "ingest-clickstream"
	StageCollector = "ingest-clickstream (collector)"
	StageValidator = "validator"
	StageWriter    = "bq-writer"
	// StageReplay is dlq-handler replaying dead letters into a stage's input topic: a
	// replayed record enters the path again there, so its hop is its outcomes (the
	// replayed records), like the collector's.
	StageReplay = "dlq-handler (replays)"
)

// SourceClickstream is the clickstream source's name in reports and metrics.
const SourceClickstream = "clickstream"

// Clickstream reconciles the clickstream path: raw JSON in the raw topic (and the HTTP
// collector's requests) -> ingest-clickstream -> the events topic -> validator -> the valid
// topic -> bq-writer -> fact_events / fact_events_duplicates, each stage dead-lettering to the
// dead-letter topic.
type Clickstream struct {
	Raw, Events, Valid, DeadLetters          string // topics
	IngestGroup, ValidatorGroup, WriterGroup string // consumer groups
	Log                                      *Log
	Warehouse                                Warehouse
	Click                                    *avroserde.Codec // decodes the events and valid topics
	DeadLetter                               *avroserde.Codec // decodes the dead-letter topic
}

// clickRec is what the reconciliation keeps of a record of the path.
type clickRec struct {
	at      Coord
	eventID string // "" when the record has none (a raw record that is not JSON)
	source  string // events topic: kafka or http
	replay  bool   // dlq-handler replayed it (stream.ReplayOfHeader): not an output of the stage before
}

// deadRec is a dead letter of the path.
type deadRec struct {
	stage, id string
	of        Coord // the original's coordinates
}

// Reconcile builds the window's report. The stages' positions are read first, then the topics
// and the warehouse: an outcome can only be later than the position that covers it, so a
// settled window (nothing in flight) balances exactly, whatever the stages do meanwhile.
func (c *Clickstream) Reconcile(ctx context.Context, w Window) (*Report, error) {
	var ingestAt, validatorAt, writerAt map[int32]int64
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() (err error) { ingestAt, err = c.Log.Consumed(gctx, c.IngestGroup, c.Raw); return })
	g.Go(func() (err error) { validatorAt, err = c.Log.Consumed(gctx, c.ValidatorGroup, c.Events); return })
	g.Go(func() (err error) { writerAt, err = c.Warehouse.Positions(gctx, c.WriterGroup, c.Valid); return })
	if err := g.Wait(); err != nil {
		return nil, err
	}

	var raw, evs, valid []clickRec
	var dead []deadRec
	var written, dups []Coord
	g, gctx = errgroup.WithContext(ctx)
	g.Go(func() error {
		return c.Log.Read(gctx, c.Raw, w, func(r *kgo.Record) error {
			var id struct {
				EventID string `json:"event_id"`
			}
			_ = json.Unmarshal(r.Value, &id) // not JSON: ingest dead-letters it, matched by coordinates
			raw = append(raw, clickRec{at: coord(r), eventID: id.EventID})
			return nil
		})
	})
	for _, t := range []struct {
		topic string
		into  *[]clickRec
	}{{c.Events, &evs}, {c.Valid, &valid}} {
		g.Go(func() error {
			return c.Log.Read(gctx, t.topic, w, func(r *kgo.Record) error {
				var ev events.ClickEvent
				if _, err := c.Click.Decode(gctx, r.Value, &ev); err != nil {
					return fmt.Errorf("reconcile: %s: %w", coord(r), err)
				}
				*t.into = append(*t.into, clickRec{at: coord(r), eventID: ev.EventID, source: ev.Source, replay: isReplay(r)})
				return nil
			})
		})
	}
	g.Go(func() error {
		// A dead letter is written after its original was read, so a window's dead letters
		// are at or after its start; they belong to it by the original's timestamp.
		all := Window{From: w.From, To: w.To.Add(farFuture)}
		return c.Log.Read(gctx, c.DeadLetters, all, func(r *kgo.Record) error {
			dl, ok, err := decodeDeadLetter(gctx, c.DeadLetter, r)
			if !ok {
				return err
			}
			if !w.Contains(dl.SourceTimestamp) {
				return nil
			}
			switch dl.SourceTopic {
			case c.Raw, c.Events, c.Valid:
				dead = append(dead, deadRec{stage: dl.Stage, id: dl.DeadLetterID,
					of: Coord{Topic: dl.SourceTopic, Partition: int32(dl.SourcePartition), Offset: dl.SourceOffset}})
			}
			return nil
		})
	})
	g.Go(func() (err error) { written, err = c.Warehouse.Sources(gctx, TableEvents, c.Valid, w); return })
	g.Go(func() (err error) { dups, err = c.Warehouse.Sources(gctx, TableDuplicates, c.Valid, w); return })
	if err := g.Wait(); err != nil {
		return nil, err
	}

	byStage := map[string][]deadRec{}
	for _, d := range dead {
		stage := d.stage
		if d.stage == StageIngest && d.of.Partition < 0 {
			stage = StageCollector // the collector's rejections: the request, no position
		}
		byStage[stage] = append(byStage[stage], d)
	}
	// A replayed raw record is ingest-clickstream's input like any other (the raw topic is
	// where the path starts); replays into the events and valid topics enter the path there.
	var kafkaEvs, httpEvs []clickRec
	evs, evReplays := splitReplays(evs)
	for _, e := range evs {
		if e.source == "http" {
			httpEvs = append(httpEvs, e)
		} else {
			kafkaEvs = append(kafkaEvs, e)
		}
	}
	validOut, validReplays := splitReplays(valid)

	ingest := kafkaHop(StageIngest, c.Raw, raw, ingestAt, kafkaEvs, byStage[StageIngest])
	collector := &Hop{Stage: StageCollector, Input: "HTTP requests", Consumed: int64(len(httpEvs) + len(byStage[StageCollector])),
		Out: map[string]int64{TermWritten: int64(len(httpEvs)), TermDeadLettered: int64(len(byStage[StageCollector]))}}
	replays := replayHop(len(evReplays) + len(validReplays))
	validator := kafkaHop(StageValidator, c.Events, append(evs, evReplays...), validatorAt, validOut, byStage[StageValidator])
	writer := writerHop(c.Valid, valid, writerAt, written, dups, byStage[StageWriter])
	for stage, ds := range byStage {
		switch stage {
		case StageIngest, StageCollector, StageValidator, StageWriter:
		default: // a stage that does not read these topics: a bug, or a foreign writer
			for _, d := range ds {
				writer.Differences = append(writer.Differences, fmt.Sprintf("dead letter %s from unknown stage %q for %s", d.id, stage, d.of))
			}
		}
	}
	hops := []*Hop{ingest, collector, replays, validator, writer}
	r := &Report{Source: SourceClickstream, Window: w, Hops: hops, Terms: map[string]int64{
		TermConsumed:     ingest.Consumed + collector.Consumed + replays.Consumed,
		TermWritten:      writer.Out[TermWritten],
		TermDeduplicated: writer.Out[TermDeduplicated],
		// Clicks have no versions (superseded) and bq-writer's replays below its positions
		// re-read coordinates already counted (stale): both terms are 0 by construction.
		TermSuperseded: 0,
		TermStale:      0,
		TermInFlight:   validator.InFlight + writer.InFlight,
	}}
	for _, h := range hops {
		r.Terms[TermDeadLettered] += h.Out[TermDeadLettered]
	}
	return r, nil
}

// farFuture bounds how long after a window its dead letters are looked for.
const farFuture = 1 << 62

// decodeDeadLetter decodes a record of the dead-letter topic. A record that is not in the
// registry's wire format at all (magic byte 0, a schema id) is no stage's dead letter (dlq-handler
// counts it in ecom_dlq_undecodable_total) and is passed over, ok false and no error, so a
// foreign record on the shared topic does not stop every reconciliation reading past it; any
// other failure (the registry down, a schema that does not fit) is an error.
func decodeDeadLetter(ctx context.Context, codec *avroserde.Codec, r *kgo.Record) (dl events.DeadLetter, ok bool, err error) {
	if len(r.Value) < 5 || r.Value[0] != 0 {
		return dl, false, nil
	}
	if _, err := codec.Decode(ctx, r.Value, &dl); err != nil {
		return dl, false, fmt.Errorf("reconcile: dead letter %s: %w", coord(r), err)
	}
	return dl, true, nil
}

// isReplay reports whether dlq-handler produced r, replaying a dead letter.
func isReplay(r *kgo.Record) bool {
	for _, h := range r.Headers {
		if h.Key == deadletter.ReplayOfHeader {
			return true
		}
	}
	return false
}

// splitReplays splits recs into the stage's outputs and dlq-handler's replays.
func splitReplays(recs []clickRec) (outputs, replays []clickRec) {
	for _, r := range recs {
		if r.replay {
			replays = append(replays, r)
		} else {
			outputs = append(outputs, r)
		}
	}
	return outputs, replays
}

// replayHop is dlq-handler's replays into the path's topics after the first: records that
// enter the path again where the stage that dead-lettered them reads (their dead letters
// stay counted as dead-lettered, where they happened). Its input, the dead-letter store, is
// not counted: its consumed records are its outcomes.
func replayHop(n int) *Hop {
	return &Hop{Stage: StageReplay, Input: "the dead-letter store", Consumed: int64(n), Out: map[string]int64{TermWritten: int64(n)}}
}

func coord(r *kgo.Record) Coord {
	return Coord{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset}
}

// consumedBy splits recs into those below the group's positions and those in flight.
func consumedBy(recs []clickRec, at map[int32]int64) (consumed []clickRec, inFlight int64) {
	for _, r := range recs {
		if next, ok := at[r.at.Partition]; ok && r.at.Offset < next {
			consumed = append(consumed, r)
		} else {
			inFlight++
		}
	}
	return consumed, inFlight
}

// kafkaHop is a Kafka-to-Kafka stage's equation: each consumed input is either dead-lettered
// (matched by the dead letter's source coordinates) or has one output; outputs do not carry
// their input's coordinates, so the rest are matched by event id (as a multiset: source
// duplicates share one).
func kafkaHop(stage, input string, in []clickRec, at map[int32]int64, out []clickRec, dead []deadRec) *Hop {
	consumed, inFlight := consumedBy(in, at)
	h := &Hop{Stage: stage, Input: input, Consumed: int64(len(consumed)), InFlight: inFlight,
		Out: map[string]int64{TermWritten: int64(len(out)), TermDeadLettered: int64(len(dead))}}
	byCoord := map[Coord]clickRec{}
	for _, r := range consumed {
		byCoord[r.at] = r
	}
	deadOf := map[Coord]int{}
	for _, d := range dead {
		deadOf[d.of]++
		switch _, ok := byCoord[d.of]; {
		case !ok:
			h.Differences = append(h.Differences, fmt.Sprintf("dead letter %s of %s, which the stage had not consumed", d.id, d.of))
		case deadOf[d.of] == 2:
			h.Differences = append(h.Differences, fmt.Sprintf("%s dead-lettered more than once", d.of))
		}
	}
	want := map[string][]Coord{} // event id -> consumed inputs not dead-lettered
	for _, r := range consumed {
		if deadOf[r.at] == 0 {
			want[r.eventID] = append(want[r.eventID], r.at)
		}
	}
	got := map[string]int{}
	for _, o := range out {
		got[o.eventID]++
	}
	for _, id := range sortedKeys(want) {
		if n, w := got[id], len(want[id]); n < w {
			sort.Slice(want[id], func(i, j int) bool { return less(want[id][i], want[id][j]) })
			h.Differences = append(h.Differences, fmt.Sprintf("%q: %d consumed (%v) but %d out and no dead letter", id, w, want[id], n))
		}
	}
	for _, id := range sortedKeys(got) {
		if n, w := got[id], len(want[id]); n > w {
			h.Differences = append(h.Differences, fmt.Sprintf("%q: %d out but %d consumed", id, n, w))
		}
	}
	return h
}

// writerHop is bq-writer's equation, record by record: each consumed coordinate of the valid
// topic is in fact_events, in fact_events_duplicates or a dead letter, exactly once.
func writerHop(input string, in []clickRec, at map[int32]int64, written, dups []Coord, dead []deadRec) *Hop {
	consumed, inFlight := consumedBy(in, at)
	h := &Hop{Stage: StageWriter, Input: input, Consumed: int64(len(consumed)), InFlight: inFlight,
		Out: map[string]int64{TermWritten: int64(len(written)), TermDeduplicated: int64(len(dups)), TermDeadLettered: int64(len(dead))}}
	outcomes := map[Coord][]string{}
	for _, c := range written {
		outcomes[c] = append(outcomes[c], TableEvents)
	}
	for _, c := range dups {
		outcomes[c] = append(outcomes[c], TableDuplicates)
	}
	for _, d := range dead {
		outcomes[d.of] = append(outcomes[d.of], "dead letter "+d.id)
	}
	isConsumed := map[Coord]bool{}
	for _, r := range consumed {
		isConsumed[r.at] = true
		switch o := outcomes[r.at]; len(o) {
		case 0:
			h.Differences = append(h.Differences, fmt.Sprintf("%s (event %q): consumed, but in no table and no dead letter", r.at, r.eventID))
		case 1:
		default:
			h.Differences = append(h.Differences, fmt.Sprintf("%s (event %q): stored %d times: %v", r.at, r.eventID, len(o), o))
		}
	}
	var extra []Coord
	for c := range outcomes {
		if !isConsumed[c] {
			extra = append(extra, c)
		}
	}
	sort.Slice(extra, func(i, j int) bool { return less(extra[i], extra[j]) })
	for _, c := range extra {
		h.Differences = append(h.Differences, fmt.Sprintf("%s: in %v, but not a consumed record of the window", c, outcomes[c]))
	}
	return h
}

func less(a, b Coord) bool {
	if a.Topic != b.Topic {
		return a.Topic < b.Topic
	}
	if a.Partition != b.Partition {
		return a.Partition < b.Partition
	}
	return a.Offset < b.Offset
}

// ClickstreamNames sets c's topics and groups to the platform's names with prefix in front
// (a slice's, e.g. "e2e-1234."; "" = production). The dead-letter topic is shared, unprefixed:
// every stage of every slice writes it, and a dead letter is the path's by its original's topic.
func (c *Clickstream) ClickstreamNames(prefix string) {
	c.Raw, c.Events, c.Valid, c.DeadLetters = prefix+"clickstream", prefix+"ecom.events.v1", prefix+"ecom.events.valid.v1", deadletter.Topic
	c.IngestGroup, c.ValidatorGroup, c.WriterGroup = prefix+"ingest-clickstream", prefix+"validator", prefix+"bq-writer"
}
