package observability

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
	"github.com/grafana/grafana-foundation-sdk/go/stat"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"
)

// DashboardsDir is where the generated dashboards live, relative to the repository root.
const DashboardsDir = "deploy/grafana/dashboards"

// Dashboard is one generated dashboard: its file name in DashboardsDir and its JSON.
type Dashboard struct {
	File string
	JSON []byte
}

// Services are the platform's services: one Prometheus job and one dashboard each.
var Services = []string{"ingest-clickstream", "ingest-orders", "catalog-sync", "validator", "dlq-handler", "bq-writer"}

// Dashboards builds every dashboard: the pipeline overview and one per service. Every query
// reads the data source the dashboard's ${datasource} variable picks, so the JSON imports into
// any Grafana with a Prometheus data source.
func Dashboards() ([]Dashboard, error) {
	builders := []*dashboard.DashboardBuilder{overview()}
	for _, s := range Services {
		builders = append(builders, serviceDashboard(s))
	}
	out := make([]Dashboard, 0, len(builders))
	for _, b := range builders {
		d, err := b.Build()
		if err != nil {
			return nil, fmt.Errorf("dashboard: %w", err)
		}
		numberPanels(&d)
		j, err := json.MarshalIndent(d, "", "  ")
		if err != nil {
			return nil, fmt.Errorf("dashboard %s: %w", *d.Uid, err)
		}
		out = append(out, Dashboard{File: *d.Uid + ".json", JSON: append(j, '\n')})
	}
	return out, nil
}

// numberPanels gives every panel and row a unique id, in layout order (the SDK leaves panels
// without one and rows at 0; links to a panel, viewPanel=<id>, need stable ids).
func numberPanels(d *dashboard.Dashboard) {
	var id uint32
	for _, p := range d.Panels {
		id++
		switch {
		case p.Panel != nil:
			p.Panel.Id = cog.ToPtr(id)
		case p.RowPanel != nil:
			p.RowPanel.Id = id
		}
	}
}

// ds is the data source of every panel: the dashboard's variable.
var ds = common.DataSourceRef{Type: cog.ToPtr("prometheus"), Uid: cog.ToPtr("${datasource}")}

// q is one query of a panel.
type q struct{ expr, legend string }

func target(x q, ref int) *prometheus.DataqueryBuilder {
	t := prometheus.NewDataqueryBuilder().Datasource(ds).Expr(x.expr).RefId(string(rune('A' + ref))).Range()
	if x.legend != "" {
		t.LegendFormat(x.legend)
	}
	return t
}

// graph is a time series panel, half the width of the dashboard.
func graph(title, unit, desc string, qs ...q) *timeseries.PanelBuilder {
	p := timeseries.NewPanelBuilder().Title(title).Description(desc).Unit(unit).Datasource(ds).Span(12).Height(8)
	for i, x := range qs {
		p.WithTarget(target(x, i))
	}
	return p
}

// single is a stat panel showing the last value of one instant query.
func single(title, unit, desc string, x q) *stat.PanelBuilder {
	return stat.NewPanelBuilder().Title(title).Description(desc).Unit(unit).Datasource(ds).Span(6).Height(4).
		WithTarget(prometheus.NewDataqueryBuilder().Datasource(ds).Expr(x.expr).RefId("A").Instant().LegendFormat(x.legend))
}

func newDashboard(uid, title, desc string, tags ...string) *dashboard.DashboardBuilder {
	return dashboard.NewDashboardBuilder(title).Uid(uid).Description(desc).Tags(append([]string{"ecomstream"}, tags...)).
		Editable().Refresh("30s").Time("now-1h", "now").Timezone("browser").Tooltip(dashboard.DashboardCursorSyncCrosshair).
		WithVariable(dashboard.NewDatasourceVariableBuilder("datasource").Label("Data source").Type("prometheus"))
}

// rate is the rate of a counter over Grafana's rate interval.
func rate(sel string) string { return "rate(" + sel + "[$__rate_interval])" }

