#!/usr/bin/env bash
# Local stack: Apache Kafka (KRaft, one node), PostgreSQL 15 and a schema
# registry stand-in, as plain background processes (no containers).
#
#   deploy/local/stack.sh up     [kafka|postgres|schema-registry ...]
#   deploy/local/stack.sh down   [kafka|postgres|schema-registry ...]
#   deploy/local/stack.sh status [kafka|postgres|schema-registry ...]
#   deploy/local/stack.sh reset      # down, then delete .run/ (keeps .cache/)
#   deploy/local/stack.sh env        # export lines for the endpoints
#
# `up` and `down` are idempotent: up when up, or down when down, succeeds and
# changes nothing. State lives in <repo>/.run (data, logs, pids), downloads
# and binaries in <repo>/.cache; both are git-ignored. See README.md here.
set -euo pipefail

# ---------------------------------------------------------------- layout

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
REPO_ROOT=$(cd -- "$SCRIPT_DIR/../.." && pwd -P)

CACHE_DIR=$REPO_ROOT/.cache
RUN_DIR=$REPO_ROOT/.run
LOG_DIR=$RUN_DIR/logs
PID_DIR=$RUN_DIR/pids
BIN_DIR=$CACHE_DIR/bin
PROBE=$BIN_DIR/stackprobe

KAFKA_POM=$SCRIPT_DIR/kafka/pom.xml
KAFKA_TEMPLATE=$SCRIPT_DIR/kafka/server.properties.tmpl
KAFKA_LOG4J=$SCRIPT_DIR/kafka/log4j2.properties
KAFKA_LIBS=$CACHE_DIR/kafka/libs
KAFKA_RUN=$RUN_DIR/kafka
KAFKA_CONFIG=$KAFKA_RUN/server.properties
KAFKA_PORT=19092
KAFKA_CONTROLLER_PORT=19093
KAFKA_BROKERS=127.0.0.1:$KAFKA_PORT
KAFKA_HEAP_OPTS=${KAFKA_HEAP_OPTS:--Xms256m -Xmx768m}

PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
PG_RUN=$RUN_DIR/postgres
PG_DATA=$PG_RUN/data
PG_SOCKET_DIR=$PG_RUN/socket
PG_PORT=15432
DATABASE_URL="postgres://ecom:ecom@127.0.0.1:$PG_PORT/ecom?sslmode=disable"

SR_RUN=$RUN_DIR/schema-registry
SR_JOURNAL=$SR_RUN/journal.jsonl
SR_PORT=18081
SCHEMA_REGISTRY_URL=http://127.0.0.1:$SR_PORT

START_TIMEOUT=${STACK_START_TIMEOUT:-120} # seconds, per component
STOP_TIMEOUT=${STACK_STOP_TIMEOUT:-30}    # seconds before SIGKILL

COMPONENTS=(postgres kafka schema-registry)

# ---------------------------------------------------------------- helpers

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

# require_java sets JAVA to $JAVA_HOME/bin/java when JAVA_HOME is set (as
# Kafka's own scripts do), else to the java on PATH, and checks its version.
JAVA=java
require_java() {
	if [[ -n ${JAVA_HOME:-} && -x $JAVA_HOME/bin/java ]]; then
		JAVA=$JAVA_HOME/bin/java
	else
		require_cmds "Kafka" "openjdk-17-jre-headless" java
		JAVA=$(command -v java)
	fi
	local v major
	v=$("$JAVA" -version 2>&1 | sed -n 's/.*version "\([^"]*\)".*/\1/p' | head -n 1)
	major=${v%%.*}
	[[ $major == 1 ]] && major=$(cut -d. -f2 <<<"$v")
	if [[ ! $major =~ ^[0-9]+$ ]] || ((major < 17)); then
		die "Kafka 4 needs Java 17 or newer, found '${v:-unknown}' ($JAVA); install on Debian with: apt-get install -y openjdk-17-jre-headless"
	fi
}

require_go() {
	if ! command -v go >/dev/null 2>&1 && [[ -x /usr/local/go/bin/go ]]; then
		PATH=$PATH:/usr/local/go/bin
	fi
	if ! command -v go >/dev/null 2>&1; then
		die "missing go (needed to build the schema registry and readiness probe); install Go 1.26 into /usr/local/go (https://go.dev/doc/install; Debian 12's golang-go is 1.19, too old for deploy/local/go.mod)"
	fi
}

