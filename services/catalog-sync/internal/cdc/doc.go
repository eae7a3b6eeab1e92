// Package cdc streams the catalog tables' changes from PostgreSQL logical
// replication (pgoutput, protocol version 1) with a persistent slot, and
// confirms a position to PostgreSQL only after the changes up to it are
// committed to Kafka.
//
// A Stream delivers whole committed transactions (Tx), in commit order, to a
// Handler. The caller commits them to Kafka and then calls Confirm with the
// commit LSN of the last transaction it committed; the Stream reports to
// PostgreSQL (standby status updates) a flush position that never passes a
// transaction that was delivered and not confirmed. After a restart or a crash
// streaming resumes from the slot's confirmed_flush_lsn, so every unconfirmed
// transaction is delivered again: the consumer must be idempotent by the
// source sequence (Change.LSN, Change.Ordinal). See README.md for the slot's
// health and its recovery.
package cdc
