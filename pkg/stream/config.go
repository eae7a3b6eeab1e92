// Package stream is the Kafka runtime every service shares, built on franz-go:
// client configuration, topic creation, one handler shape with middleware
// (tracing, metrics, dead-lettering, panic recovery), and a transactional
// consume -> transform -> produce processor.
//
// Delivery: the Processor reads read_committed and writes its outputs, its dead
// letters and its input offsets in one Kafka transaction (GroupTransactSession),
// so a crash at any point either publishes all of a batch's effects or none.
// Permanent errors (*deadletter.Rejection) become dead letters; every other
// error is transient and retried with capped, jittered backoff — a record is
// never skipped.
package stream

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/ecomstream/platform/pkg/config"
)

// Config is the Kafka part of a service config.
type Config struct {
	Brokers       []string `env:"KAFKA_BROKERS" default:"127.0.0.1:19092" usage:"comma-separated bootstrap brokers"`
	ClientID      string   `env:"KAFKA_CLIENT_ID" default:"" usage:"client id (default: the service name)"`
	TLS           bool     `env:"KAFKA_TLS_ENABLED" default:"false" usage:"connect with TLS"`
	TLSCAFile     string   `env:"KAFKA_TLS_CA_FILE" default:"" usage:"PEM CA bundle for TLS (default: system roots)"`
	SASLMechanism string   `env:"KAFKA_SASL_MECHANISM" default:"" usage:"PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512; empty = no SASL"`
	SASLUsername  string   `env:"KAFKA_SASL_USERNAME" default:"" usage:"SASL user"`
	SASLPassword  string   `env:"KAFKA_SASL_PASSWORD" default:"" secret:"true" usage:"SASL password (inject from a secret)"`

	CreateTopics      bool          `env:"KAFKA_CREATE_TOPICS" default:"true" usage:"create missing topics at start (needs CREATE on the cluster; off in production if topics are managed by Terraform)"`
	TopicPartitions   int           `env:"KAFKA_TOPIC_PARTITIONS" default:"3" usage:"partitions of topics this service creates"`
	TopicReplication  int           `env:"KAFKA_TOPIC_REPLICATION" default:"1" usage:"replication factor of topics this service creates"`
	DLQRetention      time.Duration `env:"KAFKA_DLQ_RETENTION" default:"720h" usage:"retention of the dead-letter topic when this service creates it: dead letters must outlive any outage of their handler"`
	MaxPollRecords    int           `env:"KAFKA_MAX_POLL_RECORDS" default:"5000" usage:"most records processed in one transaction / batch"`
	CommitInterval    time.Duration `env:"KAFKA_COMMIT_INTERVAL" default:"100ms" usage:"a batch closes (commits) when it is full or this long after its first record was produced (its Kafka timestamp): fewer, larger transactions for at most this much added latency; 0 = one batch per poll"`
	FetchMaxBytes     int           `env:"KAFKA_FETCH_MAX_BYTES" default:"52428800" usage:"most bytes a fetch may return"`
	ProducerMaxRecord int           `env:"KAFKA_PRODUCER_MAX_RECORD_BYTES" default:"1048576" usage:"largest record this service may produce"`

	Linger             time.Duration `env:"KAFKA_PRODUCER_LINGER" default:"2ms" usage:"producer linger: a little latency for much larger batches"`
	Compression        string        `env:"KAFKA_COMPRESSION" default:"lz4" usage:"none, gzip, snappy, lz4 or zstd"`
	TransactionalID    string        `env:"KAFKA_TRANSACTIONAL_ID" default:"" usage:"stable per instance (default: <service>-<hostname>); a restarted instance with the same id fences its predecessor at once"`
	TransactionTimeout time.Duration `env:"KAFKA_TRANSACTION_TIMEOUT" default:"20s" usage:"broker aborts a transaction left open this long (bounds how long a crashed instance can stall read_committed readers)"`
	SessionTimeout     time.Duration `env:"KAFKA_SESSION_TIMEOUT" default:"15s" usage:"group session timeout: how long a silent member keeps its partitions"`
	StaticMembership   bool          `env:"KAFKA_STATIC_MEMBERSHIP" default:"true" usage:"join the group with a stable group.instance.id (= the transactional id) so a restarted instance gets its partitions back at once, without a rebalance"`
	RetryBackoffMin    time.Duration `env:"KAFKA_RETRY_BACKOFF_MIN" default:"100ms" usage:"first backoff after a transient error"`
	RetryBackoffMax    time.Duration `env:"KAFKA_RETRY_BACKOFF_MAX" default:"10s" usage:"backoff cap"`
}

