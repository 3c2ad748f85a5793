#!/bin/bash
# The vmm package end to end, without systemd and without touching the machine's dpkg
# database: builds two versions (A < B) from an existing build dir with
# scripts/build-deb.sh, checks B with lintian, installs A into a fresh root (dpkg --root,
# maintainer scripts run chrootless with DPKG_ROOT), runs the installed vmmd on private
# directories, defines domains (one running), rewrites the state database to schema
# version 1 (as an older vmmd left it), upgrades to B, restarts vmmd and checks that the
# definitions, the running domain and a locally edited conffile survived and that the
# schema was migrated. Then purges the package. Everything lives in one temp dir.
# The running domain is a test-driver domain: this shows that vmmd's restart across the
# upgrade keeps a running domain's state, not that a QEMU guest survives it (that is
# e2e.qemu_e2e_test's reconnect case, without a package).
# lintian and systemd-analyze are required (tests/support/require.sh: exit 77, a skip, when
# missing; a failure naming them in strict mode).
#   tests/packaging/package_test.sh BUILD_DIR
set -euo pipefail

src=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "${1:?usage: $0 BUILD_DIR}" && pwd)
. "$src/tests/support/require.sh"
require_tool lintian lintian
require_tool systemd-analyze systemd
require_tool dpkg-shlibdeps dpkg-dev
work=$(mktemp -d /tmp/vmm-pkgtest.XXXXXX)
root=$work/root
run=$work/run
vmmd_pid=""

