#!/usr/bin/env bash
# replicated-cluster.sh — start a two-node safekit mirror with a replicated
# directory on this machine, run a command against the primary's mount, tear
# everything down (also on failure or Ctrl-C).
#
#   node1: network namespace skb-n1 (10.77.1.1), *root mount namespace*: its
#          FUSE mount over $DIR is visible to benchmark tools run from here;
#          its real data is $DIR itself.
#   node2: network namespace skb-n2 (10.77.1.2), own mount namespace where
#          $WORK/node2-data is bind-mounted over $DIR.
#   Both on a private bridge in namespace skb-sw. No other address is used.
#
# Usage: bash bench/replicated-cluster.sh CMD...   (an argument {} = the replicated dir)
# env: SAFEKIT=path/to/safekit (default target/release/safekit), BASE=/var/tmp,
#      RFS_ATTRS (extra <rfs> attributes, e.g. ruzone_blocksize="1048576"),
#      ASYNC=second|none, PRELOAD=DIR (copied into node1's data before start),
#      HTTPS=1 (node1 gets a cluster CA and serves its web service on 9453)
set -euo pipefail
HERE=$(cd "$(dirname "$0")/.." && pwd)
SAFEKIT=${SAFEKIT:-$HERE/target/release/safekit}
BASE=${BASE:-/var/tmp}
ASYNC=${ASYNC:-second}
[ -x "$SAFEKIT" ] || { echo "build first: cargo build --release -p safekit-bin" >&2; exit 1; }
WORK=$(mktemp -d "$BASE/skbench.XXXXXX")
DIR="$WORK/replicated"
PIDS=()
cleanup() {
  set +e
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null
  done
  # A dead FUSE mount (a killed daemon) is not seen by mountpoint(1): try both.
  umount "$DIR" 2>/dev/null || umount -l "$DIR" 2>/dev/null
  for ns in skb-n1 skb-n2 skb-sw; do ip netns del "$ns" 2>/dev/null; done
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

for ns in skb-sw skb-n1 skb-n2; do ip netns del "$ns" 2>/dev/null || true; ip netns add "$ns"; done
ip -n skb-sw link add br0 type bridge && ip -n skb-sw link set br0 up
for i in 1 2; do
  ip -n skb-sw link add "p$i" type veth peer name eth0 netns "skb-n$i"
  ip -n skb-sw link set "p$i" master br0 up
  ip -n "skb-n$i" addr add "10.77.1.$i/24" dev eth0
  ip -n "skb-n$i" link set eth0 up
  ip -n "skb-n$i" link set lo up
done
mkdir -p "$DIR" "$WORK/node2-data"
[ -n "${PRELOAD:-}" ] && cp -a "$PRELOAD/." "$DIR/"
KEY=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
for i in 1 2; do
  n="$WORK/node$i"
  mkdir -p "$n/var/cluster" "$n/safe/modules/bench/conf" "$n/safe/modules/bench/bin"
  cat > "$n/var/cluster/cluster.xml" <<XML
<cluster><lans><lan name="default">
  <node name="node1" addr="10.77.1.1"/><node name="node2" addr="10.77.1.2"/>
</lan></lans></cluster>
XML
  echo "$KEY" > "$n/var/cluster/cluster.key"
  cat > "$n/safe/modules/bench/conf/userconfig.xml" <<XML
<!DOCTYPE safe>
<safe>
<service mode="mirror" failover="on">
  <heart pulse="100ms" timeout="1000ms"><heartbeat name="default"/></heart>
  <rfs async="$ASYNC" nbrei="4" ${RFS_ATTRS:-}><replicated dir="$DIR" mode="read_only"/></rfs>
</service>
</safe>
XML
done
if [ "${HTTPS:-0}" = 1 ]; then
  SAFE="$WORK/node1/safe" SAFEVAR="$WORK/node1/var" SAFEKIT_NODE=node1 "$SAFEKIT" initssl ca >/dev/null
fi
SAFE="$WORK/node1/safe" SAFEVAR="$WORK/node1/var" SAFEKIT_NODE=node1 \
  nsenter --net=/var/run/netns/skb-n1 "$SAFEKIT" daemon >"$WORK/node1.log" 2>&1 &
PIDS+=($!)
SAFE="$WORK/node2/safe" SAFEVAR="$WORK/node2/var" SAFEKIT_NODE=node2 \
  ip netns exec skb-n2 sh -c 'mount --bind "$1" "$2" && exec "$3" daemon' sh "$WORK/node2-data" "$DIR" "$SAFEKIT" >"$WORK/node2.log" 2>&1 &
PIDS+=($!)
sk() { local i=$1; shift; SAFE="$WORK/node$i/safe" SAFEVAR="$WORK/node$i/var" "$SAFEKIT" "$@"; }
for _ in $(seq 1 100); do sk 1 state >/dev/null 2>&1 && sk 2 state >/dev/null 2>&1 && break; sleep 0.1; done
T0=$(date +%s.%N)
sk 1 prim -m bench >/dev/null
sk 1 waitstate -m bench ALONE >/dev/null 2>&1 || true
sk 2 second -m bench >/dev/null
sk 1 waitstate -m bench PRIM >/dev/null 2>&1 || { sk 1 log -m bench | tail -20; exit 1; }
T1=$(date +%s.%N)
echo "[cluster] PRIM/SECOND after $(echo "$T1 - $T0" | bc) s; $(sk 1 log -m bench | grep -o 'Copied.*' | tail -1)" >&2
CMD=("$@")
# Only an argument that is exactly {} is replaced (a command given as one
# argument may hold its own {} for an inner tool to replace).
for i in "${!CMD[@]}"; do [ "${CMD[$i]}" = "{}" ] && CMD[$i]=$DIR; done
export SK_WORK="$WORK" SK_DIR="$DIR" SAFEKIT SK_PID1="${PIDS[0]}" SK_PID2="${PIDS[1]}"
"${CMD[@]}"
