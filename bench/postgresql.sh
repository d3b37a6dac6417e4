#!/usr/bin/env bash
# postgresql.sh — PostgreSQL under the bundled postgresql template (issue 17):
# pgbench TPS through the virtual IP on the replicated PGDATA (PRIM with its
# SECOND connected) next to the same server, network path and data on a
# plain directory, in the same run; and the time from a kill -9 of the
# primary (daemon, postmaster, backends) to the first transaction committed
# on the other node. Each repetition is a fresh two-node cluster in network
# namespaces (safekit-bin/tests/t58_netns_postgresql.rs, bench_postgresql).
#
# Usage (root, postgresql installed): REPS=5 PGBENCH_SECS=20 bash bench/postgresql.sh
set -euo pipefail
cd "$(dirname "$0")/.."
REPS=${REPS:-5}
export PGBENCH_SECS=${PGBENCH_SECS:-20}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for i in $(seq 1 "$REPS"); do
  run=$(cargo test --locked -q -p safekit-bin --test t58_netns_postgresql -- --ignored --nocapture --exact bench_postgresql 2>&1) || { echo "$run" >&2; exit 1; }
  echo "$run" | grep '^BENCH' | tee -a "$out"
done
median() { sort -n | awk '{v[NR]=$1} END {if (NR%2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'; }
field() { sed -n "s/.*$1=\([0-9.]*\).*/\1/p" "$out"; }
echo "SUMMARY postgresql over $(wc -l <"$out") runs: tps replicated median $(field tps_replicated | median), tps local median $(field tps_local | median), failover median $(field failover_ms | median) ms"
