package sink

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ecomstream/platform/services/bq-writer/internal/warehouse"
)

// Recovery says what the sink does with a partition whose stored position does not fit the log
// (see PositionError): stop, or start somewhere else knowingly.
type Recovery string

const (
	// RecoveryRefuse (also "") stops the sink with a *PositionError.
	RecoveryRefuse Recovery = "refuse"
	// RecoveryEarliest starts the partition from the log start: the warehouse gets everything the
	// log still holds (a repeat of a stored event is dropped by the dedup).
	RecoveryEarliest Recovery = "earliest"
	// RecoveryCommitted starts the partition from the group's committed Kafka offset when it lies
	// within the log, else from the log start: what lies before it is skipped knowingly.
	RecoveryCommitted Recovery = "committed"
)

// runbook is where every stop of the sink is explained.
const runbook = "docs/runbooks/bq-writer.md"

// PositionError is a stored position, or its absence, that does not fit the Kafka log of its
// partition. Starting from it would drop records as stale or skip them without a trace, so the
// sink stops unless Config.Recovery allows another start.
type PositionError struct {
	Topic     string
	Partition int32
	// Problem says what does not fit, in one line.
	Problem string
	// More counts the other partitions of the same assignment that do not fit either.
	More int
}

func (e *PositionError) Error() string {
	more := ""
	if e.More > 0 {
		more = fmt.Sprintf(" (and %d more partitions)", e.More)
	}
	return fmt.Sprintf("positions do not fit the log: %s/%d: %s%s; to start anyway set POSITION_RECOVERY=earliest or committed (%s#positions-do-not-fit-the-log)",
		e.Topic, e.Partition, e.Problem, more, runbook)
}

// MemberError reports another member in the sink's consumer group while the warehouse must have one
// writer (one DuckDB file): each member would write its share of the partitions to its own file.
type MemberError struct {
	Group string
	// Member describes the other member: member id, instance id, client id and host.
	Member string
}

func (e *MemberError) Error() string {
	return fmt.Sprintf("consumer group %q has another member (%s): with the DuckDB warehouse a bq-writer must be the only member of its group, one writer per file; stop the other writer or give it its own KAFKA_CONSUMER_GROUP (%s#another-member-in-the-group)",
		e.Group, e.Member, runbook)
}

// logState is what the brokers say about the assigned partitions' logs.
type logState struct {
	cluster   string
	topicIDs  map[string]string
	start     map[warehouse.Partition]int64
	end       map[warehouse.Partition]int64
	committed map[warehouse.Partition]int64  // the group's Kafka commits (the mirror; a Committer's positions)
	metadata  map[warehouse.Partition]string // their committed_metadata
	// committer: the positions are a warehouse.Committer's, claimed from the Kafka commits.
	committer bool
}

// startOf decides where partition p starts, given its stored position (ok: one is stored) and its
// log. reset is true when the stored position must be replaced before consuming (the operator
// allowed a start elsewhere); problem is non-empty when the position does not fit.
func (l *logState) startOf(p warehouse.Partition, st warehouse.Position, ok bool, rec Recovery) (next int64, reset bool, problem string) {
	start, end := l.start[p], l.end[p]
	committed, hasCommit := l.committed[p]
	topicID := l.topicIDs[p.Topic]
	switch {
	case ok && st.ClusterID != "" && l.cluster != "" && st.ClusterID != l.cluster:
		problem = fmt.Sprintf("the stored position %d was read on Kafka cluster %s, bq-writer is connected to cluster %s (a failover, or the wrong KAFKA_BROKERS)",
			st.Next, st.ClusterID, l.cluster)
	case ok && !st.SameLog(topicID, ""):
		problem = fmt.Sprintf("the stored position %d was read from topic id %s, the topic now has id %s: it was deleted and recreated",
			st.Next, st.TopicID, topicID)
	case ok && st.Next > end:
		problem = fmt.Sprintf("the stored next offset %d is beyond the log end %d: the topic was recreated (on a broker without topic ids), truncated, or this is another cluster",
			st.Next, end)
	case ok && st.Next < start:
		problem = fmt.Sprintf("the stored next offset %d is below the log start %d: offsets %d..%d were deleted by retention before bq-writer wrote them",
			st.Next, start, st.Next, start-1)
	case ok:
		return st.Next, false, ""
	case hasCommit && committed > 0 && l.committer:
		why := "its metadata is not a BigQuery position of this writer's tables (the group ran on DuckDB, another tool committed, or BIGQUERY_PROJECT or BIGQUERY_DATASET_PREFIX changed; the log names it)"
		if l.metadata[p] == "" {
			why = "its metadata is empty (an offset reset with the Kafka CLI)"
		}
		problem = fmt.Sprintf("the warehouse claimed no position from the group's Kafka commit at offset %d: %s, and everything before offset %d would be missing from it",
			committed, why, committed)
	case hasCommit && committed > 0:
		problem = fmt.Sprintf("the warehouse holds no position but the group has committed offset %d in Kafka: the DuckDB file is new, empty or replaced, and everything before offset %d would be missing from it",
			committed, committed)
	default: // never written and never committed: a new group, partition or topic
		return start, false, ""
	}
	switch rec {
	case RecoveryEarliest:
		return start, true, problem
	case RecoveryCommitted:
		if hasCommit && committed >= start && committed <= end {
			return committed, true, problem
		}
		return start, true, problem
	default:
		return 0, false, problem
	}
}

