#!/usr/bin/env bash
# cache-modes.sh — the primary mount's kernel cache modes side by side, in
# one run: the default (neither passthrough nor writeback cache: every open
# through safekit), FUSE passthrough for read-only opens
# (SAFEKIT_PASSTHROUGH=1; the kernel then refuses its writeback cache) and
# the writeback cache (SAFEKIT_WRITEBACK=1), plus the native directory as
# the reference. Each repetition starts a fresh two-node mirror per mode
# (bench/replicated-cluster.sh, secondary in another network namespace) and
# runs, through the primary's mount:
#   seqread : fio 1 MiB sequential reads of a 1 GiB file, cold page cache
#   seq1m   : fio 1 MiB sequential writes of a new 512 MiB file, end_fsync
#   rand4k  : fio 4 KiB random overwrites + fsync, iodepth 1, 2000 writes
#   mariadb : with MARIADB=1, ../shared/bench/mariadb-sysbench.sh (oltp_write_only,
#             its own median of 3 runs) -> TPS
# Usage (root): bash bench/cache-modes.sh      (env: REPS=3 BASE=/var/tmp MARIADB=0)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
export SYSBENCH="$HERE/../../shared/bench/mariadb-sysbench.sh"
export MARIADB=${MARIADB:-0}
REPS=${REPS:-3}
BASE=${BASE:-/var/tmp}
command -v fio >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fio >/dev/null
cargo build --release -p safekit-bin --manifest-path "$HERE/../Cargo.toml" >&2
OUT=$(mktemp "$BASE/cache-modes.XXXXXX")
NAT=$(mktemp -d "$BASE/cache-modes-native.XXXXXX")
trap 'rm -rf "$OUT" "$NAT"' EXIT

# One round of the three jobs on directory $1, labelled $2; appends "label job value" lines.
run_jobs() {
  local d=$1 label=$2 bw iops
  dd if=/dev/urandom of="$d/read.dat" bs=1M count=1024 conv=fsync status=none
  sync; echo 3 > /proc/sys/vm/drop_caches
  bw=$(fio --name=seqread --filename="$d/read.dat" --rw=read --bs=1m --ioengine=psync --size=1g \
        --output-format=terse --terse-version=3 | awk -F';' '{print $7}')
  echo "$label seqread_MBps $((bw / 1024))"
  rm -f "$d/read.dat"
  bw=$(fio --name=seq1m --filename="$d/seq.dat" --rw=write --bs=1m --ioengine=psync --size=512m --end_fsync=1 \
        --output-format=terse --terse-version=3 | awk -F';' '{print $48}')
  echo "$label seq1m_MBps $((bw / 1024))"
  rm -f "$d/seq.dat"
  dd if=/dev/urandom of="$d/rand.dat" bs=1M count=64 conv=fsync status=none
  iops=$(fio --name=rand4k --filename="$d/rand.dat" --rw=randwrite --bs=4k --ioengine=psync --size=64m --fsync=1 \
        --number_ios=2000 --runtime=20 --randrepeat=0 --output-format=terse --terse-version=3 | awk -F';' '{print $49}')
  echo "$label rand4k_IOPS $iops"
  rm -f "$d/rand.dat"
  if [ "$MARIADB" = 1 ]; then
    echo "$label mariadb_TPS $(bash "$SYSBENCH" "$d" 2>&1 | sed -n 's/.*SUMMARY mariadb-sysbench.* tps=\([0-9.]*\).*/\1/p' | tail -1)"
  fi
}
export -f run_jobs

for r in $(seq 1 "$REPS"); do
  run_jobs "$NAT" native | tee -a "$OUT" >&2
  for mode in default passthrough writeback; do
    var=SAFEKIT_NONE; [ "$mode" = passthrough ] && var=SAFEKIT_PASSTHROUGH; [ "$mode" = writeback ] && var=SAFEKIT_WRITEBACK
    env "$var=1" BASE="$BASE" bash "$HERE/replicated-cluster.sh" bash -c 'run_jobs "$1" "$2"' sh {} "$mode" | tee -a "$OUT" >&2
  done
  echo "[cache-modes] repetition $r done" >&2
done
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
echo "cache modes, medians of $REPS (one run):"
printf '%-12s %14s %12s %12s %12s\n' target seqread_MB/s seq1m_MB/s rand4k_IOPS mariadb_TPS
for t in native default passthrough writeback; do
  row=()
  for j in seqread_MBps seq1m_MBps rand4k_IOPS mariadb_TPS; do row+=("$(awk -v t="$t" -v j="$j" '$1==t && $2==j {print $3}' "$OUT" | median)"); done
  printf '%-12s %14s %12s %12s %12s\n' "$t" "${row[@]}"
done
