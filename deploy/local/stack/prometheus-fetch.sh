#!/usr/bin/env bash
# prometheus-fetch.sh installs Prometheus and promtool from Debian's
# `prometheus` package (2.42) into the per-user cache, once per package
# version, and prints the directory holding both binaries as its last stdout
# line (progress goes to stderr). The stack's prometheus component starts the
# server from it; the rule tests (deploy/observability) run promtool from it.
#
#   deploy/local/stack/prometheus-fetch.sh
#     -> ~/.cache/ecomstream/prometheus-2.42.0+ds-5+deb12u1/usr/bin
#   "$(deploy/local/stack/prometheus-fetch.sh)/promtool" check rules deploy/prometheus/rules/*.yml
#
# How: `apt-get download prometheus` (no install, no root needed for that
# step; the package's dependencies are only the web UI's JavaScript, which the
# API and promtool do not use) into a scratch folder, `dpkg-deb -x` into
# prometheus-<deb version>, renamed into place when complete (install_dir,
# lib.sh) under a lock, so an interrupted fetch leaves nothing half-made and
# two checkouts fetching at once download once. If apt does not know the
# package (a fresh CI image without package lists), it runs `apt-get update`
# once, which needs root (CI runs as root).
# Env: STACK_CACHE_DIR (default ~/.cache/ecomstream), PROMETHEUS_DEB_SERIES
# (default 2.42: the upstream version the package must have).
set -euo pipefail

# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"
say() { printf 'prometheus-fetch: %s\n' "$*" >&2; }

SERIES=${PROMETHEUS_DEB_SERIES:-2.42}

# installed prints the bin folder of the newest complete install of SERIES
# in the cache; fails when there is none. No apt call: a second run works
# offline and in milliseconds.
installed() {
	local d best=
	for d in "$CACHE_DIR"/prometheus-"$SERIES".*; do
		[[ -f $d/.complete && -x $d/usr/bin/prometheus && -x $d/usr/bin/promtool ]] || continue
		best=$(printf '%s\n%s\n' "$best" "$d" | sed '/^$/d' | sort -V | tail -n 1)
	done
	[[ -n $best ]] || return 1
	printf '%s\n' "$best/usr/bin"
}

# candidate prints the version apt would download of prometheus, or nothing.
candidate() {
	apt-cache show --no-all-versions prometheus 2>/dev/null | sed -n 's/^Version: //p' | head -n 1
}

if bin=$(installed); then
	say "prometheus $SERIES already installed in $bin"
	printf '%s\n' "$bin"
	exit 0
fi

require_cmds "fetching Prometheus from Debian's package" "apt dpkg" apt-get apt-cache dpkg-deb flock
mkdir -p -- "$CACHE_DIR"
exec 9>"$CACHE_DIR/prometheus-$SERIES.lock"
flock 9
if bin=$(installed); then
	say "prometheus installed by another run in $bin"
	printf '%s\n' "$bin"
	exit 0
fi

version=$(candidate)
if [[ -z $version ]]; then
	if [[ $(id -u) -ne 0 ]]; then
		die "apt does not know the package prometheus and apt-get update needs root: run 'sudo apt-get update', then this script again"
	fi
	say "apt does not know the package prometheus; running apt-get update once"
	apt-get update -qq >&2 || die "apt-get update failed (are the Debian mirrors reachable?)"
	version=$(candidate)
	[[ -n $version ]] || die "apt knows no package prometheus even after apt-get update (is this Debian 12 or newer, with main enabled?)"
fi
upstream=${version#*:}
upstream=${upstream%%[+~-]*}
if [[ $upstream != "$SERIES" && $upstream != "$SERIES".* ]]; then
	die "apt offers prometheus $version, not $SERIES.x: the rules and their tests are written for $SERIES (set PROMETHEUS_DEB_SERIES=${upstream%.*} to try it anyway)"
fi

dir=$CACHE_DIR/prometheus-$version
fill() {
	local tmp=$1 dl
	# mktemp's 0700 folder: nobody else can swap the .deb between its
	# download (apt checks it against the signed index) and dpkg-deb. As
	# root, apt then downloads without dropping to _apt (it says so).
	dl=$(mktemp -d "${TMPDIR:-/tmp}/prometheus-deb.XXXXXX")
	say "downloading Debian's prometheus $version (about 19 MB) into $dl"
	# shellcheck disable=SC2016 # $1 and $2 are the inner bash's arguments
	if ! with_progress prometheus "$dl" "$dl/apt.log" bash -c 'cd "$1" && exec apt-get download -q "prometheus=$2"' _ "$dl" "$version"; then
		tail -n 20 "$dl/apt.log" >&2
		rm -rf -- "$dl"
		say "apt-get download prometheus=$version failed; output above"
		return 1
	fi
	say "unpacking $(basename -- "$dl"/prometheus_*.deb)"
	if ! dpkg-deb -x "$dl"/prometheus_*.deb "$tmp"; then
		rm -rf -- "$dl"
		say "dpkg-deb -x failed"
		return 1
	fi
	rm -rf -- "$dl"
	"$tmp/usr/bin/promtool" --version >/dev/null 2>&1 || {
		say "the unpacked promtool does not run"
		return 1
	}
}
if ! install_dir "$dir" fill; then
	# Stale package lists name a .deb the mirror no longer serves (after a
	# Debian point release): refresh them once and retry, when allowed.
	[[ $(id -u) -eq 0 ]] || die "could not install prometheus $version into $dir (stale package lists? run 'sudo apt-get update', then this script again)"
	say "the download failed; running apt-get update once and retrying"
	apt-get update -qq >&2 || die "apt-get update failed (are the Debian mirrors reachable?)"
	version=$(candidate)
	[[ -n $version ]] || die "apt knows no package prometheus after apt-get update"
	dir=$CACHE_DIR/prometheus-$version
	install_dir "$dir" fill || die "could not install prometheus $version into $dir"
fi
say "installed prometheus $version in $dir"
printf '%s\n' "$dir/usr/bin"
