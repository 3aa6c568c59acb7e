#!/usr/bin/env bash
# cluster.sh: throwaway PostgreSQL clusters for the demo, the end-to-end
# tests and the benchmarks. One place for all of them.
#
#   cluster.sh deps                              install Debian packages (root)
#   cluster.sh extension                         build and install the extension
#   cluster.sh primary BASE PORT                 primary in BASE/primary
#   cluster.sh standby BASE PRIMARY_PORT PORT [NAME]  streaming standby in BASE/NAME (standby)
#   cluster.sh start|stop BASE [primary|standby] start or stop one or all
#   cluster.sh destroy BASE                      stop everything, remove BASE
#   cluster.sh psql BASE primary|standby [ARGS]  psql as the postgres superuser
#   cluster.sh demo-env BASE                     shell variables for other scripts
#   cluster.sh free-port                         print a loopback port for a server
#
# Servers listen on 127.0.0.1 only, keep their sockets in BASE/sock, and run
# as the postgres OS user when this script runs as root (PostgreSQL refuses to
# run as root), as the current user otherwise.
#
# Environment: STANDBYD_NO_EXTENSION=1 skips CREATE EXTENSION (for testing
# this script before the extension exists). STANDBYD_PG_MAJOR (default 15)
# chooses the major; STANDBYD_PG_CHROOT, when set, runs every PostgreSQL
# program inside that chroot (made by scripts/majors.sh, root only), whose
# /tmp must be the host's /tmp and where BASE must lie.
set -euo pipefail

PG_MAJOR=${STANDBYD_PG_MAJOR:-15}
PG_CHROOT=${STANDBYD_PG_CHROOT:-}
# PGBIN is the path as the programs see it (inside the chroot, if any).
PGBIN=${PGBIN:-/usr/lib/postgresql/$PG_MAJOR/bin}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CHANNEL_ROLE=standbyd_repl
PACKAGES=("postgresql-$PG_MAJOR" "postgresql-server-dev-$PG_MAJOR" libkrb5-dev make gcc curl)

