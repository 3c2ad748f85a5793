# Shared helpers for the benchmark scripts (sourced).
#
# Everything a script starts is stopped by pid when it exits, also on failure or a signal: the
# daemons (vmmd, libvirtd, virtlogd) it started, the guests and containers they still run, the
# libvirt domains named vmmbench*, and the floor QEMUs the Python side noted in $VMM_BENCH_PIDS.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${VMM_BUILD_DIR:-$ROOT/build}
RESULTS=${BENCH_RESULTS:-$BUILD/bench-results}
mkdir -p "$RESULTS"
PIDS=""
DIRS=""
VMMD_SOCK=""
VMMD_SOCKS=""
LIBVIRT_USED=""
VMM_BENCH_PIDS=$(mktemp /tmp/vmm-bench-pids-XXXXXX)
export VMM_BENCH_PIDS
export PYTHONDONTWRITEBYTECODE=1

# vmmd's guests and containers outlive vmmd (their own sessions): destroy them through it first.
stop_vmm_domains() {
  for sock in $VMMD_SOCKS; do
    [ -S "$sock" ] || continue
    for d in $("$BUILD/client/vmctl" --connect "$sock" list --all -o json 2>/dev/null |
               python3 -c 'import json,sys; print(" ".join(d["name"] for d in json.load(sys.stdin) if d.get("state") not in ("shutoff", None)))' 2>/dev/null); do
      timeout 60 "$BUILD/client/vmctl" --connect "$sock" destroy "$d" >/dev/null 2>&1 || true
    done
  done
}

# libvirt's QEMUs outlive libvirtd too: every vmmbench* domain is destroyed and undefined.
stop_libvirt_domains() {
  [ -n "$LIBVIRT_USED" ] && [ -S /run/libvirt/libvirt-sock ] || return 0
  for d in $(timeout 60 virsh -q -c qemu:///system list --all --name 2>/dev/null | grep '^vmmbench' || true); do
    timeout 60 virsh -q -c qemu:///system destroy "$d" >/dev/null 2>&1 || true
    timeout 60 virsh -q -c qemu:///system undefine --snapshots-metadata "$d" >/dev/null 2>&1 || true
  done
}

# Floor QEMUs the benchmark started itself (it kills them; this covers it being killed).
stop_noted_pids() {
  for p in $(cat "$VMM_BENCH_PIDS" 2>/dev/null); do
    case "$(readlink "/proc/$p/exe" 2>/dev/null)" in
      *qemu-system*) kill -9 "$p" 2>/dev/null || true ;;
    esac
  done
  rm -f "$VMM_BENCH_PIDS"
}

cleanup() {
  stop_vmm_domains
  stop_libvirt_domains
  stop_noted_pids
  for p in $PIDS; do kill "$p" 2>/dev/null || true; done
  for _ in $(seq 50); do
    alive=""
    for p in $PIDS; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ -z "$alive" ] && break
    sleep 0.1
  done
  for p in $PIDS; do kill -9 "$p" 2>/dev/null || true; done
  for d in $DIRS; do rm -rf "$d"; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }

# Starts a private vmmd; sets VMMD_PID, VMMD_DIR, VMMD_SOCK, VMMD_HTTP. Arguments go to vmmd
# (e.g. --drivers qemu); without any it loads its default drivers.
start_vmmd() {
  VMMD_DIR=$(mktemp -d /tmp/vmm-bench-XXXXXX)
  DIRS="$DIRS $VMMD_DIR"
  "$BUILD/app/vmmd" --state-dir "$VMMD_DIR/state" --run-dir "$VMMD_DIR/run" --listen 127.0.0.1:0 --default-network no "$@" \
    >"$VMMD_DIR/log" 2>&1 &
  VMMD_PID=$!
  PIDS="$PIDS $VMMD_PID"
  VMMD_SOCK=$VMMD_DIR/run/vmmd.sock
  VMMD_SOCKS="$VMMD_SOCKS $VMMD_SOCK"
  for _ in $(seq 1500); do grep -qs 'vmmd ready' "$VMMD_DIR/log" && break; sleep 0.02; done
  grep -qs 'vmmd ready' "$VMMD_DIR/log" || { echo "vmmd did not start:" >&2; cat "$VMMD_DIR/log" >&2; exit 1; }
  VMMD_HTTP=$(sed -n 's/.*vmmd ready.* http=\([^ ]*\).*/\1/p' "$VMMD_DIR/log")
}

# Starts virtlogd and libvirtd by hand (no systemd here), tracked by their pid files and stopped
# at exit; a libvirtd (or virtlogd) already running is used as it is and left alone.
start_libvirtd() {
  LIBVIRT_USED=1
  LIBVIRTD_PID=""
  if [ -S /run/libvirt/libvirt-sock ] && [ -f /run/libvirtd.pid ] && kill -0 "$(cat /run/libvirtd.pid)" 2>/dev/null; then
    LIBVIRTD_PID=$(cat /run/libvirtd.pid); return 0
  fi
  mkdir -p /var/log/libvirt /var/lib/libvirt /run/libvirt
  if ! { [ -f /run/virtlogd.pid ] && kill -0 "$(cat /run/virtlogd.pid)" 2>/dev/null; }; then
    /usr/sbin/virtlogd -d -p /run/virtlogd.pid
    for _ in $(seq 100); do [ -s /run/virtlogd.pid ] && break; sleep 0.02; done
    PIDS="$PIDS $(cat /run/virtlogd.pid)"
  fi
  /usr/sbin/libvirtd -d -p /run/libvirtd.pid
  for _ in $(seq 500); do [ -S /run/libvirt/libvirt-sock ] && [ -s /run/libvirtd.pid ] && break; sleep 0.02; done
  LIBVIRTD_PID=$(cat /run/libvirtd.pid)
  PIDS="$PIDS $LIBVIRTD_PID"
  # first call warms libvirt's capability cache (as a long-running libvirtd would have)
  virsh -c qemu:///system version >/dev/null 2>&1 || true
}
