#!/usr/bin/env bash
# majors.sh: build and test the extension and the daemon on other PostgreSQL
# majors. Debian 12 ships only 15; the others come from newer Debian suites
# installed into chroots: 17 from trixie, 18 from forky, 19 (release
# candidate) from experimental, in the same forky chroot as 18.
#
#   majors.sh [MAJOR...]     everything for each major (default: 17 18 19)
#   majors.sh chroot MAJOR   create the chroot that holds MAJOR (or reuse it)
#   majors.sh build MAJOR    build the extension in build/ext-MAJOR and
#                            install it into the chroot
#   majors.sh regress MAJOR  the extension's pg_regress suite (make
#                            installcheck) against a throwaway server
#   majors.sh e2e MAJOR      the core end-to-end tests: servers of MAJOR in
#                            the chroot, the daemon and the tests on the host
#   majors.sh mount MAJOR    mount what servers in the chroot need, and leave
#                            it mounted (for STANDBYD_PG_CHROOT=... go test)
#   majors.sh umount MAJOR   undo mount
#   majors.sh mirror         print the Debian mirror the host's apt sources use
#
# Root only (but mirror). Chroots are cached in $STANDBYD_CHROOTS (default
# /var/cache/standbyd/chroots), one per Debian suite; a chroot counts only
# once its stamp file is written, as the last step. The Debian mirror is the
# one the host's apt sources name. The chroot's /tmp is the host's /tmp, so
# data directories, sockets and passfiles have one path inside and out, and
# its postgres user has the host's uid and gid. Mounts made by a run are
# undone when it ends, also on failure.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${STANDBYD_CHROOTS:-/var/cache/standbyd/chroots}
# Where the host's apt sources and os-release are (other places in tests).
APT_ETC=${STANDBYD_APT_ETC:-/etc/apt}
OS_RELEASE=${STANDBYD_OS_RELEASE:-/etc/os-release}
CLUSTER=$ROOT/scripts/cluster.sh
COPT_DEFAULT="-Werror -Wextra -Wno-unused-parameter -Wno-sign-compare -Wno-missing-field-initializers"
# The end-to-end tests every major runs: the core ones, the clusters' own
# test (a primary and a streaming standby that Stop really stops), the
# extension's isolation tests (transaction_timeout is tested only on 17+)
# and its registry tests (updates, pg_dump and restore, pg_upgrade --check).
E2E_TESTS='^(TestExtensionHelloAndPing|TestExtensionRefusesWrongContexts|TestCallNThroughDaemon|TestHandlersThroughDaemon|TestHostileFrames|TestIdleChannelHoldsNoXmin|TestBasebackupConninfoHasTheHardKeywords|TestPrimaryAndStreamingStandby|TestIsolation.*|TestPgUpgradeWithHandlerRegistered|TestDumpAndRestoreKeepHandlers|TestUpdate10To11To12WithHandler|TestRegistryChangesReachAnOpenChannel|TestHandlerWithRegistryAt11)$'
# Where the build directory appears inside a chroot.
BUILD_MNT=/srv/standbyd-ext
APT_OPTS=(-y -q -o Dpkg::Options::=--force-confold -o Dpkg::Options::=--force-confdef --no-install-recommends)
export PATH=/usr/local/go/bin:$PATH
export DEBIAN_FRONTEND=noninteractive LC_ALL=C

MOUNTED=()  # mount points this run mounted, undone in reverse order on exit
CLUSTERS=() # throwaway cluster bases this run started

die() { echo "majors.sh: $*" >&2; exit 1; }
say() { echo "majors.sh: $*"; }
usage() { awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "${BASH_SOURCE[0]}"; exit 2; }

suite_of() {
	case $1 in
	17) echo trixie ;;
	18 | 19) echo forky ;;
	*) die "no Debian suite for PostgreSQL $1 (reachable: 17 trixie, 18 forky, 19 experimental); 15 is the host's" ;;
	esac
}

chroot_of() { echo "$CACHE/$(suite_of "$1")"; }