require_postgres() {
	require_cmds "PostgreSQL" "postgresql-15" "$PG_BIN/postgres" "$PG_BIN/initdb" "$PG_BIN/pg_ctl" "$PG_BIN/pg_isready" "$PG_BIN/psql"
}

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
# absolute path under .run, so it only matches this checkout's processes).
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
			die "$name: port 127.0.0.1:$port is already in use by a process this script did not start (see: ss -ltnp 'sport = :$port'); stop it or run: $0 down"
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

# build_tools compiles the schema registry and the readiness probe unless
# both binaries are newer than every source they are built from. It builds
# into a temporary folder and renames, so a running binary is never
# overwritten in place.
TOOLS_BUILT=
build_tools() {
	[[ -n $TOOLS_BUILT ]] && return 0
	local tmp newer
	if [[ -x $BIN_DIR/schema-registry && -x $PROBE ]]; then
		newer=$(find "$SCRIPT_DIR/go.mod" "$SCRIPT_DIR/go.sum" "$SCRIPT_DIR/cmd/schema-registry" "$SCRIPT_DIR/stacktest" \
			-name '*.go' -newer "$BIN_DIR/schema-registry" -o -name 'go.*' -newer "$BIN_DIR/schema-registry" -o \
			-name '*.go' -newer "$PROBE" -o -name 'go.*' -newer "$PROBE" | head -n 1)
		if [[ -z $newer ]]; then
			TOOLS_BUILT=1
			return 0
		fi
	fi
	require_go
	mkdir -p "$BIN_DIR"
	tmp=$(mktemp -d "$BIN_DIR/.build.XXXXXX")
	if ! (cd "$SCRIPT_DIR" && GOWORK=off go build -buildvcs=false -o "$tmp/" ./cmd/schema-registry ./stacktest/stackprobe) >"$LOG_DIR/build.log" 2>&1; then
		rm -rf -- "$tmp"
		show_logs "$LOG_DIR/build.log"
		die "go build of deploy/local/cmd/schema-registry and stacktest/stackprobe failed; output above"
	fi
	mv -f -- "$tmp/schema-registry" "$tmp/stackprobe" "$BIN_DIR/"
	rmdir -- "$tmp"
	TOOLS_BUILT=1
}

probe() { "$PROBE" -timeout 3s "$@"; }

# ---------------------------------------------------------------- kafka

