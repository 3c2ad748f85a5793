#!/bin/sh
# Foundation benchmark: define, list, read and undefine COUNT (default 1,000) domains through
# vmmd (JSON-RPC and HTTP, one kept-alive connection each, each to its own vmmd with its default
# drivers) and through libvirt (qemu:///system through libvirtd; test:///default in-process), plus
# whole vmctl / virsh processes and the daemons' memory. Results in $RESULTS/api.json.
. "$(dirname "$0")/lib.sh"
COUNT=${COUNT:-1000}
LIST_PAIRS=${LIST_PAIRS:-30}
CALL_PAIRS=${CALL_PAIRS:-200}
CLI_PAIRS=${CLI_PAIRS:-20}

# The RPC side's vmmd: its default drivers (qemu, lxc, xen, test), as it runs on a host.
start_vmmd
RPC_PID=$VMMD_PID RPC_SOCK=$VMMD_SOCK RPC_DIR=$VMMD_DIR
sleep 1
VMMD_RSS_IDLE=$(rss_kb "$RPC_PID")
# The HTTP side's vmmd (same options): both clients then list exactly COUNT domains.
start_vmmd
HTTP_URL=$VMMD_HTTP
TOKEN=$("$BUILD/client/vmctl" --connect "$VMMD_SOCK" token create bench --role operator)
# Project scoping and authorisation: a third vmmd whose default project and project "bench"
# each end up with COUNT domains, called by an unbound admin token and by an operator token
# bound to "bench".
start_vmmd
PROJECTS_URL=$VMMD_HTTP
"$BUILD/client/vmctl" --connect "$VMMD_SOCK" project create bench --unrestricted >/dev/null
DEFAULT_TOKEN=$("$BUILD/client/vmctl" --connect "$VMMD_SOCK" token create bench-admin --role admin)
PROJECT_TOKEN=$("$BUILD/client/vmctl" --connect "$VMMD_SOCK" token create bench-project --role operator --project bench)
VMMD_SOCK=$RPC_SOCK  # the one the CLI rows use

start_libvirtd
sleep 1
LIBVIRTD_RSS_IDLE=$(rss_kb "$LIBVIRTD_PID")

"$BUILD/bench/api_bench" --socket "$RPC_SOCK" --http "$HTTP_URL" --token "$TOKEN" \
  --projects-http "$PROJECTS_URL" --default-token "$DEFAULT_TOKEN" --project-token "$PROJECT_TOKEN" \
  --libvirt qemu:///system --libvirt test:///default --vmctl "$BUILD/client/vmctl" --count "$COUNT" \
  --list-pairs "$LIST_PAIRS" --call-pairs "$CALL_PAIRS" --cli-pairs "$CLI_PAIRS" > "$RPC_DIR/api-raw.json"

VMMD_RSS_AFTER=$(rss_kb "$RPC_PID")
LIBVIRTD_RSS_AFTER=$(rss_kb "$LIBVIRTD_PID")
python3 "$ROOT/bench/api_result.py" "$RPC_DIR/api-raw.json" --out "$RESULTS/api.json" \
  --vmmd-command "vmmd --state-dir DIR --run-dir DIR --listen 127.0.0.1:0 --default-network no (default drivers: qemu,lxc,xen,test)" \
  --rss "{\"vmmd_idle\": $VMMD_RSS_IDLE, \"vmmd_after\": $VMMD_RSS_AFTER, \"libvirtd_idle\": $LIBVIRTD_RSS_IDLE, \"libvirtd_after\": $LIBVIRTD_RSS_AFTER}"
python3 "$ROOT/bench/report.py" --summary api
