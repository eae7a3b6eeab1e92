package console

import (
	"context"
	"math"
	"net/http"
	"strconv"
	"strings"

	"github.com/ecomstream/platform/services/dlq-handler/internal/health"
)

// HealthPath is the pipeline health page in the console; the service's
// GET /health redirects here (the session cookie is scoped to Prefix).
const HealthPath = Prefix + "/health"

// HealthRefreshSeconds is how often the health page reloads itself (a
// meta refresh: no JavaScript).
const HealthRefreshSeconds = 10

// HealthReporter builds the health report; *health.Checker is one.
type HealthReporter interface {
	Report(ctx context.Context) health.Report
}

type healthData struct {
	R       health.Report
	Refresh int
}

// healthPage renders the pipeline health report for any signed-in role.
func (s *server) healthPage(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Health == nil {
		s.errorPage(w, r, http.StatusNotFound, "The health page is not enabled in this build.")
		return
	}
	rep := s.cfg.Health.Report(r.Context())
	s.render(w, r, http.StatusOK, "health", page{Title: "Pipeline health", Nav: "health", Refresh: HealthRefreshSeconds,
		Data: healthData{R: rep, Refresh: HealthRefreshSeconds}})
}

// healthFuncs format the report's figures; nil is "no data".
var healthFuncs = map[string]any{
	"statusMark": func(s health.Status) string {
		switch s {
		case health.Green:
			return "✔"
		case health.Amber:
			return "▲"
		case health.Red:
			return "✖"
		default:
			return "?"
		}
	},
	"count": func(f *float64) string {
		if f == nil {
			return "—"
		}
		return groupDigits(*f)
	},
	"rate": func(f *float64) string {
		if f == nil {
			return "—"
		}
		if *f < 10 {
			return strconv.FormatFloat(*f, 'f', 1, 64)
		}
		return groupDigits(*f)
	},
	"share": func(f *float64) string {
		if f == nil {
			return "—"
		}
		return strconv.FormatFloat(*f*100, 'f', 2, 64) + "%"
	},
	"score": func(f float64) string { return strconv.FormatFloat(f*100, 'f', 2, 64) + "%" },
	"secs": func(f *float64) string {
		switch {
		case f == nil:
			return "—"
		case *f < 1:
			return strconv.FormatFloat(*f*1000, 'f', 0, 64) + " ms"
		default:
			return strconv.FormatFloat(*f, 'f', 2, 64) + " s"
		}
	},
	"usd": func(f *float64) string {
		if f == nil {
			return "no data"
		}
		return "$" + strconv.FormatFloat(*f, 'f', 4, 64)
	},
	"int": func(n int64) string { return groupDigits(float64(n)) },
	"ptr": func(f float64) *float64 { return &f },
}

// groupDigits writes a whole number with groups of thousands: 12 340.
func groupDigits(f float64) string {
	n := int64(math.Round(f))
	s := strconv.FormatInt(max(n, -n), 10)
	var b strings.Builder
	if n < 0 {
		b.WriteByte('-')
	}
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteRune('\u00a0') // no break inside a number
		}
		b.WriteRune(r)
	}
	return b.String()
}
