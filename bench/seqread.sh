#!/usr/bin/env bash
# seqread.sh — sequential read of a 1 GiB file, cold page cache, through the
# replicated mount and from a native directory on the same file system, in
# one run (fio, 1 MiB reads, psync). Usage: bash bench/seqread.sh REPLICATED_DIR [NATIVE_BASE]
set -euo pipefail
REP=$1
NAT=$(mktemp -d "${2:-/var/tmp}/seqread.XXXXXX")
REPS=${REPS:-3}
trap 'rm -rf "$NAT"; rm -f "$REP/seqread.dat"' EXIT
command -v fio >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fio >/dev/null
for d in "$NAT" "$REP"; do dd if=/dev/urandom of="$d/seqread.dat" bs=1M count=1024 conv=fsync status=none; done
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
declare -A R
for _ in $(seq 1 "$REPS"); do
  for t in native safekit; do
    d=$NAT; [ $t = safekit ] && d=$REP
    sync; echo 3 > /proc/sys/vm/drop_caches
    bw=$(fio --name=seqread --filename="$d/seqread.dat" --rw=read --bs=1m --ioengine=psync --size=1g --output-format=terse --terse-version=3 | awk -F';' '{print $7}')
    R[$t]+="$((bw / 1024)) "
    echo "[seqread] $t $((bw / 1024)) MB/s" >&2
  done
done
echo "seqread (1 GiB, cold cache, medians of $REPS): native $(echo ${R[native]} | tr ' ' '\n' | median) MB/s, safekit $(echo ${R[safekit]} | tr ' ' '\n' | median) MB/s"
