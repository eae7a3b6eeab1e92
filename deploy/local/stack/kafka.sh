# shellcheck shell=bash
# Apache Kafka (KRaft, one combined broker + controller) from its Maven
# Central jars, run with `java -cp`.
component kafka "" ""

KAFKA_PORT=${KAFKA_PORT:-19092}
KAFKA_CONTROLLER_PORT=${KAFKA_CONTROLLER_PORT:-19093}
KAFKA_BROKERS=127.0.0.1:$KAFKA_PORT
KAFKA_HEAP_OPTS=${KAFKA_HEAP_OPTS:--Xms256m -Xmx768m}

KAFKA_POM=$LOCAL_DIR/kafka/pom.xml
KAFKA_TEMPLATE=$LOCAL_DIR/kafka/server.properties.tmpl
KAFKA_LOG4J=$LOCAL_DIR/kafka/log4j2.properties
KAFKA_RUN=$RUN_DIR/kafka
KAFKA_CONFIG=$KAFKA_RUN/server.properties

KAFKA_VERSION=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$KAFKA_POM")
# Named by version and by a hash of the pom without its comments (its other
# pins: log4j, slf4j), so a changed dependency is a new folder.
KAFKA_HOME_DIR=$CACHE_DIR/kafka-$KAFKA_VERSION-$(sed '/<!--/,/-->/d' "$KAFKA_POM" | sha256sum | cut -c1-8)
KAFKA_LIBS=$KAFKA_HOME_DIR/libs

kafka_env() {
	printf 'KAFKA_BROKERS=%s\n' "$KAFKA_BROKERS"
	# For the runbooks' operator commands (java -cp "$KAFKA_CLASSPATH" ...).
	printf 'KAFKA_CLASSPATH=%s\n' "$KAFKA_LIBS/*"
}

kafka_fill() {
	mvn -B -f "$KAFKA_POM" dependency:copy-dependencies \
		-DincludeScope=runtime -DoutputDirectory="$1/libs"
}

# kafka_fetch downloads Kafka and its runtime dependencies with Maven unless
# they are in the cache already.
kafka_fetch() {
	kafka_java_cmd # fails early when there is no Java 17
	[[ -f $KAFKA_HOME_DIR/.complete ]] && return 0
	require_cmds "fetching the Kafka jars" "maven" mvn
	mkdir -p "$LOG_DIR"
	say "kafka: fetching Apache Kafka $KAFKA_VERSION with Maven into $KAFKA_HOME_DIR (once per version; log: $LOG_DIR/kafka-maven.log)"
	local started=$SECONDS
	kafka_fetch_into() { with_progress kafka "$MAVEN_REPO" "$LOG_DIR/kafka-maven.log" kafka_fill "$1"; }
	if ! install_dir "$KAFKA_HOME_DIR" kafka_fetch_into; then
		show_logs "$LOG_DIR/kafka-maven.log"
		die "kafka: Maven could not fetch the jars (is Maven Central reachable?); output above"
	fi
	say "kafka: fetched $(find "$KAFKA_LIBS" -name '*.jar' | wc -l) jars ($(du_mb "$KAFKA_LIBS") MB) in $((SECONDS - started))s"
}

