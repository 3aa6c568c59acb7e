#!/usr/bin/env bash
# debtest.sh: install, use, upgrade, remove and purge the Debian packages in
# fresh Debian chroots, the way a DBA would on a clean host.
#
#   debtest.sh [SUITE...]   default: bookworm (PostgreSQL 15) trixie (17)
#
# For each suite a bare debootstrap of it (cached, see ensure_base) is
# copied to a throwaway root. In it: standbyd alone (its postinst makes the
# units' system user), purged; postgresql-MAJOR and
# postgresql-MAJOR-standbyd, CREATE EXTENSION standbyd on a primary; the
# standbyd package: --version, systemd-analyze verify of its units, nothing
# enabled or started, `standbyd check --connect` against a pg_basebackup -R
# standby, a call through the daemon started as the unit's ExecStart says, as
# the unit's user; then both packages upgraded in place to a bumped version
# (the edited conffile kept, the daemon restarted as the postinst restarts
# it, the channel closed cleanly and reconnected), then remove and purge.
#
# The packages come from dist/ (the packaging/VERSION ones, built by deb.sh
# when missing) and a second, bumped build into build/debtest, made afresh.
# DEBTEST_KEEP_BUILD=1 reuses the bumped build of an earlier run.
# Root only. Every server is stopped and everything unmounted on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PROG=debtest.sh
# shellcheck source=scripts/chroot-lib.sh
. "$ROOT/scripts/chroot-lib.sh"
export DEBIAN_FRONTEND=noninteractive LC_ALL=C

V1=$(cat "$ROOT/packaging/VERSION")
V2=$V1+debtest1
DIST=${DIST:-$ROOT/dist}
DIST2=$ROOT/build/debtest/dist
R=            # the throwaway root of the suite under test
DAEMON_PID=
PGMAJOR=

cleanup() {
	local rc=$?
	set +e
	[[ -n $DAEMON_PID ]] && kill "$DAEMON_PID" 2>/dev/null
	if [[ -n $R && -d $R ]]; then
		if [[ -n $PGMAJOR && -x $R/usr/bin/pg_ctlcluster ]]; then
			in_chroot "$R" pg_ctlcluster "$PGMAJOR" standby stop -m immediate >/dev/null 2>&1
			in_chroot "$R" pg_ctlcluster "$PGMAJOR" primary stop -m immediate >/dev/null 2>&1
		fi
		stop_chroot_procs "$R"
	fi
	unmount_all
	if [[ -n $R && -d $R ]] && ! findmnt -rno TARGET | grep -q "^$R/"; then rm -rf --one-file-system "$R"; fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

major_of() {
	case $1 in
	bookworm) echo 15 ;;
	trixie) echo 17 ;;
	*) die "no install test for suite $1 (bookworm: 15, trixie: 17)" ;;
	esac
}

step() { echo "$PROG: [$SUITE] $*"; }
fail() { die "[$SUITE] FAILED: $*"; }
in_r() { in_chroot "$R" "$@"; }
as_pg() { in_chroot "$R" runuser -u postgres -- env HOME=/var/lib/postgresql "$@"; }
psql_p() { as_pg psql -X -qAt -p "$PPORT" -d postgres "$@"; }

# build_if_missing builds the packages of VERSION into DIR for MAJORS unless
# they are there.
build_if_missing() {
	local version=$1 dir=$2 m missing=0
	shift 2
	[[ -f $dir/standbyd_${version}_amd64.deb ]] || missing=1
	for m in "$@"; do [[ -f $dir/postgresql-${m}-standbyd_${version}_amd64.deb ]] || missing=1; done
	((missing)) || return 0
	step "building $version into $dir"
	DEB_VERSION=$version DIST=$dir "$ROOT/scripts/deb.sh" "$@" | grep -v '^N:' || die "deb.sh $version failed"
}

