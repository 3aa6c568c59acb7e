#!/usr/bin/env bash
# demo.sh: watch standbyd on a standby talk to its primary.
#
# Starts a throwaway primary with the standbyd extension and a streaming
# standby made with pg_basebackup -R (scripts/cluster.sh), runs the standbyd
# daemon against the standby's data directory, and sends requests through
# it. Everything lives under $STANDBYD_DEMO_DIR (default /tmp/standbyd-demo)
# and is stopped on exit. Set DEMO_KEEP=1 to keep it running until Ctrl-C,
# DEMO_NO_INSTALL=1 to skip the install step (packages, build, extension)
# when they are in place already.
#
# It ends with a SQL session on the standby that writes through the primary
# with standbyd.call() and reads its own write (docs/sqlcall.md).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BASE=${STANDBYD_DEMO_DIR:-/tmp/standbyd-demo}
PRIMARY_PORT=${DEMO_PRIMARY_PORT:-55432}
STANDBY_PORT=${DEMO_STANDBY_PORT:-55433}
METRICS=${DEMO_METRICS_LISTEN:-127.0.0.1:19561}
CLUSTER="$ROOT/scripts/cluster.sh"
BIN="$ROOT/bin/standbyd"

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

if [[ "${DEMO_NO_INSTALL:-0}" != 1 ]]; then
	say "installing prerequisites (Debian packages, Go build, extension)"
	"$CLUSTER" deps
	"$CLUSTER" extension
	make -C "$ROOT" --no-print-directory build
fi

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

# The standby's backends (standbyd.call() at the end) run as postgres: as
# root, the daemon gives its socket to postgres's group.
SOCKET_GROUP=""
if [[ $(id -u) == 0 ]]; then SOCKET_GROUP="  socket_group: postgres"; fi
cat >"$BASE/standbyd.yaml" <<YAML
standby:
  data_directory: $STANDBY_DATA
api:
  socket: $BASE/standbyd.sock
$SOCKET_GROUP
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

say "a SQL session on the standby writes through the primary and reads its own write"
# On the primary: a table, a handler that writes to it, registered as an op.
"$CLUSTER" psql "$BASE" primary -qX -v ON_ERROR_STOP=1 >/dev/null <<'SQL'
CREATE TABLE demo_orders(id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, item text NOT NULL,
  placed timestamptz NOT NULL DEFAULT now());
GRANT INSERT, SELECT ON demo_orders TO standbyd_repl;
CREATE FUNCTION place_order(b bytea) RETURNS bytea LANGUAGE sql AS $$
  INSERT INTO demo_orders(item) VALUES (convert_from(b, 'UTF8')) RETURNING convert_to('order ' || id, 'UTF8') $$;
REVOKE ALL ON FUNCTION place_order(bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION place_order(bytea) TO standbyd_repl;
SELECT standbyd.register_handler(300, 'place_order', 'public.place_order(bytea)');
SQL
# On the standby: where the daemon's socket is (postgresql.conf, superuser only).
echo "standbyd.socket = '$BASE/standbyd.sock'" >>"$STANDBY_DATA/postgresql.conf"
"$CLUSTER" psql "$BASE" standby -qXAt -c "SELECT pg_reload_conf()" >/dev/null
for _ in $(seq 1 100); do
	[[ $("$CLUSTER" psql "$BASE" standby -qXAt -c "SELECT count(*) FROM standbyd.handlers WHERE name = 'place_order'") == 1 ]] && break
	sleep 0.1
done
# One session on the read-only standby: the call commits on the primary and,
# with wait_for_replay, returns once the standby has replayed it; the next
# statement, on the standby, sees the row.
"$CLUSTER" psql "$BASE" standby -X -v ON_ERROR_STOP=1 \
	-c "SELECT pg_is_in_recovery() AS on_a_standby" \
	-c "SELECT convert_from(standbyd.call('place_order', convert_to('a blue teapot', 'UTF8'), wait_for_replay => true), 'UTF8') AS primary_says" \
	-c "SELECT id, item FROM demo_orders"

if [[ "${DEMO_KEEP:-0}" == 1 ]]; then
	say "running; standbyd log: $BASE/standbyd.log; Ctrl-C stops everything"
	wait "$DAEMON_PID"
fi
say "done: stopping standbyd and both servers"
