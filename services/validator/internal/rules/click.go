package rules

import (
	"fmt"
	"strings"
	"time"

	rulefiles "github.com/ecomstream/platform/services/validator/rules"
)

// Config holds the parameters the click rule file references (the
// validator's documented environment variables).
type Config struct {
	AllowedEventTypes []string      // ${ALLOWED_EVENT_TYPES}: event_type must be one of these
	MaxFutureSkew     time.Duration // ${MAX_FUTURE_SKEW}: event_timestamp at most this far ahead of received_at, and received_at of the record's timestamp
	MaxEventAge       time.Duration // ${MAX_EVENT_AGE}: event_timestamp at most this far behind received_at
}

// Params returns the ${NAME} values of cfg.
func (cfg Config) Params() Params {
	return Params{
		"ALLOWED_EVENT_TYPES": strings.Join(cfg.AllowedEventTypes, ","),
		"MAX_FUTURE_SKEW":     cfg.MaxFutureSkew.String(),
		"MAX_EVENT_AGE":       cfg.MaxEventAge.String(),
	}
}

// Embedded loads the rule files built into the binary.
func Embedded(params Params) (Sets, error) { return Load(rulefiles.FS, "", params) }

// ClickEvents returns the embedded click_event rule set under cfg.
func ClickEvents(cfg Config) (*Set, error) {
	sets, err := Embedded(cfg.Params())
	if err != nil {
		return nil, err
	}
	s, ok := sets["click_event"]
	if !ok {
		return nil, fmt.Errorf("no click_event rule file")
	}
	return s, nil
}