# start_daemon runs the unit's ExecStart line as the unit's User and Group,
# with what systemd would give it (HOME, the RuntimeDirectory).
start_daemon() {
	local unit=$R/lib/systemd/system/standbyd.service exec user group
	exec=$(sed -n 's/^ExecStart=//p' "$unit")
	user=$(sed -n 's/^User=//p' "$unit")
	group=$(sed -n 's/^Group=//p' "$unit")
	[[ -n $exec && -n $user && -n $group ]] || fail "no ExecStart, User or Group in standbyd.service"
	install -d -m 0750 -o "$(in_r id -u "$user")" -g "$(in_r getent group "$group" | cut -d: -f3)" "$R/run/standbyd"
	# shellcheck disable=SC2086 # the ExecStart line is split as systemd splits it (no quotes in it)
	chroot "$R" setpriv --reuid="$user" --regid="$group" --init-groups \
		env -i HOME=/var/lib/postgresql PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C $exec \
		>>"$R/var/log/standbyd-test.log" 2>&1 &
	DAEMON_PID=$!
}

stop_daemon() {
	local rc=0
	kill -TERM "$DAEMON_PID"
	wait "$DAEMON_PID" || rc=$?
	DAEMON_PID=
	((rc == 0)) || fail "the daemon exited with $rc on SIGTERM"
}

# wait_call waits until a call through the daemon answers, as postgres.
wait_call() {
	local out
	for _ in $(seq 1 150); do
		if out=$(as_pg standbyd call N 100 200 300 2>/dev/null); then
			[[ $out == "400 500 600" ]] || fail "standbyd call N 100 200 300 answered '$out'"
			return 0
		fi
		kill -0 "$DAEMON_PID" 2>/dev/null || { tail -20 "$R/var/log/standbyd-test.log" >&2; fail "the daemon died"; }
		sleep 0.2
	done
	tail -20 "$R/var/log/standbyd-test.log" >&2
	fail "no answer through the daemon in 30 s"
}

channel_pid() { psql_p -c "SELECT pid FROM pg_stat_activity WHERE application_name = 'standbyd' AND query LIKE 'CALL standbyd.serve()%'"; }

