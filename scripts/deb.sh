#!/usr/bin/env bash
# deb.sh: build the Debian packages into dist/ with Debian's tooling
# (dpkg-buildpackage, debhelper, pg_buildext), then run lintian on them.
#
#   deb.sh [MAJOR...]   standbyd and postgresql-MAJOR-standbyd for each
#                       MAJOR (default: 15 17 18 19)
#
# standbyd and the extension for 15 are built on the host (Debian 12); the
# extension for 17 in the trixie chroot and for 18 and 19 in the forky
# chroot that majors.sh uses (made or reused through chroot-lib.sh), each
# major in a clean build-MAJOR directory of its own. Sources are copied from
# the work tree's files into build/deb first: the tree itself is not built in.
#
# Environment: DEB_VERSION (default: packaging/VERSION) is the packages'
# version and the daemon's; DIST (default: dist) where the .deb files go.
# Root only (chroot, mount).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PROG=deb.sh
# shellcheck source=scripts/chroot-lib.sh
. "$ROOT/scripts/chroot-lib.sh"
export PATH=/usr/local/go/bin:$PATH
export DEBIAN_FRONTEND=noninteractive LC_ALL=C

VERSION=${DEB_VERSION:-$(cat "$ROOT/packaging/VERSION")}
DIST=${DIST:-$ROOT/dist}
B=$ROOT/build/deb-$VERSION
# Where a build directory appears inside a chroot: one per run, since
# several work trees may build in the same chroot at once.
MNT=/srv/standbyd-deb-$$
# What building the extension's package needs in a chroot.
BUILD_TOOLS=(build-essential debhelper dpkg-dev postgresql-server-dev-all)

