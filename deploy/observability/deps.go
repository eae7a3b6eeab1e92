package observability

import (
	// The dashboards' and rules' checks parse PromQL and Grafana JSON.
	_ "github.com/grafana/grafana-foundation-sdk/go/dashboard"
	_ "github.com/prometheus/prometheus/promql/parser"
	_ "go.yaml.in/yaml/v3"
)
