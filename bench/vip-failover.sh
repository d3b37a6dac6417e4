#!/usr/bin/env bash
# Failover benchmark, side by side in one run: safekit (pulse 100 ms, timeout
# 1000 ms) and keepalived VRRP (advert_int 1 s, the peer baseline script in
# ../shared/bench). Both measure, with a client probe every 10 ms inside
# private network namespaces, the time from the failure of the primary to
# the first answer of the other node. Root only; everything it creates is
# removed on exit.
#
# Usage: RUNS=5 bash bench/vip-failover.sh     (prints the per-run figures and SUMMARY lines)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-5}
SHARED=${SHARED:-../shared/bench}

cargo build --release --locked -p safekit-bin
for failure in kill9 cut; do
  ./target/release/safekit demo --runs "$RUNS" --failure "$failure"
done
RUNS="$RUNS" ADVERTS="1" SCENARIOS="cut kill9" bash "$SHARED/vip-failover-keepalived.sh"