func overview() *dashboard.DashboardBuilder {
	return newDashboard("ecom-pipeline", "Pipeline overview",
		"The streaming pipeline end to end: throughput per source, end-to-end latency, consumer lag, data quality, errors and dead letters, warehouse cost.", "overview").
		WithRow(dashboard.NewRowBuilder("Health")).
		WithPanel(single("Services up", "short", "Scrape targets answering, of all the services' targets.",
			q{expr: `sum(up{job=~"` + strings.Join(Services, "|") + `"}) / count(up{job=~"` + strings.Join(Services, "|") + `"})`}).Unit("percentunit")).
		WithPanel(single("Services ready", "percentunit", "Instances whose readiness checks pass (ecom_ready), of all.",
			q{expr: `sum(ecom_ready) / count(ecom_ready)`})).
		WithPanel(single("Warehouse freshness", "s", "Age of the newest row committed to the warehouse (any table).",
			q{expr: `time() - max(ecom_warehouse_newest_row_timestamp_seconds)`})).
		WithPanel(single("Cost today (USD)", "currencyUSD", "Estimated warehouse cost of the last 24 h: Storage Write API bytes appended plus a day of storage.",
			q{expr: `(sum(increase(ecom_warehouse_cost_usd_total[24h])) or vector(0)) + (sum(ecom_warehouse_storage_cost_usd_per_day) or vector(0))`})).
		WithRow(dashboard.NewRowBuilder("Throughput and latency")).
		WithPanel(graph("Events per minute by source", "short", "Records entering the platform per minute: click events (collector and raw topic), order versions (API and webhooks), catalog changes (snapshots and CDC).",
			q{`sum(` + rate(`ecom_records_processed_total{stage="ingest-clickstream",outcome="ok"}`) + `) * 60`, "clickstream"},
			q{`sum by (source) (` + rate(`ecom_orders_produced_total`) + `) * 60`, "orders ({{source}})"},
			q{`((sum(` + rate(`ecom_catalog_changes_sent_total`) + `) or vector(0)) + (sum(` + rate(`ecom_catalog_cdc_changes_total`) + `) or vector(0))) * 60`, "catalog"})).
		WithPanel(graph("End-to-end latency", "s", "From an event reaching the platform (the raw record's Kafka timestamp) to its warehouse commit.",
			q{`histogram_quantile(0.5, sum by (le) (` + rate(`ecom_event_latency_seconds_bucket`) + `))`, "p50"},
			q{`histogram_quantile(0.99, sum by (le) (` + rate(`ecom_event_latency_seconds_bucket`) + `))`, "p99"})).
		WithPanel(graph("Records per second by stage", "reqps", "Records handled by each consuming stage, by outcome.",
			q{`sum by (stage, outcome) (` + rate(`ecom_records_processed_total`) + `)`, "{{stage}} {{outcome}}"})).
		WithPanel(graph("Consumer lag by group and partition", "short", "Records behind the log end, per consumer group, topic and partition.",
			q{`max by (group, topic, partition) (ecom_consumer_lag)`, "{{group}} {{topic}}/{{partition}}"})).
		WithRow(dashboard.NewRowBuilder("Data quality")).
		WithPanel(graph("DQ pass rate by rule", "percentunit", "Share of evaluations that passed, per validator rule.",
			q{`(sum by (rule_id) (` + rate(`ecom_dq_rule_evaluations_total{result="pass"}`) + `) or 0 * sum by (rule_id) (` + rate(`ecom_dq_rule_evaluations_total`) + `)) / sum by (rule_id) (` + rate(`ecom_dq_rule_evaluations_total`) + `)`, "{{rule_id}}"}).Min(0).Max(1)).
		WithPanel(graph("DQ failures by rule", "reqps", "Evaluations that did not pass, per rule and result.",
			q{`sum by (rule_id, result) (` + rate(`ecom_dq_rule_evaluations_total{result!="pass"}`) + `)`, "{{rule_id}} {{result}}"})).
		WithRow(dashboard.NewRowBuilder("Errors and dead letters")).
		WithPanel(graph("Dead letters per second by stage and reason", "reqps", "Dead letters written by the stages, per reason code.",
			q{`sum by (stage, code) (` + rate(`ecom_dead_letters_total`) + `)`, "{{stage}} {{code}}"})).
		WithPanel(graph("Errors per second", "reqps", "Transient errors retried by each stage, transactions aborted, orders API errors, dead-letter store write errors.",
			q{`sum by (stage) (` + rate(`ecom_transient_errors_total`) + `)`, "transient {{stage}}"},
			q{`sum by (stage) (` + rate(`ecom_transactions_total{result="aborted"}`) + `)`, "aborted {{stage}}"},
			q{`sum by (status) (` + rate(`ecom_orders_api_errors_total`) + `)`, "orders API {{status}}"},
			q{`sum(` + rate(`ecom_dlq_store_write_errors_total`) + `)`, "DLQ store writes"})).
		WithPanel(graph("Dead letters waiting", "short", "Dead letters in the store by state.",
			q{`sum by (state) (ecom_dlq_dead_letters)`, "{{state}}"})).
		WithPanel(graph("Oldest unresolved dead letter", "s", "Age of the oldest dead letter not yet resolved (0 = none).",
			q{`max(ecom_dlq_oldest_unresolved_age_seconds)`, "age"})).
		WithRow(dashboard.NewRowBuilder("Warehouse cost")).
		WithPanel(graph("Cost per day (USD)", "currencyUSD", "Estimated cost per day at the current rate: appends by item (rate x 86400) and storage.",
			q{`sum by (item) (` + rate(`ecom_warehouse_cost_usd_total`) + `) * 86400`, "{{item}}"},
			q{`sum(ecom_warehouse_storage_cost_usd_per_day)`, "storage"})).
		WithPanel(graph("Bytes written per table", "Bps", "Approximate bytes inserted per second (what the Storage Write API bills).",
			q{`sum by (table) (` + rate(`ecom_warehouse_bytes_total`) + `)`, "{{table}}"})).
		WithPanel(graph("Rows written per table", "reqps", "Rows inserted (facts) and changes logged (dimensions) per second.",
			q{`sum by (table) (` + rate(`ecom_warehouse_rows_total{result=~"inserted|logged"}`) + `)`, "{{table}}"})).
		WithPanel(graph("Warehouse API calls per second", "reqps", "Storage Write API and REST calls (BigQuery), write transactions (DuckDB).",
			q{`sum by (api) (` + rate(`ecom_warehouse_api_calls_total`) + `)`, "{{api}}"})).
		WithPanel(graph("Stored bytes by table", "bytes", "Bytes stored at the last refresh.",
			q{`sum by (table) (ecom_warehouse_stored_bytes)`, "{{table}}"}))
}

