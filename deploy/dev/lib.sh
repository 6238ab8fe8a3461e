# Shared by kafka.sh and clickhouse.sh: messages, pid tracking, stop,
# status and the start|stop|status dispatch. The sourcing script sets
#   name      its name, for messages
#   pidfile   where start() wrote the server's pid
#   marker    a string on the server's command line (guards against a
#             recycled pid: only our server with our config is "running")
#   addr      host:port shown by status
#   logref    where to read the logs when it is not ready
#   readywhat what ready() checks, for messages
# and defines start() and ready().

say() { echo "$name: $*" >&2; }
die() { say "ERROR: $*"; exit 1; }

running_pid() {
	[[ -f $pidfile ]] || return 1
	local pid
	pid="$(cat "$pidfile" 2>/dev/null)" || return 1
	[[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 1
	tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$marker" || return 1
	echo "$pid"
}

stop() {
	local pid
	if ! pid="$(running_pid)"; then
		rm -f "$pidfile"
		say "not running"
		return 0
	fi
	say "stopping pid $pid"
	kill -TERM "$pid"
	for _ in $(seq 1 60); do
		kill -0 "$pid" 2>/dev/null || { rm -f "$pidfile"; say "stopped"; return 0; }
		sleep 0.5
	done
	say "pid $pid did not stop after 30s; sending SIGKILL"
	kill -KILL "$pid" 2>/dev/null || true
	rm -f "$pidfile"
}

status() {
	local pid
	if ! pid="$(running_pid)"; then say "not running"; return 1; fi
	if ready; then say "running (pid $pid), ready on $addr"; return 0; fi
	say "running (pid $pid) but not answering $readywhat (logs: $logref)"
	return 1
}

dispatch() {
	case "${1:-}" in
	start) start ;;
	stop) stop ;;
	status) status ;;
	*) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
	esac
}
