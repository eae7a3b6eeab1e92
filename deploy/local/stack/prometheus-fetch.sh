#!/usr/bin/env bash
# prometheus-fetch.sh installs Debian's prometheus package (2.42: the
# prometheus server and promtool) into the per-user cache, once per Debian
# version, without installing it system-wide (no service, no user, no
# /etc): `apt-get download` into a scratch folder, `dpkg-deb -x` there, then
# renamed into place with a .complete stamp. It prints, as its last stdout
# line, the folder holding `prometheus` and `promtool` (progress goes to
# stderr). The stack.sh component prometheus (prometheus.sh) runs it as its
# fetch; the rule tests run it to find promtool.
#
#   deploy/local/stack/prometheus-fetch.sh
#     -> ~/.cache/ecomstream/prometheus-2.42.0+ds-5+deb12u1/usr/bin
#   "$(deploy/local/stack/prometheus-fetch.sh)/promtool" check rules deploy/prometheus/rules/*.yml
#
# A cached 2.42 install is used without asking apt (offline too). Otherwise
# the version is apt's candidate, which must be 2.42.x (the rules and their
# tests are checked against it); when apt does not know the package yet (no
# package lists on a fresh machine) it runs `apt-get update` once.
# Env: STACK_CACHE_DIR (default ~/.cache/ecomstream).
set -euo pipefail

WANT=2.42 # upstream minor version
CACHE_DIR=${STACK_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ecomstream}

say() { printf 'prometheus-fetch: %s\n' "$*" >&2; }
die() {
	say "$*"
	exit 1
}

# cached prints the bin folder of a finished install of $WANT (a scratch
# folder never has the .complete stamp).
cached() {
	local d
	for d in "$CACHE_DIR/prometheus-$WANT".*/; do
		d=${d%/}
		if [[ -f $d/.complete && -x $d/usr/bin/prometheus && -x $d/usr/bin/promtool ]]; then
			printf '%s\n' "$d/usr/bin"
			return 0
		fi
	done
	return 1
}

if bin=$(cached); then
	say "Debian prometheus already installed in $bin"
	printf '%s\n' "$bin"
	exit 0
fi

for c in apt-get apt-cache dpkg-deb; do
	command -v "$c" >/dev/null 2>&1 ||
		die "missing $c: Prometheus comes from Debian's prometheus package ($WANT); on another system put prometheus and promtool $WANT in $CACHE_DIR/prometheus-$WANT.0/usr/bin with a .complete file in $CACHE_DIR/prometheus-$WANT.0"
done

candidate() { apt-cache policy prometheus 2>/dev/null | sed -n 's/^ *Candidate: *//p'; }
version=$(candidate)
if [[ -z $version || $version == "(none)" ]]; then
	say "apt does not know the prometheus package yet; running apt-get update once"
	apt-get update -qq >&2 || die "apt-get update failed; output above"
	version=$(candidate)
fi
[[ -n $version && $version != "(none)" ]] || die "apt has no prometheus package (is a Debian 12 package source configured?)"
[[ $version == "$WANT".* ]] || die "apt's prometheus is $version; want $WANT.x (Debian 12's), the version the rules are tested with"

dir=$CACHE_DIR/prometheus-$version
mkdir -p -- "$CACHE_DIR"
exec 9>"$dir.lock"
flock 9
if [[ ! -f $dir/.complete ]]; then
	started=$SECONDS
	tmp=$(mktemp -d "$dir.tmp.XXXXXX")
	trap 'rm -rf -- "$tmp"' EXIT
	say "downloading Debian's prometheus $version (~30 MB) into $dir (once)"
	# apt-get download writes into the working folder; as root it drops to
	# the _apt user, who must be able to write there.
	mkdir "$tmp/deb"
	chmod 0755 "$tmp"
	chmod 0777 "$tmp/deb"
	(cd "$tmp/deb" && apt-get download -qq "prometheus=$version") >&2 ||
		die "apt-get download prometheus=$version failed; output above"
	dpkg-deb -x "$tmp"/deb/prometheus_*.deb "$tmp" || die "dpkg-deb -x of the prometheus package failed"
	rm -rf -- "$tmp/deb"
	"$tmp/usr/bin/prometheus" --version >/dev/null 2>&1 || die "the unpacked prometheus does not run"
	"$tmp/usr/bin/promtool" --version >/dev/null 2>&1 || die "the unpacked promtool does not run"
	date -u +%FT%TZ >"$tmp/.complete"
	[[ -e $dir ]] && rm -rf -- "$dir" # an interrupted install (no .complete)
	mv -T -- "$tmp" "$dir"
	trap - EXIT
	say "installed Debian prometheus $version ($(du -sm "$dir" | cut -f1) MB) in $((SECONDS - started))s"
fi
printf '%s\n' "$dir/usr/bin"