# kafka_java_cmd sets KAFKA_JAVA to the java command line (without the main
# class): JVM flags as in Kafka's kafka-run-class.sh, with a small heap.
KAFKA_JAVA=()
kafka_java_cmd() {
	((${#KAFKA_JAVA[@]})) && return 0
	local java heap
	java=$(find_java 17 KAFKA_JAVA_HOME) ||
		die "kafka: Kafka 4 needs Java 17 or newer and none was found (KAFKA_JAVA_HOME${KAFKA_JAVA_HOME:+=$KAFKA_JAVA_HOME}, JAVA_HOME, PATH, /usr/lib/jvm); install on Debian with: apt-get install -y openjdk-17-jre-headless (or set KAFKA_JAVA_HOME)"
	read -r -a heap <<<"$KAFKA_HEAP_OPTS"
	KAFKA_JAVA=("$java" "${heap[@]}" -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20
		-XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent
		-Djava.awt.headless=true
		"-Dlog4j2.configurationFile=$KAFKA_LOG4J" "-Dkafka.logs.dir=$LOG_DIR"
		-cp "$KAFKA_LIBS/*")
}

# The config path is Kafka's last argument; the leading space keeps
# /tmp/a/... from matching /x/tmp/a/... (another instance's run folder).
kafka_pid() { running kafka " $KAFKA_CONFIG"; }

KAFKA_STARTED_PID=

kafka_start() {
	local pid
	if pid=$(kafka_pid); then
		already_running kafka "$pid"
		KAFKA_STARTED_PID=$pid
		return 0
	fi
	check_ports_free kafka "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT"
	kafka_java_cmd
	mkdir -p "$KAFKA_RUN/data"
	sed -e "s#@KAFKA_DATA_DIR@#$KAFKA_RUN/data#g" -e "s#@KAFKA_PORT@#$KAFKA_PORT#g" \
		-e "s#@KAFKA_CONTROLLER_PORT@#$KAFKA_CONTROLLER_PORT#g" "$KAFKA_TEMPLATE" >"$KAFKA_CONFIG"
	if [[ ! -f $KAFKA_RUN/data/meta.properties ]]; then
		local cluster_id
		if [[ -s $KAFKA_RUN/cluster.id ]]; then
			cluster_id=$(<"$KAFKA_RUN/cluster.id")
		else
			cluster_id=$("${KAFKA_JAVA[@]}" kafka.tools.StorageTool random-uuid 2>>"$LOG_DIR/kafka-format.log")
			printf '%s\n' "$cluster_id" >"$KAFKA_RUN/cluster.id"
		fi
		# Kafka 4 has no ZooKeeper and needs its storage formatted before the
		# first start; --standalone makes this node the single KRaft voter.
		if ! "${KAFKA_JAVA[@]}" kafka.tools.StorageTool format --standalone \
			--cluster-id "$cluster_id" --config "$KAFKA_CONFIG" >>"$LOG_DIR/kafka-format.log" 2>&1; then
			show_logs "$LOG_DIR/kafka-format.log"
			die "kafka: formatting the storage in $KAFKA_RUN/data failed; output above"
		fi
		say "kafka: formatted storage (cluster id $cluster_id)"
	fi
	mark_logs kafka "$LOG_DIR/kafka.out" "$LOG_DIR/kafka.log"
	launch "$PID_DIR/kafka.pid" "$LOG_DIR/kafka.out" "${KAFKA_JAVA[@]}" kafka.Kafka "$KAFKA_CONFIG"
	KAFKA_STARTED_PID=$(<"$PID_DIR/kafka.pid")
	say "kafka: starting Apache Kafka $KAFKA_VERSION (pid $KAFKA_STARTED_PID, ${KAFKA_JAVA[0]})"
}

kafka_wait() {
	wait_ready kafka "$KAFKA_STARTED_PID" "$LOG_DIR/kafka.out $LOG_DIR/kafka.log" kafka_stop \
		probe kafka "$KAFKA_BROKERS"
	say "kafka: ready on $KAFKA_BROKERS$(took kafka)"
}

kafka_stop() { stop_component kafka kafka_pid; }

kafka_status() {
	local pid err
	if ! pid=$(kafka_pid); then
		say "kafka: not running"
		return 1
	fi
	if err=$(probe kafka "$KAFKA_BROKERS" 2>&1); then
		say "kafka: running (pid $pid), ready on $KAFKA_BROKERS, Apache Kafka $KAFKA_VERSION"
	else
		say "kafka: running (pid $pid) but NOT ready: $err"
		return 1
	fi
}
