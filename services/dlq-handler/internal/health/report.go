package health

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Status is a traffic light.
type Status string

// Statuses, from best to worst (Worst orders them so).
const (
	Green   Status = "green"
	Amber   Status = "amber"
	Unknown Status = "unknown" // monitoring not configured or unreachable: never shown as green
	Red     Status = "red"
)

var rank = map[Status]int{Green: 0, Amber: 1, Unknown: 2, Red: 3}

// Label is the status as the page writes it beside its colour.
func (s Status) Label() string {
	switch s {
	case Green:
		return "Healthy"
	case Amber:
		return "Degraded"
	case Red:
		return "Failing"
	default:
		return "Unknown"
	}
}

// Monitoring says whether the numbers of a report come from Prometheus.
type Monitoring string

// Monitoring states.
const (
	MonitoringOK            Monitoring = "ok"
	MonitoringNotConfigured Monitoring = "not_configured"
	MonitoringUnreachable   Monitoring = "unreachable"
)

// Report is the health page's content (GET /v1/health).
type Report struct {
	GeneratedAt time.Time  `json:"generated_at"`
	Monitoring  Monitoring `json:"monitoring"`
	// MonitoringError is why Prometheus did not answer (no URL, no
	// credentials: the transport's or Prometheus's words).
	MonitoringError string          `json:"monitoring_error,omitempty"`
	Overall         Overall         `json:"overall"`
	Services        []ServiceHealth `json:"services"`
	Throughput      []Throughput    `json:"throughput"`
	Latency         Latency         `json:"latency"`
	DQ              []DQScore       `json:"dq"`
	DeadLetters     DeadLetters     `json:"dead_letters"`
	// CostTodayUSD is the warehouse's cost of the last 24 hours (the
	// contract's query); nil = no data.
	CostTodayUSD *float64 `json:"cost_today_usd"`
	Links        Links    `json:"links"`
	// Thresholds are the amber thresholds the statuses were rated with.
	Thresholds Thresholds `json:"thresholds"`
	// Errors lists the panels whose query failed while the statuses'
	// queries answered (e.g. "latency: prometheus: query_failed: ...").
	Errors []string `json:"errors,omitempty"`
}

// Overall is the worst status of the services, with its reason.
type Overall struct {
	Status Status `json:"status"`
	Reason string `json:"reason"`
}

// ServiceHealth is one service's status and the figures it was rated on
// (nil: no data).
type ServiceHealth struct {
	Name      string   `json:"name"`
	Status    Status   `json:"status"`
	Reason    string   `json:"reason"`
	Targets   int      `json:"targets"`    // scrape targets found
	TargetsUp int      `json:"targets_up"` // of them up
	Ready     *bool    `json:"ready"`
	Failing   []string `json:"failing_checks,omitempty"`
	Lag       *float64 `json:"max_lag"`
	ErrorRate *float64 `json:"error_rate"` // share of records dead-lettered over 5 minutes
	Runbook   string   `json:"runbook_url"`
}

// Throughput is one source's events per minute (nil: no data).
type Throughput struct {
	Source    string   `json:"source"`
	PerMinute *float64 `json:"per_minute"`
}

// Latency is the end-to-end latency (ecom_event_latency_seconds) over 5
// minutes; nil = no events.
type Latency struct {
	P50 *float64 `json:"p50_seconds"`
	P99 *float64 `json:"p99_seconds"`
}

// DQScore is one entity's rule evaluations passed / evaluated over Window.
type DQScore struct {
	Entity    string  `json:"entity"`
	Score     float64 `json:"score"`
	Evaluated float64 `json:"evaluated"`
	Window    string  `json:"window"`
}

// DeadLetters are the dead letters waiting (state new or failed_again),
// from the store itself.
type DeadLetters struct {
	Waiting int64        `json:"waiting"`
	ByStage []StageCount `json:"by_stage"`
	Oldest  *time.Time   `json:"oldest_failed_at"`
	Error   string       `json:"error,omitempty"` // the store did not answer
	Link    string       `json:"console_url"`
	States  []string     `json:"states"`
}

// StageCount is one stage's dead letters waiting.
type StageCount struct {
	Stage string `json:"stage"`
	Count int64  `json:"count"`
}

// Links are where the page sends a person next.
type Links struct {
	Traces      string `json:"traces,omitempty"` // Jaeger's search; empty = JAEGER_URL not set
	DeadLetters string `json:"dead_letters"`
	Runbooks    string `json:"runbooks"`
}

