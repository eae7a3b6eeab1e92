# shellcheck shell=bash
# Shared lifecycle library of the local stack (sourced by ../stack.sh and
# ../bootstrap.sh; defines functions and variables only, runs nothing).
#
# A component is one file beside this one, <name>.sh, that calls
#
#   component NAME "ALIASES" "NEEDS"
#
# and defines NAME_fetch, NAME_start, NAME_wait, NAME_stop, NAME_status and
# NAME_env (see README.md, "Adding a component"). stack.sh drives them:
# fetch and start in order, a component's NEEDS are waited on before it
# starts, and everything started is waited on before `up` returns.

# ---------------------------------------------------------------- layout

STACK_LIB_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
LOCAL_DIR=$(cd -- "$STACK_LIB_DIR/.." && pwd -P)
REPO_ROOT=$(cd -- "$LOCAL_DIR/../.." && pwd -P)

# Runtime state (data, logs, pids) of one stack instance; a second instance
# on other ports gets its own folder (STACK_RUN_DIR=/tmp/stack2 ...).
RUN_DIR=${STACK_RUN_DIR:-$REPO_ROOT/.run}
LOG_DIR=$RUN_DIR/logs
PID_DIR=$RUN_DIR/pids
# Downloads and tool builds, per user and outside the clone (a fresh CI clone
# keeps nothing), in folders named by version, so checkouts share them.
CACHE_DIR=${STACK_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ecomstream}
MAVEN_REPO=${MAVEN_REPO_LOCAL:-$HOME/.m2/repository} # only to show download progress

START_TIMEOUT=${STACK_START_TIMEOUT:-120} # seconds, per component
STOP_TIMEOUT=${STACK_STOP_TIMEOUT:-30}    # seconds before SIGKILL

# ---------------------------------------------------------------- components

COMPONENTS=()        # in start order
declare -A COMPONENT_ALIAS=() COMPONENT_NEEDS=()

# component NAME "ALIASES" "NEEDS" registers a component; call it once at the
# top of its file. Files are sourced in start order (stack.sh lists them).
component() {
	local name=$1 a
	COMPONENTS+=("$name")
	COMPONENT_ALIAS[$name]=$name
	for a in $2; do COMPONENT_ALIAS[$a]=$name; done
	COMPONENT_NEEDS[$name]=$3
}

# ---------------------------------------------------------------- messages

# took NAME prints " in Ns" since stack.sh started component NAME, for its
# "ready" line (nothing when it was running already).
declare -A STARTED_AT=()
took() {
	[[ -n ${STARTED_AT[$1]:-} ]] && printf ' in %ss' "$((SECONDS - STARTED_AT[$1]))"
	return 0
}

# already_running NAME PID: what NAME_start says when there is nothing to do.
already_running() {
	say "$1: already running (pid $2)"
	unset 'STARTED_AT[$1]'
}

say() { printf 'stack.sh: %s\n' "$*" >&2; }
die() {
	say "$*"
	exit 1
}

LOG_MARK='===== stack.sh: starting'

# mark_logs NAME FILE... appends a start marker to each log, so failures show
# only what the current start wrote.
mark_logs() {
	local name=$1 f
	shift
	for f in "$@"; do
		printf '%s %s at %s =====\n' "$LOG_MARK" "$name" "$(date -u +%FT%TZ)" >>"$f"
	done
}

# show_logs FILE... prints the last lines of each log written since its last
# start marker.
show_logs() {
	local f from
	for f in "$@"; do
		[[ -s $f ]] || continue
		from=$(grep -n -F -- "$LOG_MARK" "$f" | tail -n 1 | cut -d: -f1)
		printf -- '----- %s (last lines) -----\n' "$f" >&2
		tail -n +"${from:-1}" -- "$f" | tail -n 40 >&2
	done
}

# ---------------------------------------------------------------- requirements

