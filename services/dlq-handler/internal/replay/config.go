package replay

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/ecomstream/platform/pkg/config"
)

// Config is the replay's configuration.
type Config struct {
	Rate            float64       `env:"DLQ_REPLAY_RATE" default:"200" usage:"most records per second the replays produce to one target topic, whatever the jobs (a token bucket per topic); a request's rate may only lower its job's"`
	Topics          []string      `env:"DLQ_REPLAY_TOPICS" default:"http:/v1/events=clickstream" usage:"source=target pairs: where dead letters of an HTTP ingress (source_topic http:<path>) are replayed; other dead letters go back to their source_topic"`
	StageGroups     []string      `env:"DLQ_STAGE_GROUPS" default:"ingest-clickstream=ingest-clickstream,validator=validator,bq-writer=bq-writer" usage:"stage=consumer group pairs: the group whose committed offset past a replayed record makes its dead letter resolved (set the prefixed names when the stages run with a topic/group prefix)"`
	InFlight        int           `env:"DLQ_REPLAY_IN_FLIGHT" default:"16" usage:"most replayed records produced and not yet marked sent: a crash re-sends at most this many (downstream removes the copies by natural key); 1 = at most the one in flight"`
	ResolveInterval time.Duration `env:"DLQ_REPLAY_RESOLVE_INTERVAL" default:"5s" usage:"how often sent replays are checked for resolved (the stage's group committed past them and no new dead letter of them was stored)"`
}

// MaxRate bounds DLQ_REPLAY_RATE and a request's rate.
const MaxRate = 1e6

// Validate implements config.Validator.
func (c *Config) Validate() error {
	if math.IsNaN(c.Rate) || c.Rate <= 0 || c.Rate > MaxRate {
		return config.Errorf("DLQ_REPLAY_RATE", "must be a number of records per second in (0, %g]", float64(MaxRate))
	}
	if _, err := ParsePairs("DLQ_REPLAY_TOPICS", c.Topics); err != nil {
		return err
	}
	if _, err := ParsePairs("DLQ_STAGE_GROUPS", c.StageGroups); err != nil {
		return err
	}
	return config.First(
		config.Between("DLQ_REPLAY_IN_FLIGHT", c.InFlight, 1, 10000),
		config.Positive("DLQ_REPLAY_RESOLVE_INTERVAL", c.ResolveInterval))
}

// ParsePairs reads name=value items (a config list) into a map; an item
// without "=", an empty side or a name given twice is an error naming
// the variable.
func ParsePairs(variable string, items []string) (map[string]string, error) {
	m := make(map[string]string, len(items))
	for _, it := range items {
		k, v, ok := strings.Cut(it, "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if !ok || k == "" || v == "" {
			return nil, config.Errorf(variable, "%q is not a name=value pair", it)
		}
		if _, dup := m[k]; dup {
			return nil, config.Errorf(variable, "%q is given twice", k)
		}
		m[k] = v
	}
	return m, nil
}

// httpSource is the source_topic prefix of a record an HTTP ingress rejected.
const httpSource = "http:"

// undecodableStage is the stage of a record on the dead-letter topic that
// was no dead letter (stored as dlq-undecodable:<partition>:<offset>).
const undecodableStage = "unknown"

// Target is where a dead letter is replayed: its source topic, or for an
// HTTP ingress the topic topics maps it to. The error says why it cannot
// be replayed.
func Target(topics map[string]string, stage, source string, purged bool) (string, error) {
	switch {
	case purged:
		return "", fmt.Errorf("its original was purged by the pii retention (DLQ_RETENTION_PII): nothing to replay")
	case stage == undecodableStage:
		return "", fmt.Errorf("it is an undecodable record of the dead-letter topic, not a dead letter: nothing to replay")
	case strings.HasPrefix(source, httpSource):
		if t, ok := topics[source]; ok {
			return t, nil
		}
		return "", fmt.Errorf("source %s is an HTTP ingress with no target topic: add %s=<topic> to DLQ_REPLAY_TOPICS", source, source)
	case strings.TrimSpace(source) == "":
		return "", fmt.Errorf("it has no source topic")
	}
	return source, nil
}
