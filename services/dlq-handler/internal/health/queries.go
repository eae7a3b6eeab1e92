package health

import (
	"regexp"
	"strconv"
	"strings"
	"time"
)

// The page's queries are this fixed set, built once from the config: the
// browser never sends PromQL, and the only values pasted in are the
// checked service names and HEALTH_PROMETHEUS_MATCHERS, each quoted.
type queries struct {
	Up, Ready, ReadyChecks, Lag, ErrorRate string
	Throughput                             []sourceQuery
	P50, P99                               string
	DQPass, DQAll                          string
	Cost                                   string
}

// sourceQuery is one source's events per minute.
type sourceQuery struct{ Source, Query string }

// buildQueries renders the queries; cfg is valid.
func buildQueries(cfg Config) queries {
	extra, _ := cfg.matchers()
	sel := func(metric string, matchers ...string) string {
		return metric + "{" + strings.Join(append(matchers, extra...), ",") + "}"
	}
	alts := make([]string, len(cfg.Jobs))
	for i, j := range cfg.Jobs {
		alts[i] = regexp.QuoteMeta(j)
	}
	job := "job=~" + strconv.Quote(strings.Join(alts, "|"))
	perMin := func(metric string, matchers ...string) string {
		return "sum(rate(" + sel(metric, matchers...) + "[1m])) * 60"
	}
	dq := "label_replace(increase(%s[" + promDuration(cfg.DQWindow) + `]), "entity", "$1", "rule_id", "([^.]+)[.].*")`
	return queries{
		Up:          sel("up", job),
		Ready:       "min by (job) (" + sel("ecom_ready", job) + ")",
		ReadyChecks: "min by (job, check) (" + sel("ecom_ready_check", job) + ") == 0",
		Lag:         "max by (job) (" + sel("ecom_consumer_lag", job) + ")",
		// A service that never dead-lettered has no dead_lettered series:
		// "or 0 * all" makes its share 0, not missing.
		ErrorRate: "(sum by (job) (rate(" + sel("ecom_records_processed_total", job, `outcome="dead_lettered"`) + "[5m]))" +
			" or 0 * sum by (job) (rate(" + sel("ecom_records_processed_total", job) + "[5m])))" +
			" / sum by (job) (rate(" + sel("ecom_records_processed_total", job) + "[5m]))",
		Throughput: []sourceQuery{
			{"clickstream (Kafka)", perMin("ecom_records_processed_total", `stage="ingest-clickstream"`)},
			{"clickstream (HTTP collector)", perMin("ecom_collector_events_total", `result="accepted"`)},
			{"orders", perMin("ecom_orders_produced_total")},
			{"catalog", perMin("", `__name__=~"ecom_catalog_changes_sent_total|ecom_catalog_cdc_changes_total"`)},
		},
		P50:    "histogram_quantile(0.5, sum by (le) (rate(" + sel("ecom_event_latency_seconds_bucket") + "[5m])))",
		P99:    "histogram_quantile(0.99, sum by (le) (rate(" + sel("ecom_event_latency_seconds_bucket") + "[5m])))",
		DQPass: "sum by (entity) (" + strings.Replace(dq, "%s", sel("ecom_dq_rule_evaluations_total", `result="pass"`), 1) + ")",
		DQAll:  "sum by (entity) (" + strings.Replace(dq, "%s", sel("ecom_dq_rule_evaluations_total"), 1) + ")",
		// The contract's "cost today".
		// Either side alone (no storage figure yet, or no appends) still
		// gives a figure.
		Cost: "(sum(increase(" + sel("ecom_warehouse_cost_usd_total") + "[24h])) or vector(0)) + (sum(" + sel("ecom_warehouse_storage_cost_usd_per_day") + ") or vector(0))",
	}
}

// window writes d for a person: 1h, 30m, 90s.
func window(d time.Duration) string {
	switch {
	case d%time.Hour == 0:
		return strconv.FormatInt(int64(d/time.Hour), 10) + "h"
	case d%time.Minute == 0:
		return strconv.FormatInt(int64(d/time.Minute), 10) + "m"
	default:
		return promDuration(d)
	}
}

// promDuration writes d as a PromQL duration (whole seconds).
func promDuration(d time.Duration) string {
	return strconv.FormatInt(int64(d/time.Second), 10) + "s"
}
