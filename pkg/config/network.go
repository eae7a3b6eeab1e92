package config

import (
	"net"
	"net/url"
	"strings"
)

// LoopbackHost reports whether host (a host name or an IP address, without
// a port or brackets) is localhost or a loopback address.
func LoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// PostgresURL checks a PostgreSQL URL variable: a postgres:// (or
// postgresql://) URL with a host that parse accepts (the driver's own
// parser, e.g. pgxpool.ParseConfig), and the local stack's password
// (localPassword, in the URL) only for a database on a loopback address,
// unless the password variable (pass) overrides it. The errors name urlVar
// or passVar.
func PostgresURL(urlVar, passVar, raw, pass, localPassword string, parse func(string) error) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") || u.Host == "" {
		return Errorf(urlVar, "must be a postgres:// URL with a host")
	}
	if err := parse(raw); err != nil {
		return Errorf(urlVar, "cannot be parsed as a PostgreSQL URL")
	}
	pw, _ := u.User.Password()
	if pass == "" && pw == localPassword && !LoopbackHost(u.Hostname()) {
		return Errorf(passVar, "the local stack's password is only for a database on a loopback address; set %s from a secret", passVar)
	}
	return nil
}