kafka_version() {
	local jar
	for jar in "$KAFKA_LIBS"/kafka_2.13-*.jar; do
		[[ -e $jar ]] || continue
		jar=${jar##*/kafka_2.13-}
		printf '%s\n' "${jar%.jar}"
		return 0
	done
	printf 'unknown\n'
}

# kafka_fetch downloads Kafka and its runtime dependencies with Maven unless
# the jars for the current pom.xml are already in .cache/kafka/libs.
kafka_fetch() {
	local stamp=$KAFKA_LIBS/.pom.sha256 want tmp jars started
	want=$(sha256sum <"$KAFKA_POM" | cut -d' ' -f1)
	jars=("$KAFKA_LIBS"/kafka_2.13-*.jar)
	if [[ -e ${jars[0]} && -f $stamp && $(<"$stamp") == "$want" ]]; then
		return 0
	fi
	require_cmds "fetching the Kafka jars" "maven" mvn
	say "kafka: fetching jars with Maven into $KAFKA_LIBS (first run only; log: $LOG_DIR/kafka-maven.log)"
	started=$SECONDS
	mkdir -p "$CACHE_DIR/kafka"
	tmp=$(mktemp -d "$CACHE_DIR/kafka/.libs.XXXXXX")
	if ! mvn -q -B -f "$KAFKA_POM" dependency:copy-dependencies \
		-DincludeScope=runtime -DoutputDirectory="$tmp" >"$LOG_DIR/kafka-maven.log" 2>&1; then
		rm -rf -- "$tmp"
		show_logs "$LOG_DIR/kafka-maven.log"
		die "kafka: Maven could not fetch the jars (is Maven Central reachable?); output above"
	fi
	printf '%s\n' "$want" >"$tmp/.pom.sha256"
	rm -rf -- "$KAFKA_LIBS"
	mv -- "$tmp" "$KAFKA_LIBS"
	say "kafka: fetched $(find "$KAFKA_LIBS" -name '*.jar' | wc -l) jars in $((SECONDS - started))s"
}

# kafka_java_cmd sets KAFKA_JAVA to the java command line (without the main
# class): JVM flags as in Kafka's kafka-run-class.sh, with a small heap.
KAFKA_JAVA=()
kafka_java_cmd() {
	local heap
	read -r -a heap <<<"$KAFKA_HEAP_OPTS"
	KAFKA_JAVA=("$JAVA" "${heap[@]}" -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20
		-XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent
		-Djava.awt.headless=true
		"-Dlog4j2.configurationFile=$KAFKA_LOG4J" "-Dkafka.logs.dir=$LOG_DIR"
		-cp "$KAFKA_LIBS/*")
}

kafka_java() { "${KAFKA_JAVA[@]}" "$@"; }

kafka_pid() { running kafka "$KAFKA_CONFIG"; }

kafka_start() {
	local pid
	if pid=$(kafka_pid); then
		say "kafka: already running (pid $pid)"
		KAFKA_STARTED_PID=$pid
		return 0
	fi
	check_ports_free kafka "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT"
	require_java
	kafka_fetch
	kafka_java_cmd
	mkdir -p "$KAFKA_RUN/data"
	sed "s#@KAFKA_DATA_DIR@#$KAFKA_RUN/data#g" "$KAFKA_TEMPLATE" >"$KAFKA_CONFIG"
	if [[ ! -f $KAFKA_RUN/data/meta.properties ]]; then
		local cluster_id
		if [[ -s $KAFKA_RUN/cluster.id ]]; then
			cluster_id=$(<"$KAFKA_RUN/cluster.id")
		else
			cluster_id=$(kafka_java kafka.tools.StorageTool random-uuid 2>>"$LOG_DIR/kafka-format.log")
			printf '%s\n' "$cluster_id" >"$KAFKA_RUN/cluster.id"
		fi
		# Kafka 4 has no ZooKeeper and needs its storage formatted before the
		# first start; --standalone makes this node the single KRaft voter.
		if ! kafka_java kafka.tools.StorageTool format --standalone \
			--cluster-id "$cluster_id" --config "$KAFKA_CONFIG" >>"$LOG_DIR/kafka-format.log" 2>&1; then
			show_logs "$LOG_DIR/kafka-format.log"
			die "kafka: formatting the storage in $KAFKA_RUN/data failed; output above"
		fi
		say "kafka: formatted storage (cluster id $cluster_id)"
	fi
	mark_logs kafka "$LOG_DIR/kafka.out" "$LOG_DIR/kafka.log"
	launch "$PID_DIR/kafka.pid" "$LOG_DIR/kafka.out" "${KAFKA_JAVA[@]}" kafka.Kafka "$KAFKA_CONFIG"
	KAFKA_STARTED_PID=$(<"$PID_DIR/kafka.pid")
	say "kafka: starting Apache Kafka $(kafka_version) (pid $KAFKA_STARTED_PID)"
}

KAFKA_STARTED_PID=

kafka_wait() {
	wait_ready kafka "$KAFKA_STARTED_PID" "$LOG_DIR/kafka.out $LOG_DIR/kafka.log" kafka_stop \
		probe kafka "$KAFKA_BROKERS"
	say "kafka: ready on $KAFKA_BROKERS"
}

kafka_stop() {
	local pid
	if ! pid=$(kafka_pid); then
		say "kafka: not running"
		return 0
	fi
	say "kafka: stopping (pid $pid)"
	stop_pid kafka "$pid"
	rm -f -- "$PID_DIR/kafka.pid"
}

kafka_status() {
	local pid err
	if ! pid=$(kafka_pid); then
		say "kafka: not running"
		return 1
	fi
	if err=$(probe kafka "$KAFKA_BROKERS" 2>&1); then
		say "kafka: running (pid $pid), ready on $KAFKA_BROKERS, Apache Kafka $(kafka_version)"
	else
		say "kafka: running (pid $pid) but NOT ready: $err"
		return 1
	fi
}

# ---------------------------------------------------------------- postgres

# PostgreSQL refuses to run as root. As root, run it as the `postgres` system
# user (created by Debian's postgresql packages) or, failing that, a system
# user `ecomstack` created here.
PG_OS_USER=
pg_os_user() {
	[[ -n $PG_OS_USER ]] && return 0
	if ((EUID != 0)); then
		PG_OS_USER=$(id -un)
	elif id -u postgres >/dev/null 2>&1; then
		PG_OS_USER=postgres
	else
		if ! id -u ecomstack >/dev/null 2>&1; then
			say "postgres: creating system user ecomstack to run PostgreSQL (it refuses to run as root)"
			useradd --system --user-group --no-create-home --home-dir /nonexistent \
				--shell /usr/sbin/nologin ecomstack
		fi
		PG_OS_USER=ecomstack
	fi
}

# as_pg CMD... runs a PostgreSQL program as PG_OS_USER, from a folder that
# user can read, without the lock descriptor.
as_pg() {
	if ((EUID == 0)); then
		(cd "$PG_RUN" && runuser -u "$PG_OS_USER" -- "$@" 9>&-)
	else
		(cd "$PG_RUN" && "$@" 9>&-)
	fi
}

# pg_prepare makes .run/postgres usable by PG_OS_USER: owned by it, and every
# folder above it searchable (traverse-only, o+x) if it is not already.
pg_prepare() {
	pg_os_user
	mkdir -p "$PG_RUN" "$PG_SOCKET_DIR"
	chmod 700 "$PG_SOCKET_DIR"
	touch "$LOG_DIR/postgres.log"
	if ((EUID == 0)); then
		# Top down, so each folder is judged once its parents are reachable.
		local d=$PG_RUN ancestors=() i
		while [[ $d != / ]]; do
			d=$(dirname -- "$d")
			ancestors=("$d" "${ancestors[@]}")
		done
		for i in "${ancestors[@]}"; do
			if ! runuser -u "$PG_OS_USER" -- test -x "$i" 2>/dev/null; then
				say "postgres: granting search permission (o+x) on $i so $PG_OS_USER can reach $PG_RUN"
				chmod o+x -- "$i"
			fi
		done
		chown -R "$PG_OS_USER:" "$PG_RUN"
		chown "$PG_OS_USER:" "$LOG_DIR/postgres.log"
	fi
}

pg_is_running() { [[ -f $PG_DATA/PG_VERSION ]] && as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1; }

pg_pid() {
	pg_is_running || return 1
	head -n 1 "$PG_DATA/postmaster.pid"
}

pg_psql() {
	"$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$PG_SOCKET_DIR" -p "$PG_PORT" -U postgres "$@"
}

pg_up() {
	require_postgres
	pg_prepare
	if pg_is_running; then
		say "postgres: already running (pid $(pg_pid))"
	else
		check_ports_free postgres "$PG_PORT"
		if [[ ! -f $PG_DATA/PG_VERSION ]]; then
			# initdb into a scratch folder and rename, so an interrupted
			# initdb never leaves a half-made data folder behind.
			local tmp=$PG_RUN/data.initdb
			rm -rf -- "$tmp"
			if ! as_pg "$PG_BIN/initdb" -D "$tmp" -U postgres -E UTF8 --no-locale \
				--auth-local=trust --auth-host=scram-sha-256 >>"$LOG_DIR/postgres-initdb.log" 2>&1; then
				show_logs "$LOG_DIR/postgres-initdb.log"
				die "postgres: initdb failed; output above"
			fi
			rm -rf -- "$PG_DATA"
			mv -- "$tmp" "$PG_DATA"
			say "postgres: initialised $PG_DATA"
		fi
		say "postgres: starting"
		mark_logs postgres "$LOG_DIR/postgres.log"
		# pg_ctl detaches the server into its own session (setsid) itself.
		if ! as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$LOG_DIR/postgres.log" -w -t "$START_TIMEOUT" \
			-o "-c listen_addresses=127.0.0.1 -c port=$PG_PORT -c unix_socket_directories='$PG_SOCKET_DIR'" \
			start >"$LOG_DIR/postgres-ctl.log" 2>&1; then
			show_logs "$LOG_DIR/postgres-ctl.log" "$LOG_DIR/postgres.log"
			as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" stop -m immediate >/dev/null 2>&1 || true
			die "postgres: did not start within ${START_TIMEOUT}s; logs above"
		fi
	fi
	wait_ready postgres "" "$LOG_DIR/postgres.log" : \
		"$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT"
	pg_pid >"$PID_DIR/postgres.pid"

	# Role and database for the services (idempotent; password re-set each
	# time so a changed password cannot drift from DATABASE_URL).
	if ! pg_psql -d postgres >"$LOG_DIR/postgres-setup.log" 2>&1 <<-'SQL'; then
		SELECT 'CREATE ROLE ecom' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'ecom') \gexec
		ALTER ROLE ecom WITH LOGIN CREATEDB PASSWORD 'ecom';
		SELECT 'CREATE DATABASE ecom OWNER ecom' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'ecom') \gexec
	SQL
		show_logs "$LOG_DIR/postgres-setup.log"
		die "postgres: creating role/database ecom failed; output above"
	fi
	wait_ready postgres "" "$LOG_DIR/postgres.log" : probe postgres "$DATABASE_URL"
	say "postgres: ready on 127.0.0.1:$PG_PORT (role and database ecom)"
}

