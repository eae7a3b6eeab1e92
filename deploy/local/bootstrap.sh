#!/usr/bin/env bash
# Installs what the local stack needs when it is missing: a Java 17+ runtime
# (Kafka), a Java 21+ runtime (Apicurio Registry), Maven (both come from Maven
# Central), the PostgreSQL 15 server binaries, gcc (the embedded DuckDB
# warehouse is a cgo library) and Python 3 with venv (the BigQuery emulator's
# venv, made by stack/bqemulator-fetch.sh). Go itself must already be installed.
#
#   bootstrap.sh            the above (make deps; make stack-up, demo, bench)
#   bootstrap.sh --browser  only headless Chromium and a font, for the demo
#                           shop's browser tests (make deps-browser, run by
#                           make test); the stack, the demo and the bench need
#                           no browser, and a failure here leaves them be
#
# Safe to run any number of times; does nothing when everything is there.
set -euo pipefail

browser=
case "${1:-}" in
"") ;;
--browser) browser=1 ;;
*)
	printf 'bootstrap: unknown argument %q; usage: bootstrap.sh [--browser]\n' "$1" >&2
	exit 2
	;;
esac

# The same Java look-up as the stack's (JAVA_HOME, PATH, /usr/lib/jvm/*, or
# KAFKA_JAVA_HOME / REGISTRY_JAVA_HOME when set).
# shellcheck source=stack/lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/stack/lib.sh"

say() { printf 'bootstrap: %s\n' "$*" >&2; }

# apt_update WHAT: checks that apt-get can be run as root (sudo when
# needed) and updates its lists, or fails with one line naming WHAT to install.
sudo=()
apt_update() {
	if ! command -v apt-get >/dev/null 2>&1; then
		die "no apt-get here; install $1 with your package manager"
	fi
	if ((EUID != 0)); then
		command -v sudo >/dev/null 2>&1 || die "run as root or install sudo to install $1"
		sudo=(sudo)
	fi
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
}

apt_install() {
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"
}

if [[ -n $browser ]]; then
	# The browser tests run /usr/bin/chromium, Debian's path
	# (webdemo/browser_test.go); chromedp talks to it directly (no driver).
	[[ -x /usr/bin/chromium ]] && exit 0
	say "missing: chromium fonts-liberation (the demo shop's browser tests)"
	apt_update "chromium (at /usr/bin/chromium) and a font such as fonts-liberation"
	apt_install chromium fonts-liberation
	[[ -x /usr/bin/chromium ]] || die "chromium was installed but /usr/bin/chromium is not there"
	say "installed chromium"
	exit 0
fi

PG_BIN="${PG_BIN:-/usr/lib/postgresql/15/bin}"
missing=()
find_java 17 KAFKA_JAVA_HOME >/dev/null || missing+=(openjdk-17-jre-headless)
need_java21=
find_java 21 REGISTRY_JAVA_HOME >/dev/null || need_java21=1
command -v mvn >/dev/null 2>&1 || missing+=(maven)
[[ -x "$PG_BIN/postgres" && -x "$PG_BIN/initdb" ]] || missing+=(postgresql-15)
command -v gcc >/dev/null 2>&1 || missing+=(gcc)
"${BQEMULATOR_PYTHON:-python3}" -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=(python3-venv)
command -v go >/dev/null 2>&1 || [[ -x /usr/local/go/bin/go ]] || die "Go is not installed; install Go 1.26 from https://go.dev/dl/"

if ((${#missing[@]} == 0)) && [[ -z $need_java21 ]]; then
	exit 0
fi
want=("${missing[@]}")
[[ -n $need_java21 ]] && want+=("a Java 21+ runtime")
say "missing: ${want[*]}"
apt_update "${want[*]}"
if [[ -n $need_java21 ]]; then
	# Debian 13 ships OpenJDK 21 and 25; Debian 12 (bookworm) only 17, so
	# there a JDK 21+ must come from elsewhere (the CI image has Temurin 25
	# in /usr/lib/jvm, which the look-up above finds).
	java21=
	for p in openjdk-21-jre-headless openjdk-25-jre-headless; do
		candidate=$(apt-cache policy "$p" 2>/dev/null | sed -n 's/^ *Candidate: *//p')
		if [[ -n $candidate && $candidate != "(none)" ]]; then
			java21=$p
			break
		fi
	done
	[[ -n $java21 ]] || die "Apicurio Registry needs Java 21 or newer: none in REGISTRY_JAVA_HOME, JAVA_HOME, PATH or /usr/lib/jvm, and apt has no openjdk-21/25-jre-headless (Debian 12 ships only 17); install a JDK 21+ (e.g. Temurin) under /usr/lib/jvm, or set REGISTRY_JAVA_HOME to one"
	missing+=("$java21")
fi
apt_install "${missing[@]}"
