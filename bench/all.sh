#!/bin/sh
# Runs every benchmark at one commit, then renders docs/benchmarks.md from their results.
#
#   bench/all.sh
#
# As root, on a quiet machine (the timings are wall-clock). Installs what the benchmarks need
# (bench/deps.sh: libvirt, LXD, ...) and builds vmmd, vmctl and api_bench first. Results of
# earlier runs are removed before anything runs; a benchmark that fails leaves a
# failed-NAME.json that the page shows. The page is not written when the results come from
# different commits (HEAD moved during the run). Environment: the run counts of the scripts
# (RUNS, COUNT, BULK_RUNS, ...), BENCH_OUT (the page, default docs/benchmarks.md),
# BENCH_RESULTS (default build/bench-results), BENCH_ONLY (a space-separated subset).
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${VMM_BUILD_DIR:-$ROOT/build}
RESULTS=${BENCH_RESULTS:-$BUILD/bench-results}
export BENCH_RESULTS="$RESULTS"
BENCHES=${BENCH_ONLY:-api storage network snapshot start run container flood}
[ "$(id -u)" = 0 ] || { echo "bench/all.sh: run as root" >&2; exit 1; }

T0=$(date +%s)
sh "$ROOT/bench/deps.sh"
flock "${VMM_BUILD_LOCK:-/tmp/vmm-build.lock}" cmake --build "$BUILD" -j2 --target vmmd vmctl api_bench
COMMIT=$(git -C "$ROOT" rev-parse HEAD)  # what was just built; it must not move until the end
echo "bench/all.sh: commit $COMMIT; $BENCHES"

mkdir -p "$RESULTS"
for f in "$RESULTS"/*.json "$RESULTS"/*.log; do [ -e "$f" ] && rm -f "$f"; done
FAILED=""
for b in $BENCHES; do
  t=$(date +%s)
  echo "== $b ($(date -u +%H:%M:%S) UTC)"
  { sh "$ROOT/bench/$b.sh"; echo $? > "$RESULTS/$b.rc"; } 2>&1 | tee "$RESULTS/$b.log"
  rc=$(cat "$RESULTS/$b.rc" 2>/dev/null || echo 1)
  rm -f "$RESULTS/$b.rc"
  if [ "$rc" != 0 ]; then
    FAILED="$FAILED $b"
    rm -f "$RESULTS/$b.json"  # a partial result is not shown as if it were whole
    python3 - "$RESULTS" "$b" "$COMMIT" "$rc" <<'PY'
import datetime, json, sys
results, name, commit, rc = sys.argv[1:]
tail = open(f"{results}/{name}.log", errors="replace").read()[-3000:]
json.dump({"commit": commit, "exit": int(rc), "tail": tail,
           "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")},
          open(f"{results}/failed-{name}.json", "w"), indent=1)
PY
  fi
  echo "== $b: exit $rc after $(( $(date +%s) - t )) s"
done

NOW=$(git -C "$ROOT" rev-parse HEAD)
SECONDS_ALL=$(( $(date +%s) - T0 ))
if ! python3 - "$RESULTS" "$COMMIT" "$NOW" $BENCHES <<'PY'
import json, os, sys
results, commit, now, names = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
bad = [] if now == commit else [f"HEAD moved from {commit[:12]} to {now[:12]} during the run"]
for n in names:
    p = os.path.join(results, n + ".json")
    if os.path.exists(p):
        c = json.load(open(p)).get("provenance", {}).get("commit")
        if c != commit:
            bad.append(f"{n}.json is from commit {c}")
if bad:
    print("bench/all.sh: results from different commits, page not written:\n  " + "\n  ".join(bad), file=sys.stderr)
    sys.exit(1)
PY
then
  exit 1
fi
python3 - "$RESULTS/all.json" "$COMMIT" "$SECONDS_ALL" "$FAILED" <<'PY'
import json, sys
json.dump({"commit": sys.argv[2], "seconds": int(sys.argv[3]), "failed": sys.argv[4].split()}, open(sys.argv[1], "w"))
PY
python3 "$ROOT/bench/report.py" --commit "$COMMIT"
echo "bench/all.sh: total $((SECONDS_ALL / 60)) min $((SECONDS_ALL % 60)) s${FAILED:+; failed:$FAILED}"
[ -z "$FAILED" ]
