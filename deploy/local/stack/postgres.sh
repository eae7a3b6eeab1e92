# shellcheck shell=bash
# PostgreSQL 15 from Debian's server binaries: initdb into the run folder,
# pg_ctl on 127.0.0.1, role and database `ecom` for the services.
component postgres "pg postgresql" ""

PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
PG_PORT=${PG_PORT:-15432}
PG_RUN=$RUN_DIR/postgres
PG_DATA=$PG_RUN/data
PG_SOCKET_DIR=$PG_RUN/socket
DATABASE_URL="postgres://ecom:ecom@127.0.0.1:$PG_PORT/ecom?sslmode=disable"
# catalog-sync's change data capture: logical decoding (pgoutput) and room for
# a replication slot per test schema; commit timestamps, so the catalog mutator
# can log the commit time CDC reports (pg_xact_commit_timestamp).
PG_SETTINGS="-c wal_level=logical -c max_replication_slots=16 -c max_wal_senders=16 -c track_commit_timestamp=on"
# catalog-sync's role (replication and reads of the catalog tables; the grants
# come with the storefront schema, sql/postgres/storefront.sql).
CATALOG_DATABASE_URL="postgres://ecom_cdc:ecom_cdc@127.0.0.1:$PG_PORT/ecom?sslmode=disable"

postgres_env() { printf 'DATABASE_URL=%s\nCATALOG_DATABASE_URL=%s\n' "$DATABASE_URL" "$CATALOG_DATABASE_URL"; }

# Nothing to download: the binaries come from the postgresql-15 package.
postgres_fetch() { require_postgres; }

require_postgres() {
	require_cmds "PostgreSQL" "postgresql-15" "$PG_BIN/postgres" "$PG_BIN/initdb" "$PG_BIN/pg_ctl" "$PG_BIN/pg_isready" "$PG_BIN/psql"
}

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

# runuser (util-linux) lives in /usr/sbin, which a non-login root shell's PATH
# (env -i, some CI runners) may lack: look there too, and say so if it is missing.
RUNUSER=
find_runuser() {
	[[ -n $RUNUSER ]] && return 0
	local c
	for c in "$(command -v runuser 2>/dev/null)" /usr/sbin/runuser /sbin/runuser; do
		if [[ -n $c && -x $c ]]; then
			RUNUSER=$c
			return 0
		fi
	done
	die "postgres: runuser (package util-linux) not found; as root it is needed to run PostgreSQL as $PG_OS_USER"
}

# as_pg CMD... runs a PostgreSQL program as PG_OS_USER, from a folder that
# user can read, without the lock descriptor.
as_pg() {
	if ((EUID == 0)); then
		find_runuser
		(cd "$PG_RUN" && "$RUNUSER" -u "$PG_OS_USER" -- "$@" 9>&-)
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
		find_runuser
		# Top down, so each folder is judged once its parents are reachable.
		local d=$PG_RUN ancestors=() i
		while [[ $d != / ]]; do
			d=$(dirname -- "$d")
			ancestors=("$d" "${ancestors[@]}")
		done
		for i in "${ancestors[@]}"; do
			if ! "$RUNUSER" -u "$PG_OS_USER" -- test -x "$i" 2>/dev/null; then
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

# pg_hba_harden refuses physical replication (pg_basebackup: the whole cluster,
# password hashes included) to ecom_cdc, whose REPLICATION attribute is meant
# only for catalog-sync's logical slot; logical replication connections name a
# database and match the ordinary lines. Returns 0 when it changed the file.
PG_HBA_REJECT='host replication ecom_cdc all reject'
pg_hba_harden() {
	local hba=$PG_DATA/pg_hba.conf
	[[ -f $hba ]] || return 1
	grep -qxF -- "$PG_HBA_REJECT" "$hba" && return 1
	{ printf '# stack.sh: ecom_cdc may stream logical changes only\n%s\n' "$PG_HBA_REJECT"; cat -- "$hba"; } >"$hba.new"
	cat -- "$hba.new" >"$hba" # keep the file's owner and mode
	rm -f -- "$hba.new"
	return 0
}

# postgres_start returns once the server accepts connections (pg_ctl -w:
# seconds at most); the role and the login are postgres_wait's.
postgres_start() {
	require_postgres
	pg_prepare
	local settings
	# A server started before catalog-sync's CDC runs without PG_SETTINGS: restart
	# it, but only when the query answered with other values (a server still
	# starting or out of connections is not a reason to drop everyone's sessions).
	if pg_is_running && settings=$(pg_psql -d postgres -At -c "SELECT current_setting('wal_level') || ',' || current_setting('track_commit_timestamp')" 2>/dev/null) &&
		[[ $settings != logical,on ]]; then
		say "postgres: restarting to turn on logical replication (was $settings; wal_level=logical, track_commit_timestamp=on)"
		as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" stop -m fast -w -t "$STOP_TIMEOUT" >/dev/null 2>&1 ||
			die "postgres: could not stop it to change wal_level; run stack.sh down postgres, then up"
	fi
	if pg_is_running; then
		already_running postgres "$(pg_pid)"
		if pg_hba_harden; then
			as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" reload >/dev/null 2>&1 || die "postgres: reloading pg_hba.conf failed"
		fi
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
		pg_hba_harden || true
		say "postgres: starting"
		mark_logs postgres "$LOG_DIR/postgres.log"
		# pg_ctl detaches the server into its own session (setsid) itself.
		if ! as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$LOG_DIR/postgres.log" -w -t "$START_TIMEOUT" \
			-o "-c listen_addresses=127.0.0.1 -c port=$PG_PORT -c unix_socket_directories='$PG_SOCKET_DIR' $PG_SETTINGS" \
			start >"$LOG_DIR/postgres-ctl.log" 2>&1; then
			show_logs "$LOG_DIR/postgres-ctl.log" "$LOG_DIR/postgres.log"
			as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" stop -m immediate >/dev/null 2>&1 || true
			die "postgres: did not start within ${START_TIMEOUT}s; logs above"
		fi
	fi
}

postgres_wait() {
	wait_ready postgres "" "$LOG_DIR/postgres.log" : \
		"$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT"
	pg_pid >"$PID_DIR/postgres.pid"

	# Role and database for the services (idempotent; password re-set each
	# time so a changed password cannot drift from DATABASE_URL).
	if ! pg_psql -d postgres >"$LOG_DIR/postgres-setup.log" 2>&1 <<-'SQL'; then
		SELECT 'CREATE ROLE ecom' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'ecom') \gexec
		ALTER ROLE ecom WITH LOGIN CREATEDB PASSWORD 'ecom';
		SELECT 'CREATE ROLE ecom_cdc' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'ecom_cdc') \gexec
		ALTER ROLE ecom_cdc WITH LOGIN REPLICATION NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD 'ecom_cdc';
		SELECT 'CREATE DATABASE ecom OWNER ecom' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'ecom') \gexec
	SQL
		show_logs "$LOG_DIR/postgres-setup.log"
		die "postgres: creating role/database ecom failed; output above"
	fi
	wait_ready postgres "" "$LOG_DIR/postgres.log" : probe postgres "$DATABASE_URL"
	say "postgres: ready on 127.0.0.1:$PG_PORT (role and database ecom, replication role ecom_cdc, wal_level=logical)$(took postgres)"
}

postgres_stop() {
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

postgres_status() {
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

