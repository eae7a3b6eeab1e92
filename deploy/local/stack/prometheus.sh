# shellcheck shell=bash
# Prometheus 2.42 from Debian's package, unpacked into the cache by
# prometheus-fetch.sh beside this file. Scrapes every service a slice
# (deploy/local/slice) starts, found by file_sd in $STACK_RUN_DIR/prometheus/
# targets/*.json (a slice writes <slice id>.json, labels job=<service> and
# slice=<id>, and deletes it on Close), evaluates deploy/prometheus/rules/
# *.yml, and keeps a short TSDB in the run folder. Listens on 127.0.0.1 only.
component prometheus "prom metrics" ""

PROMETHEUS_PORT=${PROMETHEUS_PORT:-19090}
PROMETHEUS_RETENTION=${PROMETHEUS_RETENTION:-2d}
PROMETHEUS_RUN=$RUN_DIR/prometheus
PROMETHEUS_TARGETS_DIR=$PROMETHEUS_RUN/targets
PROMETHEUS_DATA=$PROMETHEUS_RUN/data
PROMETHEUS_CONFIG=$PROMETHEUS_RUN/prometheus.yml
PROMETHEUS_RULES=$REPO_ROOT/deploy/prometheus/rules
PROMETHEUS_LOG=$LOG_DIR/prometheus.log
PROMETHEUS_FETCH=$STACK_LIB_DIR/prometheus-fetch.sh
PROMETHEUS_BIN=

prometheus_env() {
	printf 'PROMETHEUS_URL=http://127.0.0.1:%s\nPROMETHEUS_TARGETS_DIR=%s\n' \
		"$PROMETHEUS_PORT" "$PROMETHEUS_TARGETS_DIR"
}

# prometheus_fetch installs the package once (a few seconds: one ~30 MB
# .deb) and sets PROMETHEUS_BIN to the folder holding prometheus and promtool.
prometheus_fetch() {
	[[ -n $PROMETHEUS_BIN ]] && return 0
	local out dir
	if ! out=$(STACK_CACHE_DIR=$CACHE_DIR "$PROMETHEUS_FETCH" 9>&-); then
		die "prometheus: $PROMETHEUS_FETCH failed; output above"
	fi
	dir=$(tail -n 1 <<<"$out")
	[[ -x $dir/prometheus && -x $dir/promtool ]] ||
		die "prometheus: $PROMETHEUS_FETCH printed $dir, which has no prometheus and promtool"
	PROMETHEUS_BIN=$dir
}

# prometheus_config writes this instance's prometheus.yml at every start (a
# changed port or run folder takes effect at the next one) and checks it
# with promtool, so a bad rule file stops `up` with promtool's message
# instead of a Prometheus that exits.
prometheus_config() {
	mkdir -p "$PROMETHEUS_TARGETS_DIR" "$PROMETHEUS_DATA"
	cat >"$PROMETHEUS_CONFIG.tmp" <<EOF
# Written by deploy/local/stack/prometheus.sh at every start; edits are lost.
global:
  scrape_interval: 5s
  evaluation_interval: 5s
  scrape_timeout: 4s
rule_files:
  - $PROMETHEUS_RULES/*.yml
scrape_configs:
  - job_name: prometheus
    static_configs:
      - targets: ["127.0.0.1:$PROMETHEUS_PORT"]
  # Every service of every running slice: one file per slice, each target's
  # job label (the service's name, from the file) wins over this job_name.
  - job_name: services
    file_sd_configs:
      - files: ["$PROMETHEUS_TARGETS_DIR/*.json"]
        refresh_interval: 2s
EOF
	mv -- "$PROMETHEUS_CONFIG.tmp" "$PROMETHEUS_CONFIG"
	local out
	if ! out=$("$PROMETHEUS_BIN/promtool" check config "$PROMETHEUS_CONFIG" 2>&1); then
		printf '%s\n' "$out" >&2
		die "prometheus: promtool check config $PROMETHEUS_CONFIG failed (a rule file in $PROMETHEUS_RULES?); output above"
	fi
}

# The config path (under RUN_DIR) is on the command line, so the process is
# recognised as this instance's.
prometheus_pid() { running prometheus "--config.file=$PROMETHEUS_CONFIG"; }

PROMETHEUS_STARTED_PID=

prometheus_start() {
	local pid
	if pid=$(prometheus_pid); then
		already_running prometheus "$pid"
		PROMETHEUS_STARTED_PID=$pid
		return 0
	fi
	check_ports_free prometheus "$PROMETHEUS_PORT"
	prometheus_fetch
	prometheus_config
	mark_logs prometheus "$PROMETHEUS_LOG"
	# The UI's assets from the package (its default path is /usr/share/...);
	# the lifecycle API so `curl -X POST .../-/reload` reloads changed rules.
	launch "$PID_DIR/prometheus.pid" "$PROMETHEUS_LOG" "$PROMETHEUS_BIN/prometheus" \
		"--config.file=$PROMETHEUS_CONFIG" \
		"--web.listen-address=127.0.0.1:$PROMETHEUS_PORT" \
		"--web.local-assets=$PROMETHEUS_BIN/../share/prometheus/web/" \
		"--web.console.templates=$PROMETHEUS_BIN/../../etc/prometheus/consoles" \
		"--web.console.libraries=$PROMETHEUS_BIN/../../etc/prometheus/console_libraries" \
		--web.enable-lifecycle \
		"--storage.tsdb.path=$PROMETHEUS_DATA" \
		"--storage.tsdb.retention.time=$PROMETHEUS_RETENTION" \
		--log.level=warn
	PROMETHEUS_STARTED_PID=$(<"$PID_DIR/prometheus.pid")
	say "prometheus: starting Prometheus $("$PROMETHEUS_BIN/prometheus" --version 2>&1 | sed -n '1s/^prometheus, version \([^ ]*\).*/\1/p') (pid $PROMETHEUS_STARTED_PID, rules $PROMETHEUS_RULES/*.yml, targets $PROMETHEUS_TARGETS_DIR)"
}

prometheus_check() { probe http "http://127.0.0.1:$PROMETHEUS_PORT/-/ready"; }

prometheus_wait() {
	wait_ready prometheus "$PROMETHEUS_STARTED_PID" "$PROMETHEUS_LOG" prometheus_stop prometheus_check
	say "prometheus: ready on http://127.0.0.1:$PROMETHEUS_PORT$(took prometheus)"
}

prometheus_stop() { stop_component prometheus prometheus_pid; }

prometheus_status() {
	local pid err
	if ! pid=$(prometheus_pid); then
		say "prometheus: not running"
		return 1
	fi
	if err=$(prometheus_check 2>&1); then
		say "prometheus: running (pid $pid), ready on http://127.0.0.1:$PROMETHEUS_PORT, targets $PROMETHEUS_TARGETS_DIR, data $PROMETHEUS_DATA"
	else
		say "prometheus: running (pid $pid) but NOT ready: $err"
		return 1
	fi
}