pg_stop() {
	if [[ ! -f $PG_DATA/PG_VERSION ]]; then
		say "postgres: not running"
		return 0
	fi
	require_postgres
	pg_os_user
	if ! pg_is_running; then
		say "postgres: not running"
		rm -f -- "$PID_DIR/postgres.pid"
		return 0
	fi
	local pid
	pid=$(pg_pid)
	say "postgres: stopping (pid $pid)"
	if ! as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" stop -m fast -w -t "$STOP_TIMEOUT" >/dev/null 2>&1; then
		say "postgres: fast shutdown timed out; shutting down immediately"
		as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" stop -m immediate -w -t 10 >/dev/null 2>&1 ||
			stop_pid postgres "$pid"
	fi
	rm -f -- "$PID_DIR/postgres.pid"
}

pg_status() {
	if [[ ! -f $PG_DATA/PG_VERSION ]]; then
		say "postgres: not running (no data folder yet)"
		return 1
	fi
	require_postgres
	pg_os_user
	if ! pg_is_running; then
		say "postgres: not running"
		return 1
	fi
	local err
	if err=$(probe postgres "$DATABASE_URL" 2>&1); then
		say "postgres: running (pid $(pg_pid)), ready on 127.0.0.1:$PG_PORT"
	else
		say "postgres: running (pid $(pg_pid)) but NOT ready: $err"
		return 1
	fi
}

