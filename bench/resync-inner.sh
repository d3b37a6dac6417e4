#!/usr/bin/env bash
# Inner part of bench/resync.sh: runs with the cluster up; $1 = replicated dir.
set -euo pipefail
DIR=$1
sk() { local i=$1; shift; SAFE="$SK_WORK/node$i/safe" SAFEVAR="$SK_WORK/node$i/var" "$SAFEKIT" "$@"; }
now() { date +%s.%N; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
outage_and_return() { # $1 = what to do while node2 is away; prints "seconds bytes"
  sk 2 stop -m bench >/dev/null
  sk 1 waitstate -m bench ALONE --timeout 60 >/dev/null
  eval "$1"
  [ "$COLD" = 1 ] && { sync; echo 3 > /proc/sys/vm/drop_caches; }
  local before; before=$(sk 1 log -m bench -s 100000 | grep -c 'Copied' || true)
  local t0; t0=$(now)
  sk 2 start -m bench >/dev/null
  sk 1 waitstate -m bench PRIM --timeout 600 >/dev/null
  local t1; t1=$(now)
  local line; line=$(sk 1 log -m bench -s 100000 | grep 'Copied' | tail -1)
  local after; after=$(sk 1 log -m bench -s 100000 | grep -c 'Copied' || true)
  [ "$after" -gt "$before" ] || { echo "no reintegration line" >&2; exit 1; }
  echo "$(echo "$t1 - $t0" | bc) $(echo "$line" | sed -E 's/.*Copied ([0-9]+) bytes.* in ([0-9.]+) s.*/\1 \2/')"
}
python3 - "$DIR" <<'PY'
import os, sys
d = sys.argv[1] + "/large"; os.makedirs(d, exist_ok=True)
for i in range(2000):
    with open(f"{d}/f{i:05d}", "wb") as f:
        f.write(os.urandom(512 * 1024))
PY
sync; sleep 3
MODIFY='python3 - "$DIR" <<"PY"
import os, random, sys
d = sys.argv[1] + "/large"
for i in random.sample(range(2000), 100):
    fd = os.open(f"{d}/f{i:05d}", os.O_WRONLY)
    for b in random.sample(range(128), 26):
        os.pwrite(fd, os.urandom(4096), b * 4096)
    os.fsync(fd); os.close(fd)
PY'
for name in large-1pct large-noop; do
  rows=()
  for _ in $(seq 1 "$REPS"); do
    if [ "$name" = large-1pct ]; then rows+=("$(outage_and_return "$MODIFY")"); else rows+=("$(outage_and_return true)"); fi
    sleep 2
  done
  printf '%s\n' "${rows[@]}" > "$SK_WORK/$name.rows"
  echo "$name: median start->PRIM $(cut -d' ' -f1 "$SK_WORK/$name.rows" | median) s, reintegration $(cut -d' ' -f3 "$SK_WORK/$name.rows" | median) s, bytes copied $(cut -d' ' -f2 "$SK_WORK/$name.rows" | median) (runs: $(tr '\n' ';' < "$SK_WORK/$name.rows"))"
done
if [ "${SMALL_FILES}" -gt 0 ]; then
  t0=$(now)
  python3 - "$DIR" "$SMALL_FILES" <<'PY'
import os, sys
root, n = sys.argv[1] + "/small", int(sys.argv[2])
per = 1000
for i in range(n):
    d = f"{root}/d{i // per:04d}"
    if i % per == 0:
        os.makedirs(d, exist_ok=True)
    with open(f"{d}/f{i % per:04d}", "wb") as f:
        f.write(os.urandom(i % 65))
PY
  echo "small set: $SMALL_FILES files created through the mount in $(echo "$(now) - $t0" | bc) s"
  sync; sleep 3
  rows=()
  for _ in $(seq 1 "$REPS"); do rows+=("$(outage_and_return true)"); sleep 2; done
  printf '%s\n' "${rows[@]}" > "$SK_WORK/small.rows"
  echo "small-noop: median start->PRIM $(cut -d' ' -f1 "$SK_WORK/small.rows" | median) s, reintegration $(cut -d' ' -f3 "$SK_WORK/small.rows" | median) s (runs: $(tr '\n' ';' < "$SK_WORK/small.rows"))"
fi
echo "rfsverify on the secondary: $(sk 2 rfsverify -m bench 2>&1 | tail -1)"
