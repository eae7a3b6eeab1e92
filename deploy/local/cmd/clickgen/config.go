package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"

	"github.com/ecomstream/platform/deploy/local/clickgen"
)

type config struct {
	brokers      []string
	topic        string
	partitions   int
	rate         float64 // events per second; 0 means as fast as the broker takes them
	duration     time.Duration
	count        int64
	broken       float64
	duplicates   float64
	kinds        []string
	seed         uint64 // 0 means pick one at random
	users        int
	expectOut    string
	progress     time.Duration
	flushTimeout time.Duration
	// storefrontURL, when set, turns every purchase into an order there
	// (POST /v1/admin/orders), so its order_id names a real order.
	storefrontURL   string
	storefrontToken string
}

// parseConfig reads flags, with KAFKA_BROKERS as the default for -brokers so
// the generator finds the same cluster as the services without repeating it.
func parseConfig(args []string, getenv func(string) string, usage io.Writer) (config, error) {
	brokers := getenv("KAFKA_BROKERS")
	if brokers == "" {
		brokers = "127.0.0.1:19092"
	}
	fs := flag.NewFlagSet("clickgen", flag.ContinueOnError)
	fs.SetOutput(usage)
	fs.Usage = func() {
		fmt.Fprint(usage, `clickgen produces simulated storefront clickstream (JSON) to Kafka.

Usage: clickgen [flags]

Runs until -count records are sent, -duration has passed, or Ctrl-C.

Purchases: without -storefront-url the order_id of a purchase event names no
real order. With it, every purchase delivered to Kafka is placed as an order
with the storefront simulator (cmd/storefront, POST /v1/admin/orders: the same
id, customer and cart), in the background; the storefront must run with the
default id seed (-customers 20000 -products 2000). The token is
-storefront-token or STOREFRONT_TOKEN. Orders that could not be placed are
counted and make clickgen exit non-zero.

Flags:
`)
		fs.PrintDefaults()
	}
	var (
		c         config
		brokerStr string
		kindStr   string
	)
	fs.StringVar(&brokerStr, "brokers", brokers, "comma-separated seed brokers (env KAFKA_BROKERS)")
	fs.StringVar(&c.topic, "topic", "clickstream", "topic to produce to; created if missing")
	fs.IntVar(&c.partitions, "partitions", 3, "partitions when creating the topic")
	fs.Float64Var(&c.rate, "rate", 1000, "target events per second; 0 = as fast as possible")
	fs.DurationVar(&c.duration, "duration", 0, "stop after this long; 0 = no limit")
	fs.Int64Var(&c.count, "count", 0, "stop after this many records; 0 = no limit")
	fs.Float64Var(&c.broken, "broken", clickgen.DefaultBrokenFraction, "fraction of deliberately broken records")
	fs.Float64Var(&c.duplicates, "duplicates", 0, "fraction of byte-identical re-sends of earlier valid records")
	fs.StringVar(&kindStr, "kinds", "", "comma-separated broken kinds to use; empty = all of "+strings.Join(clickgen.BrokenKinds(), ","))
	fs.Uint64Var(&c.seed, "seed", 0, "random seed for a reproducible stream; 0 = random (the seed used is logged)")
	fs.IntVar(&c.users, "users", clickgen.DefaultUsers, "distinct visitors in the simulated population")
	fs.StringVar(&c.expectOut, "expect-out", "", "write the expected outcome of every record to this JSON Lines file")
	fs.DurationVar(&c.progress, "progress", 5*time.Second, "interval between progress lines")
	fs.DurationVar(&c.flushTimeout, "flush-timeout", 10*time.Second, "how long to wait for in-flight records (and orders being placed) on shutdown")
	fs.StringVar(&c.storefrontURL, "storefront-url", "", "place every purchase as an order with the storefront at this base URL, e.g. http://127.0.0.1:8097; empty = off (order ids are not real orders)")
	// The token's flag has no default: the usage text (printed on a bad flag,
	// often into a log) must not show the environment's value, which is
	// applied after parsing unless the flag was given.
	fs.StringVar(&c.storefrontToken, "storefront-token", "", "the storefront's bearer token (or $STOREFRONT_TOKEN)")
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	tokenSet := false
	fs.Visit(func(f *flag.Flag) { tokenSet = tokenSet || f.Name == "storefront-token" })
	if !tokenSet {
		c.storefrontToken = getenv("STOREFRONT_TOKEN")
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	c.brokers = splitList(brokerStr)
	c.kinds = splitList(kindStr)
	return c, c.validate()
}

func (c config) validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if len(c.brokers) == 0 {
		bad("-brokers (or KAFKA_BROKERS) is empty")
	}
	if c.topic == "" {
		bad("-topic is empty")
	}
	if c.partitions < 1 {
		bad("-partitions %d: must be at least 1", c.partitions)
	}
	if c.rate < 0 {
		bad("-rate %g: must be 0 (unlimited) or positive", c.rate)
	}
	if c.duration < 0 || c.count < 0 {
		bad("-duration and -count must not be negative")
	}
	if !(c.broken >= 0 && c.broken <= 1) || !(c.duplicates >= 0 && c.duplicates <= 1) || c.broken+c.duplicates > 1 {
		bad("-broken %g and -duplicates %g: each must be in [0, 1] and their sum at most 1", c.broken, c.duplicates)
	}
	for _, k := range c.kinds {
		if exp, ok := clickgen.ExpectationFor(k); !ok || exp.Valid {
			bad("-kinds: unknown kind %q (want one of %s)", k, strings.Join(clickgen.BrokenKinds(), ", "))
		}
	}
	if c.users < 1 {
		bad("-users %d: must be at least 1", c.users)
	}
	if c.storefrontURL != "" {
		if u, err := url.Parse(c.storefrontURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("-storefront-url %q: not an http(s) URL", c.storefrontURL)
		}
		if c.storefrontToken == "" {
			bad("-storefront-token (or STOREFRONT_TOKEN) is empty but -storefront-url is set")
		}
	}
	if c.progress <= 0 || c.flushTimeout <= 0 {
		bad("-progress and -flush-timeout must be positive")
	}
	return errors.Join(errs...)
}

func splitList(s string) []string {
	var out []string
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}
