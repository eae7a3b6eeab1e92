package sink

// The sink's side of a warehouse.Committer (BigQuery): the positions are the group's Kafka
// commits, and each commit's committed_metadata names the warehouse's streams and their row
// counts. So, unlike with DuckDB, the Kafka commit is authoritative:
//
//   - on assignment the sink reads the group's commits with their metadata and Claims every newly
//     assigned partition with its entity and commit (Claim fences the partitions' earlier
//     writers, opens their streams and says where each committed one resumes); the claimed
//     positions are then checked against the log like stored ones;
//   - before it consumes, it commits every newly assigned partition at the offset it starts
//     from (the claimed one, the log start of a never-committed partition, or a reset offset)
//     with the metadata of a Write of those positions only, synchronously: every stream is named
//     by a Kafka commit before its first append, so a crash or a takeover at any point leaves the
//     next owner every row to skip and every stream to fence. A claim commit that fails where
//     retrying cannot help fails the assignment;
//   - after each Write it commits Batch.Positions with WriteResult.Commits as the metadata,
//     synchronously, and a failed commit is a warning and a count: a fenced commit (the
//     partition moved to another member) loses nothing, because the next owner Claims from the
//     previous commit and finalizes what this writer appended after it;
//   - revoked or lost partitions are Released (their streams closed).
//
// Several members may share the group (no MemberError): each writes its own partitions'
// streams, and a zombie among them is fenced by the next owner's Claim and by Kafka's
// generation check on its commits.

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ecomstream/platform/services/bq-writer/internal/warehouse"
)

// commitTimeout bounds one synchronous commit, also one issued while shutting down: the batch it
// covers is written, and committing it spares the next owner a recovery.
const commitTimeout = 30 * time.Second

// claim reads the log state and the group's commits, and Claims the newly assigned partitions
// with their commits. A failure to read the log is retried; a Claim error is retried when it is
// transient.
func (s *Sink) claim(ctx context.Context, assigned map[string]map[int32]kgo.Offset,
	pos *map[warehouse.Partition]warehouse.Position, l **logState) error {
	ls, err := s.readLog(ctx, assigned)
	if err != nil {
		s.cfg.Log.WarnContext(ctx, "reading the log's offsets failed; retrying", "err", err)
		return err
	}
	claims := map[warehouse.Partition]warehouse.Assignment{}
	for topic, parts := range assigned {
		for part := range parts {
			p := warehouse.Partition{Topic: topic, Partition: part}
			a := warehouse.Assignment{Entity: s.entities[topic].name}
			if next, ok := ls.committed[p]; ok {
				a.Commit = &warehouse.Commit{Next: next, Metadata: ls.metadata[p]}
			}
			claims[p] = a
		}
	}
	claimed, err := s.committer.Claim(ctx, s.cfg.Group, claims)
	if err != nil {
		if !warehouse.IsTransient(err) {
			return permanent{fmt.Errorf("claim partitions: %w", err)}
		}
		s.cfg.Log.WarnContext(ctx, "claiming the assigned partitions failed; retrying", "err", err)
		return err
	}
	*pos, *l = claimed, ls
	return nil
}

// release is the OnPartitionsRevoked and OnPartitionsLost callback of a Committer's sink. With
// BlockRebalanceOnPoll no batch is being written meanwhile, and the last batch's commit returned
// before the rebalance was allowed.
func (s *Sink) release(ctx context.Context, _ *kgo.Client, revoked map[string][]int32) {
	var ps []warehouse.Partition
	for _, topic := range slices.Sorted(maps.Keys(revoked)) {
		for _, part := range slices.Sorted(slices.Values(revoked[topic])) {
			ps = append(ps, warehouse.Partition{Topic: topic, Partition: part})
		}
	}
	if len(ps) > 0 {
		s.committer.Release(ctx, ps)
	}
}

// commitBatch commits the written batch's positions with the metadata Write returned, and waits
// for the answer. Every failure is logged as a warning and counted; none stops the sink.
func (s *Sink) commitBatch(ctx context.Context, metadata map[warehouse.Partition]string) {
	offsets := map[warehouse.Partition]int64{}
	for p, next := range s.batch.Positions {
		if _, ok := metadata[p]; !ok {
			// A Committer returns metadata for every partition of the batch; committing the
			// offset without it would tell the next owner that nothing is pending there.
			s.cfg.Log.WarnContext(ctx, "warehouse returned no commit metadata for a written partition; not committing it (the next owner resumes from the previous commit)",
				"topic", p.Topic, "partition", p.Partition, "next", next)
			s.commitFailures.Add(ctx, 1)
			continue
		}
		offsets[p] = next
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), commitTimeout)
	defer cancel()
	failed, err := s.commitSync(ctx, offsets, metadata)
	if len(failed) > 0 {
		s.commitFailures.Add(ctx, int64(len(failed)))
		s.cfg.Log.WarnContext(ctx, "kafka commit of written positions failed; the partitions' next owner resumes from their previous commit",
			"err", err, "partitions", len(failed), "first", fmt.Sprintf("%s/%d", failed[0].Topic, failed[0].Partition))
	}
}

