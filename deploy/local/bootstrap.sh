#!/usr/bin/env bash
# Installs what the local stack needs when it is missing: a Java 17+ runtime
# and Maven (Apache Kafka runs from its Maven Central jars), the PostgreSQL 15
# server binaries, and gcc (the embedded DuckDB warehouse is a cgo library).
# Go itself must already be installed. Safe to run any number of times.
set -euo pipefail

PG_BIN="${PG_BIN:-/usr/lib/postgresql/15/bin}"
missing=()
command -v java >/dev/null 2>&1 || missing+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || missing+=(maven)
[[ -x "$PG_BIN/postgres" && -x "$PG_BIN/initdb" ]] || missing+=(postgresql-15)
command -v gcc >/dev/null 2>&1 || missing+=(gcc)
command -v go >/dev/null 2>&1 || { echo "bootstrap: Go is not installed; install Go 1.26 from https://go.dev/dl/" >&2; exit 1; }

if ((${#missing[@]} == 0)); then
	exit 0
fi
echo "bootstrap: missing: ${missing[*]}"
if ! command -v apt-get >/dev/null 2>&1; then
	echo "bootstrap: no apt-get here; install ${missing[*]} with your package manager" >&2
	exit 1
fi
sudo=()
if ((EUID != 0)); then
	command -v sudo >/dev/null 2>&1 || { echo "bootstrap: run as root or install sudo to install ${missing[*]}" >&2; exit 1; }
	sudo=(sudo)
fi
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
