// Package state is what catalog-sync last sent, kept in a compacted Kafka
// topic that only catalog-sync writes: one record per source row (key
// "<table>/<natural key>", value the row's content hash; a tombstone once the
// row is deleted) and one progress record of the run in flight. Both are
// produced in the same Kafka transaction as the changes they describe
// (KIP-618's source-offset handling), and read back with read_committed after
// the transactional producer has been initialised, which fences an older
// instance and aborts its open transaction, so what Load reads is final.
package state

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ecomstream/platform/pkg/stream"
)

// HashLen is the length of a content hash: the first 16 bytes of a SHA-256,
// ample against accidental collisions among a table's rows.
const HashLen = 16

// Hash is a row's content hash.
type Hash [HashLen]byte

// Entry is what was last sent for one row. Memory: about 120 bytes per row
// with the map's overhead and a short key, so 100k products take ~12 MB.
type Entry struct {
	Hash      Hash
	UpdatedAt time.Time // the row's updated_at when it was sent: a delete carries it
	// Seq is the source sequence of what was sent: a snapshot's (LSN, 0),
	// a CDC change's (commit LSN, ordinal). An entry is never replaced by an
	// older sequence (Replaces), so a snapshot that read the row before a CDC
	// change committed cannot overwrite that change's entry with its view.
	Seq Seq
	// Deleted marks a row CDC saw hard-deleted (its delete is sent): kept,
	// with the delete's sequence, so a snapshot that still saw the row does
	// not send it again; the first snapshot newer than the delete that finds
	// the row gone removes the marker.
	Deleted bool
}

// Seq is a source sequence, ordered (LSN, Ordinal) lexicographically.
type Seq struct {
	LSN     int64
	Ordinal int
}

// Newer reports whether s comes after o.
func (s Seq) Newer(o Seq) bool {
	return s.LSN > o.LSN || (s.LSN == o.LSN && s.Ordinal > o.Ordinal)
}

// Replaces reports whether a write with sequence s may replace the entry e
// (ok false: there is none): unless e is newer. The same sequence may
// rewrite its entry: two snapshots with no WAL written between them read
// the same LSN (a read-only transaction writes none), and the later one's
// view is as new; a CDC re-delivery carries the same content.
func Replaces(s Seq, e Entry, ok bool) bool { return !ok || !e.Seq.Newer(s) }

// ProgressKey is the key of the progress record (no table is named so).
const ProgressKey = "_progress"

// Progress is a run in flight: every table before Table is done, and of
// Table every row with a key up to After (in the database's key order) in
// phase "rows", or every state key up to After (in byte order) in phase
// "deletes".
type Progress struct {
	RunID     string    `json:"run_id"`
	Tables    []string  `json:"tables"`
	Full      bool      `json:"full"`
	Trigger   string    `json:"trigger"`
	Started   time.Time `json:"started_at"`
	Table     string    `json:"table"`
	Phase     string    `json:"phase"`
	After     string    `json:"after"`
	Committed time.Time `json:"committed_at"`
}

// Phases of a table.
const (
	PhaseRows    = "rows"
	PhaseDeletes = "deletes"
)

// State is the whole state topic as loaded: rows by table and natural key,
// and the progress of an interrupted run (nil = none).
type State struct {
	// Mu serialises the writers of the state (the snapshot runner and the
	// CDC sink): each holds it from reading the entries it compares through
	// its Kafka transaction to applying the result, so the two never share
	// a transaction and never decide on a stale view of each other's writes.
	Mu       sync.Mutex
	Rows     map[string]map[string]Entry
	Progress *Progress
}

// New returns an empty state.
func New() *State { return &State{Rows: map[string]map[string]Entry{}} }

// Table returns the rows of table, creating the map.
func (s *State) Table(table string) map[string]Entry {
	m, ok := s.Rows[table]
	if !ok {
		m = map[string]Entry{}
		s.Rows[table] = m
	}
	return m
}

// Topic is the spec of the state topic: compacted, one partition (it is read
// whole at start, in order, so there is nothing to spread).
func Topic(name string) stream.TopicSpec {
	return stream.TopicSpec{Name: name, Partitions: 1, Configs: map[string]string{"cleanup.policy": "compact"}}
}

// TransactionalID is the fixed transactional id of the state's writer: the
// same in every replica, so the one that initialises last owns the state.
func TransactionalID(service, topic string) string { return service + "-state-" + topic }

// Key is the state key of a row.
func Key(table, key string) string { return table + "/" + key }

type entryValue struct {
	Hash      string    `json:"hash"`
	UpdatedAt time.Time `json:"updated_at"`
	LSN       int64     `json:"lsn,omitempty"`
	Ordinal   int       `json:"ordinal,omitempty"`
	Deleted   bool      `json:"deleted,omitempty"`
}