// Validate implements config.Validator.
func (c *Config) Validate() error {
	errs := []error{config.NonEmptyList("KAFKA_BROKERS", c.Brokers)}
	for _, b := range c.Brokers {
		errs = append(errs, config.HostPort("KAFKA_BROKERS", b))
	}
	if c.SASLMechanism != "" {
		errs = append(errs,
			config.OneOf("KAFKA_SASL_MECHANISM", strings.ToUpper(c.SASLMechanism), "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"),
			config.NotEmpty("KAFKA_SASL_USERNAME", c.SASLUsername),
			config.NotEmpty("KAFKA_SASL_PASSWORD", c.SASLPassword))
	}
	if c.TLSCAFile != "" {
		if _, err := os.Stat(c.TLSCAFile); err != nil {
			errs = append(errs, config.Errorf("KAFKA_TLS_CA_FILE", "cannot read %s", c.TLSCAFile))
		}
	}
	errs = append(errs,
		config.Between("KAFKA_TOPIC_PARTITIONS", c.TopicPartitions, 1, 10000),
		config.Between("KAFKA_TOPIC_REPLICATION", c.TopicReplication, 1, 32),
		config.Between("KAFKA_DLQ_RETENTION", c.DLQRetention, time.Hour, 100*365*24*time.Hour),
		config.Between("KAFKA_MAX_POLL_RECORDS", c.MaxPollRecords, 1, 1_000_000),
		config.Between("KAFKA_FETCH_MAX_BYTES", c.FetchMaxBytes, 1<<10, 1<<30),
		config.Between("KAFKA_PRODUCER_MAX_RECORD_BYTES", c.ProducerMaxRecord, 64<<10, 1<<30),
		config.Between("KAFKA_PRODUCER_LINGER", c.Linger, 0, time.Second),
		config.OneOf("KAFKA_COMPRESSION", c.Compression, "none", "gzip", "snappy", "lz4", "zstd"),
		config.Between("KAFKA_TRANSACTION_TIMEOUT", c.TransactionTimeout, time.Second, 15*time.Minute),
		c.validateCommitInterval(),
		config.Between("KAFKA_SESSION_TIMEOUT", c.SessionTimeout, time.Second, 30*time.Minute),
		config.Positive("KAFKA_RETRY_BACKOFF_MIN", c.RetryBackoffMin),
		config.Between("KAFKA_RETRY_BACKOFF_MAX", c.RetryBackoffMax, c.RetryBackoffMin, time.Hour),
	)
	return config.First(errs...)
}

// validateCommitInterval keeps a batch's collection time well inside the
// transaction timeout: the processor cuts a batch at half the timeout anyway,
// so an interval beyond a quarter of it would never be reached.
func (c *Config) validateCommitInterval() error {
	if c.CommitInterval < 0 || c.CommitInterval > c.TransactionTimeout/4 {
		return config.Errorf("KAFKA_COMMIT_INTERVAL", "must be between 0 and a quarter of KAFKA_TRANSACTION_TIMEOUT (%v), got %v",
			c.TransactionTimeout/4, c.CommitInterval)
	}
	return nil
}