// serviceDashboard is one service's dashboard: availability and its stage's standard metrics,
// then the panels of what it alone does.
func serviceDashboard(svc string) *dashboard.DashboardBuilder {
	job := `job="` + svc + `"`
	d := newDashboard("ecom-"+svc, svc, "The "+svc+" service: availability, readiness, its own metrics and the Go runtime.", "service", svc).
		WithRow(dashboard.NewRowBuilder("Availability")).
		WithPanel(single("Instances up", "short", "Scrape targets of the job answering.", q{expr: `sum(up{` + job + `})`})).
		WithPanel(single("Instances ready", "short", "Instances whose readiness checks pass.", q{expr: `sum(ecom_ready{` + job + `})`})).
		WithPanel(graph("Readiness checks", "short", "1 = the check passes, per instance.",
			q{`min by (instance, check) (ecom_ready_check{` + job + `})`, "{{instance}} {{check}}"}).Min(0).Max(1))
	if stages[svc] {
		d = d.WithRow(dashboard.NewRowBuilder("Stage")).
			WithPanel(graph("Records per second", "reqps", "Records handled, by input topic and outcome.",
				q{`sum by (topic, outcome) (` + rate(`ecom_records_processed_total{`+job+`}`) + `)`, "{{topic}} {{outcome}}"})).
			WithPanel(graph("Dead letters and transient errors per second", "reqps", "Dead letters written by reason code; transient errors retried.",
				q{`sum by (code) (` + rate(`ecom_dead_letters_total{`+job+`}`) + `)`, "dead letter {{code}}"},
				q{`sum(` + rate(`ecom_transient_errors_total{`+job+`}`) + `)`, "transient"})).
			WithPanel(graph("Transactions per second", "reqps", "Batches ended, by result.",
				q{`sum by (result) (` + rate(`ecom_transactions_total{`+job+`}`) + `)`, "{{result}}"})).
			WithPanel(graph("Transaction duration", "s", "First poll of a batch to its commit.",
				q{`histogram_quantile(0.5, sum by (le) (` + rate(`ecom_transaction_duration_seconds_bucket{`+job+`}`) + `))`, "p50"},
				q{`histogram_quantile(0.99, sum by (le) (` + rate(`ecom_transaction_duration_seconds_bucket{`+job+`}`) + `))`, "p99"})).
			WithPanel(graph("Consumer lag by partition", "short", "Records behind the log end.",
				q{`max by (group, topic, partition) (ecom_consumer_lag{` + job + `})`, "{{group}} {{topic}}/{{partition}}"})).
			WithPanel(graph("Records per batch", "short", "Median and p99 batch size.",
				q{`histogram_quantile(0.5, sum by (le) (` + rate(`ecom_batch_records_bucket{`+job+`}`) + `))`, "p50"},
				q{`histogram_quantile(0.99, sum by (le) (` + rate(`ecom_batch_records_bucket{`+job+`}`) + `))`, "p99"}))
	}
	d = d.WithRow(dashboard.NewRowBuilder(svc))
	for _, p := range servicePanels(svc, job) {
		d = d.WithPanel(p)
	}
	return d.WithRow(dashboard.NewRowBuilder("Runtime")).
		WithPanel(graph("Resident memory", "bytes", "Process resident set size.",
			q{`process_resident_memory_bytes{` + job + `}`, "{{instance}}"})).
		WithPanel(graph("CPU", "percentunit", "CPU seconds per second (1 = one core).",
			q{rate(`process_cpu_seconds_total{` + job + `}`), "{{instance}}"})).
		WithPanel(graph("Goroutines", "short", "Live goroutines.",
			q{`go_goroutines{` + job + `}`, "{{instance}}"}))
}