cleanup() {
	if [ -n "$vmmd_pid" ] && kill -0 "$vmmd_pid" 2>/dev/null; then
		kill -TERM "$vmmd_pid" 2>/dev/null || true
		for _ in $(seq 100); do kill -0 "$vmmd_pid" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$vmmd_pid" 2>/dev/null || true
		wait "$vmmd_pid" 2>/dev/null || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT

step() { echo "== $(date +%T) $*"; }
fail() { echo "FAIL: $*" >&2; [ -f "$work/vmmd.log" ] && tail -20 "$work/vmmd.log" >&2; exit 1; }
expect() { grep -q -- "$1" <<<"$2" || fail "expected '$1' in: $2"; }
# expect_eq WHAT ACTUAL EXPECTED: exact equality.
expect_eq() { [ "$2" = "$3" ] || fail "$1: expected '$3', got '$2'"; }
# expect_line LINE TEXT: LINE is one whole line of TEXT.
expect_line() { grep -qxF -- "$1" <<<"$2" || fail "expected the line '$1' in: $2"; }
# json_field JSON PYTHON-EXPR: the expression on the parsed document `d`, printed.
json_field() { python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(eval(sys.argv[2]))' "$1" "$2"; }

dpkg_root() { dpkg --root="$root" --force-script-chrootless --force-depends --log=/dev/null "$@"; }
vmctl() { timeout 30 "$root/usr/bin/vmctl" -c "$run/vmmd.sock" "$@"; }

start_vmmd() {
	# The packaged config, with directories private to this test; the socket group is root
	# because the `vmm` group exists only in the fresh root's /etc/group.
	"$root/usr/sbin/vmmd" --config "$root/etc/vmm/vmmd.toml" --state-dir "$root/var/lib/vmm" \
		--run-dir "$run" --socket-group root --listen none --drivers test --default-network no \
		>>"$work/vmmd.log" 2>&1 &
	vmmd_pid=$!
	for _ in $(seq 200); do
		[ -S "$run/vmmd.sock" ] && vmctl host info >/dev/null 2>&1 && return 0
		kill -0 "$vmmd_pid" 2>/dev/null || fail "vmmd exited at start"
		sleep 0.1
	done
	fail "vmmd did not answer within 20 s"
}

stop_vmmd() {
	kill -TERM "$vmmd_pid"
	for _ in $(seq 200); do kill -0 "$vmmd_pid" 2>/dev/null || break; sleep 0.1; done
	kill -0 "$vmmd_pid" 2>/dev/null && fail "vmmd did not stop within 20 s on SIGTERM"
	wait "$vmmd_pid" || true
	vmmd_pid=""
}

schema_version() { python3 -c 'import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute("PRAGMA user_version").fetchone()[0])' "$1"; }

step "build packages A and B from $build"
deb_a=$("$src/scripts/build-deb.sh" "$build" "$work/out" 0.1.0~pkgtest1-1 | tail -1)
deb_b=$("$src/scripts/build-deb.sh" "$build" "$work/out" 0.1.0~pkgtest2-1 | tail -1)
dpkg --compare-versions "$(dpkg-deb -f "$deb_b" Version)" gt "$(dpkg-deb -f "$deb_a" Version)" || fail "B is not newer"
contents=$(dpkg-deb -c "$deb_b" | awk '{print $6}')
for f in ./usr/sbin/vmmd ./usr/bin/vmctl ./etc/vmm/vmmd.toml ./lib/systemd/system/vmmd.service \
	./usr/share/bash-completion/completions/vmctl ./usr/share/man/man8/vmmd.8.gz ./usr/share/man/man1/vmctl.1.gz \
	./usr/share/doc/vmm/copyright; do
	expect_line "$f" "$contents"
done
expect_eq "conffiles" "$(dpkg-deb -I "$deb_b" conffiles)" "/etc/vmm/vmmd.toml"
expect "^libc6\( (.*)\)\?$" "$(dpkg-deb -f "$deb_b" Depends | sed 's/, /\n/g')"

step "lintian"
# Remaining tags are overridden in the package (packaging/debian/vmm.lintian-overrides,
# explained in packaging/README.md); any other warning or error fails the test.
# Its temporary files (an ELF cache, /tmp/mldbm-elf-*) go under $work, removed with it.
mkdir -p "$work/tmp"
TMPDIR=$work/tmp timeout 300 lintian --fail-on error,warning --tag-display-limit 0 "$deb_b" || fail "lintian"

step "systemd unit"
staged=$work/staged
mkdir "$staged"
dpkg-deb -x "$deb_b" "$staged"
# The staged vmmd stands in for /usr/sbin/vmmd (not installed on this machine); any
# message (an unknown key, a bad value) fails, not only errors.
sed "s|=/usr/sbin/vmmd|=$staged/usr/sbin/vmmd|" "$staged/lib/systemd/system/vmmd.service" >"$work/vmmd.service"
grep -q "^ExecStart=$staged/usr/sbin/vmmd" "$work/vmmd.service" || fail "the unit has no ExecStart=/usr/sbin/vmmd"
out=$(systemd-analyze verify --man=no "$work/vmmd.service" 2>&1) || fail "systemd-analyze verify: $out"
[ -z "$out" ] || fail "systemd-analyze verify: $out"
expect_line "UMask=0077" "$(cat "$work/vmmd.service")"
expect_line "StateDirectoryMode=0711" "$(cat "$work/vmmd.service")"

step "install A into a fresh root"
mkdir -p "$root/var/lib/dpkg/info" "$root/var/lib/dpkg/updates" "$root/var/lib/dpkg/triggers" "$root/etc" "$run"
touch "$root/var/lib/dpkg/status" "$root/var/lib/dpkg/available"
printf 'root:x:0:\n' >"$root/etc/group"
printf 'root:*::\n' >"$root/etc/gshadow"
dpkg_root -i "$deb_a" >"$work/dpkg.log" 2>&1 || { cat "$work/dpkg.log"; fail "dpkg -i A"; }
expect "^vmm:x:[0-9]\+:$" "$(cat "$root/etc/group")"
[ -L "$root/etc/systemd/system/multi-user.target.wants/vmmd.service" ] || fail "vmmd.service not enabled"
expect_eq "installed version" "$(dpkg-query --admindir="$root/var/lib/dpkg" -W -f '${Version} ${db:Status-Status}' vmm)" "0.1.0~pkgtest1-1 installed"
zcat "$root/usr/share/man/man8/vmmd.8.gz" | grep -q -- "state.-dir" || fail "vmmd(8) lacks the options"
zcat "$root/usr/share/man/man1/vmctl.1.gz" | grep -q -- "snapshot" || fail "vmctl(1) lacks the commands"
man -l "$root/usr/share/man/man8/vmmd.8.gz" >/dev/null 2>&1 || true

step "run the installed vmmd (A)"
start_vmmd
expect_eq "available drivers" "$(json_field "$(vmctl -o json host info)" '",".join(sorted(k for k, v in d["drivers"].items() if v["available"]))')" "test"
cat >"$work/run1.json" <<'JSON'
{"name": "pkg-run", "type": "test", "vcpus": 1, "memory": "64MiB"}
JSON
cat >"$work/off1.json" <<'JSON'
{"name": "pkg-off", "type": "test", "vcpus": 2, "memory": "128MiB"}
JSON
vmctl define "$work/run1.json" >/dev/null
vmctl define "$work/off1.json" >/dev/null
vmctl start pkg-run >/dev/null
expect_eq "pkg-run state" "$(json_field "$(vmctl -o json info pkg-run)" 'd["state"]')" "running"

step "bash completion"
comp() {  # WORDS...: the candidates for the last word
	VMM_CONNECT=$run/vmmd.sock PATH=$root/usr/bin:$PATH bash -c '
		source "$1"; shift
		COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1))
		_vmctl; printf "%s\n" "${COMPREPLY[@]}"' _ "$root/usr/share/bash-completion/completions/vmctl" "$@"
}
expect "^host$" "$(comp vmctl ho)"
expect "^create$" "$(comp vmctl snapshot cr)"
expect "^--all$" "$(comp vmctl list --a)"
expect "^pkg-run$" "$(comp vmctl start pkg-r)"
expect "^default$" "$(comp vmctl vol list def)"
stop_vmmd

