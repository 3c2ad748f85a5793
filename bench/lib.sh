# Shared helpers for the benchmark scripts (sourced).
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${VMM_BUILD_DIR:-$ROOT/build}
RESULTS=$BUILD/bench-results
mkdir -p "$RESULTS"
PIDS=""
DIRS=""

cleanup() {
  for p in $PIDS; do kill "$p" 2>/dev/null || true; done
  sleep 0.3
  for p in $PIDS; do kill -9 "$p" 2>/dev/null || true; done
  for d in $DIRS; do rm -rf "$d"; done
}
trap cleanup EXIT

rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }

# Starts a private vmmd; sets VMMD_PID, VMMD_DIR, VMMD_SOCK, VMMD_HTTP.
start_vmmd() {
  VMMD_DIR=$(mktemp -d /tmp/vmm-bench-XXXXXX)
  DIRS="$DIRS $VMMD_DIR"
  "$BUILD/daemon/vmmd" --state-dir "$VMMD_DIR/state" --run-dir "$VMMD_DIR/run" --listen 127.0.0.1:0 --default-network no "$@" \
    >"$VMMD_DIR/log" 2>&1 &
  VMMD_PID=$!
  PIDS="$PIDS $VMMD_PID"
  for _ in $(seq 200); do grep -qs 'vmmd ready' "$VMMD_DIR/log" && break; sleep 0.02; done
  VMMD_SOCK=$VMMD_DIR/run/vmmd.sock
  VMMD_HTTP=$(sed -n 's/.*vmmd ready.* http=\([^ ]*\).*/\1/p' "$VMMD_DIR/log")
}

# Starts virtlogd and libvirtd by hand (no systemd here), tracked by their pid files, unless a
# libvirtd of our own (pid file /run/libvirtd.pid) already serves the socket.
start_libvirtd() {
  LIBVIRTD_PID=""
  if [ -S /run/libvirt/libvirt-sock ] && [ -f /run/libvirtd.pid ] && kill -0 "$(cat /run/libvirtd.pid)" 2>/dev/null; then
    LIBVIRTD_PID=$(cat /run/libvirtd.pid); return 0
  fi
  mkdir -p /var/log/libvirt /var/lib/libvirt /run/libvirt
  /usr/sbin/virtlogd -d -p /run/virtlogd.pid
  /usr/sbin/libvirtd -d -p /run/libvirtd.pid
  for _ in $(seq 300); do [ -S /run/libvirt/libvirt-sock ] && [ -s /run/libvirtd.pid ] && break; sleep 0.02; done
  LIBVIRTD_PID=$(cat /run/libvirtd.pid)
  PIDS="$PIDS $(cat /run/virtlogd.pid) $LIBVIRTD_PID"
  # first call warms libvirt's capability cache (as a long-running libvirtd would have)
  virsh -c qemu:///system version >/dev/null 2>&1 || true
}

# median of N runs of a command, in ms
time_ms() {
  n=$1; shift
  python3 - "$n" "$@" <<'PY'
import subprocess, sys, time, statistics
n = int(sys.argv[1]); cmd = sys.argv[2:]
ts = []
for _ in range(n):
    t = time.perf_counter(); subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); ts.append((time.perf_counter() - t) * 1000)
print(round(statistics.median(ts), 2))
PY
}
