#!/usr/bin/env bash
# regress.sh: run the extension's pg_regress suite (make installcheck in
# extension/) against a throwaway PostgreSQL 15 primary made by cluster.sh.
#
#   scripts/regress.sh            the installed extension must be current
#                                 (scripts/cluster.sh extension)
#
# Environment: PGBIN (default /usr/lib/postgresql/15/bin) picks the server,
# as for cluster.sh; PG_CONFIG defaults to $PGBIN/pg_config. On failure the
# differences are printed (extension/regression.diffs).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
PG_CONFIG=${PG_CONFIG:-$PGBIN/pg_config}
export PGBIN

# The suite tests the installed extension: say so when it is not this tree's.
sharedir=$("$PG_CONFIG" --sharedir)
for f in "$ROOT"/extension/standbyd.control "$ROOT"/extension/standbyd--*.sql; do
	if ! cmp -s "$f" "$sharedir/extension/$(basename "$f")"; then
		echo "regress.sh: warning: installed $(basename "$f") differs from this tree's (scripts/cluster.sh extension installs it)" >&2
	fi
done

base=$(mktemp -d "${TMPDIR:-/tmp}/standbyd-regress-XXXXXX")
# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() { "$ROOT/scripts/cluster.sh" destroy "$base" >/dev/null 2>&1 || true; }
trap cleanup EXIT
trap 'exit 130' INT TERM

port=$("$ROOT/scripts/cluster.sh" free-port)
"$ROOT/scripts/cluster.sh" primary "$base" "$port" >/dev/null

status=0
PGHOST=$base/sock PGPORT=$port PGUSER=postgres \
	make -s -C "$ROOT/extension" PG_CONFIG="$PG_CONFIG" installcheck || status=$?
if ((status != 0)) && [[ -f $ROOT/extension/regression.diffs ]]; then
	cat "$ROOT/extension/regression.diffs" >&2
fi
exit "$status"