// readLog asks the brokers for the cluster id, the topic ids, the log start and end offsets of
// the assigned partitions, and the group's committed offsets.
func (s *Sink) readLog(ctx context.Context, assigned map[string]map[int32]kgo.Offset) (*logState, error) {
	topics := slices.Sorted(maps.Keys(assigned))
	l := &logState{topicIDs: map[string]string{}, start: map[warehouse.Partition]int64{},
		end: map[warehouse.Partition]int64{}, committed: map[warehouse.Partition]int64{},
		metadata: map[warehouse.Partition]string{}, committer: s.committer != nil}

	// A direct request, not kadm's cached metadata: after a topic was recreated the cache can
	// still hold the old id.
	req := kmsg.NewPtrMetadataRequest()
	for _, t := range topics {
		rt := kmsg.NewMetadataRequestTopic()
		rt.Topic = kmsg.StringPtr(t)
		req.Topics = append(req.Topics, rt)
	}
	resp, err := req.RequestWith(ctx, s.cl)
	if err != nil {
		return nil, fmt.Errorf("metadata: %w", err)
	}
	if resp.ClusterID != nil {
		l.cluster = *resp.ClusterID
	}
	for _, t := range resp.Topics {
		if t.Topic == nil {
			continue
		}
		if err := kerr.ErrorForCode(t.ErrorCode); err != nil {
			return nil, fmt.Errorf("metadata of %s: %w", *t.Topic, err)
		}
		l.topicIDs[*t.Topic] = topicID(t.TopicID)
	}

	starts, err := s.adm.ListStartOffsets(ctx, topics...)
	if err != nil {
		return nil, fmt.Errorf("list log start offsets: %w", err)
	}
	ends, err := s.adm.ListEndOffsets(ctx, topics...)
	if err != nil {
		return nil, fmt.Errorf("list log end offsets: %w", err)
	}
	for topic, parts := range assigned {
		for part := range parts {
			p := warehouse.Partition{Topic: topic, Partition: part}
			st, ok1 := starts.Lookup(topic, part)
			en, ok2 := ends.Lookup(topic, part)
			switch {
			case !ok1 || !ok2:
				return nil, fmt.Errorf("log offsets of %s/%d: not in the brokers' answer", topic, part)
			case st.Err != nil:
				return nil, fmt.Errorf("log start offset of %s/%d: %w", topic, part, st.Err)
			case en.Err != nil:
				return nil, fmt.Errorf("log end offset of %s/%d: %w", topic, part, en.Err)
			}
			l.start[p], l.end[p] = st.Offset, en.Offset
		}
	}

	commits, err := s.adm.FetchOffsets(ctx, s.cfg.Group)
	if err != nil {
		return nil, fmt.Errorf("fetch the group's committed offsets: %w", err)
	}
	commits.Each(func(o kadm.OffsetResponse) {
		if o.Err == nil && o.At >= 0 {
			p := warehouse.Partition{Topic: o.Topic, Partition: o.Partition}
			l.committed[p], l.metadata[p] = o.At, o.Metadata
		}
	})
	return l, nil
}

// topicID formats a Kafka topic id as Kafka's own tools print it (base64url without padding);
// the zero id (a broker without topic ids) is "".
func topicID(id [16]byte) string {
	if id == [16]byte{} {
		return ""
	}
	return base64.RawURLEncoding.EncodeToString(id[:])
}

