#!/usr/bin/env bash
# Pull subscribers against push delivery, in the same run, to the same kind of
# local service (examples/bench_servers.rs `sink`), everything on loopback:
#   1. throughput: a backlog of BACKLOG events for both a push subscriber and a
#      pull subscriber; the push lane drains its copy first (the forwarder is
#      not running), then `hookrelay forward` drains the pull copy;
#   2. latency at a steady RATE/s (open loop, examples/loadgen.rs) with both
#      delivering: ingest -> local service, push vs relay -> forwarder -> local
#      service; the difference is what a long-poll hand-off adds.
#   bash bench/pull.sh [BACKLOG] [SECONDS] [RATE]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-100000}
D=${2:-20}
RATE=${3:-500}
C=64   # push lane concurrency = forwarder concurrency
cargo build --release --bin hookrelay --example bench_servers --example loadgen --example prefill 2>&1 | tail -1
R=target/release
W=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$W"; }
trap cleanup EXIT
bg() { "$@" >/dev/null 2>&1 & pids+=($!); }
wait_port() { for _ in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; exit 1; }
count() { curl -s "http://127.0.0.1:$1/stats" | sed 's/.*"count":\([0-9]*\).*/\1/'; }
row() { printf '%-52s %s\n' "$1" "$2"; }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
# Milliseconds until sink on port $1 has counted $2 requests.
drain_ms() {
  local t0; t0=$(now_ms)
  until [ "$(count "$1")" -ge "$2" ]; do sleep 0.05; done
  echo $(( $(now_ms) - t0 ))
}

echo "# pull vs push ($(date -u +%F), $(nproc) cores; backlog $N, ${D}s at ${RATE}/s, concurrency $C)"
echo "bench-pull-token" > "$W/token"
cat > "$W/relay.toml" <<EOF
[server]
listen = ["127.0.0.1:18090"]
[store]
path = "$W/store"
[admin]
listen = "127.0.0.1:19090"
[log]
level = "warn"
[delivery]
concurrency = $C
[[routes]]
name = "runway"
path = "/hooks/runway"
tokens = ["bench-token"]
dedupe_key = ["/data/task_id", "/code"]
[[routes.subscribers]]
name = "push"
url = "http://127.0.0.1:18301/cb"
secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
[[routes.subscribers]]
name = "pull"
pull = { token = { file = "$W/token" }, lease = "60s" }
secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
EOF

"$R/examples/prefill" "$W/store" "$N" runway push,pull 2>&1
bg "$R/examples/bench_servers" sink 127.0.0.1:18301   # behind push
bg "$R/examples/bench_servers" sink 127.0.0.1:18302   # behind the forwarder
wait_port 18301; wait_port 18302
echo "## throughput: a backlog of $N events, drained one subscriber after the other"
t0=$(now_ms)
bg "$R/hookrelay" run -c "$W/relay.toml"
until curl -sf http://127.0.0.1:19090/readyz >/dev/null; do sleep 0.01; done
drain_ms 18301 "$N" >/dev/null
ms=$(( $(now_ms) - t0 ))
row "push: relay -> local service"              "$N in $ms ms = $(( N * 1000 / ms )) msg/s (relay start included)"
bg "$R/hookrelay" forward http://127.0.0.1:18090/pull/pull --to http://127.0.0.1:18302/cb \
   --token-file "$W/token" --concurrency "$C"
ms=$(drain_ms 18302 "$N")
row "pull: relay -> forwarder -> local service" "$N in $ms ms = $(( N * 1000 / ms )) msg/s (forwarder start included)"
until curl -s http://127.0.0.1:19090/api/subscribers | tr -d ' \n' | grep -q '"name":"pull".*"queue_depth":0'; do sleep 0.1; done
row "pull backlog acknowledged"                "yes (queue_depth 0)"

echo "## latency at ${RATE}/s for ${D}s (open loop), ingest -> local service, both subscribers delivering"
curl -s http://127.0.0.1:18301/reset >/dev/null; curl -s http://127.0.0.1:18302/reset >/dev/null
row "answers to the provider"                   "$("$R/examples/loadgen" "http://127.0.0.1:18090/hooks/runway?token=bench-token" --connections 8 --rate "$RATE" --duration "$D")"
sleep 1
row "push: ingest -> local service"             "$(curl -s http://127.0.0.1:18301/stats)"
row "pull: ingest -> forwarder -> local service" "$(curl -s http://127.0.0.1:18302/stats)"
