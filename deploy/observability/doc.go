// Package observability holds the platform's monitoring as code and its
// checks: the Prometheus alerting and recording rules (deploy/prometheus),
// the Grafana dashboards (deploy/grafana) and the tests that hold them to the
// services' real metrics and to the runbooks they link.
package observability