// Thresholds are the configured amber thresholds.
type Thresholds struct {
	LagAmber       float64 `json:"lag_amber"`
	ErrorRateAmber float64 `json:"error_rate_amber"`
}

// figures are what the status queries returned, per job.
type figures struct {
	targets, targetsUp map[string]int
	downInstances      map[string][]string
	ready              map[string]float64
	failing            map[string][]string
	lag, errorRate     map[string]float64
}

// rate rates every job of cfg from f, per the contract: red = down (up
// == 0 or no target) or not ready; amber = lag or error rate at or above
// its threshold, or readiness not reported; green otherwise.
func rate(cfg Config, f figures) []ServiceHealth {
	out := make([]ServiceHealth, 0, len(cfg.Jobs))
	for _, job := range cfg.Jobs {
		s := ServiceHealth{Name: job, Targets: f.targets[job], TargetsUp: f.targetsUp[job], Runbook: RunbookBase + job + ".md"}
		if v, ok := f.lag[job]; ok {
			s.Lag = &v
		}
		if v, ok := f.errorRate[job]; ok {
			s.ErrorRate = &v
		}
		ready, reported := f.ready[job]
		if reported {
			r := ready == 1
			s.Ready = &r
		}
		s.Failing = f.failing[job]
		var amber []string
		switch {
		case s.Targets == 0:
			s.Status, s.Reason = Red, "down: no scrape target"
		case s.TargetsUp < s.Targets:
			s.Status, s.Reason = Red, fmt.Sprintf("down: scrape of %s failing", strings.Join(f.downInstances[job], ", "))
			// Its rates still average samples from before it went down:
			// not figures of now.
			s.Lag, s.ErrorRate = nil, nil
		case reported && ready != 1:
			s.Status, s.Reason = Red, "not ready"
			if len(s.Failing) > 0 {
				s.Reason += ": " + strings.Join(s.Failing, ", ") + " failing"
			}
		default:
			if !reported {
				amber = append(amber, "readiness not reported (no ecom_ready)")
			}
			if s.Lag != nil && *s.Lag >= cfg.LagAmber {
				amber = append(amber, fmt.Sprintf("lag %s > %s", grouped(*s.Lag), grouped(cfg.LagAmber)))
			}
			if s.ErrorRate != nil && *s.ErrorRate >= cfg.ErrorAmber {
				amber = append(amber, fmt.Sprintf("dead-lettered %s > %s", percent(*s.ErrorRate), percent(cfg.ErrorAmber)))
			}
			if len(amber) > 0 {
				s.Status, s.Reason = Amber, strings.Join(amber, "; ")
			} else {
				s.Status, s.Reason = Green, greenReason(s)
			}
		}
		out = append(out, s)
	}
	return out
}

func greenReason(s ServiceHealth) string {
	parts := []string{"up", "ready"}
	if s.Lag != nil {
		parts = append(parts, "lag "+grouped(*s.Lag))
	}
	if s.ErrorRate != nil {
		parts = append(parts, "dead-lettered "+percent(*s.ErrorRate))
	}
	return strings.Join(parts, ", ")
}

// unknown rates every job unknown with reason: no monitoring, no rating.
func unknown(cfg Config, reason string) []ServiceHealth {
	out := make([]ServiceHealth, len(cfg.Jobs))
	for i, job := range cfg.Jobs {
		out[i] = ServiceHealth{Name: job, Status: Unknown, Reason: reason, Runbook: RunbookBase + job + ".md"}
	}
	return out
}

// overall is the worst of the services, with that service's reason (and
// how many more share the status).
func overall(services []ServiceHealth) Overall {
	if len(services) == 0 {
		return Overall{Status: Unknown, Reason: "no services configured"}
	}
	worst := slices.MaxFunc(services, func(a, b ServiceHealth) int { return rank[a.Status] - rank[b.Status] })
	var names []string
	for _, s := range services {
		if s.Status == worst.Status {
			names = append(names, s.Name)
		}
	}
	switch {
	case worst.Status == Green:
		return Overall{Status: Green, Reason: fmt.Sprintf("all %d services green", len(services))}
	case worst.Status == Unknown && len(names) == len(services):
		return Overall{Status: Unknown, Reason: worst.Reason}
	case len(names) == 1:
		return Overall{Status: worst.Status, Reason: worst.Name + ": " + worst.Reason}
	default:
		return Overall{Status: worst.Status, Reason: fmt.Sprintf("%s: %s (and %s)", worst.Name, worst.Reason, strings.Join(names[1:], ", "))}
	}
}