# ---------------------------------------------------------------- schema registry

sr_pid() { running schema-registry "$SR_JOURNAL"; }
SR_STARTED_PID=

sr_start() {
	local pid
	if pid=$(sr_pid); then
		say "schema-registry: already running (pid $pid)"
		SR_STARTED_PID=$pid
		return 0
	fi
	check_ports_free schema-registry "$SR_PORT"
	mkdir -p "$SR_RUN"
	mark_logs schema-registry "$LOG_DIR/schema-registry.log"
	launch "$PID_DIR/schema-registry.pid" "$LOG_DIR/schema-registry.log" \
		"$BIN_DIR/schema-registry" -listen "127.0.0.1:$SR_PORT" -journal "$SR_JOURNAL"
	SR_STARTED_PID=$(<"$PID_DIR/schema-registry.pid")
	say "schema-registry: starting (pid $SR_STARTED_PID; local stand-in, journal $SR_JOURNAL)"
}

sr_wait() {
	wait_ready schema-registry "$SR_STARTED_PID" "$LOG_DIR/schema-registry.log" sr_stop \
		probe http "$SCHEMA_REGISTRY_URL/healthz"
	say "schema-registry: ready on $SCHEMA_REGISTRY_URL"
}

sr_stop() {
	local pid
	if ! pid=$(sr_pid); then
		say "schema-registry: not running"
		return 0
	fi
	say "schema-registry: stopping (pid $pid)"
	stop_pid schema-registry "$pid"
	rm -f -- "$PID_DIR/schema-registry.pid"
}

