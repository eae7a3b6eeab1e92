package warehouse

import "context"

// Committer is implemented by a backend whose positions are the group's Kafka commits (BigQuery).
type Committer interface {
	// Claim is called on every assignment with the newly assigned partitions and the group's
	// Kafka commit of each (absent = never committed). It fences every earlier writer of those
	// partitions and returns their positions (as Positions does for a backend that stores them).
	Claim(ctx context.Context, group string, committed map[Partition]Commit) (map[Partition]Position, error)
	// Release is called with revoked or lost partitions; their streams are closed.
	Release(ctx context.Context, ps []Partition)
}

// Commit is one partition's Kafka commit: the next offset and the backend's metadata.
type Commit struct {
	Next     int64
	Metadata string
}