// EntryRecord is e as a record of topic.
func EntryRecord(topic, table, key string, e Entry) *kgo.Record {
	v, _ := json.Marshal(entryValue{Hash: hex.EncodeToString(e.Hash[:]), UpdatedAt: e.UpdatedAt.UTC(),
		LSN: e.Seq.LSN, Ordinal: e.Seq.Ordinal, Deleted: e.Deleted}) // cannot fail
	return &kgo.Record{Topic: topic, Key: []byte(Key(table, key)), Value: v}
}

// Tombstone deletes a row's entry (compaction removes it).
func Tombstone(topic, table, key string) *kgo.Record {
	return &kgo.Record{Topic: topic, Key: []byte(Key(table, key))}
}

// ProgressRecord is p as a record of topic; a nil p is the tombstone that
// ends a run.
func ProgressRecord(topic string, p *Progress) *kgo.Record {
	r := &kgo.Record{Topic: topic, Key: []byte(ProgressKey)}
	if p != nil {
		r.Value, _ = json.Marshal(p) // cannot fail
	}
	return r
}

// Apply folds one state record into s; it reports records it cannot read.
func (s *State) Apply(key, value []byte) error {
	k := string(key)
	if k == ProgressKey {
		if value == nil {
			s.Progress = nil
			return nil
		}
		var p Progress
		if err := json.Unmarshal(value, &p); err != nil {
			return fmt.Errorf("progress record: %w", err)
		}
		s.Progress = &p
		return nil
	}
	table, nk, ok := strings.Cut(k, "/")
	if !ok {
		return fmt.Errorf("state key %q has no table", k)
	}
	if value == nil {
		delete(s.Table(table), nk)
		return nil
	}
	var v entryValue
	if err := json.Unmarshal(value, &v); err != nil {
		return fmt.Errorf("state record %q: %w", k, err)
	}
	var e Entry
	if b, err := hex.DecodeString(v.Hash); err != nil || len(b) != HashLen {
		return fmt.Errorf("state record %q: bad hash %q", k, v.Hash)
	} else {
		copy(e.Hash[:], b)
	}
	e.UpdatedAt, e.Seq, e.Deleted = v.UpdatedAt, Seq{LSN: v.LSN, Ordinal: v.Ordinal}, v.Deleted
	s.Table(table)[nk] = e
	return nil
}

// idle is how long Load waits for more records once it has read up to what
// it can see: the offsets after the last data record may be transaction
// markers or aborted records, which a read_committed consumer never returns.
const idle = time.Second

// idleGrace is how long Load reads before an idle poll may end it: the first fetch of a new
// client on a loaded machine can take longer than idle, and ending then would load a partial
// state (and re-send what it missed). A partition whose last transaction committed ends Load at
// once (its last record); only one ending in an aborted transaction waits for idleness.
const idleGrace = 3 * time.Second

// Load reads topic whole with read_committed. opts are the connection
// options. A record it cannot read stops it: guessing would re-send or,
// worse, skip changes.
func Load(ctx context.Context, opts []kgo.Opt, topic string) (*State, error) {
	s := New()
	cl, err := kgo.NewClient(append(opts,
		kgo.ConsumeTopics(topic),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(200*time.Millisecond),
	)...)
	if err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	defer cl.Close()
	ends, err := stream.CommittedEnds(ctx, kadm.NewClient(cl), topic)
	if err != nil {
		return nil, fmt.Errorf("state: end offsets of %s: %w", topic, err)
	}
	want := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			want[o.Partition] = o.Offset
		}
	})
	start := time.Now()
	for len(want) > 0 {
		pctx, cancel := context.WithTimeout(ctx, idle)
		fs := cl.PollFetches(pctx)
		cancel()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("state: %w", ctx.Err())
		}
		for _, fe := range fs.Errors() {
			if !errors.Is(fe.Err, context.DeadlineExceeded) && !errors.Is(fe.Err, context.Canceled) {
				return nil, fmt.Errorf("state: read %s: %w", topic, fe.Err)
			}
		}
		n := 0
		var bad error
		fs.EachRecord(func(r *kgo.Record) {
			n++
			// The end offset is one past the last record, or past the commit marker after it
			// when it was written in a transaction (as every state record is).
			if r.Offset+1 >= want[r.Partition] || r.Attrs.IsTransactional() && r.Offset+2 >= want[r.Partition] {
				delete(want, r.Partition)
			}
			if err := s.Apply(r.Key, r.Value); err != nil && bad == nil {
				bad = fmt.Errorf("state: %s offset %d: %w", topic, r.Offset, err)
			}
		})
		if bad != nil {
			return nil, bad
		}
		if n == 0 && time.Since(start) > idleGrace {
			break
		}
	}
	return s, nil
}
