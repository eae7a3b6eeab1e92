package sink

import "time"

// withBatchInterval sets the batch interval (a function so that cadence_test.go also builds
// against code without the batch interval, for the regression proof).
func withBatchInterval(c *Config, d time.Duration) { c.Kafka.CommitInterval = d }
