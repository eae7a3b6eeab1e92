#!/usr/bin/env bash
# jaeger-build.sh builds Jaeger v2 (the all-in-one `jaeger` binary, an
# OpenTelemetry Collector distribution) from its Go module into the per-user
# cache, once per pinned version, and prints the folder holding bin/jaeger on
# stdout (progress goes to stderr). The stack.sh component jaeger
# (jaeger.sh) runs it as its fetch; it also runs alone.
#
#   deploy/local/stack/jaeger-build.sh     -> ~/.cache/ecomstream/jaeger-1.76.0
#   "$(deploy/local/stack/jaeger-build.sh)/bin/jaeger" --config jaeger.yaml
#
# The build module is jaeger/build.mod + build.sum beside this script (not
# named go.mod, so Go does not take deploy/local/stack/jaeger for a module of
# this repo): github.com/jaegertracing/jaeger v1.76.0 as a tool, with the one
# replace directive it needs (github.com/Shopify/sarama => v1.33.0; the
# version Jaeger's dependencies would select no longer builds). Copied into a
# scratch folder beside the cache folder, built there with -mod=readonly
# (build.sum pins every module), then renamed into place with a .complete
# stamp, under a lock, so an interrupted build never leaves a half-made
# folder and two checkouts building at once build once.
# About 4 minutes of compiling on 2 cores the first time (plus ~30 s of module
# downloads into the Go module cache); nothing after that.
# Env: STACK_CACHE_DIR (default ~/.cache/ecomstream).
set -euo pipefail

HERE=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
JAEGER_VERSION=1.76.0
CACHE_DIR=${STACK_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ecomstream}
DIR=$CACHE_DIR/jaeger-$JAEGER_VERSION
PKG=github.com/jaegertracing/jaeger/cmd/jaeger

say() { printf 'jaeger-build: %s\n' "$*" >&2; }
die() {
	say "$*"
	exit 1
}

# done_if_built WHAT prints the folder and exits when the build is there.
done_if_built() {
	if [[ -f $DIR/.complete && -x $DIR/bin/jaeger ]]; then
		say "Jaeger v$JAEGER_VERSION $1 in $DIR"
		printf '%s\n' "$DIR"
		exit 0
	fi
}

done_if_built "already built"

if ! command -v go >/dev/null 2>&1 && [[ -x /usr/local/go/bin/go ]]; then
	PATH=$PATH:/usr/local/go/bin
fi
command -v go >/dev/null 2>&1 ||
	die "missing go (needed to build Jaeger $JAEGER_VERSION); install Go 1.26 into /usr/local/go (https://go.dev/doc/install)"

mkdir -p -- "$CACHE_DIR"
exec 9>"$DIR.lock"
if ! flock -n 9; then
	say "another checkout is building Jaeger $JAEGER_VERSION into $DIR; waiting for it (lock $DIR.lock)"
	flock 9
fi
done_if_built "built by another run"

tmp=$(mktemp -d "$DIR.tmp.XXXXXX")
pid=
# Stopped (Ctrl-C, SIGTERM, a timeout), the build stops too: left running
# without the lock, the next `up` would start a second one beside it.
trap '[[ -z $pid ]] || kill -- "$pid" 2>/dev/null; rm -rf -- "$tmp"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
chmod 0755 "$tmp" # mktemp's 0700 would make the build private to its builder
mkdir -p "$tmp/src" "$tmp/bin"
cp -- "$HERE/jaeger/build.mod" "$tmp/src/go.mod"
cp -- "$HERE/jaeger/build.sum" "$tmp/src/go.sum"
log=$tmp/src/build.log
started=$SECONDS
say "building Jaeger v$JAEGER_VERSION from source: about 4 minutes, once (into $DIR; log: $DIR.build.log)"
# GOWORK=off: the build module stands alone, whatever go.work is around.
# -trimpath: the scratch folder's name is not baked into the binary.
# -v lists each package as it is compiled: the progress lines count them.
(cd "$tmp/src" && GOWORK=off GOFLAGS=-mod=readonly CGO_ENABLED=0 go build -v -trimpath \
	-ldflags "-s -w -X github.com/jaegertracing/jaeger/internal/version.latestVersion=v$JAEGER_VERSION" \
	-o "$tmp/bin/jaeger" "$PKG") >"$log" 2>&1 </dev/null 9>&- &
pid=$!
ticks=0
while kill -0 "$pid" 2>/dev/null; do
	sleep 1
	ticks=$((ticks + 1))
	if ((ticks % 15 == 0)) && kill -0 "$pid" 2>/dev/null; then
		say "still building Jaeger v$JAEGER_VERSION: $((SECONDS - started))s so far, $(grep -cv '^go: ' "$log") of its ~2300 packages compiled (fewer when Go's build cache has some)"
	fi
done
rc=0
wait "$pid" || rc=$?
pid=
cp -- "$log" "$DIR.build.log"
if ((rc != 0)); then
	tail -n 30 "$log" >&2
	die "go build of $PKG@v$JAEGER_VERSION failed (exit $rc; is the Go module proxy reachable?); output above, full log $DIR.build.log"
fi
"$tmp/bin/jaeger" --help >/dev/null 2>&1 || die "the built $tmp/bin/jaeger does not run (--help failed)"
rm -rf -- "$tmp/src"
date -u +%FT%TZ >"$tmp/.complete"
[[ -e $DIR ]] && rm -rf -- "$DIR" # an older, interrupted layout (no .complete)
mv -T -- "$tmp" "$DIR"
trap - EXIT
say "built Jaeger v$JAEGER_VERSION ($(du -sm "$DIR" | cut -f1) MB) in $((SECONDS - started))s"
printf '%s\n' "$DIR"
