# shellcheck shell=bash
# The BigQuery emulator (PyPI bqemulator 1.4.0: DuckDB-backed REST API and
# Storage Read/Write gRPC), for bq-writer's WAREHOUSE=bigquery tests. Installed
# into a venv in the cache by bqemulator-fetch.sh beside this file; data kept
# in the run folder (--persistent), so tables and rows survive a restart
# (write streams do not: sql/README.md, "The BigQuery emulator").
component bqemulator "bigquery bq bq-emulator" ""

BQ_EMULATOR_REST_PORT=${BQ_EMULATOR_REST_PORT:-19050}
BQ_EMULATOR_GRPC_PORT=${BQ_EMULATOR_GRPC_PORT:-19060}
BQ_EMULATOR_PROJECT=ecom-local
BQEMU_RUN=$RUN_DIR/bqemulator
BQEMU_DATA=$BQEMU_RUN/data
BQEMU_LOG=$LOG_DIR/bqemulator.log
BQEMU_FETCH=$STACK_LIB_DIR/bqemulator-fetch.sh
# The pinned version is the fetch script's (one place to change it).
BQEMU_VERSION=$(sed -n 's/^BQEMULATOR_VERSION=//p' "$BQEMU_FETCH")
BQEMU_VENV=

bqemulator_env() {
	printf 'BIGQUERY_EMULATOR_REST=http://127.0.0.1:%s\nBIGQUERY_EMULATOR_GRPC=127.0.0.1:%s\n' \
		"$BQ_EMULATOR_REST_PORT" "$BQ_EMULATOR_GRPC_PORT"
}

# bqemulator_fetch installs the venv once (~580 MB, about a minute the first
# time; the fetch script prints its progress every 5 s) and sets BQEMU_VENV.
bqemulator_fetch() {
	[[ -n $BQEMU_VENV ]] && return 0
	local py=${BQEMULATOR_PYTHON:-python3} venv
	if [[ ! -f $CACHE_DIR/bqemulator-$BQEMU_VERSION/.complete ]]; then
		require_cmds "installing the BigQuery emulator" "python3 python3-venv" "$py"
		"$py" -c 'import ensurepip, venv' 2>/dev/null ||
			die "bqemulator: $py has no venv/ensurepip module (needed to install the BigQuery emulator); install on Debian with: apt-get install -y python3-venv"
		say "bqemulator: installing the BigQuery emulator (PyPI bqemulator $BQEMU_VERSION; ~580 MB, about a minute the first time) into $CACHE_DIR"
	fi
	if ! venv=$(STACK_CACHE_DIR=$CACHE_DIR "$BQEMU_FETCH" 9>&-); then
		die "bqemulator: $BQEMU_FETCH failed; output above"
	fi
	[[ -x $venv/bin/bqemulator ]] || die "bqemulator: $BQEMU_FETCH printed $venv, which has no bin/bqemulator"
	BQEMU_VENV=$venv
}

# The data folder is on the command line, so the process is recognised as
# this instance's.
bqemulator_pid() { running bqemulator "--data-dir $BQEMU_DATA"; }

BQEMU_STARTED_PID=

bqemulator_start() {
	local pid
	if pid=$(bqemulator_pid); then
		already_running bqemulator "$pid"
		BQEMU_STARTED_PID=$pid
		return 0
	fi
	check_ports_free bqemulator "$BQ_EMULATOR_REST_PORT" "$BQ_EMULATOR_GRPC_PORT"
	bqemulator_fetch
	mkdir -p "$BQEMU_DATA"
	mark_logs bqemulator "$BQEMU_LOG"
	# Both listeners on loopback (the emulator's default too, said explicitly);
	# no credentials are checked, so it must not be reachable from elsewhere.
	# Log level warning: at info it logs every request.
	launch "$PID_DIR/bqemulator.pid" "$BQEMU_LOG" "$BQEMU_VENV/bin/bqemulator" start \
		--rest-host 127.0.0.1 --rest-port "$BQ_EMULATOR_REST_PORT" \
		--grpc-host 127.0.0.1 --grpc-port "$BQ_EMULATOR_GRPC_PORT" \
		--project "$BQ_EMULATOR_PROJECT" --persistent --data-dir "$BQEMU_DATA" \
		--log-format json --log-level warning
	BQEMU_STARTED_PID=$(<"$PID_DIR/bqemulator.pid")
	say "bqemulator: starting bqemulator $BQEMU_VERSION (pid $BQEMU_STARTED_PID, data $BQEMU_DATA)"
}

# bqemulator_check: REST answers datasets.list for the project, and the gRPC
# port accepts connections.
bqemulator_check() {
	probe http "http://127.0.0.1:$BQ_EMULATOR_REST_PORT/bigquery/v2/projects/$BQ_EMULATOR_PROJECT/datasets" || return 1
	port_in_use "$BQ_EMULATOR_GRPC_PORT" || {
		echo "gRPC port 127.0.0.1:$BQ_EMULATOR_GRPC_PORT not accepting connections"
		return 1
	}
}

bqemulator_wait() {
	wait_ready bqemulator "$BQEMU_STARTED_PID" "$BQEMU_LOG" bqemulator_stop bqemulator_check
	say "bqemulator: ready, REST http://127.0.0.1:$BQ_EMULATOR_REST_PORT, gRPC 127.0.0.1:$BQ_EMULATOR_GRPC_PORT, project $BQ_EMULATOR_PROJECT$(took bqemulator)"
}

bqemulator_stop() { stop_component bqemulator bqemulator_pid; }

bqemulator_status() {
	local pid err
	if ! pid=$(bqemulator_pid); then
		say "bqemulator: not running"
		return 1
	fi
	if err=$(bqemulator_check 2>&1); then
		say "bqemulator: running (pid $pid), ready on REST http://127.0.0.1:$BQ_EMULATOR_REST_PORT and gRPC 127.0.0.1:$BQ_EMULATOR_GRPC_PORT, data $BQEMU_DATA"
	else
		say "bqemulator: running (pid $pid) but NOT ready: $err"
		return 1
	fi
}