// stages are the services built on pkg/stream's consuming stage.
var stages = map[string]bool{"ingest-clickstream": true, "validator": true, "bq-writer": true, "dlq-handler": true}

func servicePanels(svc, job string) []cog.Builder[dashboard.Panel] {
	sel := func(metric string, extra ...string) string {
		return metric + "{" + strings.Join(append([]string{job}, extra...), ",") + "}"
	}
	switch svc {
	case "ingest-clickstream":
		return []cog.Builder[dashboard.Panel]{
			graph("Collector requests per second", "reqps", "HTTP collector requests by status code.",
				q{`sum by (code) (` + rate(sel("ecom_collector_requests_total")) + `)`, "{{code}}"}),
			graph("Collector events per second", "reqps", "Events posted to the collector, by result.",
				q{`sum by (result) (` + rate(sel("ecom_collector_events_total")) + `)`, "{{result}}"}),
			graph("Collector request duration", "s", "p99 per status code.",
				q{`histogram_quantile(0.99, sum by (le, code) (` + rate(sel("ecom_collector_request_duration_seconds_bucket")) + `))`, "p99 {{code}}"}),
			graph("Collector in-flight bytes", "bytes", "Request bodies being read.", q{sel("ecom_collector_inflight_bytes"), "{{instance}}"}),
		}
	case "ingest-orders":
		return []cog.Builder[dashboard.Panel]{
			graph("Order versions produced per second", "reqps", "By source: API polls and webhooks.",
				q{`sum by (source) (` + rate(sel("ecom_orders_produced_total")) + `)`, "{{source}}"},
				q{`sum(` + rate(sel("ecom_orders_pages_polled_total")) + `)`, "pages polled"}),
			graph("Orders API errors per second", "reqps", "Failed API requests by status.",
				q{`sum by (status) (` + rate(sel("ecom_orders_api_errors_total")) + `)`, "{{status}}"}),
			graph("Webhook verifications per second", "reqps", "Webhook deliveries by check result.",
				q{`sum by (result) (` + rate(sel("ecom_orders_webhook_verifications_total")) + `)`, "{{result}}"}),
			graph("Cursor lag", "s", "Shop time minus the committed cursor.",
				q{`max(` + sel("ecom_orders_cursor_lag_seconds") + `)`, "lag"}),
			graph("Dead-lettered webhook bodies per second", "reqps", "By reason code.",
				q{`sum by (code) (` + rate(sel("ecom_dead_letters_total")) + `)`, "{{code}}"}),
		}
	case "catalog-sync":
		return []cog.Builder[dashboard.Panel]{
			graph("Changes sent per second", "reqps", "Change records committed, by table, op and source (snapshot or CDC).",
				q{`sum by (table, op, source) (` + rate(sel("ecom_catalog_changes_sent_total")) + `)`, "{{source}} {{table}} {{op}}"},
				q{`sum by (table, op) (` + rate(sel("ecom_catalog_cdc_changes_total")) + `)`, "cdc {{table}} {{op}}"}),
			graph("CDC lag and commit latency", "s", "Now minus the last committed transaction; p99 PostgreSQL commit to Kafka commit.",
				q{`max(` + sel("ecom_catalog_cdc_lag_seconds") + `)`, "lag"},
				q{`histogram_quantile(0.99, sum by (le) (` + rate(sel("ecom_catalog_cdc_commit_latency_seconds_bucket")) + `))`, "commit p99"}),
			graph("Replication slot WAL retained", "bytes", "WAL the slot keeps; over the threshold or lost is flagged.",
				q{`max(` + sel("ecom_catalog_cdc_slot_retained_wal_bytes") + `)`, "retained"}),
			graph("Slot state", "short", "Slot active, WAL over threshold, transactions unconfirmed.",
				q{`max(` + sel("ecom_catalog_cdc_slot_active") + `)`, "active"},
				q{`max(` + sel("ecom_catalog_cdc_slot_wal_over_threshold") + `)`, "over threshold"},
				q{`max(` + sel("ecom_catalog_cdc_unconfirmed") + `)`, "unconfirmed"}),
			graph("Snapshot runs per hour", "short", "Runs finished in the last hour, by outcome.",
				q{`sum by (outcome) (increase(` + sel("ecom_catalog_snapshot_runs_total") + `[1h]))`, "{{outcome}}"}),
			graph("Snapshot rows read per second", "reqps", "Source rows read by snapshots, by table.",
				q{`sum by (table) (` + rate(sel("ecom_catalog_snapshot_rows_read_total")) + `)`, "{{table}}"}),
			graph("Since the last successful snapshot", "s", "Now minus the end of the last successful run.",
				q{`time() - max(` + sel("ecom_catalog_last_success_seconds") + `) and max(` + sel("ecom_catalog_last_success_seconds") + `) > 0`, "age"}),
		}
	case "validator":
		return []cog.Builder[dashboard.Panel]{
			graph("DQ pass rate by rule", "percentunit", "Share of evaluations that passed.",
				q{`(sum by (rule_id) (` + rate(sel("ecom_dq_rule_evaluations_total", `result="pass"`)) + `) or 0 * sum by (rule_id) (` + rate(sel("ecom_dq_rule_evaluations_total")) + `)) / sum by (rule_id) (` + rate(sel("ecom_dq_rule_evaluations_total")) + `)`, "{{rule_id}}"}).Min(0).Max(1),
			graph("Evaluations per second by result", "reqps", "Rule evaluations by result.",
				q{`sum by (result) (` + rate(sel("ecom_dq_rule_evaluations_total")) + `)`, "{{result}}"}),
			graph("Rule sets loaded", "short", "One series per entity's loaded rule-set file and version.",
				q{`max by (entity, file, version) (` + sel("ecom_dq_ruleset_info") + `)`, "{{entity}} {{file}} v{{version}}"}),
			graph("Record processing time", "s", "p99 time to validate one record.",
				q{`histogram_quantile(0.99, sum by (le) (` + rate(sel("ecom_record_process_duration_seconds_bucket")) + `))`, "p99"}),
		}
	case "dlq-handler":
		return []cog.Builder[dashboard.Panel]{
			graph("Dead letters stored per second", "reqps", "Newly stored, by stage and code; re-deliveries and undecodable records.",
				q{`sum by (stage, code) (` + rate(sel("ecom_dlq_dead_letters_stored_total")) + `)`, "{{stage}} {{code}}"},
				q{`sum(` + rate(sel("ecom_dlq_dead_letters_duplicate_total")) + `)`, "duplicate"},
				q{`sum(` + rate(sel("ecom_dlq_undecodable_total")) + `)`, "undecodable"}),
			graph("Dead letters by state", "short", "In the store.",
				q{`sum by (state) (` + sel("ecom_dlq_dead_letters") + `)`, "{{state}}"}),
			graph("Waiting by stage and reason", "short", "Unresolved dead letters by stage and code.",
				q{`sum by (stage, code) (` + sel("ecom_dlq_dead_letters_by_reason", `state=~"new|failed_again"`) + `)`, "{{stage}} {{code}}"}),
			graph("Oldest unresolved", "s", "Age of the oldest unresolved dead letter (0 = none).",
				q{`max(` + sel("ecom_dlq_oldest_unresolved_age_seconds") + `)`, "age"}),
			graph("Replays", "short", "Replays by outcome and replay jobs by state; replay events per second.",
				q{`sum by (outcome) (` + sel("ecom_dlq_replays") + `)`, "replays {{outcome}}"},
				q{`sum by (state) (` + sel("ecom_dlq_replay_jobs") + `)`, "jobs {{state}}"},
				q{`sum by (event) (` + rate(sel("ecom_dlq_replay_events_total")) + `)`, "events {{event}}"}),
			graph("Store write errors per second", "reqps", "Failed writes to the store (each retried, or fatal).",
				q{`sum(` + rate(sel("ecom_dlq_store_write_errors_total")) + `)`, "write errors"}),
			graph("Retention per hour", "short", "Rows the retention deleted and rows whose personal data it purged, in the last hour; runs by outcome.",
				q{`sum(increase(` + sel("ecom_dlq_retention_deleted_total") + `[1h]))`, "deleted"},
				q{`sum(increase(` + sel("ecom_dlq_retention_pii_purged_total") + `[1h]))`, "purged"},
				q{`sum by (outcome) (increase(` + sel("ecom_dlq_retention_runs_total") + `[1h]))`, "runs {{outcome}}"}),
		}
	case "bq-writer":
		return []cog.Builder[dashboard.Panel]{
			graph("Rows per second by table and result", "reqps", "What each write did with its rows.",
				q{`sum by (table, result) (` + rate(sel("ecom_warehouse_rows_total")) + `)`, "{{table}} {{result}}"}),
			graph("Write duration and end-to-end latency", "s", "p99 of one atomic warehouse write; p50/p99 from the platform's receipt to the warehouse commit.",
				q{`histogram_quantile(0.99, sum by (le) (` + rate(sel("ecom_warehouse_write_duration_seconds_bucket")) + `))`, "write p99"},
				q{`histogram_quantile(0.5, sum by (le) (` + rate(sel("ecom_event_latency_seconds_bucket")) + `))`, "latency p50"},
				q{`histogram_quantile(0.99, sum by (le) (` + rate(sel("ecom_event_latency_seconds_bucket")) + `))`, "latency p99"}),
			graph("Freshness", "s", "Age of the newest committed row, by table.",
				q{`time() - max by (table) (` + sel("ecom_warehouse_newest_row_timestamp_seconds") + `)`, "{{table}}"}),
			graph("Commit failures per second", "reqps", "BigQuery: partition commits to Kafka that failed after a written batch.",
				q{`sum(` + rate(sel("ecom_warehouse_commit_failures_total")) + `)`, "failures"}),
			graph("Cost per day (USD)", "currencyUSD", "Appends by table and item at the current rate (x 86400), storage by table.",
				q{`sum by (table, item) (` + rate(sel("ecom_warehouse_cost_usd_total")) + `) * 86400`, "{{item}} {{table}}"},
				q{`sum by (table) (` + sel("ecom_warehouse_storage_cost_usd_per_day") + `)`, "storage {{table}}"}),
			graph("Warehouse API calls per second", "reqps", "By API.",
				q{`sum by (api) (` + rate(sel("ecom_warehouse_api_calls_total")) + `)`, "{{api}}"}),
			graph("Bytes written and stored", "bytes", "Bytes inserted per minute; bytes stored at the last refresh.",
				q{`sum by (table) (` + rate(sel("ecom_warehouse_bytes_total")) + `) * 60`, "written/min {{table}}"},
				q{`sum by (table) (` + sel("ecom_warehouse_stored_bytes") + `)`, "stored {{table}}"}),
		}
	}
	return nil
}
