#!/usr/bin/env bash
# resync.sh — reintegration after an outage of the secondary, on a live
# two-node mirror (bench/replicated-cluster.sh), side by side with rsync on
# the same data shapes (../shared/bench/resync-rsync.sh, run first in the
# same invocation).
#
#   large-1pct : 2,000 files x 512 KiB (1 GiB) written through the mount;
#                the secondary stops; 100 files x 26 random 4 KiB blocks
#                (1%) are rewritten on the primary; the secondary starts:
#                time until the primary is PRIM again, bytes copied.
#   large-noop : the secondary stops and starts, nothing changed.
#   small-noop : the same with 200,000 tiny files (200 dirs x 1,000).
#
# Usage: sudo bash bench/resync.sh      (env: REPS=3 SMALL_FILES=200000 SKIP_RSYNC=0 COLD=0)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPS=${REPS:-3}
export REPS SMALL_FILES=${SMALL_FILES:-200000} COLD=${COLD:-0}
if [ "${SKIP_RSYNC:-0}" != 1 ]; then
  echo "== rsync baseline (same shapes) =="
  bash "$HERE/../../shared/bench/resync-rsync.sh" 2>/dev/null | tail -20
fi
echo "== safekit zone reintegration =="
exec bash "$HERE/replicated-cluster.sh" bash "$HERE/resync-inner.sh" {}
