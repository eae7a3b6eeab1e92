#!/usr/bin/env bash
# bqemulator-fetch.sh installs the BigQuery emulator (PyPI bqemulator, a
# DuckDB-backed REST + Storage Read/Write gRPC server) into a venv in the
# per-user cache, once per pinned version, and prints the venv's path on
# stdout (progress goes to stderr). The stack.sh component bqemulator
# (bqemulator.sh) runs it as its fetch; it also runs alone.
#
#   deploy/local/stack/bqemulator-fetch.sh        -> ~/.cache/ecomstream/bqemulator-1.4.0
#   "$(deploy/local/stack/bqemulator-fetch.sh)/bin/bqemulator" start \
#       --rest-port 27050 --grpc-port 27060 --project ecom-local
#
# Pins: bqemulator 1.4.0 on duckdb 1.5.5, whose spatial extension is
# installed from the duckdb-extension-spatial package (without it the
# emulator tries to download the extension at start and dies offline).
# Env: STACK_CACHE_DIR (default ~/.cache/ecomstream), BQEMULATOR_PYTHON
# (default python3; needs 3.10 or newer). Idempotent: a finished venv
# carries a .complete stamp and is reused; an unfinished one is rebuilt.
set -euo pipefail

HERE=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
BQEMULATOR_VERSION=1.4.0
DUCKDB_VERSION=1.5.5
# grpcio is pinned because bqemulator_workarounds.py patches grpc.aio.server
GRPCIO_VERSION=1.85.3
CACHE_DIR=${STACK_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ecomstream}
VENV=$CACHE_DIR/bqemulator-$BQEMULATOR_VERSION
PY=${BQEMULATOR_PYTHON:-python3}

say() { printf 'bqemulator-fetch: %s\n' "$*" >&2; }
die() {
	say "$*"
	exit 1
}

# patch installs bqemulator_workarounds.py (beside this script) into the venv with a .pth hook:
# a larger gRPC thread pool (every open append connection holds a thread; 6 by default here) and
# one lock around the emulator's DuckDB connection (a REST job during an append deadlocks it
# otherwise); see the file. Applied on every run, so a venv cached before the patch existed gets
# it too; a no-op when the installed copy is current. A running emulator gets it at its restart.
patch() {
	local site src=$HERE/bqemulator_workarounds.py
	site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])') ||
		die "cannot find the venv's site-packages"
	rm -f -- "$site/bqemulator_serialize.py" "$site/ecomstream_bqemulator_serialize.pth" # an earlier name
	if ! cmp -s -- "$src" "$site/bqemulator_workarounds.py"; then
		cp -- "$src" "$site/bqemulator_workarounds.py.tmp" && mv -- "$site/bqemulator_workarounds.py.tmp" "$site/bqemulator_workarounds.py"
		say "installed the emulator workarounds (gRPC thread pool, DuckDB connection lock) into $site"
	fi
	[[ -f $site/ecomstream_bqemulator_workarounds.pth ]] ||
		printf 'import bqemulator_workarounds\n' >"$site/ecomstream_bqemulator_workarounds.pth"
}

if [[ -f $VENV/.complete ]]; then
	patch
	say "bqemulator $BQEMULATOR_VERSION already installed in $VENV"
	printf '%s\n' "$VENV"
	exit 0
fi

command -v "$PY" >/dev/null 2>&1 || die "no $PY on PATH (set BQEMULATOR_PYTHON to a Python 3.10+)"
"$PY" -c 'import sys; sys.exit(sys.version_info < (3, 10))' ||
	die "$PY is $("$PY" -V 2>&1); bqemulator needs Python 3.10 or newer (set BQEMULATOR_PYTHON)"

mkdir -p -- "$CACHE_DIR"
# A venv is not relocatable (its scripts name its path), so it is built in
# place under a lock: two checkouts fetching at once end with one venv.
exec 9>"$VENV.lock"
flock 9
if [[ -f $VENV/.complete ]]; then
	patch
	say "bqemulator $BQEMULATOR_VERSION installed by another run in $VENV"
	printf '%s\n' "$VENV"
	exit 0
fi
[[ -e $VENV ]] && rm -rf -- "$VENV" # an interrupted install

log=$CACHE_DIR/bqemulator-$BQEMULATOR_VERSION-pip.log
started=$SECONDS
say "creating venv $VENV with $("$PY" -V 2>&1)"
"$PY" -m venv "$VENV"
say "installing bqemulator==$BQEMULATOR_VERSION duckdb==$DUCKDB_VERSION duckdb-extension-spatial==$DUCKDB_VERSION grpcio==$GRPCIO_VERSION numpy (log: $log)"
"$VENV/bin/pip" install --disable-pip-version-check --progress-bar off \
	"bqemulator==$BQEMULATOR_VERSION" "duckdb==$DUCKDB_VERSION" \
	"duckdb-extension-spatial==$DUCKDB_VERSION" "grpcio==$GRPCIO_VERSION" numpy >"$log" 2>&1 &
pip_pid=$!
while kill -0 "$pip_pid" 2>/dev/null; do
	sleep 5
	if kill -0 "$pip_pid" 2>/dev/null; then
		say "still installing: $(du -sm "$VENV" | cut -f1) MB, $((SECONDS - started))s, last: $(grep -Eo '^(Collecting|Downloading|Installing) .*' "$log" | tail -n1 | cut -c1-80)"
	fi
done
if ! wait "$pip_pid"; then
	tail -n 20 "$log" >&2
	die "pip install failed (is PyPI reachable?); output above, full log $log"
fi

say "installing DuckDB's spatial extension from the duckdb-extension-spatial package"
"$VENV/bin/python" - "$DUCKDB_VERSION" <<'EOF'
import os, sys
import duckdb
import duckdb_extension_spatial as s
path = os.path.join(os.path.dirname(s.__file__), "extensions", "v" + sys.argv[1], "spatial.duckdb_extension")
if not os.path.isfile(path):
    sys.exit("no spatial extension at " + path)
con = duckdb.connect()
con.install_extension(path)
con.load_extension("spatial")
EOF

patch
"$VENV/bin/bqemulator" --help >/dev/null || die "$VENV/bin/bqemulator --help failed"
date -u +%FT%TZ >"$VENV/.complete"
say "installed bqemulator $BQEMULATOR_VERSION ($(du -sm "$VENV" | cut -f1) MB) in $((SECONDS - started))s"
printf '%s\n' "$VENV"