// commitClaims commits the newly assigned partitions at the offsets they start from, with the
// metadata of a Write of those positions only (it names the streams Claim opened), and waits for
// the answer. It is retried while retrying can help; any other failure fails the assignment:
// consuming without it would append to streams no commit names.
func (s *Sink) commitClaims(ctx context.Context, l *logState, starts map[warehouse.Partition]int64) error {
	b := warehouse.Batch{Positions: starts, ClusterID: l.cluster, TopicIDs: l.topicIDs}
	return retry(ctx, s.cfg.Kafka, func() error {
		res, err := s.wh.Write(ctx, s.cfg.Group, b)
		if err != nil {
			if !warehouse.IsTransient(err) {
				return permanent{fmt.Errorf("commit metadata of the claimed partitions: %w", err)}
			}
			s.cfg.Log.WarnContext(ctx, "reading the claimed partitions' commit metadata failed; retrying", "err", err)
			return err
		}
		for p := range starts {
			if _, ok := res.Commits[p]; !ok {
				return permanent{fmt.Errorf("the warehouse returned no commit metadata for claimed partition %s/%d", p.Topic, p.Partition)}
			}
		}
		failed, err := s.commitSync(ctx, starts, res.Commits)
		switch {
		case len(failed) == 0:
			return nil
		case isRetriableCommit(err):
			s.cfg.Log.WarnContext(ctx, "committing the claimed partitions failed; retrying", "err", err)
			return err
		default:
			return permanent{fmt.Errorf("commit the claimed partitions before consuming: %w", err)}
		}
	})
}

// isFencedCommit reports a commit refused because this member's generation ended: the group
// rebalanced (or is rebalancing) and the partitions are handed out again.
func isFencedCommit(err error) bool {
	return errors.Is(err, kerr.IllegalGeneration) || errors.Is(err, kerr.UnknownMemberID) ||
		errors.Is(err, kerr.RebalanceInProgress) || errors.Is(err, kerr.StaleMemberEpoch)
}

// isRetriableCommit reports whether a commit that failed with err may succeed if issued again:
// a request that did not reach the coordinator, or a retriable Kafka error. A fenced commit
// (ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID, FENCED_INSTANCE_ID, REBALANCE_IN_PROGRESS) is not.
func isRetriableCommit(err error) bool {
	var ke *kerr.Error
	if errors.As(err, &ke) {
		return ke.Retriable
	}
	return err != nil
}

// commitSync commits offsets with metadata (nil: empty metadata for every partition) in the
// group's current generation and waits for the answer. It returns the partitions that were not
// committed and the first error.
func (s *Sink) commitSync(ctx context.Context, offsets map[warehouse.Partition]int64, metadata map[warehouse.Partition]string) ([]warehouse.Partition, error) {
	if len(offsets) == 0 {
		return nil, nil
	}
	uncommitted := map[string]map[int32]kgo.EpochOffset{}
	for p, next := range offsets {
		if uncommitted[p.Topic] == nil {
			uncommitted[p.Topic] = map[int32]kgo.EpochOffset{}
		}
		uncommitted[p.Topic][p.Partition] = kgo.EpochOffset{Epoch: -1, Offset: next}
	}
	// franz-go's default metadata is the member id; the Committer's replaces it.
	ctx = kgo.PreCommitFnContext(ctx, func(req *kmsg.OffsetCommitRequest) error {
		for i := range req.Topics {
			t := &req.Topics[i]
			for j := range t.Partitions {
				md := metadata[warehouse.Partition{Topic: t.Topic, Partition: t.Partitions[j].Partition}]
				t.Partitions[j].Metadata = &md
			}
		}
		return nil
	})
	var failed []warehouse.Partition
	var first error
	s.cl.CommitOffsetsSync(ctx, uncommitted, func(_ *kgo.Client, req *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
		if err != nil {
			first = err
			failed = slices.Collect(maps.Keys(offsets))
			return
		}
		names := map[[16]byte]string{} // OffsetCommit v10+ answers by topic id
		for _, t := range req.Topics {
			names[t.TopicID] = t.Topic
		}
		answered := map[warehouse.Partition]bool{}
		for _, t := range resp.Topics {
			topic := t.Topic
			if topic == "" {
				topic = names[t.TopicID]
			}
			for _, part := range t.Partitions {
				p := warehouse.Partition{Topic: topic, Partition: part.Partition}
				answered[p] = true
				if err := kerr.ErrorForCode(part.ErrorCode); err != nil {
					failed = append(failed, p)
					if first == nil {
						first = fmt.Errorf("%s/%d: %w", p.Topic, p.Partition, err)
					}
				}
			}
		}
		for p := range offsets {
			if !answered[p] {
				failed = append(failed, p)
				if first == nil {
					first = fmt.Errorf("%s/%d: not in the commit answer", p.Topic, p.Partition)
				}
			}
		}
	})
	slices.SortFunc(failed, func(a, b warehouse.Partition) int {
		return cmp.Or(strings.Compare(a.Topic, b.Topic), cmp.Compare(a.Partition, b.Partition))
	})
	return failed, first
}
