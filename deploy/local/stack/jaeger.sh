# shellcheck shell=bash
# Jaeger v2 (the all-in-one `jaeger` binary, an OpenTelemetry Collector
# distribution), built from its Go module into the cache on first use by
# jaeger-build.sh beside this file (about 4 minutes, once). Receives OTLP from
# the services, keeps traces in memory (max_traces below; a restart forgets
# them) and answers the query API and UI. Every port on 127.0.0.1.
component jaeger "tracing traces" ""

JAEGER_OTLP_HTTP_PORT=${JAEGER_OTLP_HTTP_PORT:-14318}
JAEGER_OTLP_GRPC_PORT=${JAEGER_OTLP_GRPC_PORT:-14317}
JAEGER_QUERY_PORT=${JAEGER_QUERY_PORT:-16686}           # UI and HTTP API (/api/traces/<id>, /api/v3/...)
JAEGER_QUERY_GRPC_PORT=${JAEGER_QUERY_GRPC_PORT:-16685} # query gRPC API
JAEGER_HEALTH_PORT=${JAEGER_HEALTH_PORT:-13133}         # healthcheckv2: GET /status
JAEGER_MAX_TRACES=${JAEGER_MAX_TRACES:-50000} # the in-memory store forgets the oldest beyond this
JAEGER_RUN=$RUN_DIR/jaeger
JAEGER_CONFIG=$JAEGER_RUN/jaeger.yaml
JAEGER_LOG=$LOG_DIR/jaeger.log
JAEGER_BUILD=$STACK_LIB_DIR/jaeger-build.sh
# The pinned version is the build script's (one place to change it).
JAEGER_VERSION=$(sed -n 's/^JAEGER_VERSION=//p' "$JAEGER_BUILD")
JAEGER_HOME=

jaeger_env() {
	printf 'JAEGER_OTLP_ENDPOINT=http://127.0.0.1:%s\nJAEGER_URL=http://127.0.0.1:%s\n' \
		"$JAEGER_OTLP_HTTP_PORT" "$JAEGER_QUERY_PORT"
}

# jaeger_fetch builds the binary once (the build script says so and prints
# its progress every 15 s) and sets JAEGER_HOME.
jaeger_fetch() {
	[[ -n $JAEGER_HOME ]] && return 0
	local dir
	# The build script says "building Jaeger ... about 4 minutes, once".
	[[ -f $CACHE_DIR/jaeger-$JAEGER_VERSION/.complete ]] || require_go
	if ! dir=$(STACK_CACHE_DIR=$CACHE_DIR "$JAEGER_BUILD" 9>&-); then
		die "jaeger: $JAEGER_BUILD failed; output above"
	fi
	[[ -x $dir/bin/jaeger ]] || die "jaeger: $JAEGER_BUILD printed $dir, which has no bin/jaeger"
	JAEGER_HOME=$dir
}

# jaeger_config writes this instance's config: the recipe's pipeline (OTLP
# in, batch, the in-memory store) with this instance's ports. Written at
# every start, so a changed port variable takes effect at the next one.
jaeger_config() {
	mkdir -p "$JAEGER_RUN"
	cat >"$JAEGER_CONFIG.tmp" <<EOF
# Written by deploy/local/stack/jaeger.sh at every start; edits are lost.
service:
  extensions: [jaeger_storage, jaeger_query, healthcheckv2]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: warn
extensions:
  jaeger_query:
    storage:
      traces: mem
    # Its own spans would go to an OTLP/gRPC collector on localhost:4317
    # (none here: only a warning per retry in the log).
    enable_tracing: false
    http:
      endpoint: 127.0.0.1:$JAEGER_QUERY_PORT
    grpc:
      endpoint: 127.0.0.1:$JAEGER_QUERY_GRPC_PORT
  jaeger_storage:
    backends:
      mem:
        memory:
          max_traces: $JAEGER_MAX_TRACES
  healthcheckv2:
    use_v2: true
    http:
      endpoint: 127.0.0.1:$JAEGER_HEALTH_PORT
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:$JAEGER_OTLP_GRPC_PORT
      http:
        endpoint: 127.0.0.1:$JAEGER_OTLP_HTTP_PORT
processors:
  batch: # flushes every 200 ms: a span is queryable a moment after it arrives
exporters:
  jaeger_storage_exporter:
    trace_storage: mem
EOF
	mv -- "$JAEGER_CONFIG.tmp" "$JAEGER_CONFIG"
}

# The config path (under RUN_DIR) is on the command line, so the process is
# recognised as this instance's.
jaeger_pid() { running jaeger "--config $JAEGER_CONFIG"; }

JAEGER_STARTED_PID=

jaeger_start() {
	local pid
	if pid=$(jaeger_pid); then
		already_running jaeger "$pid"
		JAEGER_STARTED_PID=$pid
		return 0
	fi
	check_ports_free jaeger "$JAEGER_OTLP_HTTP_PORT" "$JAEGER_OTLP_GRPC_PORT" \
		"$JAEGER_QUERY_PORT" "$JAEGER_QUERY_GRPC_PORT" "$JAEGER_HEALTH_PORT"
	jaeger_fetch
	jaeger_config
	mark_logs jaeger "$JAEGER_LOG"
	launch "$PID_DIR/jaeger.pid" "$JAEGER_LOG" "$JAEGER_HOME/bin/jaeger" --config "$JAEGER_CONFIG"
	JAEGER_STARTED_PID=$(<"$PID_DIR/jaeger.pid")
	say "jaeger: starting Jaeger v$JAEGER_VERSION (pid $JAEGER_STARTED_PID, in-memory store, config $JAEGER_CONFIG)"
}

# jaeger_check: the health check extension says every component is up, and
# the query API answers (it lists the services that reported spans).
jaeger_check() {
	probe http "http://127.0.0.1:$JAEGER_HEALTH_PORT/status" &&
		probe http "http://127.0.0.1:$JAEGER_QUERY_PORT/api/services"
}

jaeger_wait() {
	wait_ready jaeger "$JAEGER_STARTED_PID" "$JAEGER_LOG" jaeger_stop jaeger_check
	say "jaeger: ready, OTLP/HTTP http://127.0.0.1:$JAEGER_OTLP_HTTP_PORT, OTLP/gRPC 127.0.0.1:$JAEGER_OTLP_GRPC_PORT, UI and API http://127.0.0.1:$JAEGER_QUERY_PORT$(took jaeger)"
}

jaeger_stop() { stop_component jaeger jaeger_pid; }

jaeger_status() {
	local pid err
	if ! pid=$(jaeger_pid); then
		say "jaeger: not running"
		return 1
	fi
	if err=$(jaeger_check 2>&1); then
		say "jaeger: running (pid $pid), ready: OTLP/HTTP http://127.0.0.1:$JAEGER_OTLP_HTTP_PORT, UI and API http://127.0.0.1:$JAEGER_QUERY_PORT, Jaeger v$JAEGER_VERSION"
	else
		say "jaeger: running (pid $pid) but NOT ready: $err"
		return 1
	fi
}
