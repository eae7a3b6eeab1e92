package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ecomstream/platform/deploy/local/seed"
	"github.com/ecomstream/platform/deploy/local/storefront"
)

type config struct {
	addr            string
	token           string
	pageTokenSecret string
	seed            uint64
	idSeed          uint64
	customers       int
	products        int
	rate            float64
	burst           bool
	burstFactor     float64
	broken          float64
	late            float64
	maxLateness     time.Duration
	speed           float64
	start           time.Time
	faultRate       float64
	faults          []string
	slowDelay       time.Duration
	retryAfter      int
	webhookURL      string
	webhookSecret   string
	webhookDup      float64
	webhookReorder  float64
	webhookAttempts int
	webhookBackoff  time.Duration
	versionsOut     string
	tick            time.Duration
	maxOrders       int
}

// parseConfig reads flags; every flag has an environment variable
// (STOREFRONT_ + the flag name in upper case, dashes as underscores) that
// sets its default, so the stack and the tests can configure it either way.
func parseConfig(args []string, getenv func(string) string, usage io.Writer) (config, error) {
	fs := flag.NewFlagSet("storefront", flag.ContinueOnError)
	fs.SetOutput(usage)
	fs.Usage = func() {
		fmt.Fprint(usage, `storefront simulates a shop's orders API (GET /v1/orders) and its signed webhooks.

Usage: storefront [flags]

Every flag can also be set with STOREFRONT_<FLAG> (upper case, - as _),
e.g. STOREFRONT_WEBHOOK_URL. Flags win over the environment.

Flags:
`)
		fs.PrintDefaults()
	}
	var errs []error
	env := func(name, def string) string {
		if v := getenv("STOREFRONT_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))); v != "" {
			return v
		}
		return def
	}
	str := func(p *string, name, def, help string) { fs.StringVar(p, name, env(name, def), help) }
	// secret is str for a secret: the usage text (printed on a bad flag, often
	// into a log) shows the built-in default, never the environment's value;
	// the environment's value is applied after parsing unless the flag was given.
	var secrets []func(set map[string]bool)
	secret := func(p *string, name, def, help string) {
		fs.StringVar(p, name, def, help+" (or $STOREFRONT_"+strings.ToUpper(strings.ReplaceAll(name, "-", "_"))+")")
		secrets = append(secrets, func(set map[string]bool) {
			if !set[name] {
				*p = env(name, def)
			}
		})
	}
	num := func(p *float64, name string, def float64, help string) {
		v, err := strconv.ParseFloat(env(name, strconv.FormatFloat(def, 'g', -1, 64)), 64)
		if err != nil {
			errs = append(errs, fmt.Errorf("STOREFRONT_%s: not a number", strings.ToUpper(strings.ReplaceAll(name, "-", "_"))))
		}
		fs.Float64Var(p, name, v, help)
	}
	integer := func(p *int, name string, def int, help string) {
		v, err := strconv.Atoi(env(name, strconv.Itoa(def)))
		if err != nil {
			errs = append(errs, fmt.Errorf("STOREFRONT_%s: not an integer", strings.ToUpper(strings.ReplaceAll(name, "-", "_"))))
		}
		fs.IntVar(p, name, v, help)
	}
	u64 := func(p *uint64, name string, def uint64, help string) {
		v, err := strconv.ParseUint(env(name, strconv.FormatUint(def, 10)), 10, 64)
		if err != nil {
			errs = append(errs, fmt.Errorf("STOREFRONT_%s: not an unsigned integer", strings.ToUpper(strings.ReplaceAll(name, "-", "_"))))
		}
		fs.Uint64Var(p, name, v, help)
	}
	dur := func(p *time.Duration, name string, def time.Duration, help string) {
		v, err := time.ParseDuration(env(name, def.String()))
		if err != nil {
			errs = append(errs, fmt.Errorf("STOREFRONT_%s: not a duration", strings.ToUpper(strings.ReplaceAll(name, "-", "_"))))
		}
		fs.DurationVar(p, name, v, help)
	}
	var c config
	var faults, start, burst string
	str(&c.addr, "addr", "127.0.0.1:8097", "listen address")
	secret(&c.token, "token", "storefront-dev-token", "bearer token the API requires")
	secret(&c.pageTokenSecret, "page-token-secret", "", "HMAC key of page tokens; empty = random (tokens do not survive a restart)")
	u64(&c.seed, "seed", 1, "random seed of the order stream (same seed and clock, same orders)")
	u64(&c.idSeed, "id-seed", seed.DefaultSeed, "seed number of the shared customers and products")
	integer(&c.customers, "customers", seed.DefaultCustomers, "customers in the id seed")
	integer(&c.products, "products", seed.DefaultProducts, "products in the id seed")
	num(&c.rate, "rate", storefront.DefaultRatePerMinute, "new orders per wall-clock minute; 0 = none (only orders placed with POST /v1/admin/orders)")
	str(&burst, "burst", "false", "start in burst mode (rate x burst-factor); toggle with POST /v1/admin/burst")
	num(&c.burstFactor, "burst-factor", storefront.DefaultBurstFactor, "rate multiplier in burst mode")
	num(&c.broken, "broken", storefront.DefaultBrokenFraction, "fraction of deliberately broken orders")
	num(&c.late, "late", storefront.DefaultLateFraction, "fraction of changes stamped in the past")
	dur(&c.maxLateness, "max-lateness", storefront.DefaultMaxLateness, "how far in the past (shop time) a late change may be stamped")
	num(&c.speed, "speed", 1, "shop seconds per wall second (3600: an hour of shop life per second)")
	str(&start, "start", "", "shop time at start, RFC 3339; empty = now")
	num(&c.faultRate, "fault-rate", storefront.DefaultFaultRate, "fraction of GET /v1/orders requests that fail")
	str(&faults, "faults", "", "comma-separated fault kinds for -fault-rate; empty = all of "+strings.Join(storefront.FaultKinds(), ","))
	dur(&c.slowDelay, "slow-delay", storefront.DefaultSlowDelay, "delay of a slow response")
	integer(&c.retryAfter, "retry-after", storefront.DefaultRetryAfter, "Retry-After seconds on 429 and 503")
	str(&c.webhookURL, "webhook-url", "", "POST every order change here; empty = no webhooks")
	secret(&c.webhookSecret, "webhook-secret", "", "HMAC-SHA256 key of the webhook signature (required with -webhook-url)")
	num(&c.webhookDup, "webhook-duplicates", storefront.DefaultDuplicateFraction, "fraction of webhook deliveries sent twice")
	num(&c.webhookReorder, "webhook-reorder", storefront.DefaultReorderFraction, "fraction of webhook deliveries held back (arrive out of order)")
	integer(&c.webhookAttempts, "webhook-attempts", storefront.DefaultWebhookAttempts, "attempts per webhook delivery before it is abandoned")
	dur(&c.webhookBackoff, "webhook-max-backoff", storefront.DefaultWebhookMaxBackoff, "cap of the webhook retry backoff")
	str(&c.versionsOut, "versions-out", "", "append every order version made to this JSON Lines file")
	dur(&c.tick, "tick", 50*time.Millisecond, "how often the simulator advances")
	integer(&c.maxOrders, "max-orders", 0, "stop the simulation's own arrivals after this many orders; 0 = never (POST /v1/admin/orders still places orders)")
	if err := errors.Join(errs...); err != nil {
		return config{}, err
	}
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	for _, apply := range secrets {
		apply(set)
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	var err error
	if c.burst, err = strconv.ParseBool(burst); err != nil {
		return config{}, fmt.Errorf("-burst %q: not a boolean", burst)
	}
	if start != "" {
		if c.start, err = time.Parse(time.RFC3339, start); err != nil {
			return config{}, fmt.Errorf("-start %q: not an RFC 3339 time", start)
		}
	}
	for _, k := range strings.Split(faults, ",") {
		if k = strings.TrimSpace(k); k != "" {
			c.faults = append(c.faults, k)
		}
	}
	return c, c.validate()
}

func (c config) validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.addr == "" {
		bad("-addr (STOREFRONT_ADDR) is empty")
	}
	if c.token == "" {
		bad("-token (STOREFRONT_TOKEN) is empty")
	}
	if c.customers < 1 || c.products < 1 {
		bad("-customers %d and -products %d: must be at least 1", c.customers, c.products)
	}
	if c.rate < 0 || c.burstFactor < 1 {
		bad("-rate %g must not be negative and -burst-factor %g must be at least 1", c.rate, c.burstFactor)
	}
	for name, f := range map[string]float64{"-broken": c.broken, "-late": c.late, "-fault-rate": c.faultRate, "-webhook-duplicates": c.webhookDup, "-webhook-reorder": c.webhookReorder} {
		if !(f >= 0 && f <= 1) {
			bad("%s %g: must be in [0, 1]", name, f)
		}
	}
	if c.maxLateness <= 0 || c.slowDelay <= 0 || c.webhookBackoff <= 0 || c.tick <= 0 {
		bad("-max-lateness, -slow-delay, -webhook-max-backoff and -tick must be positive")
	}
	if c.maxLateness > 0 && c.maxLateness < storefront.MinMaxLateness {
		bad("-max-lateness (STOREFRONT_MAX_LATENESS) %s: must be at least %s", c.maxLateness, storefront.MinMaxLateness)
	}
	if c.speed <= 0 {
		bad("-speed %g: must be positive", c.speed)
	}
	for _, k := range c.faults {
		if !slices.Contains(storefront.FaultKinds(), k) {
			bad("-faults: unknown kind %q (want one of %s)", k, strings.Join(storefront.FaultKinds(), ", "))
		}
	}
	if c.maxOrders < 0 {
		bad("-max-orders (STOREFRONT_MAX_ORDERS) %d: must not be negative", c.maxOrders)
	}
	if c.retryAfter < 1 || c.webhookAttempts < 1 {
		bad("-retry-after and -webhook-attempts must be at least 1")
	}
	if c.webhookURL != "" && c.webhookSecret == "" {
		bad("-webhook-secret (STOREFRONT_WEBHOOK_SECRET) is empty but -webhook-url is set")
	}
	return errors.Join(errs...)
}

// simConfig is the simulator's config from the flags.
func (c config) simConfig(clock storefront.Clock, onChange func(storefront.Version)) storefront.SimConfig {
	return storefront.SimConfig{
		Seed: c.seed, IDs: seed.Generate(c.idSeed, c.customers, c.products), Clock: clock,
		// -rate 0 is no arrivals (only placed orders), not the library's default.
		RatePerMinute: fraction(c.rate), BurstFactor: c.burstFactor, BrokenFraction: fraction(c.broken),
		LateFraction: fraction(c.late), MaxLateness: c.maxLateness, MaxOrders: c.maxOrders, OnChange: onChange,
	}
}

// fraction maps a flag value to the library's convention (0 = default,
// negative = never): on the command line 0 means never (for -rate too).
func fraction(f float64) float64 {
	if f == 0 {
		return -1
	}
	return f
}
