package warehouse

import "context"

// Committer is implemented by a backend whose positions are the group's Kafka commits (BigQuery).
//
// The sink's protocol: on every assignment it Claims every newly assigned partition, decides
// where each one starts (the claimed position, the log start of a never-committed partition, or
// a reset), calls Write with a batch of those positions only (no rows) and commits them with the
// returned WriteResult.Commits, synchronously, before it consumes anything of them. Every write
// stream a Committer appends to is therefore named by a Kafka commit before its first append.
type Committer interface {
	// Claim is called on every assignment with every newly assigned partition: what its topic
	// carries and the group's Kafka commit of it, if any. It fences every earlier writer of
	// those partitions, opens the partitions' streams for every table their entity feeds, and
	// returns the positions of the committed ones (as Positions does for a backend that stores
	// them). Claiming a partition again (a retry, a new assignment) is safe.
	Claim(ctx context.Context, group string, claims map[Partition]Assignment) (map[Partition]Position, error)
	// Release is called with revoked or lost partitions; their streams are closed.
	Release(ctx context.Context, ps []Partition)
}

// Assignment is one newly assigned partition as a Committer claims it.
type Assignment struct {
	// Entity is what the partition's topic carries: the tables its rows go to.
	Entity Entity
	// Commit is the group's Kafka commit of the partition; nil when it was never committed.
	Commit *Commit
}

// Commit is one partition's Kafka commit: the next offset and the backend's metadata.
type Commit struct {
	Next     int64
	Metadata string
}