# host_mirror prints the Debian mirror that the host's apt sources use for
# the host's own suite (one-line .list files and deb822 .sources files).
host_mirror() {
	local codename files=() f uri
	# shellcheck source=/dev/null
	codename=$(. "$OS_RELEASE" && echo "${VERSION_CODENAME:-}")
	[[ -n $codename ]] || die "no VERSION_CODENAME in $OS_RELEASE"
	[[ -r $APT_ETC/sources.list ]] && files+=("$APT_ETC/sources.list")
	for f in "$APT_ETC"/sources.list.d/*.list; do [[ -r $f ]] && files+=("$f"); done
	for f in "${files[@]}"; do
		uri=$(awk -v s="$codename" '
			$1 == "deb" {
				i = 2
				if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
				if ($(i + 1) == s) { print $i; exit }
			}' "$f")
		[[ -n $uri ]] && { echo "${uri%/}"; return; }
	done
	for f in "$APT_ETC"/sources.list.d/*.sources; do
		[[ -r $f ]] || continue
		uri=$(awk -v s="$codename" '
			function check() {
				if (types ~ /(^| )deb( |$)/ && (" " suites " ") ~ (" " s " ") && tolower(enabled) != "no" && uris != "") {
					split(uris, u, " "); print u[1]; found = 1; exit
				}
				types = uris = suites = enabled = key = ""
			}
			/^#/ { next }
			/^[ \t]*$/ { check(); next }
			/^[ \t]/ {
				# a continuation line of the field above
				if (key == "types") types = types " " $1
				else if (key == "uris") uris = uris " " $1
				else if (key == "suites") suites = suites " " $1
				next
			}
			{
				key = tolower(substr($0, 1, index($0, ":") - 1)); v = substr($0, index($0, ":") + 1)
				gsub(/^[ \t]+|[ \t]+$/, "", v)
				if (key == "types") types = v; else if (key == "uris") uris = v
				else if (key == "suites") suites = v; else if (key == "enabled") enabled = v
			}
			END { if (!found) check() }' "$f")
		[[ -n $uri ]] && { echo "${uri%/}"; return; }
	done
	die "no Debian mirror for $codename found in the host's apt sources"
}

# mount_one mounts (mount ARGS... TARGET) unless TARGET is already a mount
# point, and remembers it for cleanup. The new mount is made private: where
# the host's mounts are shared (systemd), a tmpfs mounted on the chroot's
# bind of /dev would otherwise also cover the host's /dev/shm.
mount_one() {
	local target=${*: -1}
	mountpoint -q "$target" && return 0
	mkdir -p "$target"
	mount "$@"
	MOUNTED+=("$target")
	mount --make-private "$target"
}

# mount_for_servers gives the chroot what running servers need: /proc, /dev
# (and a private /dev/shm for dynamic shared memory) and the host's /tmp.
mount_for_servers() {
	local c=$1
	mount_one -t proc proc "$c/proc"
	mount_one --bind /dev "$c/dev"
	mount_one -t tmpfs -o mode=1777,nosuid,nodev shm "$c/dev/shm"
	mount_one --bind /tmp "$c/tmp"
}

unmount_all() {
	local i t
	for ((i = ${#MOUNTED[@]} - 1; i >= 0; i--)); do
		t=${MOUNTED[i]}
		mountpoint -q "$t" || continue
		if ! umount "$t" 2>/dev/null; then
			sleep 1
			umount "$t" 2>/dev/null || { echo "majors.sh: $t busy, detaching it" >&2; umount -l "$t"; }
		fi
	done
	MOUNTED=()
}

# chroot_pids prints the processes whose root is the chroot c.
chroot_pids() {
	local c p
	c=$(readlink -f "$1")
	for p in /proc/[0-9]*; do
		[[ $(readlink "$p/root" 2>/dev/null) == "$c" ]] && echo "${p#/proc/}"
	done
	return 0
}

# stop_chroot_procs ends what is left running in the chroot c, which only
# this script starts processes in (a server that a package started, a
# server of a test that died).
stop_chroot_procs() {
	local c=$1 pids
	pids=$(chroot_pids "$c")
	[[ -z $pids ]] && return 0
	echo "majors.sh: stopping processes left in $c: $(echo "$pids" | tr '\n' ' ')" >&2
	# shellcheck disable=SC2086
	kill -TERM $pids 2>/dev/null || true
	for _ in $(seq 1 50); do
		[[ -z $(chroot_pids "$c") ]] && return 0
		sleep 0.1
	done
	pids=$(chroot_pids "$c")
	# shellcheck disable=SC2086
	[[ -z $pids ]] || kill -KILL $pids 2>/dev/null || true
}

cleanup() {
	local rc=$? b
	set +e
	for b in "${CLUSTERS[@]}"; do
		STANDBYD_PG_MAJOR=${CUR_MAJOR:-15} STANDBYD_PG_CHROOT=${CUR_CHROOT:-} "$CLUSTER" destroy "$b" >/dev/null 2>&1
	done
	[[ -n ${CUR_CHROOT:-} && ${#MOUNTED[@]} -gt 0 ]] && stop_chroot_procs "$CUR_CHROOT"
	unmount_all
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

in_chroot() { local c=$1; shift; chroot "$c" env DEBIAN_FRONTEND=noninteractive LC_ALL=C PATH=/usr/sbin:/usr/bin:/sbin:/bin "$@"; }

# remove_chroot deletes an incomplete chroot, never anything mounted in it.
remove_chroot() {
	local c=$1
	if findmnt -rno TARGET | grep -q "^$c/"; then
		die "$c is incomplete and has mounts in it; unmount them (findmnt | grep $c) and retry"
	fi
	rm -rf --one-file-system "$c"
}

# make_chroot creates the chroot of a suite with its PostgreSQL packages.
make_chroot() {
	local suite=$1 c=$CACHE/$1 mirror uid gid
	mirror=$(host_mirror)
	uid=$(id -u postgres 2>/dev/null) || die "no postgres user on the host: run scripts/cluster.sh deps first"
	gid=$(id -g postgres)
	[[ -e $c ]] && { say "removing the incomplete chroot $c"; remove_chroot "$c"; }
	mkdir -p "$CACHE"
	command -v debootstrap >/dev/null || die "debootstrap not installed (apt-get install debootstrap)"
	say "debootstrap $suite into $c"
	local script=()
	[[ $suite == forky ]] && script=(/usr/share/debootstrap/scripts/sid)
	debootstrap --variant=minbase "$suite" "$c" "$mirror" "${script[@]}" >"$CACHE/$suite.debootstrap.log" 2>&1 ||
		{ tail -30 "$CACHE/$suite.debootstrap.log" >&2; die "debootstrap $suite failed"; }
	# The mirror's testing snapshots carry expired Release files.
	echo 'Acquire::Check-Valid-Until "false";' >"$c/etc/apt/apt.conf.d/90standbyd"
	# No default cluster, and no service started by a package.
	mkdir -p "$c/etc/postgresql-common"
	echo "create_main_cluster = false" >"$c/etc/postgresql-common/createcluster.conf"
	printf '#!/bin/sh\nexit 101\n' >"$c/usr/sbin/policy-rc.d"
	chmod 755 "$c/usr/sbin/policy-rc.d"
	# One owner for data directories inside and out.
	in_chroot "$c" groupadd -g "$gid" postgres
	in_chroot "$c" useradd -u "$uid" -g "$gid" -d /var/lib/postgresql -s /bin/bash -r postgres
	mount_one -t proc proc "$c/proc" # postgresql-common's postinst needs it
	local first=() second=()
	case $suite in
	trixie) first=(postgresql-17 postgresql-server-dev-17) ;;
	forky)
		first=(postgresql-18 postgresql-server-dev-18)
		second=(postgresql-19 postgresql-server-dev-19)
		;;
	esac
	say "installing ${first[*]} into $c"
	if ! { in_chroot "$c" apt-get -q update >"$CACHE/$suite.apt.log" 2>&1 &&
		in_chroot "$c" apt-get install "${APT_OPTS[@]}" make gcc libkrb5-dev "${first[@]}" >>"$CACHE/$suite.apt.log" 2>&1; }; then
		tail -30 "$CACHE/$suite.apt.log" >&2
		die "installing ${first[*]} into $c failed"
	fi
	if ((${#second[@]})); then
		# 19 is in experimental, whose dependencies may need sid: added only
		# after 18 came from forky itself.
		printf 'deb %s experimental main\ndeb %s sid main\n' "$mirror" "$mirror" >"$c/etc/apt/sources.list.d/standbyd.list"
		say "installing ${second[*]} into $c (experimental)"
		if ! { in_chroot "$c" apt-get -q update >>"$CACHE/$suite.apt.log" 2>&1 &&
			in_chroot "$c" apt-get install "${APT_OPTS[@]}" -t experimental "${second[@]}" >>"$CACHE/$suite.apt.log" 2>&1; }; then
			tail -30 "$CACHE/$suite.apt.log" >&2
			die "installing ${second[*]} into $c failed"
		fi
	fi
	in_chroot "$c" apt-get clean
	stop_chroot_procs "$c"
	unmount_all
	local p m
	for p in "${first[@]}" "${second[@]}"; do
		[[ $p == postgresql-server-dev-* ]] && continue
		m=${p#postgresql-}
		[[ -x $c/usr/lib/postgresql/$m/bin/postgres ]] || die "$p installed but $c/usr/lib/postgresql/$m/bin/postgres is missing"
	done
	date -u +%FT%TZ >"$c/.standbyd-complete"
	say "chroot $c ready ($(du -sh --one-file-system "$c" | cut -f1))"
}

# ensure_chroot creates the chroot of MAJOR unless a complete one is cached.
ensure_chroot() {
	local m=$1 suite c
	suite=$(suite_of "$m")
	c=$CACHE/$suite
	mkdir -p "$CACHE"
	exec 9>"$CACHE/.$suite.lock"
	flock 9
	if [[ -f $c/.standbyd-complete ]]; then
		say "reusing the chroot $c (made $(cat "$c/.standbyd-complete"))"
	else
		make_chroot "$suite"
	fi
	flock -u 9
	[[ -x $c/usr/lib/postgresql/$m/bin/postgres ]] || die "PostgreSQL $m server missing in $c"
}

use_major() {
	CUR_MAJOR=$1
	CUR_CHROOT=$(chroot_of "$1")
	export STANDBYD_PG_MAJOR=$CUR_MAJOR STANDBYD_PG_CHROOT=$CUR_CHROOT
}

# cmd_build copies extension/ into a fresh build/ext-MAJOR (no object file
# of another major can survive there) and builds it with MAJOR's pg_config.
cmd_build() {
	local m=$1 c dir pgc
	use_major "$m"
	c=$CUR_CHROOT
	dir=$ROOT/build/ext-$m
	pgc=/usr/lib/postgresql/$m/bin/pg_config
	rm -rf "$dir"
	mkdir -p "$dir"
	cp -a "$ROOT/extension/." "$dir/"
	find "$dir" \( -name '*.o' -o -name '*.so' -o -name '*.bc' -o -name 'regression.*' \) -delete
	rm -rf "$dir/results" "$dir/log" "$dir/tmp_check"
	mount_one --bind "$dir" "$c$BUILD_MNT"
	say "building the extension for PostgreSQL $m in $dir"
	in_chroot "$c" make -s -C "$BUILD_MNT" PG_CONFIG="$pgc" COPT="${COPT:-$COPT_DEFAULT}" >"$dir/build.log" 2>&1 ||
		{ cat "$dir/build.log" >&2; die "the extension does not build on PostgreSQL $m (log: $dir/build.log)"; }
	if [[ -s $dir/build.log ]]; then
		cat "$dir/build.log"
	fi
	in_chroot "$c" make -s -C "$BUILD_MNT" PG_CONFIG="$pgc" install >>"$dir/build.log" 2>&1 ||
		{ cat "$dir/build.log" >&2; die "installing the extension into $c failed"; }
	umount "$c$BUILD_MNT"
	say "extension $(sed -n "s/^default_version = '\(.*\)'/\1/p" "$dir/standbyd.control") built and installed for PostgreSQL $m ($(in_chroot "$c" "$pgc" --version))"
}

# record keeps a step's result for the summary of a whole run.
record() { if [[ -n ${RESULTS:-} ]]; then echo "$3" >"$RESULTS/$1-$2"; fi; }

# need_build refuses to test anything but this tree's build of the extension
# (the chroot is shared by every tree and every earlier run).
need_build() {
	local m=$1 so
	so=$(chroot_of "$m")/usr/lib/postgresql/$m/lib/standbyd.so
	cmp -s "$ROOT/build/ext-$m/standbyd.so" "$so" ||
		die "the extension installed in $so is not the one built in $ROOT/build/ext-$m: run majors.sh build $m first"
}

free_port() {
	local p
	for _ in $(seq 1 100); do
		p=$((20000 + RANDOM % 40000))
		(exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
	done
	die "no free port found"
}

# cmd_regress runs make installcheck in build/ext-MAJOR (as postgres, in the
# chroot) against a throwaway server of MAJOR. It sets REGRESS_RESULT.
cmd_regress() {
	local m=$1 c dir base port pgc
	use_major "$m"
	c=$CUR_CHROOT
	dir=$ROOT/build/ext-$m
	pgc=/usr/lib/postgresql/$m/bin/pg_config
	need_build "$m"
	if ! grep -Eq '^[[:space:]]*REGRESS[[:space:]]*[:+]?=' "$dir/Makefile"; then
		echo "################################################################" >&2
		echo "## majors.sh: extension/Makefile defines no REGRESS:          ##" >&2
		echo "## pg_regress NOT run on PostgreSQL $m                         ##" >&2
		echo "################################################################" >&2
		REGRESS_RESULT="none (no REGRESS in extension/Makefile)"
		record regress "$m" "$REGRESS_RESULT"
		return 0
	fi
	mount_for_servers "$c"
	mount_one --bind "$dir" "$c$BUILD_MNT"
	base=$(mktemp -d /tmp/standbyd-regress-XXXXXX)
	CLUSTERS+=("$base")
	port=$(free_port)
	STANDBYD_NO_EXTENSION=1 "$CLUSTER" primary "$base" "$port" >/dev/null
	chown -R postgres:postgres "$dir"
	say "pg_regress (make installcheck) on PostgreSQL $m, server on 127.0.0.1:$port"
	local out rc=0
	out=$(chroot --userspec="$(id -u postgres):$(id -g postgres)" "$c" env HOME=/var/lib/postgresql \
		PATH=/usr/sbin:/usr/bin:/sbin:/bin PGHOST="$base/sock" PGPORT="$port" PGUSER=postgres \
		make -C "$BUILD_MNT" PG_CONFIG="$pgc" installcheck 2>&1) || rc=$?
	echo "$out"
	local pass fail
	pass=$(grep -cE '^ok [0-9]+|\.\.\. ok' <<<"$out" || true)
	fail=$(grep -cE '^not ok [0-9]+|\.\.\. FAILED' <<<"$out" || true)
	REGRESS_RESULT="$pass passed, $fail failed"
	if ((rc == 0 && pass == 0)); then
		echo "majors.sh: REGRESS is defined but pg_regress ran no test" >&2
		rc=1
	fi
	((rc == 0)) || REGRESS_RESULT="FAILED: $REGRESS_RESULT"
	record regress "$m" "$REGRESS_RESULT"
	"$CLUSTER" destroy "$base" >/dev/null
	CLUSTERS=()
	umount "$c$BUILD_MNT"
	if ((rc != 0)); then
		if [[ -f $dir/regression.diffs ]]; then
			echo "--- $dir/regression.diffs"
			cat "$dir/regression.diffs"
		fi
		return 1
	fi
}

# cmd_e2e runs the core end-to-end tests from the host against servers of
# MAJOR in the chroot. It sets E2E_RESULT.
cmd_e2e() {
	local m=$1 c bin
	use_major "$m"
	c=$CUR_CHROOT
	need_build "$m"
	bin=${STANDBYD_BIN:-}
	if [[ -z $bin ]]; then
		bin=$ROOT/bin/standbyd
		(cd "$ROOT" && go build -o "$bin" ./cmd/standbyd)
	fi
	mount_for_servers "$c"
	say "end-to-end tests on PostgreSQL $m ($c)"
	local out rc=0
	out=$(cd "$ROOT" && STANDBYD_BIN=$bin go test -race -count=1 -v -timeout 20m -run "$E2E_TESTS" ./test/e2e ./internal/testcluster 2>&1) || rc=$?
	grep -E '^(=== RUN|--- |\s+--- FAIL|PASS|FAIL|ok )' <<<"$out" | grep -v '^=== RUN' || true
	local pass fail
	pass=$(grep -cE '^--- PASS' <<<"$out" || true)
	fail=$(grep -cE '^--- FAIL' <<<"$out" || true)
	E2E_RESULT="$pass passed, $fail failed"
	((rc == 0)) || E2E_RESULT="FAILED: $E2E_RESULT"
	record e2e "$m" "$E2E_RESULT"
	if ((rc != 0)); then
		echo "$out" | tail -80
		return 1
	fi
	stop_chroot_procs "$c"
	unmount_all
}

# step runs one step in a shell of its own: a failure (set -e) ends only that
# step, after its own cleanup. Call it as a statement, not in a condition
# (where bash would ignore set -e inside it).
step() {
	(
		set -e
		trap cleanup EXIT
		trap 'exit 130' INT TERM
		"$@"
	)
}

cmd_all() {
	local majors=("$@") m summary=() failed=0 t0 rc e2e_rc
	((${#majors[@]})) || majors=(17 18 19)
	for m in "${majors[@]}"; do suite_of "$m" >/dev/null; done
	command -v debootstrap >/dev/null || apt-get install -y -qq --no-install-recommends debootstrap >/dev/null ||
		{ apt-get update -qq && apt-get install -y -qq --no-install-recommends debootstrap >/dev/null; }
	RESULTS=$(mktemp -d)
	local t_all
	t_all=$(date +%s)
	for m in "${majors[@]}"; do
		t0=$(date +%s)
		say "===== PostgreSQL $m"
		# A failed build ends the major; pg_regress and the end-to-end tests
		# run whatever the other's outcome.
		set +e
		step ensure_chroot "$m"
		rc=$?
		if ((rc == 0)); then
			step cmd_build "$m"
			rc=$?
		fi
		if ((rc == 0)); then
			step cmd_regress "$m"
			rc=$?
			step cmd_e2e "$m"
			e2e_rc=$?
			((e2e_rc == 0)) || rc=1
		fi
		set -e
		((rc == 0)) || failed=1
		summary+=("PostgreSQL $m: $( ((rc == 0)) && echo ok || echo FAILED); pg_regress: $(cat "$RESULTS/regress-$m" 2>/dev/null || echo not run); e2e: $(cat "$RESULTS/e2e-$m" 2>/dev/null || echo not run); $(($(date +%s) - t0))s")
	done
	rm -rf "$RESULTS"
	echo
	say "summary ($(($(date +%s) - t_all))s in all)"
	printf '  %s\n' "${summary[@]}"
	return "$failed"
}

(($# >= 1)) || set -- all
case $1 in
mirror) host_mirror; exit ;;
-h | --help | help) usage ;;
esac
[[ $(id -u) == 0 ]] || die "run as root (debootstrap, chroot and mount need it)"
sub=$1
case $sub in
chroot | build | regress | e2e | mount | umount)
	(($# == 2)) || usage
	m=$2
	suite_of "$m" >/dev/null
	;;
esac
case $sub in
chroot) ensure_chroot "$m" && chroot_of "$m" ;;
build) ensure_chroot "$m" && cmd_build "$m" ;;
regress)
	cmd_regress "$m"
	say "PostgreSQL $m pg_regress: $REGRESS_RESULT"
	;;
e2e)
	cmd_e2e "$m"
	say "PostgreSQL $m e2e: $E2E_RESULT"
	;;
mount)
	mount_for_servers "$(chroot_of "$m")"
	MOUNTED=() # kept on exit
	say "mounted; use STANDBYD_PG_MAJOR=$m STANDBYD_PG_CHROOT=$(chroot_of "$m"), then: majors.sh umount $m"
	;;
umount)
	c=$(chroot_of "$m")
	stop_chroot_procs "$c"
	for t in "$c/tmp" "$c/dev/shm" "$c/dev" "$c/proc" "$c$BUILD_MNT"; do
		mountpoint -q "$t" && umount "$t"
	done
	;;
all) shift; cmd_all "$@" ;;
-h | --help | help) usage ;;
[0-9]*) cmd_all "$@" ;;
*) die "unknown command $sub (try --help)" ;;
esac
