#!/bin/sh
# Lays out the files of the vmm package under DESTDIR from an already-built tree: the one
# list of what the package contains, used by scripts/build-deb.sh (fast, from a build dir)
# and by debian/rules (dpkg-buildpackage). Maintainer scripts and control fields live in
# packaging/debian/.
#   packaging/stage.sh BUILD_DIR DESTDIR
set -eu

[ $# -eq 2 ] || { echo "usage: $0 BUILD_DIR DESTDIR" >&2; exit 2; }
src=$(cd "$(dirname "$0")/.." && pwd)
build=$1
dest=$2
pkg=$src/packaging

for bin in "$build/app/vmmd" "$build/client/vmctl"; do
	[ -x "$bin" ] || { echo "stage: $bin is missing: build the vmmd and vmctl targets first" >&2; exit 1; }
done

# Manual pages carry the changelog's date, not today's (reproducible builds).
if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
	SOURCE_DATE_EPOCH=$(dpkg-parsechangelog -l "$pkg/debian/changelog" -S Timestamp)
	export SOURCE_DATE_EPOCH
fi

install -d -m 0755 "$dest/usr/sbin" "$dest/usr/bin" "$dest/etc/vmm" "$dest/lib/systemd/system" \
	"$dest/usr/share/bash-completion/completions" "$dest/usr/share/man/man1" "$dest/usr/share/man/man8" \
	"$dest/usr/share/doc/vmm"
install -m 0755 "$build/app/vmmd" "$dest/usr/sbin/vmmd"
install -m 0755 "$build/client/vmctl" "$dest/usr/bin/vmctl"
# Container exec (joins a container with its capabilities and seccomp filter); vmmd looks for it here.
install -D -m 0755 "$build/drivers/vmm-nsexec" "$dest/usr/lib/vmm/vmm-nsexec"
# Offline image customisation (libguestfs), when built; vmmd looks for it here.
if [ -x "$build/storage/customize/vmm-customize" ]; then
	install -D -m 0755 "$build/storage/customize/vmm-customize" "$dest/usr/lib/vmm/vmm-customize"
fi
install -m 0644 "$pkg/vmmd.toml" "$dest/etc/vmm/vmmd.toml"
install -m 0644 "$pkg/systemd/vmmd.service" "$dest/lib/systemd/system/vmmd.service"
install -m 0644 "$pkg/bash-completion/vmctl" "$dest/usr/share/bash-completion/completions/vmctl"
install -D -m 0644 "$pkg/debian/vmm.lintian-overrides" "$dest/usr/share/lintian/overrides/vmm"

# Manual pages from the programs' own --help and --version (the same text, one source).
man_page() {  # PROGRAM SECTION NAME-LINE INCLUDE OUTPUT
	help2man --no-info --no-discard-stderr --section="$2" --name="$3" --include="$4" "$1" >"$5.tmp"
	gzip -9n <"$5.tmp" >"$5"
	rm -f "$5.tmp"
	chmod 0644 "$5"
}
man_page "$build/app/vmmd" 8 "the vmm virtualization daemon" "$pkg/man/vmmd.h2m" "$dest/usr/share/man/man8/vmmd.8.gz"
man_page "$build/client/vmctl" 1 "manage the virtual machines and containers of a vmm host" "$pkg/man/vmctl.h2m" \
	"$dest/usr/share/man/man1/vmctl.1.gz"

doc=$dest/usr/share/doc/vmm
install -m 0644 "$pkg/debian/copyright" "$doc/copyright"
gzip -9n <"$pkg/debian/changelog" >"$doc/changelog.Debian.gz"
for f in README.md docs/user-guide.md docs/api.md; do
	[ -f "$src/$f" ] && gzip -9n <"$src/$f" >"$doc/$(basename "$f").gz"
done
chmod 0644 "$doc"/*
