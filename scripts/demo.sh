#!/usr/bin/env bash
# demo.sh: watch standbyd on a standby talk to its primary.
#
# Starts a throwaway primary with the standbyd extension and a streaming
# standby made with pg_basebackup -R (scripts/cluster.sh), runs the standbyd
# daemon against the standby's data directory, and sends requests through
# it. Everything lives under $STANDBYD_DEMO_DIR (default /tmp/standbyd-demo)
# and is stopped on exit. Set DEMO_KEEP=1 to keep it running until Ctrl-C.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BASE=${STANDBYD_DEMO_DIR:-/tmp/standbyd-demo}
PRIMARY_PORT=${DEMO_PRIMARY_PORT:-55432}
STANDBY_PORT=${DEMO_STANDBY_PORT:-55433}
METRICS=${DEMO_METRICS_LISTEN:-127.0.0.1:19561}
CLUSTER="$ROOT/scripts/cluster.sh"
BIN="$ROOT/bin/standbyd"

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "installing prerequisites (Debian packages, Go build, extension)"
"$CLUSTER" deps
"$CLUSTER" extension
make -C "$ROOT" --no-print-directory build

DAEMON_PID=""
cleanup() {
	if [[ -n "$DAEMON_PID" ]] && kill -0 "$DAEMON_PID" 2>/dev/null; then
		kill -TERM "$DAEMON_PID" 2>/dev/null || true
		wait "$DAEMON_PID" 2>/dev/null || true
	fi
	"$CLUSTER" stop "$BASE" >/dev/null 2>&1 || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "a throwaway primary on port $PRIMARY_PORT and a streaming standby on $STANDBY_PORT"
"$CLUSTER" destroy "$BASE" >/dev/null 2>&1 || true
"$CLUSTER" primary "$BASE" "$PRIMARY_PORT"
"$CLUSTER" standby "$BASE" "$PRIMARY_PORT" "$STANDBY_PORT"
eval "$("$CLUSTER" demo-env "$BASE")"

say "the standby's primary_conninfo, as pg_basebackup -R wrote it"
grep primary_conninfo "$STANDBY_DATA/postgresql.auto.conf" | sed -E "s/password=[^ ']*/password=********/"

cat >"$BASE/standbyd.yaml" <<YAML
standby:
  data_directory: $STANDBY_DATA
api:
  socket: $BASE/standbyd.sock
metrics:
  listen: $METRICS
log:
  format: console
YAML

say "starting standbyd run --config $BASE/standbyd.yaml"
"$BIN" run --config "$BASE/standbyd.yaml" 2>"$BASE/standbyd.log" &
DAEMON_PID=$!
for _ in $(seq 1 100); do
	if curl -fsS "http://$METRICS/readyz" >/dev/null 2>&1; then break; fi
	if ! kill -0 "$DAEMON_PID" 2>/dev/null; then
		cat "$BASE/standbyd.log"
		echo "standbyd exited" >&2
		exit 1
	fi
	sleep 0.1
done
curl -fsS "http://$METRICS/readyz"
cat "$BASE/standbyd.log"

CALL=("$BIN" call --socket "$BASE/standbyd.sock")

say "standbyd call N 100 200 300"
"${CALL[@]}" N 100 200 300

say "standbyd call ping (the primary's clock and WAL position)"
"${CALL[@]}" ping

say "the same through the API socket with curl"
curl -sS --unix-socket "$BASE/standbyd.sock" -H 'Content-Type: application/json' \
	-d '{"int32":[100,200,300]}' http://standbyd/v1/call/N
curl -sS --unix-socket "$BASE/standbyd.sock" http://standbyd/v1/status

say "standbyd status"
"$BIN" status --socket "$BASE/standbyd.sock"

say "the channel's backend on the primary: active, no xmin held"
"$CLUSTER" psql "$BASE" primary -c \
	"SELECT pid, usename, application_name, state, backend_xmin, wait_event, query FROM pg_stat_activity WHERE application_name = 'standbyd'"

say "requests flowing: 5 rounds of N and ping"
for i in 1 2 3 4 5; do
	printf 'N %d %d %d -> %s   ' "$i" "$((i * 10))" "$((i * 100))" "$("${CALL[@]}" N "$i" "$((i * 10))" "$((i * 100))")"
	"${CALL[@]}" ping
	sleep 0.5
done

say "metrics"
curl -fsS "http://$METRICS/metrics" | grep -E '^standbyd_(channel_up|channel_connects_total|requests_total\{op="(N|ping)",result="ok"\})'

if [[ "${DEMO_KEEP:-0}" == 1 ]]; then
	say "running; standbyd log: $BASE/standbyd.log; Ctrl-C stops everything"
	wait "$DAEMON_PID"
fi
say "done: stopping standbyd and both servers"
