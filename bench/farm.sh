#!/usr/bin/env bash
# Farm benchmark, side by side in one run: safekit's farm (three daemons in
# namespaces, SafeKit's default membership timing pulse 100 ms and
# slost_count 10) and keepalived VRRP (the peer baseline script in
# ../shared/bench, advert_int 0.1 s and 1 s, cable cut). Farm figures:
# time from the cut of a node's link to the first answer, by the node that
# inherits its bucket, to a client whose bucket it owned (the slowest of
# the two heirs); requests/s through the farm VIP vs one node directly
# (new connection per request, client threads in their own namespace, all
# on this machine's cores); bucket spread vs power. Root only; everything
# it creates is removed on exit.
#
# Usage: RUNS=5 bash bench/farm.sh     (prints per-run figures and SUMMARY lines)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-5}
SHARED=${SHARED:-../shared/bench}

RUNS="$RUNS" cargo test --locked -p safekit-bin --test t53_netns_farm_daemons -- --ignored --nocapture bench_farm
RUNS="$RUNS" ADVERTS="0.1 1" SCENARIOS="cut" bash "$SHARED/vip-failover-keepalived.sh"