# The chroots are shared with the version matrix, whose servers may run in
# them: nothing is killed there, the build's mounts are only undone.
cleanup() {
	local rc=$?
	set +e
	unmount_all
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# copy_tree copies the work tree's files (tracked and new, not ignored ones)
# under the paths given into DIR.
copy_tree() {
	local dir=$1
	shift
	mkdir -p "$dir"
	(cd "$ROOT" && git ls-files -z -co --exclude-standard -- "$@" | xargs -0 tar -cf - --) | tar -xf - -C "$dir"
}

# debian_dir puts packaging/NAME/debian into DIR/debian, with the copyright
# file and a changelog whose top entry is VERSION.
debian_dir() {
	local name=$1 dir=$2 source top
	cp -a "$ROOT/packaging/$name/debian" "$dir/debian"
	cp "$ROOT/packaging/copyright" "$dir/debian/copyright"
	source=$( [[ $name == daemon ]] && echo standbyd || echo standbyd-extension)
	sed "s/@SOURCE@/$source/" "$ROOT/packaging/changelog.in" >"$dir/debian/changelog"
	top=$(dpkg-parsechangelog -l "$dir/debian/changelog" -S Version)
	if [[ $top != "$VERSION" ]]; then
		dpkg --compare-versions "$VERSION" gt "$top" || die "DEB_VERSION $VERSION is not newer than $top (packaging/changelog.in)"
		{
			printf '%s (%s) unstable; urgency=medium\n\n  * Rebuild as %s.\n\n' "$source" "$VERSION" "$VERSION"
			printf ' -- The standbyd authors <standbyd@example.org>  %s\n\n' "$(date -uR)"
			cat "$dir/debian/changelog"
		} >"$dir/debian/changelog.new"
		mv "$dir/debian/changelog.new" "$dir/debian/changelog"
	fi
}

build_daemon() {
	local dir=$B/standbyd/src
	rm -rf "$B/standbyd"
	copy_tree "$dir" cmd internal client configs deploy docs README.md Makefile go.mod go.sum
	debian_dir daemon "$dir"
	say "building standbyd $VERSION"
	# -d: Go is the toolchain on the PATH, not a Debian package.
	(cd "$dir" && GOMODCACHE=$(go env GOMODCACHE) GOCACHE=$(go env GOCACHE) \
		dpkg-buildpackage -b -us -uc -d) >"$B/standbyd.log" 2>&1 ||
		{ tail -40 "$B/standbyd.log" >&2; die "standbyd did not build (log: $B/standbyd.log)"; }
	mv "$B"/standbyd/*.deb "$DIST/"
}

# build_ext_in builds postgresql-MAJOR-standbyd for MAJORS in directory DIR
# (its src/ holds the source), with the command prefix RUN ("" on the host,
# in_chroot C in a chroot) and the directory as RUN sees it.
build_ext() {
	local where=$1 majors=$2 dir=$3 seen=$4
	shift 4
	copy_tree "$dir/src" extension
	mv "$dir/src/extension"/* "$dir/src/" && rmdir "$dir/src/extension"
	debian_dir extension "$dir/src"
	say "building postgresql-{${majors// /,}}-standbyd $VERSION ($where)"
	"$@" sh -c "cd '$seen/src' && PG_SUPPORTED_VERSIONS='$majors' pg_buildext updatecontrol &&
		PG_SUPPORTED_VERSIONS='$majors' dpkg-buildpackage -b -us -uc" >"$dir.log" 2>&1 ||
		{ tail -40 "$dir.log" >&2; die "the extension did not build for $majors ($where; log: $dir.log)"; }
	local m
	for m in $majors; do
		ls "$dir"/postgresql-"$m"-standbyd_*.deb >/dev/null 2>&1 || die "no package for $m built ($dir.log)"
	done
	mv "$dir"/*.deb "$DIST/"
}

# chroot_build_tools installs what building a package needs into the chroot
# of MAJOR, once (under the suite's lock, as ensure_chroot takes it).
chroot_build_tools() {
	local m=$1 c suite
	c=$(chroot_of "$m")
	suite=$(suite_of "$m")
	exec 8>"$CACHE/.$suite.lock"
	flock 8
	local deps
	deps=$(printf '%s, ' "${BUILD_TOOLS[@]}")
	if ! in_chroot "$c" dpkg-checkbuilddeps -d "${deps%, }" /dev/null 2>/dev/null; then
		say "installing ${BUILD_TOOLS[*]} into $c"
		mount_one -t proc proc "$c/proc"
		in_chroot "$c" apt-get install "${APT_OPTS[@]}" "${BUILD_TOOLS[@]}" >>"$CACHE/$suite.apt.log" 2>&1 ||
			{ in_chroot "$c" apt-get -q update >>"$CACHE/$suite.apt.log" 2>&1 &&
				in_chroot "$c" apt-get install "${APT_OPTS[@]}" "${BUILD_TOOLS[@]}" >>"$CACHE/$suite.apt.log" 2>&1; } ||
			{ tail -20 "$CACHE/$suite.apt.log" >&2; die "installing the build tools into $c failed"; }
		in_chroot "$c" apt-get clean
		unmount_all
	fi
	flock -u 8
}

main() {
	local majors=("$@") m host=() trixie=() forky=() t0
	((${#majors[@]})) || majors=(15 17 18 19)
	[[ $(id -u) == 0 ]] || die "run as root (chroot and mount need it)"
	for m in "${majors[@]}"; do
		case $m in
		15) host+=("$m") ;;
		*) case $(suite_of "$m") in trixie) trixie+=("$m") ;; forky) forky+=("$m") ;; esac ;;
		esac
	done
	t0=$(date +%s)
	for tool in dpkg-buildpackage dh pg_buildext lintian; do
		command -v $tool >/dev/null || die "$tool not installed (apt-get install dpkg-dev debhelper postgresql-server-dev-all lintian)"
	done
	rm -rf "$B"
	mkdir -p "$B" "$DIST"
	rm -f "$DIST"/standbyd*_"$VERSION"_*.deb
	for m in "${majors[@]}"; do rm -f "$DIST"/postgresql-"$m"-standbyd*_"$VERSION"_*.deb; done
	build_daemon
	if ((${#host[@]})); then
		mkdir -p "$B/ext-host"
		build_ext host "${host[*]}" "$B/ext-host" "$B/ext-host"
	fi
	local group suite c
	for group in trixie forky; do
		local -n ms=$group
		((${#ms[@]})) || continue
		ensure_chroot "${ms[0]}"
		chroot_build_tools "${ms[0]}"
		c=$(chroot_of "${ms[0]}")
		suite=$group
		mkdir -p "$B/ext-$suite"
		mount_one --bind "$B/ext-$suite" "$c$MNT"
		build_ext "$suite chroot" "${ms[*]}" "$B/ext-$suite" "$MNT" in_chroot "$c"
		unmount_all
		rmdir "$c$MNT"
	done
	say "packages in $DIST ($(($(date +%s) - t0))s):"
	local f
	for f in "$DIST"/*_"$VERSION"_*.deb; do
		printf '  %-56s %6s KiB\n' "$(basename "$f")" "$(($(stat -c %s "$f") / 1024))"
	done
	say "lintian"
	# Errors and warnings fail the build: a kept warning carries an override
	# with its reason.
	lintian --fail-on error,warning --suppress-tags-from-file /dev/null --info "$DIST"/*_"$VERSION"_*.deb
	say "lintian: no errors, no warnings"
}

main "$@"
