package e2e

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/kversion"
)

// groupTopic is a consumer group and the topic it reads.
type groupTopic struct{ group, topic string }

// groupsCaughtUp reports whether every group has consumed each committed
// record of its topic, with a line of progress. A partition is caught up
// when the group's committed offset is its last stable offset (the end a
// read_committed reader sees), or when only transaction markers and aborted
// records lie between the two: a transaction's commit marker takes the
// offset after its last record, and consumers commit last record + 1, so on
// a transactional topic the committed offset stays one short of the end.
func groupsCaughtUp(ctx context.Context, brokers []string, gts ...groupTopic) (bool, string, error) {
	// Fetch up to v12 names topics (v13+ wants topic ids), so cap the versions.
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.MaxVersions(kversion.V3_0_0()))
	if err != nil {
		return false, "", err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	var progress []string
	caughtUp := true
	for _, gt := range gts {
		ends, err := adm.ListCommittedOffsets(ctx, gt.topic)
		if err == nil {
			err = ends.Error()
		}
		if err != nil {
			return false, "", fmt.Errorf("end offsets of %s: %w", gt.topic, err)
		}
		committed, err := adm.FetchOffsets(ctx, gt.group)
		if err == nil {
			err = committed.Error()
		}
		if errors.Is(err, kerr.GroupIDNotFound) {
			committed, err = nil, nil // not started yet: nothing committed
		}
		if err != nil {
			return false, "", fmt.Errorf("offsets of group %s: %w", gt.group, err)
		}
		meta, err := adm.Metadata(ctx, gt.topic)
		if err != nil {
			return false, "", fmt.Errorf("metadata of %s: %w", gt.topic, err)
		}
		var behind []string
		var err2 error
		ends.Each(func(end kadm.ListedOffset) {
			if err2 != nil {
				return
			}
			from := int64(0) // nothing committed yet: every record is ahead
			if c, ok := committed.Lookup(gt.topic, end.Partition); ok && c.At >= 0 {
				from = c.At
			}
			if from >= end.Offset {
				return
			}
			leader := meta.Topics[gt.topic].Partitions[end.Partition].Leader
			readable, err := readableBetween(ctx, cl, leader, gt.topic, end.Partition, from, end.Offset)
			if err != nil {
				err2 = err
				return
			}
			if readable {
				behind = append(behind, fmt.Sprintf("%d at %d of %d", end.Partition, from, end.Offset))
			}
		})
		if err2 != nil {
			return false, "", err2
		}
		slices.Sort(behind)
		if len(behind) > 0 {
			caughtUp = false
			progress = append(progress, fmt.Sprintf("%s behind on %s partitions %s", gt.group, gt.topic, strings.Join(behind, ", ")))
		}
	}
	if caughtUp {
		return true, "every group at the end of its topic", nil
	}
	return false, strings.Join(progress, "; "), nil
}

// readableBetween reports whether a read_committed reader finds a record in
// [from, end) of a partition: it fetches the batches from the partition's
// leader and skips control batches (transaction markers) and the batches of
// aborted transactions, as a read_committed consumer does.
func readableBetween(ctx context.Context, cl *kgo.Client, leader int32, topic string, partition int32, from, end int64) (bool, error) {
	for from < end {
		req := kmsg.NewPtrFetchRequest()
		req.ReplicaID = -1
		req.MaxBytes = 4 << 20
		req.IsolationLevel = 1 // read_committed
		req.SessionEpoch = -1  // no fetch session
		rt := kmsg.NewFetchRequestTopic()
		rt.Topic = topic
		rp := kmsg.NewFetchRequestTopicPartition()
		rp.Partition, rp.FetchOffset, rp.PartitionMaxBytes = partition, from, 4<<20
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctx, cl.Broker(int(leader)))
		if err != nil {
			return false, fmt.Errorf("fetch %s/%d at %d: %w", topic, partition, from, err)
		}
		if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
			return false, fmt.Errorf("fetch %s/%d at %d: answer for %d topics", topic, partition, from, len(resp.Topics))
		}
		p := resp.Topics[0].Partitions[0]
		if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
			return false, fmt.Errorf("fetch %s/%d at %d: %w", topic, partition, from, err)
		}
		aborted := slices.Clone(p.AbortedTransactions)
		slices.SortFunc(aborted, func(a, b kmsg.FetchResponseTopicPartitionAbortedTransaction) int {
			return int(a.FirstOffset - b.FirstOffset)
		})
		abortedBy := map[int64]bool{} // producers inside an aborted transaction
		next, b := from, p.RecordBatches
		for len(b) >= 12 {
			size := 12 + int(int32(binary.BigEndian.Uint32(b[8:12])))
			if size <= 12 || len(b) < size {
				break // a batch cut off by MaxBytes: fetch it again from next
			}
			var batch kmsg.RecordBatch
			if err := batch.ReadFrom(b[:size]); err != nil {
				return false, fmt.Errorf("fetch %s/%d at %d: %w", topic, partition, from, err)
			}
			b = b[size:]
			last := batch.FirstOffset + int64(batch.LastOffsetDelta)
			for len(aborted) > 0 && aborted[0].FirstOffset <= last {
				abortedBy[aborted[0].ProducerID] = true
				aborted = aborted[1:]
			}
			control, transactional := batch.Attributes&0x20 != 0, batch.Attributes&0x10 != 0
			switch {
			case control:
				delete(abortedBy, batch.ProducerID) // the marker ends its transaction
			case transactional && abortedBy[batch.ProducerID]:
			case last >= from && batch.FirstOffset < end:
				return true, nil
			}
			next = max(next, last+1)
		}
		if next == from {
			return false, nil // nothing readable below the last stable offset
		}
		from = next
	}
	return false, nil
}
