#!/usr/bin/env bash
# Single-node ClickHouse server for development and integration tests, run
# as a plain background process with a project-local config and data folder
# (not the distribution's system service).
#
#   deploy/dev/clickhouse.sh start    install if missing, render config, start, wait until it answers a query
#   deploy/dev/clickhouse.sh stop     stop the server (ok when already stopped)
#   deploy/dev/clickhouse.sh status   exit 0 when the server answers `SELECT 1`
#
# Environment:
#   EXFILWATCH_VAR          runtime state root (default <repo>/var); config,
#                           data and logs go to $EXFILWATCH_VAR/clickhouse
#   CLICKHOUSE_TCP_PORT     native protocol port (default 9000)
#   CLICKHOUSE_HTTP_PORT    HTTP port            (default 8123)
#   CLICKHOUSE_INTERSERVER_PORT                  (default 9009)
#   CLICKHOUSE_START_TIMEOUT seconds to wait for readiness (default 60)
#
# The server listens on 127.0.0.1 only, user "default" without password.
# Debian ships clickhouse-server 18.16 (2018); sink/clickhouse detects the
# version and uses the portable DDL on it. Export
# EXFILWATCH_TEST_CLICKHOUSE=127.0.0.1:$CLICKHOUSE_TCP_PORT for tests.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
tcp_port="${CLICKHOUSE_TCP_PORT:-9000}"
http_port="${CLICKHOUSE_HTTP_PORT:-8123}"
is_port="${CLICKHOUSE_INTERSERVER_PORT:-9009}"
timeout="${CLICKHOUSE_START_TIMEOUT:-60}"
var="${EXFILWATCH_VAR:-$repo/var}/clickhouse"
logs="$var/logs"
pidfile="$var/clickhouse.pid"
conf="$var/config.xml"
out="$logs/server.out"

name=clickhouse.sh marker="$conf" addr="127.0.0.1:$tcp_port" logref="$logs" readywhat="queries"
# shellcheck source=lib.sh
source "$here/lib.sh"

server_bin() {
	# Debian: /usr/sbin/clickhouse-server; upstream packages: /usr/bin/clickhouse server.
	if command -v clickhouse-server >/dev/null 2>&1; then echo "clickhouse-server"; return 0; fi
	if [[ -x /usr/sbin/clickhouse-server ]]; then echo /usr/sbin/clickhouse-server; return 0; fi
	return 1
}

install() {
	if server_bin >/dev/null && command -v clickhouse-client >/dev/null 2>&1; then return 0; fi
	say "installing clickhouse-server and clickhouse-client with apt-get (once)"
	export DEBIAN_FRONTEND=noninteractive
	# The package's postinst may try to start the system service; we never use it.
	apt-get update -qq >"$var/apt.log" 2>&1 || true
	if ! apt-get install -y -qq clickhouse-server clickhouse-client >>"$var/apt.log" 2>&1; then
		tail -n 20 "$var/apt.log" >&2
		die "apt-get install clickhouse-server clickhouse-client failed (log: $var/apt.log)"
	fi
	server_bin >/dev/null || die "clickhouse-server still not found after install"
}


# ready runs a real query over the native protocol (an open port alone is
# not enough: the server accepts connections before it has loaded its tables).
ready() {
	clickhouse-client --host 127.0.0.1 --port "$tcp_port" --query 'SELECT 1' >/dev/null 2>&1
}

render() {
	mkdir -p "$var/data" "$var/tmp" "$var/user_files" "$var/format_schemas" "$logs"
	sed -e "s|@VAR@|$var|g" -e "s|@TCP_PORT@|$tcp_port|g" -e "s|@HTTP_PORT@|$http_port|g" \
		-e "s|@INTERSERVER_PORT@|$is_port|g" "$here/clickhouse/config.xml.in" >"$conf"
	cp "$here/clickhouse/users.xml" "$var/users.xml"
}

port_taken() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

start() {
	local pid
	if pid="$(running_pid)"; then
		if ready; then say "already running (pid $pid) on 127.0.0.1:$tcp_port"; return 0; fi
		say "pid $pid exists but does not answer yet; waiting"
	else
		mkdir -p "$var" "$logs"
		install
		render
		for p in "$tcp_port" "$http_port"; do
			port_taken "$p" && die "port $p is taken by another process (system service?); set CLICKHOUSE_TCP_PORT/CLICKHOUSE_HTTP_PORT"
		done
		local bin
		bin="$(server_bin)"
		say "starting $bin on 127.0.0.1:$tcp_port (native), :$http_port (HTTP); logs: $logs"
		: >"$out"
		# setsid: the server must outlive the shell (and test harness) that started it.
		# exec chain keeps one pid (subshell -> setsid -> nohup -> server) for the pidfile.
		(cd "$var" && exec setsid nohup "$bin" --config-file="$conf" >>"$out" 2>&1 </dev/null) &
		echo $! >"$pidfile"
		pid="$(cat "$pidfile")"
	fi
	local deadline=$((SECONDS + timeout))
	while ((SECONDS < deadline)); do
		if ! kill -0 "$pid" 2>/dev/null; then
			tail -n 20 "$out" >&2
			[[ -f $logs/clickhouse-server.err.log ]] && tail -n 20 "$logs/clickhouse-server.err.log" >&2
			rm -f "$pidfile"
			die "server exited during start-up (logs: $out, $logs/clickhouse-server.err.log)"
		fi
		if ready; then say "ready on 127.0.0.1:$tcp_port (pid $pid)"; return 0; fi
		sleep 0.5
	done
	tail -n 20 "$logs/clickhouse-server.err.log" >&2 || true
	die "server not ready after ${timeout}s (logs: $logs); it is still running as pid $pid"
}


dispatch "$@"
