# shellcheck shell=bash
# Apicurio Registry, a real schema registry (Confluent API under
# /apis/ccompat/v7), stored in the local Kafka (kafkasql), so schemas and
# their ids survive restarts as long as Kafka's data does.
component registry "schema-registry sr apicurio" "kafka"

REGISTRY_VERSION=3.3.3
SCHEMA_REGISTRY_PORT=${SCHEMA_REGISTRY_PORT:-18081}
SCHEMA_REGISTRY_MANAGEMENT_PORT=${SCHEMA_REGISTRY_MANAGEMENT_PORT:-18082} # /health, /metrics
SCHEMA_REGISTRY_URL=http://127.0.0.1:$SCHEMA_REGISTRY_PORT/apis/ccompat/v7
# A Quarkus app on a small heap: the local registry holds a few dozen schemas.
REGISTRY_JAVA_OPTS=${REGISTRY_JAVA_OPTS:--Xms64m -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1}

REGISTRY_HOME=$CACHE_DIR/apicurio-registry-$REGISTRY_VERSION
REGISTRY_ARTIFACT=io.apicurio:apicurio-registry-app:$REGISTRY_VERSION:tar.gz:all
REGISTRY_RUN=$RUN_DIR/registry
REGISTRY_LOG=$LOG_DIR/registry.log

# registry_java sets REGISTRY_JAVA once. fetch calls it too, so a missing
# Java 21 stops `up` before anything was started.
REGISTRY_JAVA=
registry_java() {
	[[ -n $REGISTRY_JAVA ]] && return 0
	REGISTRY_JAVA=$(find_java 21 REGISTRY_JAVA_HOME) ||
		die "registry: Apicurio Registry $REGISTRY_VERSION needs Java 21 or newer and none was found (REGISTRY_JAVA_HOME${REGISTRY_JAVA_HOME:+=$REGISTRY_JAVA_HOME}, JAVA_HOME, PATH, /usr/lib/jvm/*); run deploy/local/bootstrap.sh, or install a JDK 21+ and set REGISTRY_JAVA_HOME to it"
}

registry_env() { printf 'SCHEMA_REGISTRY_URL=%s\n' "$SCHEMA_REGISTRY_URL"; }

registry_fill() {
	mvn -B org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy \
		-Dartifact="$REGISTRY_ARTIFACT" -DoutputDirectory="$1/download" &&
		tar -xzf "$1/download/apicurio-registry-app-$REGISTRY_VERSION-all.tar.gz" -C "$1" &&
		rm -rf -- "$1/download" && [[ -f $1/quarkus-run.jar ]]
}

# registry_fetch downloads the app (~160 MB, a Quarkus fast-jar) with Maven
# and unpacks it into the cache, once per version.
registry_fetch() {
	registry_java
	[[ -f $REGISTRY_HOME/.complete ]] && return 0
	require_cmds "fetching Apicurio Registry" "maven" mvn
	mkdir -p "$LOG_DIR"
	say "registry: fetching Apicurio Registry $REGISTRY_VERSION (~160 MB) with Maven into $REGISTRY_HOME (once per version; log: $LOG_DIR/registry-maven.log)"
	local started=$SECONDS
	registry_fetch_into() { with_progress registry "$MAVEN_REPO" "$LOG_DIR/registry-maven.log" registry_fill "$1"; }
	if ! install_dir "$REGISTRY_HOME" registry_fetch_into; then
		show_logs "$LOG_DIR/registry-maven.log"
		die "registry: Maven could not fetch $REGISTRY_ARTIFACT (is Maven Central reachable?); output above"
	fi
	say "registry: fetched and unpacked Apicurio Registry $REGISTRY_VERSION ($(du_mb "$REGISTRY_HOME") MB) in $((SECONDS - started))s"
}

# The run folder is on the command line (-Decomstream.stack.run=...), so the
# process is recognised as this instance's.
registry_pid() { running registry "-Decomstream.stack.run=$REGISTRY_RUN"; }

REGISTRY_STARTED_PID=

