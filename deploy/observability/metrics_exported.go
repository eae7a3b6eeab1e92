package observability

import "strings"

// Exported lists the metric families the services export, by service, as Prometheus scrapes
// them (histograms by family name: their _bucket, _sum and _count samples count as the
// family). The dashboards and rules may select only these; the end-to-end test
// TestIntegrationMetricsExist (deploy/local/e2e) checks the referenced ones against every
// service's real /metrics.
var Exported = map[string][]string{
	// pkg/service, pkg/stream and the Go and process collectors: every service.
	"*": {
		"ecom_ready", "ecom_ready_check", // issue 11 contract: readiness
		"process_resident_memory_bytes", "process_cpu_seconds_total", "go_goroutines",
	},
	// pkg/stream's consuming stage.
	"stage": {
		"ecom_records_processed_total", "ecom_dead_letters_total", "ecom_transient_errors_total",
		"ecom_record_process_duration_seconds", "ecom_transactions_total", "ecom_transaction_duration_seconds",
		"ecom_batch_records", "ecom_consumer_lag",
	},
	"ingest-clickstream": {
		"ecom_collector_requests_total", "ecom_collector_events_total", "ecom_collector_request_duration_seconds",
		"ecom_collector_inflight_bytes",
	},
	"ingest-orders": {
		"ecom_orders_pages_polled_total", "ecom_orders_produced_total", "ecom_orders_cursor_lag_seconds",
		"ecom_orders_api_errors_total", "ecom_orders_webhook_verifications_total", "ecom_dead_letters_total",
	},
	"catalog-sync": {
		"ecom_catalog_snapshot_runs_total", "ecom_catalog_snapshot_rows_read_total", "ecom_catalog_changes_sent_total",
		"ecom_catalog_snapshot_duration_seconds", "ecom_catalog_last_success_seconds", "ecom_catalog_cdc_transactions_total",
		"ecom_catalog_cdc_changes_total", "ecom_catalog_cdc_commit_retries_total", "ecom_catalog_cdc_commit_latency_seconds",
		"ecom_catalog_cdc_lag_seconds", "ecom_catalog_cdc_unconfirmed", "ecom_catalog_cdc_slot_retained_wal_bytes",
		"ecom_catalog_cdc_slot_active", "ecom_catalog_cdc_slot_wal_over_threshold",
	},
	"validator": {"ecom_dq_rule_evaluations_total", "ecom_dq_ruleset_info"},
	"dlq-handler": {
		"ecom_dlq_dead_letters_stored_total", "ecom_dlq_dead_letters_duplicate_total", "ecom_dlq_undecodable_total",
		"ecom_dlq_store_write_errors_total", "ecom_dlq_dead_letters", "ecom_dlq_dead_letters_by_reason",
		"ecom_dlq_oldest_unresolved_age_seconds", "ecom_dlq_retention_runs_total", "ecom_dlq_retention_deleted_total",
		"ecom_dlq_retention_pii_purged_total", "ecom_dlq_replay_events_total", "ecom_dlq_replays", "ecom_dlq_replay_jobs",
		"ecom_dlq_oldest_unresolved_timestamp_seconds", // issue 11 contract
		"ecom_dlq_dead_letters_by_stage",               // issue 11: waiting by stage and state (the rules' dead letters by stage)
	},
	"bq-writer": {
		"ecom_warehouse_rows_total", "ecom_warehouse_bytes_total", "ecom_warehouse_write_duration_seconds",
		"ecom_event_latency_seconds", "ecom_warehouse_commit_failures_total",
		"ecom_warehouse_api_calls_total", "ecom_warehouse_cost_usd_total", "ecom_warehouse_stored_bytes",
		"ecom_warehouse_storage_cost_usd_per_day",
		"ecom_warehouse_newest_row_timestamp_seconds", // issue 11 contract
		// WAREHOUSE=bigquery only.
		"ecom_bigquery_append_rows_total", "ecom_bigquery_append_bytes_total", "ecom_bigquery_append_retries_total",
		"ecom_bigquery_streams_total", "ecom_bigquery_append_duration_seconds", "ecom_bigquery_append_cost_total",
	},
	// The reconciliation (deploy/local/reconcile; the command's -listen, scraped as job
	// reconcile): not a service, so the e2e test exposes it from a real report of its slice.
	"reconcile": {
		"ecom_reconciliation_difference", "ecom_reconciliation_records", "ecom_reconciliation_hop_difference", "ecom_reconciliation_unmatched",
		"ecom_reconciliation_settled", "ecom_reconciliation_window_end_timestamp_seconds",
	},
}

// IsExported reports whether a sample name is one of Exported's families or a histogram
// sample (_bucket, _sum, _count) of one.
func IsExported(name string) bool {
	families := map[string]bool{}
	for _, ms := range Exported {
		for _, m := range ms {
			families[m] = true
		}
	}
	if families[name] {
		return true
	}
	for _, suf := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suf); ok && families[base] {
			return true
		}
	}
	return false
}
