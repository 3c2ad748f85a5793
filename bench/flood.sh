#!/bin/sh
# Hostile-load benchmark: `vmctl list --all` against a vmmd holding COUNT (default 1,000, as in
# bench/api.sh) test domains, quiet and while another process floods it (bench/flood_load.py:
# bad JSON-RPC lines on the read-only and admin sockets, lines over their caps, 64 idle or slow
# HTTP connections), RUNS pairs (default 20); then one sustained flood of SOAK seconds (default
# 30). vmmd's RSS is polled every 100 ms. Results in $RESULTS/flood.json.
. "$(dirname "$0")/lib.sh"
COUNT=${COUNT:-1000}
RUNS=${RUNS:-20}
SOAK=${SOAK:-30}

# vmmd as bench/api.sh runs it (its default drivers), so the quiet figure matches its CLI row.
start_vmmd
python3 "$ROOT/bench/flood_bench.py" --vmctl "$BUILD/client/vmctl" --socket "$VMMD_SOCK" \
  --ro-socket "$VMMD_DIR/run/vmmd-ro.sock" --http "$VMMD_HTTP" --pid "$VMMD_PID" --log "$VMMD_DIR/log" \
  --count "$COUNT" --runs "$RUNS" --soak "$SOAK" --out "$RESULTS/flood.json"
kill -0 "$VMMD_PID" || { echo "vmmd exited during the flood:" >&2; tail -20 "$VMMD_DIR/log" >&2; exit 1; }
python3 "$ROOT/bench/report.py" --summary flood
