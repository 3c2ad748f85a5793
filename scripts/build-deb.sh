#!/bin/sh
# Builds the vmm Debian package.
#
#   scripts/build-deb.sh BUILD_DIR OUT_DIR [VERSION]
#     Fast: packages the vmmd and vmctl already built in BUILD_DIR (no rebuild) with the
#     files listed by packaging/stage.sh and the control data and maintainer scripts of
#     packaging/debian/. VERSION defaults to the one in packaging/debian/changelog.
#     Used by the packaging test.
#
#   scripts/build-deb.sh --release OUT_DIR
#     Release build: copies the source tree (tracked and new files, no build dirs) to a
#     temporary directory with packaging/debian as debian/ and runs
#     `dpkg-buildpackage -us -uc -b` there (a full optimized build, ~30+ minutes on 2 cores).
#     The .deb and .buildinfo/.changes land in OUT_DIR. The tree itself stays clean.
set -eu

src=$(cd "$(dirname "$0")/.." && pwd)
usage() { echo "usage: $0 BUILD_DIR OUT_DIR [VERSION] | $0 --release OUT_DIR" >&2; exit 2; }

if [ "${1:-}" = "--release" ]; then
	[ $# -eq 2 ] || usage
	mkdir -p "$2"
	out=$(cd "$2" && pwd)
	work=$(mktemp -d)
	trap 'rm -rf "$work"' EXIT
	mkdir "$work/vmm"
	(cd "$src" && git ls-files -z --cached --others --exclude-standard) |
		(cd "$src" && xargs -0 cp --parents -t "$work/vmm" 2>/dev/null || true)
	rm -rf "$work/vmm/debian"
	cp -r "$src/packaging/debian" "$work/vmm/debian"
	(cd "$work/vmm" && dpkg-buildpackage -us -uc -b)
	cp "$work"/*.deb "$work"/*.buildinfo "$work"/*.changes "$out"/
	ls "$out"/*.deb
	exit 0
fi

[ $# -ge 2 ] && [ $# -le 3 ] || usage
build=$(cd "$1" && pwd)
mkdir -p "$2"
out=$(cd "$2" && pwd)
deb=$src/packaging/debian
version=${3:-$(dpkg-parsechangelog -l "$deb/changelog" -S Version)}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/root
"$src/packaging/stage.sh" "$build" "$root"

# As dh_strip does (no -dbgsym package from this path): every ELF file staged, so a new
# helper program cannot ship unstripped.
find "$root" -type f -perm -u+x -exec sh -c '
	for bin; do
		[ "$(head -c 4 "$bin" | od -An -c | tr -d " ")" = 177ELF ] || continue
		strip --remove-section=.comment --remove-section=.note --strip-unneeded "$bin"
	done' strip-elf {} +

install -d -m 0755 "$root/DEBIAN"
for script in postinst prerm postrm; do
	sed '/^#DEBHELPER#$/d' "$deb/vmm.$script" >"$root/DEBIAN/$script"
	chmod 0755 "$root/DEBIAN/$script"
done
(cd "$root" && find etc -type f | sort | sed 's,^,/,') >"$root/DEBIAN/conffiles"
(cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z | xargs -0 md5sum) \
	>"$root/DEBIAN/md5sums"
chmod 0644 "$root/DEBIAN/conffiles" "$root/DEBIAN/md5sums"

# Control fields from packaging/debian/control, dependencies from the binaries' libraries.
mkdir "$work/debian"
cp "$deb/control" "$deb/changelog" "$work/debian/"
(cd "$work" &&
	dpkg-shlibdeps -Tdebian/substvars -e root/usr/sbin/vmmd -e root/usr/bin/vmctl 2>&1 |
		grep -v 'binaries to analyze should already be installed in their package' >&2 || true
	echo 'misc:Depends=' >>debian/substvars
	dpkg-gencontrol -pvmm -v"$version" -Proot -Tdebian/substvars -fdebian/files)

arch=$(dpkg --print-architecture)
file=$out/vmm_${version}_${arch}.deb
# Same timestamps for the same inputs.
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(dpkg-parsechangelog -l "$deb/changelog" -S Timestamp)}
find "$root" -newermt "@$SOURCE_DATE_EPOCH" -exec touch --no-dereference --date="@$SOURCE_DATE_EPOCH" {} +
dpkg-deb --root-owner-group -Zxz --build "$root" "$file" >/dev/null
echo "$file"