die() { echo "cluster.sh: $*" >&2; exit 1; }
usage() { sed -n '2,19p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 2; }

# as_owner runs a command as the user that owns the clusters.
as_owner() {
	if [[ $(id -u) == 0 ]]; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

owner() { if [[ $(id -u) == 0 ]]; then echo postgres; else id -un; fi; }

# pg runs the PostgreSQL program $1 of the chosen major as the cluster owner:
# inside the chroot when one is set, with the host's postgres uid and gid
# (the chroot's postgres user has them too, so files have one owner).
pg() {
	local prog=$1
	shift
	if [[ -n $PG_CHROOT ]]; then
		chroot --userspec="$(id -u postgres):$(id -g postgres)" "$PG_CHROOT" \
			env HOME=/var/lib/postgresql "$PGBIN/$prog" "$@"
	else
		as_owner "$PGBIN/$prog" "$@"
	fi
}

# same_inside reports whether path p is the same directory in the chroot.
same_inside() {
	[[ $(stat -c %d:%i "$1" 2>/dev/null) == "$(stat -c %d:%i "$PG_CHROOT$1" 2>/dev/null)" ]]
}

need_server() {
	if [[ -n $PG_CHROOT ]]; then
		[[ $(id -u) == 0 ]] || die "a chroot (STANDBYD_PG_CHROOT) needs root"
		[[ -x $PG_CHROOT$PGBIN/postgres ]] ||
			die "PostgreSQL $PG_MAJOR server not found in $PG_CHROOT$PGBIN; run: scripts/majors.sh build $PG_MAJOR (as root)"
		if ! mountpoint -q "$PG_CHROOT/proc" || ! same_inside /tmp; then
			die "$PG_CHROOT lacks /proc or the host's /tmp; run: scripts/majors.sh mount $PG_MAJOR"
		fi
		return
	fi
	[[ -x $PGBIN/postgres ]] || die "PostgreSQL $PG_MAJOR server not found in $PGBIN; run: scripts/cluster.sh deps (as root)"
}

# need_shared_base refuses a BASE that the chroot's servers would not see.
need_shared_base() {
	[[ -z $PG_CHROOT ]] || same_inside "$1" || die "$1 is not visible at the same path inside $PG_CHROOT (use a directory under /tmp)"
}

cmd_deps() {
	[[ -z $PG_CHROOT ]] || die "deps installs the host's packages; the chroot's come from scripts/majors.sh"
	local missing=()
	for p in "${PACKAGES[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
	done
	if ((${#missing[@]} == 0)); then
		echo "cluster.sh: packages present: ${PACKAGES[*]}"
		return
	fi
	if [[ $(id -u) != 0 ]]; then
		die "missing Debian packages: ${missing[*]}; install them as root: apt-get install ${missing[*]}"
	fi
	echo "cluster.sh: installing ${missing[*]}"
	apt-get update -qq
	# Debian's postinst may create a default cluster "15/main" on port 5432;
	# it is left alone: our clusters use their own directories and ports.
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
		-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${missing[@]}" >/dev/null
}

cmd_extension() {
	[[ -z $PG_CHROOT ]] || die "extension builds for the host; for a chroot use: scripts/majors.sh build $PG_MAJOR"
	local pgc=$PGBIN/pg_config
	[[ -x $pgc ]] || die "$pgc not found; run: scripts/cluster.sh deps"
	make -s -C "$ROOT/extension" PG_CONFIG="$pgc" \
		COPT="${COPT:--Werror -Wextra -Wno-unused-parameter -Wno-sign-compare -Wno-missing-field-initializers}" >/dev/null
	local sharedir
	sharedir=$("$pgc" --sharedir)
	[[ -w $sharedir/extension ]] || die "cannot write $sharedir/extension: install the extension as root"
	make -s -C "$ROOT/extension" PG_CONFIG="$pgc" install >/dev/null
	echo "cluster.sh: extension installed into $sharedir/extension"
}

# prepare_base makes BASE private to the cluster owner.
prepare_base() {
	local base=$1
	mkdir -p "$base/sock"
	if [[ $(id -u) == 0 ]]; then chown -R postgres:postgres "$base"; fi
	chmod 700 "$base"
}

wait_ready() {
	local port=$1 base=$2
	for _ in $(seq 1 300); do
		if pg pg_isready -q -h "$base/sock" -p "$port"; then return 0; fi
		sleep 0.1
	done
	return 1
}

# configure writes the settings shared by primary and standby.
configure() {
	local data=$1 port=$2 base=$3 name=$4
	cat >>"$data/postgresql.conf" <<CONF

# --- cluster.sh ---
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$base/sock'
wal_level = replica
max_wal_senders = 10
hot_standby = on
password_encryption = 'scram-sha-256'
logging_collector = off
log_line_prefix = '%m [%p] %q%u@%d/%a '
log_connections = on
log_disconnections = on
fsync = off
shared_buffers = 32MB
CONF
	: >"$base/$name.log"
	if [[ $(id -u) == 0 ]]; then chown postgres:postgres "$base/$name.log"; fi
}

# alive reports whether a process runs (a zombie does not count).
alive() {
	local pid=$1
	[[ -r /proc/$pid/stat ]] || return 1
	[[ $(cut -d' ' -f3 "/proc/$pid/stat") != Z ]]
}

start_one() {
	local base=$1 name=$2
	local data=$base/$name
	[[ -f $data/PG_VERSION ]] || die "no cluster in $data"
	# After a kill -9 of the postmaster its pid file stays behind; where
	# nothing reaps the dead postmaster (a container's PID 1), PostgreSQL
	# would take the zombie for a running server and refuse to start.
	local port
	port=$(sed -n 's/^port = \([0-9]*\)$/\1/p' "$data/postgresql.conf" | tail -1)
	local lock
	for lock in "$data/postmaster.pid" "$base/sock/.s.PGSQL.$port.lock"; do
		[[ -f $lock ]] || continue
		local oldpid
		oldpid=$(head -1 "$lock")
		if [[ -n $oldpid ]] && ! alive "$oldpid"; then
			echo "cluster.sh: removing the stale lock file $lock (PID $oldpid is gone)"
			rm -f "$lock"
		fi
	done
	need_server
	pg pg_ctl -D "$data" -l "$base/$name.log" -w -t 60 -s start ||
		{ tail -20 "$base/$name.log" >&2; die "$name did not start"; }
	wait_ready "$port" "$base" || die "$name on port $port is not accepting connections"
}

cmd_primary() {
	(($# == 2)) || usage
	local base=$1 port=$2
	need_server
	prepare_base "$base"
	need_shared_base "$base"
	local data=$base/primary
	[[ ! -e $data ]] || die "$data exists; destroy $base first"
	local pwfile
	pwfile=$(mktemp "$base/.pw.XXXXXX")
	local pw
	pw=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
	echo "$pw" >"$pwfile"
	if [[ $(id -u) == 0 ]]; then chown postgres "$pwfile"; fi
	pg initdb -D "$data" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
		--encoding=UTF8 --locale=C --data-checksums >"$base/initdb.log" 2>&1 ||
		{ cat "$base/initdb.log" >&2; die "initdb failed"; }
	rm -f "$pwfile"
	configure "$data" "$port" "$base" primary
	cat >"$data/pg_hba.conf" <<HBA
# cluster.sh: local socket trusted for the scripts, TCP needs SCRAM.
local   all          all                     trust
host    all          all        127.0.0.1/32 scram-sha-256
host    replication  all        127.0.0.1/32 scram-sha-256
HBA
	start_one "$base" primary
	# The passfile that the standby (via pg_basebackup -R) and standbyd read.
	local passfile=$base/pgpass
	echo "127.0.0.1:$port:*:$CHANNEL_ROLE:$pw" >"$passfile"
	chmod 600 "$passfile"
	if [[ $(id -u) == 0 ]]; then chown postgres:postgres "$passfile"; fi
	local sql="CREATE ROLE $CHANNEL_ROLE LOGIN REPLICATION PASSWORD '$pw';"
	if [[ ${STANDBYD_NO_EXTENSION:-0} != 1 ]]; then
		sql+="CREATE EXTENSION standbyd;
GRANT USAGE ON SCHEMA standbyd TO $CHANNEL_ROLE;
GRANT EXECUTE ON PROCEDURE standbyd.serve() TO $CHANNEL_ROLE;"
	fi
	pg psql -XqAt -v ON_ERROR_STOP=1 -h "$base/sock" -p "$port" -U postgres -d postgres -c "$sql" >/dev/null
	echo "cluster.sh: primary $data on 127.0.0.1:$port, log $base/primary.log"
}

cmd_standby() {
	(($# == 3 || $# == 4)) || usage
	local base=$1 pport=$2 port=$3 name=${4:-standby}
	need_server
	local data=$base/$name
	[[ ! -e $data ]] || die "$data exists; destroy $base first"
	# PGPASSFILE makes pg_basebackup -R write passfile='BASE/pgpass' into
	# primary_conninfo, as it would with a real .pgpass.
	need_shared_base "$base"
	PGPASSFILE="$base/pgpass" pg pg_basebackup -D "$data" -R -X stream -c fast \
		-h 127.0.0.1 -p "$pport" -U "$CHANNEL_ROLE" -d "passfile=$base/pgpass" >"$base/basebackup.log" 2>&1 ||
		{ cat "$base/basebackup.log" >&2; die "pg_basebackup failed"; }
	grep -q "passfile=" "$data/postgresql.auto.conf" || die "pg_basebackup -R wrote no passfile into primary_conninfo"
	# The copied postgresql.conf still says the primary's port: append ours.
	configure "$data" "$port" "$base" "$name"
	start_one "$base" "$name"
	for _ in $(seq 1 300); do
		local st
		st=$(pg psql -XqAt -h "$base/sock" -p "$port" -U postgres -d postgres \
			-c "SELECT status FROM pg_stat_wal_receiver" 2>/dev/null || true)
		if [[ $st == streaming ]]; then
			echo "cluster.sh: standby $data on 127.0.0.1:$port, streaming from $pport, log $base/$name.log"
			return
		fi
		sleep 0.1
	done
	tail -20 "$base/$name.log" >&2
	die "$name did not start streaming"
}

stop_one() {
	local base=$1 name=$2 data=$1/$2
	[[ -f $data/postmaster.pid ]] || return 0
	if ! pg pg_ctl -D "$data" -w -t 30 -s stop -m fast 2>/dev/null; then
		pg pg_ctl -D "$data" -w -t 10 -s stop -m immediate 2>/dev/null || true
	fi
	if [[ -f $data/postmaster.pid ]]; then
		local pid
		pid=$(head -1 "$data/postmaster.pid" 2>/dev/null || true)
		if [[ -n $pid ]] && alive "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
	fi
}

cmd_stop() {
	(($# >= 1)) || usage
	local base=$1
	[[ -d $base ]] || return 0
	if (($# == 2)); then stop_one "$base" "$2"; return; fi
	# standbys first, so that they do not log a lost primary needlessly
	local d
	for d in "$base"/*/; do
		d=${d%/}
		[[ -f $d/PG_VERSION && $(basename "$d") != primary ]] && stop_one "$base" "$(basename "$d")"
	done
	stop_one "$base" primary
}

cmd_start() {
	(($# >= 1)) || usage
	local base=$1
	if (($# == 2)); then start_one "$base" "$2"; return; fi
	start_one "$base" primary
	[[ ! -d $base/standby ]] || start_one "$base" standby
}

cmd_destroy() {
	(($# == 1)) || usage
	cmd_stop "$1"
	rm -rf "$1"
}

port_of() { sed -n 's/^port = \([0-9]*\)$/\1/p' "$1/postgresql.conf" | tail -1; }

cmd_psql() {
	(($# >= 2)) || usage
	local base=$1 name=$2
	shift 2
	pg psql -X -h "$base/sock" -p "$(port_of "$base/$name")" -U postgres -d postgres "$@"
}

cmd_demo_env() {
	(($# == 1)) || usage
	local base=$1
	echo "BASE='$base'"
	echo "PRIMARY_DATA='$base/primary'"
	echo "PRIMARY_PORT='$(port_of "$base/primary")'"
	if [[ -d $base/standby ]]; then
		echo "STANDBY_DATA='$base/standby'"
		echo "STANDBY_PORT='$(port_of "$base/standby")'"
	fi
	echo "PGPASSFILE='$base/pgpass'"
	echo "SOCKET_DIR='$base/sock'"
	echo "CHANNEL_ROLE='$CHANNEL_ROLE'"
}

# cmd_free_port prints a loopback port nothing answers on, below the kernel's
# ephemeral range: a port inside it may be an outgoing connection's (a psql's,
# a pg_basebackup's) by the time the server binds it ("Address already in
# use"). internal/testcluster picks its ports the same way.
cmd_free_port() {
	(($# == 0)) || usage
	local elo ehi lo hi p
	read -r elo ehi </proc/sys/net/ipv4/ip_local_port_range
	if ((elo - 1 - 10000 >= 1000)); then
		lo=10000 hi=$((elo - 1))
	elif ((65535 - ehi >= 1000)); then
		lo=$((ehi + 1)) hi=65535
	else
		die "no room for a port outside the ephemeral range $elo-$ehi (net.ipv4.ip_local_port_range)"
	fi
	for _ in $(seq 1 100); do
		p=$((lo + (RANDOM * 32768 + RANDOM) % (hi - lo + 1)))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return
		fi
	done
	die "no free port found in $lo-$hi"
}

(($# >= 1)) || usage
sub=$1
shift
case $sub in
deps) cmd_deps "$@" ;;
extension) cmd_extension "$@" ;;
primary) cmd_primary "$@" ;;
standby) cmd_standby "$@" ;;
start) cmd_start "$@" ;;
stop) cmd_stop "$@" ;;
destroy) cmd_destroy "$@" ;;
psql) cmd_psql "$@" ;;
demo-env) cmd_demo_env "$@" ;;
free-port) cmd_free_port "$@" ;;
-h | --help | help) usage ;;
*) die "unknown command $sub (try --help)" ;;
esac
