package health

import (
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ecomstream/platform/pkg/config"
)

// Services are the platform's services, each a Prometheus job of its name
// (the contract's scrape jobs), in pipeline order.
var Services = []string{"ingest-clickstream", "ingest-orders", "catalog-sync", "validator", "bq-writer", "dlq-handler"}

// RunbookBase is where the runbooks are read: <RunbookBase><service>.md.
const RunbookBase = "https://github.com/ecomstream/platform/blob/main/docs/runbooks/"

// Config is the health page's configuration (part of dlq-handler's).
type Config struct {
	PrometheusURL string        `env:"PROMETHEUS_URL" default:"" usage:"Prometheus the health page (/health, /v1/health) queries, e.g. http://127.0.0.1:19090; empty = the page says monitoring is not configured"`
	Timeout       time.Duration `env:"PROMETHEUS_TIMEOUT" default:"5s" usage:"timeout of each of the health page's Prometheus queries (they run in parallel) and of its dead-letters-waiting query; a Prometheus that does not answer in time shows as unreachable"`
	Matchers      []string      `env:"HEALTH_PROMETHEUS_MATCHERS" default:"" usage:"label=value pairs added to every query's selectors, e.g. slice=e2e-1234 when one Prometheus scrapes several deployments; empty = none"`
	Jobs          []string      `env:"HEALTH_SERVICES" default:"ingest-clickstream,ingest-orders,catalog-sync,validator,bq-writer,dlq-handler" usage:"the services (Prometheus jobs) the health page rates; a listed service without a scrape target is red"`
	LagAmber      float64       `env:"HEALTH_LAG_AMBER" default:"10000" usage:"a service whose largest consumer lag (records, any group and partition) reaches this is amber"`
	ErrorAmber    float64       `env:"HEALTH_ERROR_RATE_AMBER" default:"0.01" usage:"a service whose share of records dead-lettered over the last 5 minutes reaches this (0.01 = 1%) is amber"`
	DQWindow      time.Duration `env:"HEALTH_DQ_WINDOW" default:"1h" usage:"window of the DQ score per entity (rule evaluations passed / evaluated)"`
	JaegerURL     string        `env:"JAEGER_URL" default:"" usage:"Jaeger's UI (e.g. http://127.0.0.1:16686); the health page links to its trace search; empty = no link"`
	CacheFor      time.Duration `env:"HEALTH_CACHE" default:"2s" usage:"how long one health report is reused: however many browsers refresh the page, Prometheus and the store see at most one set of queries per this"`
}

var (
	labelNameRE  = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)
	labelValueRE = regexp.MustCompile(`^[A-Za-z0-9_.:/@+-]*$`)
	jobRE        = regexp.MustCompile(`^[a-z][a-z0-9-]*$`)
)

// Validate implements config.Validator.
func (c *Config) Validate() error {
	if c.PrometheusURL != "" {
		if err := config.HTTPURL("PROMETHEUS_URL", c.PrometheusURL); err != nil {
			return err
		}
	}
	if c.JaegerURL != "" {
		if err := config.HTTPURL("JAEGER_URL", c.JaegerURL); err != nil {
			return err
		}
	}
	if _, err := c.matchers(); err != nil {
		return err
	}
	if len(c.Jobs) == 0 {
		return config.Errorf("HEALTH_SERVICES", "must name at least one service")
	}
	for i, j := range c.Jobs {
		if !jobRE.MatchString(j) {
			return config.Errorf("HEALTH_SERVICES", "%q is not a service name (lower case letters, digits and -)", j)
		}
		if slices.Contains(c.Jobs[:i], j) {
			return config.Errorf("HEALTH_SERVICES", "%q is listed twice", j)
		}
	}
	if math.IsNaN(c.LagAmber) || c.LagAmber <= 0 {
		return config.Errorf("HEALTH_LAG_AMBER", "must be a positive number of records, got %v", c.LagAmber)
	}
	if math.IsNaN(c.ErrorAmber) || c.ErrorAmber <= 0 || c.ErrorAmber > 1 {
		return config.Errorf("HEALTH_ERROR_RATE_AMBER", "must be a share in (0, 1], got %v", c.ErrorAmber)
	}
	return config.First(
		config.Between("PROMETHEUS_TIMEOUT", c.Timeout, 100*time.Millisecond, time.Minute),
		config.Between("HEALTH_DQ_WINDOW", c.DQWindow, time.Minute, 31*24*time.Hour),
		config.Between("HEALTH_CACHE", c.CacheFor, 0, time.Minute))
}

// matchers renders HEALTH_PROMETHEUS_MATCHERS as PromQL label matchers
// (`name="value"`), checked: a value is quoted here, never pasted.
func (c *Config) matchers() ([]string, error) {
	var out []string
	seen := map[string]bool{}
	for _, m := range c.Matchers {
		k, v, ok := strings.Cut(m, "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		switch {
		case !ok || !labelNameRE.MatchString(k) || strings.HasPrefix(k, "__"):
			return nil, config.Errorf("HEALTH_PROMETHEUS_MATCHERS", "%q is not a label=value pair", m)
		case !labelValueRE.MatchString(v):
			return nil, config.Errorf("HEALTH_PROMETHEUS_MATCHERS", "the value of %s may hold letters, digits and _.:/@+- only", k)
		case seen[k] || k == "job":
			return nil, config.Errorf("HEALTH_PROMETHEUS_MATCHERS", "label %q given twice (job is the page's own)", k)
		}
		seen[k] = true
		out = append(out, k+"="+strconv.Quote(v))
	}
	return out, nil
}

// grouped writes a count with thin groups of thousands for a reason:
// 12340 -> "12 340".
func grouped(f float64) string {
	n := int64(math.Round(f))
	s := strconv.FormatInt(max(n, -n), 10)
	var b strings.Builder
	if n < 0 {
		b.WriteByte('-')
	}
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteRune(' ')
		}
		b.WriteRune(r)
	}
	return b.String()
}

func percent(f float64) string {
	p := f * 100
	switch {
	case p == 0:
		return "0%"
	case p < 0.1:
		return "<0.1%"
	case p < 10:
		return strconv.FormatFloat(p, 'f', 1, 64) + "%"
	default:
		return fmt.Sprintf("%.0f%%", p)
	}
}