sr_status() {
	local pid err
	if ! pid=$(sr_pid); then
		say "schema-registry: not running"
		return 1
	fi
	if err=$(probe http "$SCHEMA_REGISTRY_URL/healthz" 2>&1); then
		say "schema-registry: running (pid $pid), ready on $SCHEMA_REGISTRY_URL"
	else
		say "schema-registry: running (pid $pid) but NOT ready: $err"
		return 1
	fi
}

# ---------------------------------------------------------------- commands

# select_components ARGS... sets SELECTED to the named components (all when
# none is named), in start order.
SELECTED=()
select_components() {
	local want=" $* " c
	SELECTED=()
	if (($# == 0)); then
		SELECTED=("${COMPONENTS[@]}")
		return 0
	fi
	for c in "$@"; do
		case $c in
		kafka | postgres | schema-registry) ;;
		registry | sr) want+=" schema-registry " ;;
		pg | postgresql) want+=" postgres " ;;
		*) die "unknown component '$c' (want: ${COMPONENTS[*]})" ;;
		esac
	done
	for c in "${COMPONENTS[@]}"; do
		[[ $want == *" $c "* ]] && SELECTED+=("$c")
	done
	return 0
}

selected() { [[ " ${SELECTED[*]} " == *" $1 "* ]]; }

print_endpoints() {
	if selected kafka; then printf 'KAFKA_BROKERS=%s\n' "$KAFKA_BROKERS"; fi
	if selected schema-registry; then printf 'SCHEMA_REGISTRY_URL=%s\n' "$SCHEMA_REGISTRY_URL"; fi
	if selected postgres; then printf 'DATABASE_URL=%s\n' "$DATABASE_URL"; fi
	return 0
}

prepare_run_dirs() {
	mkdir -p "$LOG_DIR" "$PID_DIR"
}

# lock serialises concurrent invocations (fd 9; closed for every process the
# script starts, so a running component never holds it).
lock() {
	prepare_run_dirs
	exec 9>"$RUN_DIR/stack.lock"
	if ! flock -w 300 9; then
		die "another stack.sh is still running after 300s (lock $RUN_DIR/stack.lock)"
	fi
}

cmd_up() {
	select_components "$@"
	lock
	local started=$SECONDS
	build_tools
	# Kafka's JVM takes longest: start it first and let the others start
	# while it boots.
	if selected kafka; then kafka_start; fi
	if selected schema-registry; then sr_start; fi
	if selected postgres; then pg_up; fi
	if selected schema-registry; then sr_wait; fi
	if selected kafka; then kafka_wait; fi
	say "up in $((SECONDS - started))s; logs in $LOG_DIR"
	print_endpoints
}

cmd_down() {
	select_components "$@"
	lock
	# Reverse start order.
	if selected schema-registry; then sr_stop; fi
	if selected kafka; then kafka_stop; fi
	if selected postgres; then pg_stop; fi
	return 0
}

cmd_status() {
	select_components "$@"
	prepare_run_dirs
	local rc=0
	if [[ ! -x $PROBE ]]; then
		lock
		build_tools
	fi
	if selected postgres; then pg_status || rc=3; fi
	if selected kafka; then kafka_status || rc=3; fi
	if selected schema-registry; then sr_status || rc=3; fi
	((rc == 0)) && print_endpoints
	return "$rc"
}

cmd_reset() {
	(($# == 0)) || die "reset takes no component: it deletes all of $RUN_DIR"
	cmd_down
	say "deleting $RUN_DIR (data, logs, pids, registry journal); $CACHE_DIR is kept"
	rm -rf -- "$RUN_DIR"
}

cmd_env() {
	printf 'export KAFKA_BROKERS=%s\n' "$KAFKA_BROKERS"
	printf 'export SCHEMA_REGISTRY_URL=%s\n' "$SCHEMA_REGISTRY_URL"
	printf "export DATABASE_URL='%s'\n" "$DATABASE_URL"
}

usage() {
	sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

main() {
	local cmd=${1:-}
	(($#)) && shift
	case $cmd in
	up) cmd_up "$@" ;;
	down) cmd_down "$@" ;;
	status) cmd_status "$@" ;;
	reset) cmd_reset "$@" ;;
	env) cmd_env ;;
	-h | --help | help) usage ;;
	*)
		usage >&2
		exit 2
		;;
	esac
}

main "$@"
