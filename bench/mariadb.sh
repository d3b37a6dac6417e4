#!/usr/bin/env bash
# mariadb.sh — MariaDB under the bundled mariadb template (issue 17):
# sysbench oltp_write_only TPS through the virtual IP on the replicated
# datadir (PRIM with its SECOND connected) next to the same mariadbd,
# options, network path and data on a plain directory, in the same run; and
# the time from a kill -9 of the primary (daemon and mariadbd) to the first
# row committed on the other node. Each repetition is a fresh two-node
# cluster in network namespaces (safekit-bin/tests/t57_netns_mariadb.rs,
# bench_mariadb).
#
# Usage (root; mariadb-server, mariadb-client and sysbench installed):
#   REPS=5 SYSBENCH_SECS=20 bash bench/mariadb.sh
set -euo pipefail
cd "$(dirname "$0")/.."
command -v sysbench >/dev/null || { echo "missing sysbench: apt-get install sysbench" >&2; exit 1; }
REPS=${REPS:-5}
export SYSBENCH_SECS=${SYSBENCH_SECS:-20}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for i in $(seq 1 "$REPS"); do
  run=$(cargo test --locked -q -p safekit-bin --test t57_netns_mariadb -- --ignored --nocapture --exact bench_mariadb 2>&1) || { echo "$run" >&2; exit 1; }
  echo "$run" | grep '^BENCH' | tee -a "$out"
done
median() { sort -n | awk '{v[NR]=$1} END {if (NR%2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'; }
field() { sed -n "s/.*$1=\([0-9.]*\).*/\1/p" "$out"; }
echo "SUMMARY mariadb over $(wc -l <"$out") runs: tps replicated median $(field tps_replicated | median), tps local median $(field tps_local | median), failover median $(field failover_ms | median) ms"
