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
PROG=majors.sh
# shellcheck source=scripts/chroot-lib.sh
. "$ROOT/scripts/chroot-lib.sh"
CLUSTER=$ROOT/scripts/cluster.sh
COPT_DEFAULT="-Werror -Wextra -Wno-unused-parameter -Wno-sign-compare -Wno-missing-field-initializers"
# The end-to-end tests every major runs: the core ones, the clusters' own
# test (a primary and a streaming standby that Stop really stops), the
# extension's isolation tests (transaction_timeout is tested only on 17+)
# and its registry tests (updates, pg_dump and restore, pg_upgrade --check).
E2E_TESTS='^(TestExtensionHelloAndPing|TestExtensionRefusesWrongContexts|TestCallNThroughDaemon|TestHandlersThroughDaemon|TestHostileFrames|TestIdleChannelHoldsNoXmin|TestIdleChannelWaitEvent|TestLargeBuffersReleasedAfterTheRequest|TestBasebackupConninfoHasTheHardKeywords|TestPrimaryAndStreamingStandby|TestIsolation.*|TestPgUpgradeWithHandlerRegistered|TestDumpAndRestoreKeepHandlers|TestUpdate10To11To12WithHandler|TestRegistryChangesReachAnOpenChannel|TestHandlerWithRegistryAt11|TestControlFileMatchesControldata|TestFailoverPromotionWithOldPrimaryAlive|TestFailoverRewindAndRejoin|TestPipelineExtensionOrderAndGoodbye|TestPipelineEightCallersOneSession|TestGoodbyeOnShutdownIdleTimeoutAndPostmasterDeath|TestProtocolV3DetailAndHintReachCallers|TestProtocolV2ChannelGivesMessageOnly|TestFastPathCallerGoneWithRequestsInFlight|TestStandbySQLCallsAreAttributed|TestSQLCall.*)$'
# Where the build directory appears inside a chroot.
BUILD_MNT=/srv/standbyd-ext
export PATH=/usr/local/go/bin:$PATH
export DEBIAN_FRONTEND=noninteractive LC_ALL=C

CLUSTERS=() # throwaway cluster bases this run started

usage() { awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "${BASH_SOURCE[0]}"; exit 2; }

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