step "rewrite the state database to schema version 1 (an older vmmd's)"
db=$root/var/lib/vmm/vmm.db
latest=$(schema_version "$db")
python3 - "$db" <<'PY'
import sqlite3, sys
# Schema 1 (daemon/state_store.cc migrations()[0]): eight key/value tables; its rows kept.
tables = ["domains", "runtime", "pools", "networks", "snapshots", "operations", "tokens", "meta"]
old = sqlite3.connect(sys.argv[1])
rows = {t: old.execute("SELECT key, value, updated_us FROM %s" % t).fetchall() for t in tables}
old.execute("PRAGMA wal_checkpoint(TRUNCATE)")
old.close()
import os
for suffix in ["", "-wal", "-shm"]:
    if os.path.exists(sys.argv[1] + suffix):
        os.remove(sys.argv[1] + suffix)
new = sqlite3.connect(sys.argv[1])
for t in tables:
    new.execute("CREATE TABLE %s (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL, updated_us INTEGER NOT NULL)" % t)
    new.executemany("INSERT INTO %s VALUES (?, ?, ?)" % t, rows[t])
new.execute("CREATE INDEX operations_by_time ON operations(updated_us)")
new.execute("PRAGMA user_version=1")
new.commit()
PY
[ "$(schema_version "$db")" = 1 ] || fail "could not rewrite the schema"

step "upgrade to B (a locally edited conffile is kept; modes an older vmm left are made private)"
echo "# edited by the administrator" >>"$root/etc/vmm/vmmd.toml"
# As versions before umask 077 left them: the database with its passwords readable by everyone.
chmod 0755 "$root/var/lib/vmm"
touch "$db-wal"
chmod 0644 "$db" "$db-wal"
dpkg_root -i "$deb_b" >"$work/dpkg.log" 2>&1 || { cat "$work/dpkg.log"; fail "dpkg -i B"; }
expect_eq "state directory mode after the upgrade" "$(stat -c %a "$root/var/lib/vmm")" "711"
expect_eq "database mode after the upgrade" "$(stat -c %a "$db")" "600"
expect_eq "WAL mode after the upgrade" "$(stat -c %a "$db-wal")" "600"
rm -f "$db-wal"
expect_eq "upgraded version" "$(dpkg-query --admindir="$root/var/lib/dpkg" -W -f '${Version} ${db:Status-Status}' vmm)" "0.1.0~pkgtest2-1 installed"
expect_line "# edited by the administrator" "$(cat "$root/etc/vmm/vmmd.toml")"
[ "$(grep -c '^vmm:' "$root/etc/group")" = 1 ] || fail "the vmm group was added twice"

step "run the upgraded vmmd (B)"
start_vmmd
[ "$(schema_version "$db")" = "$latest" ] || fail "schema not migrated to $latest"
expect "state database migrated" "$(cat "$work/vmmd.log")"
expect_eq "domains after the upgrade" "$(json_field "$(vmctl -o json list --all)" '" ".join(sorted(x["name"] + "=" + x["state"] for x in d))')" "pkg-off=shutoff pkg-run=running"
expect_eq "pkg-run state" "$(json_field "$(vmctl -o json info pkg-run)" 'd["state"]')" "running"
expect_line "test guest pkg-run reconnected" "$(vmctl console-log pkg-run | tr -d '\r')"
expect_eq "pkg-off vcpus" "$(json_field "$(vmctl -o json dumpjson pkg-off)" 'd["vcpus"]')" "2"
expect_eq "pkg-off memory" "$(json_field "$(vmctl -o json dumpjson pkg-off)" 'd["memory"]')" "128MiB"
# What existed before projects is the default project's, under the same names.
expect_eq "projects after the upgrade" "$(json_field "$(vmctl -o json project list)" '" ".join(x["name"] + ":" + str(x["usage"]["domains"]) for x in d)')" "default:2"
expect_eq "domains' project after the upgrade" "$(json_field "$(vmctl -o json list --all)" '" ".join(sorted(set(x["project"] for x in d)))')" "default"
vmctl project create upgraded >/dev/null || fail "project create after the upgrade"
vmctl --project upgraded define - <<<'{"name": "pkg-off", "type": "test"}' >/dev/null || fail "a domain of an existing name in a new project"
expect_eq "the default project's pkg-off kept" "$(json_field "$(vmctl -o json dumpjson pkg-off)" 'd["vcpus"]')" "2"
vmctl --project upgraded undefine pkg-off >/dev/null || fail "undefine in the new project"
vmctl project delete upgraded >/dev/null || fail "project delete"
stop_vmmd

step "purge"
dpkg_root -P vmm >"$work/dpkg.log" 2>&1 || { cat "$work/dpkg.log"; fail "dpkg -P"; }
[ ! -e "$root/usr/sbin/vmmd" ] && [ ! -e "$root/etc/vmm/vmmd.toml" ] || fail "files left after purge"
[ ! -e "$root/etc/systemd/system/multi-user.target.wants/vmmd.service" ] || fail "unit still enabled after purge"
[ -f "$db" ] || fail "purge removed the state database (user data)"
step "ok"
