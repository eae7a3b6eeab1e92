package runs

import (
	"strings"

	"github.com/robfig/cron/v3"

	"github.com/ecomstream/platform/pkg/config"
)

// ParseSchedule reads CATALOG_SNAPSHOT_SCHEDULE: a standard five-field cron
// expression or a descriptor (@hourly, @daily, @every 30m), evaluated in
// UTC; "" or "off" is no schedule (nil), for an external scheduler (Airflow)
// that starts runs with POST /v1/sync.
func ParseSchedule(s string) (cron.Schedule, error) {
	s = strings.TrimSpace(s)
	if s == "" || strings.EqualFold(s, "off") {
		return nil, nil
	}
	if strings.HasPrefix(s, "TZ=") || strings.HasPrefix(s, "CRON_TZ=") {
		return nil, config.Errorf("CATALOG_SNAPSHOT_SCHEDULE", "no time zone prefix: the schedule is evaluated in UTC")
	}
	sched, err := cron.ParseStandard(s)
	if err != nil {
		return nil, config.Errorf("CATALOG_SNAPSHOT_SCHEDULE", "%q is not a cron expression (5 fields or @hourly, @daily, @every 30m, off): %v", s, err)
	}
	return sched, nil
}
