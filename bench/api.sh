#!/bin/sh
# Foundation benchmark: define/list/get/undefine 1,000 domains through vmmd (RPC and HTTP,
# one kept-alive connection each) and through libvirt (test:///default in-process, and
# qemu:///system through libvirtd), plus idle memory and whole-process CLI latency.
. "$(dirname "$0")/lib.sh"
COUNT=${COUNT:-1000}

start_vmmd --drivers test
sleep 1
VMMD_RSS_IDLE=$(rss_kb "$VMMD_PID")
TOKEN=$(VMM_CONNECT=$VMMD_SOCK "$BUILD/client/vmctl" token create bench)

start_libvirtd
sleep 1
LIBVIRTD_RSS_IDLE=$(rss_kb "$LIBVIRTD_PID")

"$BUILD/bench/api_bench" --socket "$VMMD_SOCK" --http "$VMMD_HTTP" --token "$TOKEN" \
  --libvirt test:///default --libvirt qemu:///system --count "$COUNT" > "$RESULTS/api-raw.json"

VMMD_RSS_AFTER=$(rss_kb "$VMMD_PID")
LIBVIRTD_RSS_AFTER=$(rss_kb "$LIBVIRTD_PID")
VMCTL_LIST=$(VMM_CONNECT=$VMMD_SOCK time_ms 20 "$BUILD/client/vmctl" list --all)
VIRSH_LIST=$(time_ms 20 virsh -c qemu:///system list --all)
VMCTL_VERSION=$(VMM_CONNECT=$VMMD_SOCK time_ms 20 "$BUILD/client/vmctl" host info)
VIRSH_VERSION=$(time_ms 20 virsh -c qemu:///system version)

python3 - "$RESULTS/api-raw.json" > "$RESULTS/api.json" <<PY
import json, sys
raw = json.load(open(sys.argv[1]))
raw["rss_kb"] = {"vmmd_idle": $VMMD_RSS_IDLE, "vmmd_after": $VMMD_RSS_AFTER,
                 "libvirtd_idle": $LIBVIRTD_RSS_IDLE, "libvirtd_after": $LIBVIRTD_RSS_AFTER}
raw["cli_ms"] = {"vmctl list --all": $VMCTL_LIST, "virsh list --all": $VIRSH_LIST,
                 "vmctl host info": $VMCTL_VERSION, "virsh version": $VIRSH_VERSION}
print(json.dumps(raw, indent=2))
PY
cat "$RESULTS/api.json"
python3 "$ROOT/bench/report.py"
