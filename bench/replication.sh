#!/usr/bin/env bash
# replication.sh — the write/read/MariaDB figures of issue #4 in one run:
# a live two-node mirror (bench/replicated-cluster.sh; the secondary in
# another network namespace) is added as target "safekit" to the peers'
# ../shared/bench/fs-write-baselines.sh (native, bindfs, bindfs-bw,
# GlusterFS replica 2), which also runs MariaDB sysbench on each target;
# then a cold sequential read, native vs safekit.
# Usage (root): bash bench/replication.sh    (env: REPS=3 MARIADB=1)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
SHARED=$(cd "$HERE/../../shared/bench" && pwd)
cargo build --release -p safekit-bin --manifest-path "$HERE/../Cargo.toml" >&2
export REPS=${REPS:-3}
ONT=""
[ "${MARIADB:-1}" = 1 ] && ONT="bash $SHARED/mariadb-sysbench.sh {}"
exec bash "$HERE/replicated-cluster.sh" bash -c '
  EXTRA_TARGETS="safekit=$1" ON_TARGET_CMD="$2" bash "$3/fs-write-baselines.sh"
  bash "$4/seqread.sh" "$1"' sh {} "$ONT" "$SHARED" "$HERE"