test_suite() {
	SUITE=$1
	local m base t0 out
	m=$(major_of "$SUITE")
	PGMAJOR=
	t0=$(date +%s)
	base=$(ensure_base "$SUITE")
	R=$(mktemp -d /var/tmp/standbyd-debtest-"$SUITE".XXXXXX)
	step "fresh root $R from $base"
	cp -a "$base/." "$R/"
	rm -f "$R/.standbyd-complete"
	# A chroot has no init: no package may start a service in it (on the
	# host's network), and the test makes its own clusters.
	printf '#!/bin/sh\nexit 101\n' >"$R/usr/sbin/policy-rc.d"
	chmod 755 "$R/usr/sbin/policy-rc.d"
	mkdir -p "$R/etc/postgresql-common"
	echo "create_main_cluster = false" >"$R/etc/postgresql-common/createcluster.conf"
	# A Debian system as installed: with its updates and security suites
	# (an extension package depends on the minor release it was built
	# against, and the builds use the updated servers).
	local mirror
	mirror=$(host_mirror)
	printf 'deb %s %s main\ndeb %s %s-updates main\ndeb %s-security %s-security main\n' \
		"$mirror" "$SUITE" "$mirror" "$SUITE" "$mirror" "$SUITE" >"$R/etc/apt/sources.list"
	mount_one -t proc proc "$R/proc"
	mount_one --bind /dev "$R/dev"
	mount_one -t tmpfs -o mode=1777,nosuid,nodev shm "$R/dev/shm"
	# Downloaded packages are kept between runs.
	mkdir -p "$CACHE/debtest-archives-$SUITE"
	mount_one --bind "$CACHE/debtest-archives-$SUITE" "$R/var/cache/apt/archives"
	mkdir -p "$R/root/debs"
	cp "$DIST/standbyd_${V1}_amd64.deb" "$DIST/postgresql-$m-standbyd_${V1}_amd64.deb" \
		"$DIST2/standbyd_${V2}_amd64.deb" "$DIST2/postgresql-$m-standbyd_${V2}_amd64.deb" "$R/root/debs/"

	# First standbyd alone, on a host without PostgreSQL: the units' user is
	# made by the postinst, as a system user; a purge keeps it (policy).
	step "apt install ./standbyd_${V1}_amd64.deb on a host without PostgreSQL, then purge"
	{ in_r apt-get -q update && in_r apt-get install -y -q "/root/debs/standbyd_${V1}_amd64.deb"; } >"$R/root/apt.log" 2>&1 ||
		{ tail -20 "$R/root/apt.log" >&2; fail "installing standbyd alone"; }
	local uid
	uid=$(in_r id -u postgres) || fail "the postinst made no postgres user"
	((uid < 1000)) || fail "postgres (uid $uid) is not a system user"
	in_r id -gn postgres | grep -qx postgres || fail "postgres is not in group postgres"
	in_r dpkg --purge standbyd >>"$R/root/apt.log" 2>&1 || { tail -20 "$R/root/apt.log" >&2; fail "purging standbyd alone"; }
	[[ ! -e $R/etc/standbyd && ! -e $R/usr/bin/standbyd ]] || fail "purge left /etc/standbyd or /usr/bin/standbyd"
	in_r id -u postgres >/dev/null || fail "purge removed the postgres user"
	step "postgres made as system user $uid, kept by the purge"

	step "apt-get install postgresql-$m systemd"
	in_r apt-get install "${APT_OPTS[@]}" "postgresql-$m" systemd >>"$R/root/apt.log" 2>&1 ||
		{ tail -20 "$R/root/apt.log" >&2; fail "installing postgresql-$m"; }
	step "apt install ./postgresql-$m-standbyd_${V1}_amd64.deb"
	in_r apt-get install -y -q "/root/debs/postgresql-$m-standbyd_${V1}_amd64.deb" >>"$R/root/apt.log" 2>&1 ||
		{ tail -20 "$R/root/apt.log" >&2; fail "installing postgresql-$m-standbyd"; }
	[[ -f $R/usr/lib/postgresql/$m/lib/standbyd.so && -f $R/usr/share/postgresql/$m/extension/standbyd.control ]] ||
		fail "standbyd.so or standbyd.control not in PostgreSQL $m's directories"

	PPORT=$(free_port)
	SPORT=$(free_port)
	PGMAJOR=$m
	step "primary on 127.0.0.1:$PPORT: CREATE EXTENSION standbyd, the README's grants"
	in_r pg_createcluster "$m" primary -p "$PPORT" >/dev/null
	in_r pg_ctlcluster "$m" primary start
	psql_p -c "CREATE EXTENSION standbyd" -c "CREATE ROLE replicator LOGIN REPLICATION PASSWORD 'debtest-secret'" \
		-c "GRANT USAGE ON SCHEMA standbyd TO replicator" -c "GRANT EXECUTE ON PROCEDURE standbyd.serve() TO replicator"
	out=$(psql_p -c "SELECT extversion FROM pg_extension WHERE extname = 'standbyd'")
	[[ -n $out ]] || fail "CREATE EXTENSION standbyd left no extension"
	step "extension standbyd $out created on PostgreSQL $(psql_p -c 'SHOW server_version')"

	step "standby on 127.0.0.1:$SPORT by pg_basebackup -R (password from ~postgres/.pgpass)"
	printf '127.0.0.1:%s:*:replicator:debtest-secret\n' "$PPORT" >"$R/var/lib/postgresql/.pgpass"
	in_r chown postgres:postgres /var/lib/postgresql/.pgpass
	chmod 600 "$R/var/lib/postgresql/.pgpass"
	in_r pg_createcluster "$m" standby -p "$SPORT" >/dev/null
	rm -rf "$R/var/lib/postgresql/$m/standby"
	as_pg pg_basebackup -R -h 127.0.0.1 -p "$PPORT" -U replicator -D "/var/lib/postgresql/$m/standby"
	in_r pg_ctlcluster "$m" standby start

	step "apt install ./standbyd_${V1}_amd64.deb"
	in_r apt-get install -y -q "/root/debs/standbyd_${V1}_amd64.deb" >>"$R/root/apt.log" 2>&1 ||
		{ tail -20 "$R/root/apt.log" >&2; fail "installing standbyd"; }
	out=$(in_r standbyd --version)
	step "standbyd --version: $out"
	[[ $out == *" $V1" ]] || fail "standbyd --version says '$out', not $V1"
	[[ -e $R/etc/systemd/system/multi-user.target.wants/standbyd.service || -e $R/etc/systemd/system/sockets.target.wants/standbyd.socket ]] &&
		fail "the package enabled a unit"
	chroot_pids "$R" | xargs -r ps -o comm= -p | grep -qx standbyd && fail "the package started standbyd"
	in_r getent passwd postgres >/dev/null || fail "no postgres user"
	step "systemd-analyze verify standbyd.service standbyd.socket standbyd@$m-standby.service"
	in_r cp /lib/systemd/system/standbyd@.service "/root/standbyd@$m-standby.service"
	out=$(in_r systemd-analyze verify /lib/systemd/system/standbyd.service /lib/systemd/system/standbyd.socket "/root/standbyd@$m-standby.service" 2>&1) ||
		{ echo "$out" >&2; fail "systemd-analyze verify"; }
	[[ -z $out ]] || { echo "$out" >&2; fail "systemd-analyze verify complained"; }
	local doc
	while read -r doc; do
		[[ -f $R$doc ]] || fail "a unit's Documentation= names $doc, which the package does not install"
	done < <(sed -n 's|^Documentation=file://||p' "$R"/lib/systemd/system/standbyd*)

	step "edit the conffile /etc/standbyd/standbyd.yaml: the standby's data directory, a free metrics port"
	local mport
	mport=$(free_port)
	sed -i "s|^  data_directory: \"\"|  data_directory: /var/lib/postgresql/$m/standby|; s|^  listen: 127.0.0.1:9561|  listen: 127.0.0.1:$mport|" \
		"$R/etc/standbyd/standbyd.yaml"
	grep -q "data_directory: /var/lib/postgresql/$m/standby" "$R/etc/standbyd/standbyd.yaml" || fail "conffile not edited"
	cp "$R/etc/standbyd/standbyd.yaml" "$R/root/standbyd.yaml.edited"

	step "standbyd check --connect (as postgres)"
	out=$(as_pg standbyd check --connect --config /etc/standbyd/standbyd.yaml 2>&1) || { echo "$out" >&2; fail "standbyd check --connect"; }
	echo "$out" | sed 's/^/    /' | head -12
	grep -q "/etc/postgresql/$m/standby\|/var/lib/postgresql/$m/standby" <<<"$out" || fail "check names no source of primary_conninfo"
	grep -q debtest-secret <<<"$out" && fail "check printed the password"

	step "the daemon as the unit says: $(sed -n 's/^ExecStart=//p' "$R/lib/systemd/system/standbyd.service") (User=$(sed -n 's/^User=//p' "$R/lib/systemd/system/standbyd.service"))"
	start_daemon
	wait_call
	local pid1 pid2
	pid1=$(channel_pid)
	[[ -n $pid1 ]] || fail "no channel backend on the primary"
	[[ $(in_r stat -c %U "/proc/$DAEMON_PID") == postgres ]] || fail "the daemon does not run as postgres"
	step "call N 100 200 300 through the daemon: 400 500 600; channel backend pid $pid1"
	out=$(as_pg standbyd-call N 1 2 3) || fail "standbyd-call N 1 2 3 failed"
	[[ $out == "301 302 303" ]] || fail "standbyd-call N 1 2 3 answered '$out'"
	step "standbyd-call N 1 2 3 through the daemon: $out"

	step "upgrade in place: apt install ./standbyd_${V2}_amd64.deb ./postgresql-$m-standbyd_${V2}_amd64.deb"
	in_r apt-get install -y -q "/root/debs/standbyd_${V2}_amd64.deb" "/root/debs/postgresql-$m-standbyd_${V2}_amd64.deb" \
		</dev/null >>"$R/root/apt.log" 2>&1 || { tail -20 "$R/root/apt.log" >&2; fail "upgrading"; }
	cmp -s "$R/etc/standbyd/standbyd.yaml" "$R/root/standbyd.yaml.edited" || fail "the edited conffile was not kept"
	ls "$R"/etc/standbyd/*.dpkg-* >/dev/null 2>&1 && fail "dpkg left $(ls "$R"/etc/standbyd/*.dpkg-*)"
	# shellcheck disable=SC2016 # a dpkg-query format, not a shell expansion
	out=$(in_r dpkg-query -W -f '${Version}\n' standbyd "postgresql-$m-standbyd" | sort -u)
	[[ $out == "$V2" ]] || fail "installed versions: $out"
	step "the edited conffile is kept; the running daemon restarted as the postinst's try-restart does"
	local lines
	lines=$(wc -l <"$R/var/log/postgresql/postgresql-$m-primary.log")
	stop_daemon
	start_daemon
	wait_call
	pid2=$(channel_pid)
	[[ -n $pid2 && $pid2 != "$pid1" ]] || fail "the channel did not reconnect (backend $pid1, then '$pid2')"
	out=$(in_r standbyd --version)
	[[ $out == *" $V2" ]] || fail "after the upgrade standbyd --version says '$out'"
	if tail -n +"$((lines + 1))" "$R/var/log/postgresql/postgresql-$m-primary.log" | grep -E 'unexpected EOF|could not receive data|FATAL|PANIC'; then
		fail "the primary logged an unclean end of the old channel"
	fi
	step "$out answers; channel backend $pid1 ended cleanly, $pid2 serves (extension package $V2)"

	step "apt-get remove, then purge"
	stop_daemon
	in_r dpkg -L standbyd "postgresql-$m-standbyd" >"$R/root/package-files"
	in_r apt-get remove -y -q standbyd "postgresql-$m-standbyd" >>"$R/root/apt.log" 2>&1 || { tail -20 "$R/root/apt.log" >&2; fail "remove"; }
	[[ ! -e $R/usr/bin/standbyd && ! -e $R/usr/lib/postgresql/$m/lib/standbyd.so ]] || fail "remove left the binaries"
	[[ -f $R/etc/standbyd/standbyd.yaml ]] || fail "remove took the conffile (policy keeps it until purge)"
	in_r pg_ctlcluster "$m" standby stop
	in_r pg_ctlcluster "$m" primary stop
	PGMAJOR=
	# dpkg: apt knows a removed package only while a source has it, and
	# these came from files.
	in_r dpkg --purge standbyd "postgresql-$m-standbyd" >>"$R/root/apt.log" 2>&1 || { tail -20 "$R/root/apt.log" >&2; fail "purge"; }
	rm -rf "$R/run/standbyd" # systemd's RuntimeDirectory, made by this test
	# Nothing the packages installed, nor anything else of that name (the
	# conffile, the units' state kept by deb-systemd-helper).
	out=$(while read -r f; do [[ -e $R$f && ! -d $R$f ]] && echo "$f"; done <"$R/root/package-files"
		cd "$R" && find . -xdev \( -path ./proc -o -path ./root -o -path ./var/lib/postgresql -o -path ./var/log \
			-o -path ./var/cache/apt/archives \) -prune -o \( -name 'standbyd' -o -name 'standbyd[._@-]*' -o -name '_standbyd' \
			-o -name '*-standbyd' -o -name '*-standbyd[._]*' \) -print)
	[[ -z $out ]] || { echo "$out" >&2; fail "purge left files behind"; }
	[[ $(wc -l <"$R/root/package-files") -gt 20 ]] || fail "dpkg -L listed too few files"
	local st
	# shellcheck disable=SC2016 # a dpkg-query format, not a shell expansion
	st=$(in_r dpkg-query -W -f '${db:Status-Status} ' standbyd "postgresql-$m-standbyd" 2>/dev/null || true)
	[[ -z ${st// /} || -z ${st//not-installed /} ]] || fail "dpkg still has standbyd packages: $st"
	in_r getent passwd postgres >/dev/null || fail "purge removed the postgres user"
	step "purged: no standbyd file left; the postgres user and the clusters' data stay (policy)"

	unmount_all
	rm -rf --one-file-system "$R"
	R=
	step "passed in $(($(date +%s) - t0))s"
}

main() {
	local suites=("$@") s majors=() t0
	((${#suites[@]})) || suites=(bookworm trixie)
	[[ $(id -u) == 0 ]] || die "run as root (debootstrap, chroot and mount need it)"
	t0=$(date +%s)
	for s in "${suites[@]}"; do majors+=("$(SUITE=$s major_of "$s")"); done
	SUITE=build
	build_if_missing "$V1" "$DIST" "${majors[@]}"
	# The bumped version is this test's own: built afresh from this tree
	# (DEBTEST_KEEP_BUILD=1 reuses the last one).
	[[ ${DEBTEST_KEEP_BUILD:-} == 1 ]] || rm -rf "$DIST2"
	build_if_missing "$V2" "$DIST2" "${majors[@]}"
	for s in "${suites[@]}"; do test_suite "$s"; done
	echo "$PROG: ${suites[*]} passed in $(($(date +%s) - t0))s"
	echo "debtest: ${#suites[@]} passed, 0 failed"
}

main "$@"
