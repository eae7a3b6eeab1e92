package rules

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	rulefiles "github.com/ecomstream/platform/services/validator/rules"
)

// Config holds the parameters the rule files reference (the
// validator's documented environment variables).
type Config struct {
	AllowedEventTypes []string      // ${ALLOWED_EVENT_TYPES}: event_type must be one of these
	MaxFutureSkew     time.Duration // ${MAX_FUTURE_SKEW}: event_timestamp at most this far ahead of received_at, and received_at of the record's timestamp
	MaxEventAge       time.Duration // ${MAX_EVENT_AGE}: event_timestamp at most this far behind received_at
	OrderMaxAhead     time.Duration // ${ORDER_MAX_AHEAD}: an order's updated_at at most this far ahead of received_at
	OrderMaxLag       time.Duration // ${ORDER_MAX_LAG}: an order's updated_at at most this far behind received_at
	// ${PRODUCT_MAX_PRICE_MINOR}: the highest list price (minor units) a product upsert may carry
	ProductMaxPriceMinor int64
}

// Params returns the ${NAME} values of cfg.
func (cfg Config) Params() Params {
	return Params{
		"ALLOWED_EVENT_TYPES":     strings.Join(cfg.AllowedEventTypes, ","),
		"MAX_FUTURE_SKEW":         cfg.MaxFutureSkew.String(),
		"MAX_EVENT_AGE":           cfg.MaxEventAge.String(),
		"ORDER_MAX_AHEAD":         cfg.OrderMaxAhead.String(),
		"ORDER_MAX_LAG":           cfg.OrderMaxLag.String(),
		"PRODUCT_MAX_PRICE_MINOR": strconv.FormatInt(cfg.ProductMaxPriceMinor, 10),
	}
}

// Embedded loads the rule files built into the binary.
func Embedded(params Params) (Sets, error) { return Load(rulefiles.FS, "", params) }

// ClickEvents returns the embedded click_event rule set under cfg.
func ClickEvents(cfg Config) (*Set, error) { return embeddedSet(cfg, "click_event") }

// Orders returns the embedded order rule set under cfg.
func Orders(cfg Config) (*Set, error) { return embeddedSet(cfg, "order") }

// Products returns the embedded product_change rule set under cfg.
func Products(cfg Config) (*Set, error) { return embeddedSet(cfg, "product_change") }

// Customers returns the embedded customer_change rule set under cfg.
func Customers(cfg Config) (*Set, error) { return embeddedSet(cfg, "customer_change") }

func embeddedSet(cfg Config, entity string) (*Set, error) {
	sets, err := Embedded(cfg.Params())
	if err != nil {
		return nil, err
	}
	s, ok := sets[entity]
	if !ok {
		return nil, fmt.Errorf("no %s rule file", entity)
	}
	return s, nil
}