registry_start() {
	local pid java opts
	if pid=$(registry_pid); then
		already_running registry "$pid"
		REGISTRY_STARTED_PID=$pid
		return 0
	fi
	check_ports_free registry "$SCHEMA_REGISTRY_PORT" "$SCHEMA_REGISTRY_MANAGEMENT_PORT"
	registry_java
	java=$REGISTRY_JAVA
	read -r -a opts <<<"$REGISTRY_JAVA_OPTS"
	mkdir -p "$REGISTRY_RUN/tmp"
	mark_logs registry "$REGISTRY_LOG"
	# Storage in the local Kafka (kafkasql: a journal topic replayed into an
	# in-memory database at start; Apicurio creates its topics with
	# retention.ms=-1 and refuses to start on topics that could lose data).
	# Global compatibility BACKWARD (Apicurio's default is NONE). Loopback
	# only. Quiet: no access log, no audit line per request, no Kafka client
	# config dumps (all INFO); warnings and errors still reach the log.
	launch "$PID_DIR/registry.pid" "$REGISTRY_LOG" env \
		QUARKUS_HTTP_HOST=127.0.0.1 \
		QUARKUS_HTTP_PORT="$SCHEMA_REGISTRY_PORT" \
		QUARKUS_MANAGEMENT_HOST=127.0.0.1 \
		QUARKUS_MANAGEMENT_PORT="$SCHEMA_REGISTRY_MANAGEMENT_PORT" \
		QUARKUS_HTTP_ACCESS_LOG_ENABLED=false \
		QUARKUS_LOG_CATEGORY__IO_APICURIO_REGISTRY_LOGGING_AUDIT__LEVEL=WARN \
		QUARKUS_LOG_CATEGORY__IO_APICURIO_REGISTRY_STORAGE_METRICS__LEVEL=WARN \
		QUARKUS_LOG_CATEGORY__ORG_APACHE_KAFKA__LEVEL=WARN \
		APICURIO_RULES_GLOBAL_COMPATIBILITY=BACKWARD \
		APICURIO_STORAGE_KIND=kafkasql \
		APICURIO_KAFKASQL_BOOTSTRAP_SERVERS="$KAFKA_BROKERS" \
		APICURIO_KAFKASQL_TOPIC=apicurio-kafkasql-journal \
		APICURIO_KAFKASQL_SNAPSHOTS_TOPIC=apicurio-kafkasql-snapshots \
		APICURIO_EVENTS_KAFKA_TOPIC=apicurio-registry-events \
		APICURIO_KAFKASQL_CONSUMER_POLL_TIMEOUT=500 \
		"$java" "${opts[@]}" "-Decomstream.stack.run=$REGISTRY_RUN" \
		"-Djava.io.tmpdir=$REGISTRY_RUN/tmp" -jar "$REGISTRY_HOME/quarkus-run.jar"
	REGISTRY_STARTED_PID=$(<"$PID_DIR/registry.pid")
	say "registry: starting Apicurio Registry $REGISTRY_VERSION (pid $REGISTRY_STARTED_PID, $java)"
}

# registry_check: the management port's readiness (storage loaded from the
# journal) and the Confluent API answering, as the services and tests use it.
registry_check() {
	probe http "http://127.0.0.1:$SCHEMA_REGISTRY_MANAGEMENT_PORT/health/ready" &&
		probe registry "$SCHEMA_REGISTRY_URL"
}

registry_wait() {
	wait_ready registry "$REGISTRY_STARTED_PID" "$REGISTRY_LOG" registry_stop registry_check
	say "registry: ready on $SCHEMA_REGISTRY_URL (global compatibility BACKWARD)$(took registry)"
}

registry_stop() { stop_component registry registry_pid; }

registry_status() {
	local pid err
	if ! pid=$(registry_pid); then
		say "registry: not running"
		return 1
	fi
	if err=$(registry_check 2>&1); then
		say "registry: running (pid $pid), ready on $SCHEMA_REGISTRY_URL, Apicurio Registry $REGISTRY_VERSION"
	else
		say "registry: running (pid $pid) but NOT ready: $err"
		return 1
	fi
}
