package stream

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/ecomstream/platform/pkg/deadletter"
)

// DeadLetterTopic is the spec of the dead-letter topic: long retention, so
// dead letters outlive an outage of whatever stores and replays them.
func DeadLetterTopic(cfg Config) TopicSpec {
	return TopicSpec{Name: deadletter.Topic, Configs: map[string]string{
		"retention.ms": strconv.FormatInt(cfg.DLQRetention.Milliseconds(), 10),
	}}
}

// TopicSpec describes a topic a service needs.
type TopicSpec struct {
	Name       string
	Partitions int32             // 0 = Config.TopicPartitions
	Configs    map[string]string // e.g. retention.ms, cleanup.policy
}

// EnsureTopics creates the topics that do not exist yet; existing topics are
// left as they are (their partition count is never changed here).
func EnsureTopics(ctx context.Context, adm *kadm.Client, cfg Config, specs ...TopicSpec) error {
	for _, s := range specs {
		parts := s.Partitions
		if parts == 0 {
			parts = int32(cfg.TopicPartitions)
		}
		var configs map[string]*string
		if len(s.Configs) > 0 {
			configs = make(map[string]*string, len(s.Configs))
			for k, v := range s.Configs {
				configs[k] = kadm.StringPtr(v)
			}
		}
		resp, err := adm.CreateTopic(ctx, parts, int16(cfg.TopicReplication), configs, s.Name)
		if err == nil {
			err = resp.Err
		}
		if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
			return fmt.Errorf("create topic %s: %w", s.Name, err)
		}
	}
	return nil
}

// NewTopicWait bounds how long CommittedEnds waits for a topic the brokers do not know yet.
const NewTopicWait = 30 * time.Second

// CommittedEnds lists topic's read_committed end offsets (kadm ListCommittedOffsets), retrying
// retriable errors with capped backoff for up to NewTopicWait: a topic created just before (a
// service's state or cursor topic at its first start) is UNKNOWN_TOPIC_OR_PARTITION until its
// metadata has reached the broker answering, which a fresh, loaded machine shows.
func CommittedEnds(ctx context.Context, adm *kadm.Client, topic string) (kadm.ListedOffsets, error) {
	deadline := time.Now().Add(NewTopicWait)
	for delay := 50 * time.Millisecond; ; delay = min(2*delay, time.Second) {
		ends, err := adm.ListCommittedOffsets(ctx, topic)
		if err == nil {
			err = ends.Error()
		}
		if err == nil || !kerr.IsRetriable(err) || time.Now().Add(delay).After(deadline) {
			return ends, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(delay):
		}
	}
}
