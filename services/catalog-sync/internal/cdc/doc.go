// Package cdc streams the catalog tables' changes from PostgreSQL logical
// replication (pgoutput) with a persistent slot, and confirms a position to
// PostgreSQL only after the changes up to it are committed to Kafka.
package cdc
