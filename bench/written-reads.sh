#!/usr/bin/env bash
# written-reads.sh — what the "never passthrough again once written since the
# mount" rule costs a reader, in one run: cold sequential reads (fio, 1 MiB,
# 1 GiB, drop_caches before each) through the primary's mount of
#   untouched : a file preloaded before the mount (read with FUSE passthrough)
#   written   : a file written through the mount (read through safekit)
# plus the same preloaded file on the native directory as the reference.
# Medians of REPS repetitions. Usage (root): REPS=3 bash bench/written-reads.sh
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPS=${REPS:-3}
BASE=${BASE:-/var/tmp}
command -v fio >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fio >/dev/null
cargo build --release -p safekit-bin --manifest-path "$HERE/../Cargo.toml" >&2
PRE=$(mktemp -d "$BASE/written-reads.XXXXXX")
OUT=$(mktemp "$BASE/written-reads-out.XXXXXX")
trap 'rm -rf "$PRE" "$OUT"' EXIT
dd if=/dev/urandom of="$PRE/untouched.dat" bs=1M count=1024 conv=fsync status=none

read_mbps() {
  sync; echo 3 > /proc/sys/vm/drop_caches
  fio --name=seqread --filename="$1" --rw=read --bs=1m --ioengine=psync --size=1g \
      --output-format=terse --terse-version=3 | awk -F';' '{print int($7 / 1024)}'
}
export -f read_mbps

for r in $(seq 1 "$REPS"); do echo "native $(read_mbps "$PRE/untouched.dat")" >> "$OUT"; done
SAFEKIT_PASSTHROUGH=1 PRELOAD="$PRE" BASE="$BASE" bash "$HERE/replicated-cluster.sh" bash -c '
  dd if=/dev/urandom of="$1/written.dat" bs=1M count=1024 conv=fsync status=none
  for r in $(seq 1 "$2"); do
    echo "untouched $(read_mbps "$1/untouched.dat")"
    echo "written $(read_mbps "$1/written.dat")"
  done' sh {} "$REPS" >> "$OUT"
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
echo "cold sequential reads, MB/s, medians of $REPS (one run):"
for t in native untouched written; do
  printf '%-10s %6s   (%s)\n' "$t" "$(awk -v t=$t '$1==t {print $2}' "$OUT" | median)" "$(awk -v t=$t '$1==t {printf "%s ", $2}' "$OUT")"
done
