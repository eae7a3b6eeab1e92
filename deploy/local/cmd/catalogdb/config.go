package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/ecomstream/platform/deploy/local/catalogdb"
	"github.com/ecomstream/platform/deploy/local/seed"
)

type config struct {
	cmd         string
	databaseURL string
	schema      string
	idSeed      uint64
	products    int
	customers   int
	rate        float64
	burstEvery  time.Duration
	bad         float64
	seed        uint64
	logFile     string
	maxChanges  int
	reseed      bool
}

const commands = "init | mutate | script"

// parseConfig reads the subcommand and its flags. Every flag has an
// environment variable (CATALOGDB_ + the flag name in upper case, dashes as
// underscores) that sets its default; -database-url falls back to the
// stack's DATABASE_URL.
func parseConfig(args []string, getenv func(string) string, usage io.Writer) (config, error) {
	var c config
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		fmt.Fprintf(usage, "usage: catalogdb <%s> [flags]; catalogdb <command> -h lists the flags\n", commands)
		if len(args) > 0 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help") {
			return config{}, flag.ErrHelp
		}
		return config{}, fmt.Errorf("want a command (%s) before the flags", commands)
	}
	c.cmd, args = args[0], args[1:]
	if c.cmd != "init" && c.cmd != "mutate" && c.cmd != "script" {
		return config{}, fmt.Errorf("unknown command %q (want %s)", c.cmd, commands)
	}
	fs := flag.NewFlagSet("catalogdb "+c.cmd, flag.ContinueOnError)
	fs.SetOutput(usage)
	fs.Usage = func() {
		fmt.Fprintf(usage, `catalogdb %s: the storefront's catalog database in the local stack (deploy/local/README.md,
"Catalog database and mutator").

Usage: catalogdb %s [flags]

Every flag can also be set with CATALOGDB_<FLAG> (upper case, - as _);
-database-url with DATABASE_URL. Flags win over the environment.

Flags:
`, c.cmd, c.cmd)
		fs.PrintDefaults()
	}
	var errs []error
	envName := func(name string) string { return "CATALOGDB_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_")) }
	env := func(name, def string) string {
		if v := getenv(envName(name)); v != "" {
			return v
		}
		return def
	}
	str := func(p *string, name, def, help string) { fs.StringVar(p, name, env(name, def), help) }
	num := func(p *float64, name string, def float64, help string) {
		v, err := strconv.ParseFloat(env(name, strconv.FormatFloat(def, 'g', -1, 64)), 64)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: not a number", envName(name)))
		}
		fs.Float64Var(p, name, v, help)
	}
	integer := func(p *int, name string, def int, help string) {
		v, err := strconv.Atoi(env(name, strconv.Itoa(def)))
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: not an integer", envName(name)))
		}
		fs.IntVar(p, name, v, help)
	}
	u64 := func(p *uint64, name string, def uint64, help string) {
		v, err := strconv.ParseUint(env(name, strconv.FormatUint(def, 10)), 10, 64)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: not an unsigned integer", envName(name)))
		}
		fs.Uint64Var(p, name, v, help)
	}
	boolean := func(p *bool, name string, help string) {
		v, err := strconv.ParseBool(env(name, "false"))
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: not a boolean", envName(name)))
		}
		fs.BoolVar(p, name, v, help)
	}
	dur := func(p *time.Duration, name string, def time.Duration, help string) {
		v, err := time.ParseDuration(env(name, def.String()))
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: not a duration", envName(name)))
		}
		fs.DurationVar(p, name, v, help)
	}
	// The URL holds a password: the usage text shows only the built-in default;
	// the environment's value is applied after parsing unless the flag was given.
	const defaultURL = "postgres://ecom:ecom@127.0.0.1:15432/ecom?sslmode=disable"
	fs.StringVar(&c.databaseURL, "database-url", defaultURL, "PostgreSQL URL of the schema owner, ecom (or $DATABASE_URL, $CATALOGDB_DATABASE_URL)")
	str(&c.schema, "schema", catalogdb.DefaultSchema, "schema of the catalog tables")
	switch c.cmd {
	case "init", "script":
		u64(&c.idSeed, "id-seed", seed.DefaultSeed, "seed number of the shared customers and products")
		integer(&c.products, "products", seed.DefaultProducts, "products to load (beyond the seed's 2000: synthetic ones of the same shape); script: the count init loaded")
		integer(&c.customers, "customers", seed.DefaultCustomers, "customers to load; script: the count init loaded")
	}
	if c.cmd == "init" {
		boolean(&c.reseed, "reseed", "also insert the seed rows missing from existing tables (hard-deleted ones come back), stamped now(); not in any mutator log")
	}
	switch c.cmd {
	case "mutate":
		num(&c.rate, "rate", catalogdb.DefaultRatePerMinute, "changes per minute (Poisson); 0 = none, only bursts")
		dur(&c.burstEvery, "burst-every", catalogdb.DefaultBurstEvery, "a category re-price (one transaction) this often; 0 = never")
		num(&c.bad, "bad", catalogdb.DefaultBadFraction, "share of changes bad on purpose")
		u64(&c.seed, "seed", 1, "random seed of the change stream")
		integer(&c.maxChanges, "max-changes", 0, "stop after this many transactions; 0 = run until interrupted")
		fallthrough
	case "script":
		str(&c.logFile, "log", "", "append every changed row to this JSON Lines file; empty = none")
	}
	if err := errors.Join(errs...); err != nil {
		return config{}, err
	}
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if !set["database-url"] {
		c.databaseURL = env("database-url", defaultURL)
		if v := getenv("DATABASE_URL"); v != "" && getenv(envName("database-url")) == "" {
			c.databaseURL = v
		}
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	return c, c.validate()
}

var schemaRE = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,50}$`)

func (c config) validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.databaseURL == "" {
		bad("-database-url (DATABASE_URL) is empty")
	}
	if !schemaRE.MatchString(c.schema) {
		bad("-schema (CATALOGDB_SCHEMA) %q: want a lower-case SQL identifier ([a-z_][a-z0-9_]{0,50})", c.schema)
	}
	if c.products < 0 || c.customers < 0 {
		bad("-products %d and -customers %d (CATALOGDB_PRODUCTS, CATALOGDB_CUSTOMERS): must not be negative", c.products, c.customers)
	}
	if c.cmd == "script" && (c.products < catalogdb.ScriptMinProducts || c.customers < catalogdb.ScriptMinCustomers) {
		bad("-products %d and -customers %d: the script needs at least %d and %d", c.products, c.customers, catalogdb.ScriptMinProducts, catalogdb.ScriptMinCustomers)
	}
	if c.rate < 0 {
		bad("-rate (CATALOGDB_RATE) %g: must not be negative", c.rate)
	}
	if c.burstEvery < 0 {
		bad("-burst-every (CATALOGDB_BURST_EVERY) %s: must not be negative", c.burstEvery)
	}
	if !(c.bad >= 0 && c.bad <= 1) {
		bad("-bad (CATALOGDB_BAD) %g: must be in [0, 1]", c.bad)
	}
	if c.maxChanges < 0 {
		bad("-max-changes (CATALOGDB_MAX_CHANGES) %d: must not be negative", c.maxChanges)
	}
	return errors.Join(errs...)
}

// never maps a command-line 0 ("none") to the library's "never" (negative); the library's 0 is its default.
func never[T float64 | time.Duration](v T) T {
	if v == 0 {
		return -1
	}
	return v
}