// resume is called on every assignment of new partitions, before any of their records is fetched.
// It checks the warehouse's positions against the logs, stops the sink when they do not fit (or
// re-anchors them as Config.Recovery allows), and replaces the group's Kafka offsets with the
// positions: the warehouse, not Kafka, is the source of truth of what was written. A
// warehouse.Committer's positions are claimed from the group's Kafka commits (their metadata
// names its streams): Claim fences the partitions' earlier writers first, and the start of every
// new partition is committed with the claim's metadata before anything is consumed.
func (s *Sink) resume(ctx context.Context, assigned map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error) {
	select {
	case <-s.ready:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if err := s.failed(); err != nil {
		return nil, err // the membership check failed: assign nothing
	}
	// franz-go runs onAssigned and this concurrently: check the membership here too, first, so
	// that a second writer on a new file is told about the other member (the cause), not that
	// its empty file does not fit the group's offsets (a consequence). A Committer allows
	// several members: each writes its own partitions' streams.
	if s.committer == nil {
		if err := s.soleMember(ctx); err != nil {
			if ctx.Err() == nil {
				s.fail(err)
			}
			return nil, err
		}
	}
	var pos map[warehouse.Partition]warehouse.Position
	var l *logState
	err := retry(ctx, s.cfg.Kafka, func() error {
		if s.committer != nil {
			return s.claim(ctx, assigned, &pos, &l)
		}
		var err error
		if pos, err = s.wh.Positions(ctx, s.cfg.Group); err != nil {
			if !warehouse.IsTransient(err) {
				return permanent{fmt.Errorf("read warehouse positions: %w", err)}
			}
			return err
		}
		if l, err = s.readLog(ctx, assigned); err != nil {
			s.cfg.Log.WarnContext(ctx, "reading the log's offsets failed; retrying", "err", err)
		}
		return err
	})
	if err != nil {
		if ctx.Err() == nil {
			s.fail(fmt.Errorf("on assignment: %w", err))
		}
		return nil, err
	}

	var problems []*PositionError
	resets := map[warehouse.Partition]warehouse.Position{}
	starts := map[warehouse.Partition]int64{}
	for _, topic := range slices.Sorted(maps.Keys(assigned)) {
		parts := assigned[topic]
		for _, part := range slices.Sorted(maps.Keys(parts)) {
			p := warehouse.Partition{Topic: topic, Partition: part}
			st, ok := pos[p]
			next, reset, problem := l.startOf(p, st, ok, s.cfg.Recovery)
			switch {
			case problem != "" && !reset:
				problems = append(problems, &PositionError{Topic: topic, Partition: part, Problem: problem})
				continue
			case reset:
				s.cfg.Log.WarnContext(ctx, "position does not fit the log; starting elsewhere as POSITION_RECOVERY allows",
					"topic", topic, "partition", part, "problem", problem, "recovery", string(s.cfg.Recovery), "start", next)
				resets[p] = warehouse.Position{Next: next, TopicID: l.topicIDs[topic], ClusterID: l.cluster}
			}
			// Epoch -1: the warehouse's offset, not a Kafka commit, so no leader-epoch check.
			parts[part] = kgo.NewOffset().At(next).WithEpoch(-1)
			starts[p] = next
		}
	}
	if len(problems) > 0 {
		problems[0].More = len(problems) - 1
		s.fail(problems[0])
		return nil, problems[0]
	}
	if len(resets) > 0 {
		err := retry(ctx, s.cfg.Kafka, func() error {
			err := s.wh.ResetPositions(ctx, s.cfg.Group, resets)
			if err != nil && !warehouse.IsTransient(err) {
				return permanent{err}
			}
			return err
		})
		if err != nil {
			if ctx.Err() == nil {
				s.fail(fmt.Errorf("reset positions: %w", err))
			}
			return nil, err
		}
	}
	if s.committer != nil {
		// The Kafka commit is a Committer's position, and its metadata names the streams the
		// claim opened: a reset holds, and a stream may be appended to, once it is committed.
		if err := s.commitClaims(ctx, l, starts); err != nil {
			if isFencedCommit(err) && ctx.Err() == nil {
				// This member's generation ended while it claimed: nothing was written, and
				// consuming is refused (the error makes the client rejoin), so the partitions
				// go out again and their next claim fences the streams opened here.
				s.cfg.Log.WarnContext(ctx, "the group rebalanced while the assigned partitions were claimed; rejoining", "err", err)
				s.committer.Release(ctx, slices.Collect(maps.Keys(starts)))
				return nil, err
			}
			if ctx.Err() == nil {
				s.fail(fmt.Errorf("on assignment: %w", err))
			}
			return nil, err
		}
	}
	s.setLog(l.cluster, l.topicIDs)
	s.cfg.Log.InfoContext(ctx, "partitions assigned; resuming from warehouse positions",
		"assigned", len(assigned), "stored", len(pos), "reset", len(resets), "cluster_id", l.cluster)
	return assigned, nil
}

// onAssigned runs after every join of the group (every assignment, even an empty one), before
// the offsets of new partitions are fetched and, with BlockRebalanceOnPoll, never while a batch
// is being built or written. It stops the sink when the group has another member (one writer
// per DuckDB file); a Committer allows several.
func (s *Sink) onAssigned(ctx context.Context, _ *kgo.Client, _ map[string][]int32) {
	select {
	case <-s.ready:
	case <-ctx.Done():
		return
	}
	if s.failed() != nil || s.committer != nil {
		return
	}
	if err := s.soleMember(ctx); err != nil && ctx.Err() == nil {
		s.fail(err)
	}
}

// soleMember runs checkSoleMember, retrying failed requests; a *MemberError is final.
func (s *Sink) soleMember(ctx context.Context) error {
	return retry(ctx, s.cfg.Kafka, func() error {
		err := s.checkSoleMember(ctx)
		var me *MemberError
		if errors.As(err, &me) {
			return permanent{err}
		}
		if err != nil {
			s.cfg.Log.WarnContext(ctx, "describing the consumer group failed; retrying", "err", err)
		}
		return err
	})
}

// checkSoleMember returns a *MemberError when the group has a member other than this client
// (or an earlier incarnation of it: the same static instance id).
func (s *Sink) checkSoleMember(ctx context.Context) error {
	groups, err := s.adm.DescribeGroups(ctx, s.cfg.Group)
	if err != nil {
		return err
	}
	g, ok := groups[s.cfg.Group]
	if !ok {
		return fmt.Errorf("describe group %s: not in the answer", s.cfg.Group)
	}
	if g.Err != nil {
		return fmt.Errorf("describe group %s: %w", s.cfg.Group, g.Err)
	}
	self, _ := s.cl.GroupMetadata()
	for _, m := range g.Members {
		if m.MemberID == self || (m.InstanceID != nil && *m.InstanceID == s.instanceID) {
			continue
		}
		desc := []string{"member_id " + m.MemberID}
		if m.InstanceID != nil {
			desc = append(desc, "instance_id "+*m.InstanceID)
		}
		desc = append(desc, "client_id "+m.ClientID, "host "+m.ClientHost)
		return &MemberError{Group: s.cfg.Group, Member: strings.Join(desc, ", ")}
	}
	return nil
}

// logCheckInterval is how often Run checks that the consumed topics still have the ids their
// partitions were assigned with.
const logCheckInterval = 10 * time.Second

// checkTopicIDs returns an error when a consumed topic now has another id than when its
// partitions were assigned: it was deleted and recreated while the sink ran. The client keeps
// refusing the new incarnation (franz-go does not adopt a new topic id), so without this the sink
// would wait without an error. A failed request is only logged: the next check retries it.
func (s *Sink) checkTopicIDs(ctx context.Context) error {
	s.mu.Lock()
	ids := s.topicIDs
	s.mu.Unlock()
	req := kmsg.NewPtrMetadataRequest()
	for _, t := range slices.Sorted(maps.Keys(ids)) {
		if ids[t] != "" {
			rt := kmsg.NewMetadataRequestTopic()
			rt.Topic = kmsg.StringPtr(t)
			req.Topics = append(req.Topics, rt)
		}
	}
	if len(req.Topics) == 0 {
		return nil
	}
	resp, err := req.RequestWith(ctx, s.cl)
	if err != nil {
		s.cfg.Log.DebugContext(ctx, "topic id check failed", "err", err)
		return nil
	}
	for _, t := range resp.Topics {
		if t.Topic == nil {
			continue
		}
		if err := kerr.ErrorForCode(t.ErrorCode); err != nil {
			s.cfg.Log.WarnContext(ctx, "consumed topic not readable", "topic", *t.Topic, "err", err)
			continue
		}
		if now, was := topicID(t.TopicID), ids[*t.Topic]; now != "" && now != was {
			return fmt.Errorf("topic %s was deleted and recreated while bq-writer was reading it (topic id %s, now %s); restart bq-writer to check the stored positions against the new topic (%s#positions-do-not-fit-the-log)",
				*t.Topic, was, now, runbook)
		}
	}
	return nil
}
