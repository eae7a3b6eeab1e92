#!/usr/bin/env bash
# Local stack: Apache Kafka (KRaft, one node), PostgreSQL 15, Apicurio
# Registry, the BigQuery emulator, Jaeger v2 and Prometheus, as plain
# background processes (no containers).
#
#   deploy/local/stack.sh up     [component ...]   start (and what they need)
#   deploy/local/stack.sh down   [component ...]   stop (and what needs them)
#   deploy/local/stack.sh status [component ...]   exit 3 if one is not ready
#   deploy/local/stack.sh fetch  [component ...]   download only (warm the cache)
#   deploy/local/stack.sh reset                    down, then delete the run folder
#   deploy/local/stack.sh env    [component ...]   export lines for the endpoints
#
# Components: kafka, postgres, registry, bqemulator, jaeger, prometheus (all
# when none is named; the first `up` of jaeger builds it, about 4 minutes).
# `up` and `down` are idempotent. State lives in <repo>/.run (STACK_RUN_DIR),
# downloads in ~/.cache/ecomstream (STACK_CACHE_DIR); ports: KAFKA_PORT,
# KAFKA_CONTROLLER_PORT, PG_PORT, SCHEMA_REGISTRY_PORT,
# SCHEMA_REGISTRY_MANAGEMENT_PORT, BQ_EMULATOR_REST_PORT, BQ_EMULATOR_GRPC_PORT,
# JAEGER_OTLP_HTTP_PORT, JAEGER_OTLP_GRPC_PORT, JAEGER_QUERY_PORT,
# JAEGER_QUERY_GRPC_PORT, JAEGER_HEALTH_PORT, PROMETHEUS_PORT.
# One file per component in stack/; see README.md here.
set -euo pipefail

STACK_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/stack" && pwd -P)
# shellcheck source=stack/lib.sh
source "$STACK_DIR/lib.sh"
# Start order. A component file registers itself (component NAME ...) and
# defines NAME_fetch, _start, _wait, _stop, _status and _env.
for f in kafka postgres registry bqemulator jaeger prometheus; do
	# shellcheck source=/dev/null
	source "$STACK_DIR/$f.sh"
done

# select_components [--needs|--dependents] ARGS... sets SELECTED to the named
# components (all when none is named), in start order; with --needs also
# what they need (for up), with --dependents also what needs them (for down:
# the registry stops before its Kafka does).
SELECTED=()
select_components() {
	local mode=
	if [[ ${1:-} == --needs || ${1:-} == --dependents ]]; then
		mode=$1
		shift
	fi
	local want=" " c d n
	if (($# == 0)); then
		SELECTED=("${COMPONENTS[@]}")
		return 0
	fi
	for c in "$@"; do
		n=${COMPONENT_ALIAS[$c]:-}
		[[ -n $n ]] || die "unknown component '$c' (want: ${COMPONENTS[*]})"
		want+="$n "
		if [[ $mode == --needs ]]; then
			for d in ${COMPONENT_NEEDS[$n]}; do want+="$d "; done
		fi
	done
	if [[ $mode == --dependents ]]; then
		for c in "${COMPONENTS[@]}"; do # start order: needs come first
			for d in ${COMPONENT_NEEDS[$c]}; do
				[[ $want == *" $d "* ]] && want+="$c "
			done
		done
	fi
	SELECTED=()
	for c in "${COMPONENTS[@]}"; do
		[[ $want == *" $c "* ]] && SELECTED+=("$c")
	done
	return 0
}

print_endpoints() {
	local c
	for c in "${SELECTED[@]}"; do "${c}_env"; done
}

# lock serialises concurrent invocations on one run folder (fd 9; closed for
# every process the script starts, so a running component never holds it).
lock() {
	mkdir -p "$LOG_DIR" "$PID_DIR"
	exec 9>"$RUN_DIR/stack.lock"
	if ! flock -w 300 9; then
		die "another stack.sh is still running after 300s (lock $RUN_DIR/stack.lock)"
	fi
}

# await NAME waits for a started component once.
declare -A AWAITED=()
await() {
	[[ -n ${AWAITED[$1]:-} ]] && return 0
	"${1}_wait"
	AWAITED[$1]=1
}

cmd_up() {
	select_components --needs "$@"
	lock
	local started=$SECONDS c d
	build_probe
	# Every download first (they can take minutes on a first run; a failed
	# one stops before anything was started).
	for c in "${SELECTED[@]}"; do "${c}_fetch"; done
	# Start in order; a component's needs are ready before it starts, the
	# others boot side by side (Kafka's JVM while PostgreSQL initialises).
	for c in "${SELECTED[@]}"; do
		for d in ${COMPONENT_NEEDS[$c]}; do await "$d"; done
		STARTED_AT[$c]=$SECONDS
		"${c}_start"
	done
	for c in "${SELECTED[@]}"; do await "$c"; done
	say "up in $((SECONDS - started))s; logs in $LOG_DIR"
	print_endpoints
}

cmd_fetch() {
	select_components --needs "$@"
	lock
	local c
	for c in "${SELECTED[@]}"; do "${c}_fetch"; done
}

cmd_down() {
	select_components --dependents "$@"
	lock
	local i
	for ((i = ${#SELECTED[@]} - 1; i >= 0; i--)); do "${SELECTED[i]}_stop"; done
}

cmd_status() {
	select_components "$@"
	mkdir -p "$LOG_DIR" "$PID_DIR"
	local rc=0 c
	build_probe
	for c in "${SELECTED[@]}"; do "${c}_status" || rc=3; done
	((rc == 0)) && print_endpoints
	return "$rc"
}

cmd_reset() {
	(($# == 0)) || die "reset takes no component: it deletes all of $RUN_DIR"
	# Never delete a folder that is not a run folder (STACK_RUN_DIR=$HOME...).
	if [[ -e $RUN_DIR && ! -e $RUN_DIR/stack.lock ]] || [[ $RUN_DIR == / || $RUN_DIR -ef $HOME ]]; then
		die "reset: $RUN_DIR does not look like a stack run folder (no stack.lock); not deleting it"
	fi
	cmd_down
	say "deleting $RUN_DIR (data, logs, pids; the registry's schemas are in Kafka's data); $CACHE_DIR is kept"
	rm -rf -- "$RUN_DIR"
}

cmd_env() {
	select_components "$@"
	local line
	print_endpoints | while IFS= read -r line; do
		printf "export %s='%s'\n" "${line%%=*}" "${line#*=}"
	done
}

usage() {
	sed -n '2,21p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

main() {
	local cmd=${1:-}
	(($#)) && shift
	case $cmd in
	up) cmd_up "$@" ;;
	fetch) cmd_fetch "$@" ;;
	down) cmd_down "$@" ;;
	status) cmd_status "$@" ;;
	reset) cmd_reset "$@" ;;
	env) cmd_env "$@" ;;
	-h | --help | help) usage ;;
	*)
		usage >&2
		exit 2
		;;
	esac
}

main "$@"
