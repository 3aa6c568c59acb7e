# shellcheck shell=bash
# chroot-lib.sh: Debian chroots for PostgreSQL majors, shared by majors.sh
# (the version matrix), deb.sh (packages) and debtest.sh (install test).
# Source it after `set -euo pipefail`; PROG names the script in messages.
#
# Chroots are cached in $STANDBYD_CHROOTS (default
# /var/cache/standbyd/chroots), one per Debian suite; a chroot counts only
# once its stamp file is written, as the last step. The Debian mirror is the
# one the host's apt sources name. Callers undo their mounts with
# unmount_all (in an EXIT trap).

PROG=${PROG:-$(basename "$0")}
CACHE=${STANDBYD_CHROOTS:-/var/cache/standbyd/chroots}
# Where the host's apt sources and os-release are (other places in tests).
APT_ETC=${STANDBYD_APT_ETC:-/etc/apt}
OS_RELEASE=${STANDBYD_OS_RELEASE:-/etc/os-release}

APT_OPTS=(-y -q -o Dpkg::Options::=--force-confold -o Dpkg::Options::=--force-confdef --no-install-recommends)

MOUNTED=()  # mount points this run mounted, undone in reverse order on exit

die() { echo "$PROG: $*" >&2; exit 1; }
say() { echo "$PROG: $*"; }

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
			umount "$t" 2>/dev/null || { echo "$PROG: $t busy, detaching it" >&2; umount -l "$t"; }
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
	echo "$PROG: stopping processes left in $c: $(echo "$pids" | tr '\n' ' ')" >&2
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

# free_port prints a loopback port for a server (see cluster.sh free-port).
free_port() { "$ROOT/scripts/cluster.sh" free-port; }


# ensure_base prints the directory of a bare `debootstrap --variant=minbase`
# of SUITE (cached in $CACHE/base-SUITE, made once), for tests that copy it
# to a fresh root of their own: nothing is installed into it.
ensure_base() {
	local suite=$1 b=$CACHE/base-$1 mirror script=()
	mkdir -p "$CACHE"
	exec 7>"$CACHE/.base-$suite.lock"
	flock 7
	if ! [[ -f $b/.standbyd-complete ]]; then
		[[ -e $b ]] && { say "removing the incomplete base $b" >&2; remove_chroot "$b"; }
		command -v debootstrap >/dev/null || die "debootstrap not installed (apt-get install debootstrap)"
		mirror=$(host_mirror)
		[[ $suite == forky ]] && script=(/usr/share/debootstrap/scripts/sid)
		say "debootstrap $suite into $b" >&2
		debootstrap --variant=minbase "$suite" "$b" "$mirror" "${script[@]}" >"$CACHE/base-$suite.debootstrap.log" 2>&1 ||
			{ tail -30 "$CACHE/base-$suite.debootstrap.log" >&2; die "debootstrap $suite failed"; }
		in_chroot "$b" apt-get clean
		date -u +%FT%TZ >"$b/.standbyd-complete"
	fi
	flock -u 7
	echo "$b"
}