# require_cmds WHAT APT_PACKAGES CMD... fails with one line naming what is
# missing and the Debian packages that provide it.
require_cmds() {
	local what=$1 pkgs=$2 missing=() c
	shift 2
	for c in "$@"; do
		if [[ $c == /* ]]; then
			[[ -x $c ]] || missing+=("$c")
		else
			command -v "$c" >/dev/null 2>&1 || missing+=("$c")
		fi
	done
	if ((${#missing[@]})); then
		die "missing ${missing[*]} (needed for $what); install on Debian with: apt-get install -y $pkgs"
	fi
}

require_go() {
	if ! command -v go >/dev/null 2>&1 && [[ -x /usr/local/go/bin/go ]]; then
		PATH=$PATH:/usr/local/go/bin
	fi
	if ! command -v go >/dev/null 2>&1; then
		die "missing go (needed to build the readiness probe); install Go 1.26 into /usr/local/go (https://go.dev/doc/install; Debian 12's golang-go is 1.19, too old for deploy/local/go.mod)"
	fi
}

# java_major JAVA prints the feature version (17, 21, 25) of a java binary,
# from its home's `release` file when there is one (no JVM start), else from
# `java -version`.
java_major() {
	local java=$1 home v=
	home=$(dirname -- "$(dirname -- "$(readlink -f -- "$java")")")
	if [[ -r $home/release ]]; then
		v=$(sed -n 's/^JAVA_VERSION="\([^"]*\)".*/\1/p' "$home/release")
	fi
	[[ -n $v ]] || v=$("$java" -version 2>&1 | sed -n 's/.*version "\([^"]*\)".*/\1/p' | head -n 1)
	[[ $v == 1.* ]] && v=${v#1.}
	v=${v%%[.+-]*}
	[[ $v =~ ^[0-9]+$ ]] && printf '%s\n' "$v"
}

# java_candidates prints java binaries to consider, best guesses first: the
# JDKs under JAVA_HOME, then on PATH, then every JVM folder in /usr/lib/jvm
# (where Debian's and Temurin's packages install), newest version first.
java_candidates() {
	local j
	[[ -n ${JAVA_HOME:-} && -x $JAVA_HOME/bin/java ]] && printf '%s\n' "$JAVA_HOME/bin/java"
	command -v java 2>/dev/null || true
	for j in "${JVM_DIR:-/usr/lib/jvm}"/*/bin/java; do
		[[ -x $j ]] && printf '%s %s\n' "$(java_major "$j")" "$j"
	done | sort -rn | cut -d' ' -f2-
}

# find_java MIN OVERRIDE_VAR prints a java binary of version MIN or newer:
# $OVERRIDE_VAR/bin/java if that variable is set (and then it must fit), else
# the first fitting java_candidates. Fails (status 1, nothing printed) when
# there is none; the caller names the fix.
find_java() {
	local min=$1 override=${!2:-} j major
	if [[ -n $override ]]; then
		j=$override/bin/java
		major=$([[ -x $j ]] && java_major "$j")
		((${major:-0} >= min)) || return 1
		printf '%s\n' "$j"
		return 0
	fi
	while read -r j; do
		[[ -n $j ]] || continue
		major=$(java_major "$j")
		if ((${major:-0} >= min)); then
			printf '%s\n' "$j"
			return 0
		fi
	done < <(java_candidates)
	return 1
}

# ---------------------------------------------------------------- processes

# read_cmdline PID sets CMDLINE to the process's command line (arguments
# joined by spaces), or fails if the process is gone. Builtins only, no
# subshell: pid_matching calls it for every process on the machine.
CMDLINE=
read_cmdline() {
	local args=()
	CMDLINE=
	{ mapfile -d '' -t args <"/proc/$1/cmdline"; } 2>/dev/null || return 1
	((${#args[@]})) || return 1
	CMDLINE="${args[*]}"
}

# pid_matching NEEDLE prints the pids whose command line contains NEEDLE (an
# absolute path under RUN_DIR, so it only matches this instance's processes).
pid_matching() {
	local p
	for p in /proc/[0-9]*; do
		p=${p#/proc/}
		[[ $p == "$$" || $p == "$BASHPID" ]] && continue
		read_cmdline "$p" || continue
		[[ $CMDLINE == *"$1"* ]] && printf '%s\n' "$p"
	done
	return 0
}

# running NAME NEEDLE prints the pid of component NAME: the pid in its pid
# file if that process's command line contains NEEDLE (so a recycled pid is
# never mistaken for ours), else a process found by NEEDLE whose pid file was
# lost (it is written again). Fails when there is none.
running() {
	local needle=$2 file=$PID_DIR/$1.pid pid
	if [[ -f $file ]]; then
		pid=$(<"$file")
		if [[ $pid =~ ^[0-9]+$ ]] && read_cmdline "$pid" && [[ $CMDLINE == *"$needle"* ]]; then
			printf '%s\n' "$pid"
			return 0
		fi
		rm -f -- "$file"
	fi
	pid=$(pid_matching "$needle" | head -n 1)
	[[ -n $pid ]] || return 1
	printf '%s\n' "$pid" >"$file"
	printf '%s\n' "$pid"
}

# alive PID: the process exists and is not a zombie (an exited child that
# its parent, here often PID 1, has not reaped yet still answers kill -0).
alive() {
	local stat
	kill -0 "$1" 2>/dev/null || return 1
	{ read -r stat <"/proc/$1/stat"; } 2>/dev/null || return 1
	stat=${stat##*) }
	[[ ${stat%% *} != Z ]]
}

port_in_use() { (: <"/dev/tcp/127.0.0.1/$1") >/dev/null 2>&1; }

# check_ports_free NAME PORT... fails if another process holds a port.
check_ports_free() {
	local name=$1 port
	shift
	for port in "$@"; do
		if port_in_use "$port"; then
			die "$name: port 127.0.0.1:$port is already in use by a process this stack instance did not start (see: ss -ltnp 'sport = :$port'); stop it, or run this instance on other ports (deploy/local/README.md, \"A second instance\")"
		fi
	done
}

# stop_pid NAME PID: SIGTERM, wait up to STOP_TIMEOUT, then SIGKILL.
stop_pid() {
	local name=$1 pid=$2 waited=0
	kill -TERM "$pid" 2>/dev/null || return 0
	while alive "$pid"; do
		if ((waited >= STOP_TIMEOUT * 5)); then
			say "$name (pid $pid) still running after ${STOP_TIMEOUT}s; sending SIGKILL"
			kill -KILL "$pid" 2>/dev/null || true
			sleep 0.5
			break
		fi
		sleep 0.2
		waited=$((waited + 1))
	done
}

# stop_component NAME PID_FUNCTION: stops the process PID_FUNCTION finds.
stop_component() {
	local name=$1 pid
	if ! pid=$($2); then
		say "$name: not running"
		return 0
	fi
	say "$name: stopping (pid $pid)"
	stop_pid "$name" "$pid"
	rm -f -- "$PID_DIR/$name.pid"
}

# wait_ready NAME PID LOGS TIMEOUT_ACTION CHECK... retries CHECK until it
# passes. If the process exits, or START_TIMEOUT passes, it prints the tail of
# the logs (a space-separated list) and fails; on timeout it first runs
# TIMEOUT_ACTION (stops the half-started process, so a retry starts clean).
wait_ready() {
	local name=$1 pid=$2 logs=$3 on_timeout=$4 out
	shift 4
	local deadline=$((SECONDS + START_TIMEOUT))
	while :; do
		if out=$("$@" 2>&1); then
			return 0
		fi
		if [[ -n $pid ]] && ! alive "$pid"; then
			# shellcheck disable=SC2086 # logs is a list of paths without spaces
			show_logs $logs
			die "$name exited during start-up (last check: ${out//$'\n'/ }); logs above"
		fi
		if ((SECONDS >= deadline)); then
			# shellcheck disable=SC2086
			show_logs $logs
			$on_timeout
			die "$name not ready after ${START_TIMEOUT}s (last check: ${out//$'\n'/ }); logs above; raise STACK_START_TIMEOUT if the machine is slow"
		fi
		sleep 0.5
	done
}

# launch PIDFILE LOG CMD... starts CMD in its own session, detached from this
# script (it survives the script's exit and terminal hangups) and without the
# lock descriptor, and records its pid.
launch() {
	local pidfile=$1 log=$2
	shift 2
	# Without job control a background child is not a process group leader,
	# so setsid calls setsid(2) in place and execs: $! is CMD's own pid.
	setsid nohup "$@" >>"$log" 2>&1 </dev/null 9>&- &
	printf '%s\n' "$!" >"$pidfile"
}

# ---------------------------------------------------------------- downloads

# du_mb DIR prints the size of DIR in MB (0 when it does not exist).
du_mb() {
	local s
	s=$(du -sm -- "$1" 2>/dev/null | cut -f1)
	printf '%s\n' "${s:-0}"
}

# with_progress NAME WATCH_DIR LOG CMD... runs CMD (output to LOG) and, while
# it runs, prints every 5 seconds how much WATCH_DIR has grown: a first fetch
# takes minutes on a slow link and must not look hung.
with_progress() {
	local name=$1 watch=$2 log=$3 pid rc=0 start=$SECONDS base now ticks=0
	shift 3
	base=$(du_mb "$watch")
	"$@" >"$log" 2>&1 </dev/null 9>&- &
	pid=$!
	while alive "$pid"; do
		sleep 1
		ticks=$((ticks + 1))
		if ((ticks % 5 == 0)) && alive "$pid"; then
			now=$(du_mb "$watch")
			say "$name: still downloading: $((now - base)) MB so far, $((SECONDS - start))s"
		fi
	done
	wait "$pid" || rc=$?
	return "$rc"
}

# install_dir DIR FILL_FUNCTION builds DIR once: FILL_FUNCTION TMP fills a
# scratch folder beside DIR, which is then renamed into place with a
# .complete stamp, so an interrupted fetch never leaves a half-made DIR and
# two checkouts fetching at once both end with one whole copy.
install_dir() {
	local dir=$1 fill=$2 tmp
	[[ -f $dir/.complete ]] && return 0
	mkdir -p -- "$(dirname -- "$dir")"
	tmp=$(mktemp -d "$dir.tmp.XXXXXX")
	if ! "$fill" "$tmp"; then
		rm -rf -- "$tmp"
		return 1
	fi
	date -u +%FT%TZ >"$tmp/.complete"
	if [[ -e $dir && ! -f $dir/.complete ]]; then
		rm -rf -- "$dir" # an older, interrupted layout
	fi
	if ! mv -T -- "$tmp" "$dir" 2>/dev/null; then
		rm -rf -- "$tmp" # someone else finished first
		[[ -f $dir/.complete ]]
	fi
}

# ---------------------------------------------------------------- readiness probe

# The probe is built from deploy/local/stacktest, so "stack.sh up returned"
# and "stacktest.Require passes" check the same things. Its cache folder is
# named by a hash of its sources: rebuilt when they change, shared by
# checkouts at the same sources.
PROBE=
build_probe() {
	[[ -n $PROBE ]] && return 0
	local hash dir
	hash=$(cd "$LOCAL_DIR" && cat go.mod go.sum stacktest/*.go stacktest/stackprobe/*.go | sha256sum | cut -c1-16)
	dir=$CACHE_DIR/stackprobe-$hash
	if [[ ! -f $dir/.complete ]]; then
		require_go
		mkdir -p "$LOG_DIR"
		fill_probe() {
			(cd "$LOCAL_DIR" && GOWORK=off go build -buildvcs=false -o "$1/stackprobe" ./stacktest/stackprobe) >"$LOG_DIR/build.log" 2>&1
		}
		if ! install_dir "$dir" fill_probe; then
			show_logs "$LOG_DIR/build.log"
			die "go build of deploy/local/stacktest/stackprobe failed; output above"
		fi
	fi
	PROBE=$dir/stackprobe
}

probe() { "$PROBE" -timeout 3s "$@"; }
