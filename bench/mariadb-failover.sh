#!/usr/bin/env bash
# mariadb-failover.sh — reintegration after a failover of MariaDB (issue 12
# item 7), side by side with rsync on the same data in the same run.
#
# Per repetition, on a fresh two-node mirror (bench/replicated-cluster.sh):
#   1. MariaDB on node1 (the primary) with its datadir in the replicated
#      directory; sysbench prepares TABLES x ROWS rows.
#   2. Fault: kill -9 of mariadbd and of node1's safekit daemon together.
#   3. node2 goes ALONE; MariaDB starts there on its copy (crash recovery)
#      and sysbench oltp_write_only writes for WRITE_SECS seconds.
#   4. The old primary returns: its stale mount is detached, its real data
#      copied aside (for rsync), its daemon restarted, `safekit start`:
#      time until node1 is SECOND Ready, and the bytes the reintegration
#      copied (module log line "Copied N bytes").
#   5. rsync of node2's data onto the copy kept aside, with the delta
#      algorithm (rsync -a --inplace --no-whole-file --stats): time and
#      literal bytes.
# Prints one row per repetition and medians. Root; loopback and namespaces
# only (MariaDB listens on Unix sockets only).
#
# Usage: sudo bash bench/mariadb-failover.sh
#   env: REPS=3 WRITE_SECS=30 TABLES=8 ROWS=100000 BASE=/var/tmp
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)

if [ "${1:-}" != --inner ]; then
  for tool in mariadbd mariadb-install-db mariadb sysbench rsync bc nsenter; do
    command -v "$tool" >/dev/null || { echo "missing $tool: apt-get install mariadb-server mariadb-client sysbench rsync bc util-linux" >&2; exit 1; }
  done
  export REPS=${REPS:-3} WRITE_SECS=${WRITE_SECS:-30} TABLES=${TABLES:-8} ROWS=${ROWS:-100000}
  OUT=$(mktemp)
  trap 'rm -f "$OUT"' EXIT
  for r in $(seq 1 "$REPS"); do
    bash "$HERE/replicated-cluster.sh" bash "$HERE/mariadb-failover.sh" --inner {} | tee -a "$OUT"
    echo "[mariadb-failover] repetition $r done" >&2
  done
  median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
  col() { awk -v k="$1" '{for (i = 1; i <= NF; i++) { split($i, kv, "="); if (kv[1] == k) print kv[2] }}' "$OUT" | median; }
  echo "SUMMARY mariadb-failover medians of $REPS: datadir_bytes=$(col datadir_bytes) written_secs=$WRITE_SECS" \
    "safekit_bytes=$(col safekit_bytes) safekit_reint_secs=$(col safekit_reint_secs) safekit_second_ready_secs=$(col safekit_second_ready_secs)" \
    "rsync_literal_bytes=$(col rsync_literal_bytes) rsync_secs=$(col rsync_secs)"
  exit 0
fi

# ---- inner part: the cluster is up (node1 PRIM, node2 SECOND) ----
DIR=$2
W=$SK_WORK
sk() { local i=$1; shift; SAFE="$W/node$i/safe" SAFEVAR="$W/node$i/var" "$SAFEKIT" "$@"; }
now() { date +%s.%N; }
PIDS=()
cleanup_inner() {
  set +e
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null
  done
}
trap cleanup_inner EXIT
db() { # $1 = node's socket name; mariadbd in the calling mount namespace
  exec mariadbd --no-defaults --user=root --datadir="$DIR/db" --socket="$W/$1.sock" --skip-networking \
    --pid-file="$W/$1.pid" --log-error="$W/$1.err" --innodb-buffer-pool-size=256M \
    --innodb-flush-log-at-trx-commit=1 --sync-binlog=0 --skip-log-bin
}
wait_sock() {
  for _ in $(seq 1 600); do mariadb -S "$W/$1.sock" -e 'select 1' >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "mariadbd ($1) did not start:" >&2; tail -20 "$W/$1.err" >&2; return 1
}
sb() { sysbench oltp_write_only --db-driver=mysql --mysql-socket="$W/$1.sock" --mysql-user=root --tables="$TABLES" --table-size="$ROWS" "${@:2}"; }

# 1. MariaDB on the primary, data loaded.
mariadb-install-db --no-defaults --user=root --datadir="$DIR/db" --auth-root-authentication-method=socket >/dev/null
db n1 &
M1=$!
PIDS+=("$M1")
wait_sock n1
mariadb -S "$W/n1.sock" -e 'create database sbtest'
sb n1 --threads=4 prepare >/dev/null
sync
DATADIR_BYTES=$(du -sb "$DIR/db" | cut -f1)

# 2. Fault: the primary's database and daemon die together.
kill -KILL "$M1" "$SK_PID1"
wait "$M1" 2>/dev/null || true

# 3. The secondary takes over; MariaDB recovers there and takes writes.
sk 2 waitstate -m bench ALONE --timeout 60 >/dev/null
nsenter --mount="/proc/$SK_PID2/ns/mnt" bash -c "$(declare -f db); DIR='$DIR' W='$W' db n2" &
M2=$!
PIDS+=("$M2")
wait_sock n2
sb n2 --threads=4 --time="$WRITE_SECS" --report-interval=0 run >/dev/null

# 4. The old primary returns.
# A dead FUSE mount answers ENOTCONN (mountpoint(1) does not see it): detach it.
umount -l "$DIR" 2>/dev/null || true
cp -a "$DIR/." "$W/old1"
SAFE="$W/node1/safe" SAFEVAR="$W/node1/var" SAFEKIT_NODE=node1 \
  nsenter --net=/var/run/netns/skb-n1 "$SAFEKIT" daemon >"$W/node1-again.log" 2>&1 &
PIDS+=("$!")
for _ in $(seq 1 100); do sk 1 state >/dev/null 2>&1 && break; sleep 0.1; done
T0=$(now)
sk 1 start -m bench >/dev/null
sk 1 waitstate -m bench SECOND --timeout 900 >/dev/null || { sk 1 log -m bench | tail -30 >&2; exit 1; }
T1=$(now)
LINE=$(sk 1 log -m bench -s 100000 | grep 'Copied' | tail -1)
SK_BYTES=$(echo "$LINE" | sed -E 's/.*Copied ([0-9]+) bytes.*/\1/')
SK_SECS=$(echo "$LINE" | sed -E 's/.* in ([0-9.]+) s.*/\1/')

# 5. rsync of the survivor's data onto the old primary's, delta algorithm.
R0=$(now)
STATS=$(rsync -a --inplace --no-whole-file --stats "$W/node2-data/" "$W/old1/")
R1=$(now)
LITERAL=$(echo "$STATS" | sed -n 's/^Literal data: \([0-9,]*\) bytes.*/\1/p' | tr -d ,)
echo "datadir_bytes=$DATADIR_BYTES safekit_bytes=$SK_BYTES safekit_reint_secs=$SK_SECS" \
  "safekit_second_ready_secs=$(echo "$T1 - $T0" | bc) rsync_literal_bytes=$LITERAL rsync_secs=$(echo "$R1 - $R0" | bc)"
