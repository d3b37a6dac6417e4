#!/usr/bin/env bash
# api-latency.sh — the web service under load while the module replicates
# (issue 14), in one run on a two-node cluster (bench/replicated-cluster.sh):
#   idle : fio 4 KiB random O_SYNC writes on the primary's replicated mount,
#          no API load (write latency p50/p99: the baseline)
#   load : the same fio while CONNS clients call GET /api/v1.0/modules/bench
#          (the module's state, with a Monitor API key) on the primary's
#          web service in a loop (write latency p50/p99, and the API's
#          requests/s and latency p50/p99)
# The API clients run in the primary's network namespace against its
# 127.0.0.1:9010. Usage (root): SECS=20 CONNS=4 bash bench/api-latency.sh
# HTTPS=1: node1 has a cluster CA (safekit initssl ca) and the same runs go
# to its HTTPS service on 127.0.0.1:9453 (certificate checked against the
# CA); the run ends with GET /metrics over HTTP (9010) and HTTPS (9453)
# side by side, the one endpoint both ports serve.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
SECS=${SECS:-20}
CONNS=${CONNS:-4}
command -v fio >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fio >/dev/null
command -v curl >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq curl >/dev/null
cargo build --release -p safekit-bin --manifest-path "$HERE/../Cargo.toml" >&2
export HTTPS=${HTTPS:-0}
bash "$HERE/replicated-cluster.sh" bash -c '
  set -euo pipefail
  dir=$1 secs=$2 conns=$3
  n1="$SK_WORK/node1"
  SAFE="$n1/safe" SAFEVAR="$n1/var" "$SAFEKIT" webservercfg -passwd bench-password >/dev/null
  in1() { SAFE="$n1/safe" SAFEVAR="$n1/var" ip netns exec skb-n1 "$@"; }
  if [ "$HTTPS" = 1 ]; then
    base=https://127.0.0.1:9453 addr=127.0.0.1:9453 tls=--https curl_ca=(--cacert "$n1/safe/web/conf/ssl/ca.crt")
  else
    base=http://127.0.0.1:9010 addr=127.0.0.1:9010 tls= curl_ca=()
  fi
  csrf=$(in1 curl -sS "${curl_ca[@]}" -c "$SK_WORK/jar" -d "httpd_username=admin&httpd_password=bench-password" "$base/login" \
    | python3 -c "import sys, json; print(json.load(sys.stdin)[\"csrf\"])")
  key=$(in1 curl -sS "${curl_ca[@]}" -b "$SK_WORK/jar" -H "X-CSRF-Token: $csrf" -X POST "$base/api/v1.0/apikey/Monitor/bench" \
    | python3 -c "import sys, json; print(json.load(sys.stdin)[\"key\"])")
  wlat() {
    fio --name=w --filename="$dir/fio.dat" --rw=randwrite --bs=4k --size=64m --ioengine=psync --sync=1 \
        --time_based --runtime="$secs" --output-format=json \
      | python3 -c "import sys, json; w = json.load(sys.stdin)[\"jobs\"][0][\"write\"]; p = w[\"clat_ns\"][\"percentile\"]; print(\"iops %.0f p50_us %.0f p99_us %.0f\" % (w[\"iops\"], p[\"50.000000\"] / 1000, p[\"99.000000\"] / 1000))"
  }
  echo "RESULT writes, no API load: $(wlat)"
  in1 "$SAFEKIT" demo-httpload $tls --addr "$addr" --path /api/v1.0/modules/bench --bearer "$key" \
    --seconds "$((secs + 6))" --conns "$conns" > "$SK_WORK/api.txt" &
  load=$!
  sleep 3
  echo "RESULT writes, API loaded by $conns clients: $(wlat)"
  wait "$load"
  echo "RESULT API GET /api/v1.0/modules/bench, $conns clients, during the writes: $(cat "$SK_WORK/api.txt")"
  echo "RESULT API alone: $(in1 "$SAFEKIT" demo-httpload $tls --addr "$addr" --path /api/v1.0/modules/bench --bearer "$key" --seconds "$secs" --conns "$conns")"
  if [ "$HTTPS" = 1 ]; then
    echo "RESULT GET /metrics over HTTP (9010): $(in1 "$SAFEKIT" demo-httpload --addr 127.0.0.1:9010 --path /metrics --seconds "$secs" --conns "$conns")"
    echo "RESULT GET /metrics over HTTPS (9453): $(in1 "$SAFEKIT" demo-httpload --https --addr 127.0.0.1:9453 --path /metrics --seconds "$secs" --conns "$conns")"
  fi
' _ {} "$SECS" "$CONNS"