// ClientOpts returns the connection options shared by every client of a
// service: brokers, client id, TLS and SASL.
func (c *Config) ClientOpts(service string) ([]kgo.Opt, error) {
	id := c.ClientID
	if id == "" {
		id = service
	}
	opts := []kgo.Opt{
		kgo.SeedBrokers(c.Brokers...),
		kgo.ClientID(id),
		kgo.ProducerBatchMaxBytes(int32(c.ProducerMaxRecord)),
		kgo.FetchMaxBytes(int32(c.FetchMaxBytes)),
		kgo.ProducerLinger(c.Linger),
		kgo.ProducerBatchCompression(codec(c.Compression)),
	}
	if c.TLS {
		tc := &tls.Config{MinVersion: tls.VersionTLS12}
		if c.TLSCAFile != "" {
			pem, err := os.ReadFile(c.TLSCAFile)
			if err != nil {
				return nil, fmt.Errorf("kafka tls: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("kafka tls: no certificates in %s", c.TLSCAFile)
			}
			tc.RootCAs = pool
		}
		opts = append(opts, kgo.DialTLSConfig(tc))
	}
	if c.SASLMechanism != "" {
		var m sasl.Mechanism
		switch strings.ToUpper(c.SASLMechanism) {
		case "PLAIN":
			m = plain.Auth{User: c.SASLUsername, Pass: c.SASLPassword}.AsMechanism()
		case "SCRAM-SHA-256":
			m = scram.Auth{User: c.SASLUsername, Pass: c.SASLPassword}.AsSha256Mechanism()
		case "SCRAM-SHA-512":
			m = scram.Auth{User: c.SASLUsername, Pass: c.SASLPassword}.AsSha512Mechanism()
		}
		opts = append(opts, kgo.SASL(m))
	}
	return opts, nil
}

// fetchMinBytes is what a fetch waits for (up to the commit interval).
const fetchMinBytes = 1 << 20

// FetchCadenceOpts are the fetch options of a consumer that closes its batches
// on the commit interval: the broker holds a fetch until a batch's worth of
// data or FetchWait(interval) has passed, so a consumer sends a bounded number
// of fetches whatever the upstream produce rate (one fetch per upstream
// produce at 1,000 events/s doubled the broker's CPU). Without an interval
// (one batch per poll) they are the client defaults.
func (c *Config) FetchCadenceOpts() []kgo.Opt {
	if c.CommitInterval <= 0 {
		return nil
	}
	return []kgo.Opt{kgo.FetchMinBytes(int32(min(fetchMinBytes, c.FetchMaxBytes))), kgo.FetchMaxWait(FetchWait(c.CommitInterval))}
}

// FetchWait is how long a fetch waits at the broker under a commit interval:
// a fifth of it, at least 10ms. Waiting the whole interval would add up to an
// interval per stage (a record committed upstream just after a fetch started
// waits for it to end), so a pipeline of three stages would take three
// intervals; a fifth adds little, and costs a few empty fetches a second.
func FetchWait(interval time.Duration) time.Duration {
	return max(interval/5, 10*time.Millisecond) // franz-go refuses less than 10ms
}

// GroupOpts returns the consumer-group options shared by every consumer:
// session timeout and, when enabled, static membership under instanceID.
func (c *Config) GroupOpts(instanceID string) []kgo.Opt {
	opts := []kgo.Opt{kgo.SessionTimeout(c.SessionTimeout)}
	if c.StaticMembership && instanceID != "" {
		opts = append(opts, kgo.InstanceID(instanceID))
	}
	return opts
}

// DefaultTransactionalID is <service>-<hostname>: stable across restarts of
// the same instance (or StatefulSet pod), unique between instances.
func (c *Config) DefaultTransactionalID(service string) string {
	if c.TransactionalID != "" {
		return c.TransactionalID
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "local"
	}
	return service + "-" + host
}

func codec(name string) kgo.CompressionCodec {
	switch name {
	case "gzip":
		return kgo.GzipCompression()
	case "snappy":
		return kgo.SnappyCompression()
	case "lz4":
		return kgo.Lz4Compression()
	case "zstd":
		return kgo.ZstdCompression()
	default:
		return kgo.NoCompression()
	}
}
