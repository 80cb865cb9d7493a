#!/usr/bin/env bash
# Reproduces BENCHMARKS.md on this machine: everything on loopback, one load
# tool (examples/loadgen.rs) for every scenario, baselines measured in the same run.
#   bash bench/run.sh [SECONDS_PER_RUN] [BACKLOG]
set -euo pipefail
cd "$(dirname "$0")/.."
D=${1:-10}
BACKLOG=${2:-1000000}
cargo build --release --bin hookrelay --example bench_servers --example loadgen --example prefill 2>&1 | tail -1
R=target/release
W=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$W"; }
trap cleanup EXIT
bg() { "$@" >/dev/null 2>&1 & pids+=($!); }
wait_port() { for _ in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; exit 1; }
lg() { "$R/examples/loadgen" "$@"; }
rss_kib() { awk '/^VmRSS/ {print $2}' /proc/"$1"/status; }
hwm_kib() { awk '/^VmHWM/ {print $2}' /proc/"$1"/status; }
row() { printf '%-44s %s\n' "$1" "$2"; }

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$W/key.pem" -out "$W/cert.pem" \
  -days 1 -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 -addext basicConstraints=critical,CA:FALSE 2>/dev/null

config() { # NAME LISTEN ADMIN STORE TLS(0/1) SUBS...
  local name=$1 listen=$2 admin=$3 store=$4 tls=$5; shift 5
  {
    echo "[server]"; echo "listen = [\"$listen\"]"
    [ "$tls" = 1 ] && echo "tls = { cert = \"$W/cert.pem\", key = \"$W/key.pem\" }"
    echo "[store]"; echo "path = \"$store\""
    echo "[admin]"; echo "listen = \"$admin\""
    echo "[log]"; echo "level = \"warn\""
    echo "[delivery]"; echo "concurrency = 64"
    echo "[[routes]]"; echo "name = \"runway\""; echo "path = \"/hooks/runway\""; echo "tokens = [\"bench-token\"]"
    echo "dedupe_key = [\"/data/task_id\", \"/code\"]"
    for s in "$@"; do
      echo "[[routes.subscribers]]"; echo "name = \"${s%%=*}\""; echo "url = \"http://127.0.0.1:${s#*=}/cb\""
      echo "secret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\""
    done
  } > "$W/$name.toml"
  echo "$W/$name.toml"
}

echo "# hookrelay benchmarks ($(date -u +%F), $(nproc) cores, ${D}s per run)"
echo "## ingest (closed loop, unique Runway bodies; JSON: rps and latency of the answer in microseconds)"
bg "$R/examples/bench_servers" bare 127.0.0.1:18001
bg "$R/examples/bench_servers" sled 127.0.0.1:18002 "$W/sled-baseline"
for p in 18101 18102 18103; do bg "$R/examples/bench_servers" sink 127.0.0.1:$p; done
bg "$R/hookrelay" run -c "$(config plain 127.0.0.1:18080 127.0.0.1:19080 "$W/store-plain" 0 a=18101 b=18102 c=18103)"
bg "$R/hookrelay" run -c "$(config tls 127.0.0.1:18443 127.0.0.1:19443 "$W/store-tls" 1 a=18101 b=18102 c=18103)"
for p in 18001 18002 18101 18102 18103 18080 18443; do wait_port $p; done
HR=http://127.0.0.1:18080/hooks/runway?token=bench-token
HRS=https://localhost:18443/hooks/runway?token=bench-token
row "bare hyper, h1, 128 conns"                "$(lg http://127.0.0.1:18001/ --connections 128 --duration "$D")"
row "hyper + sled insert+flush per req, 32"     "$(lg http://127.0.0.1:18002/ --connections 32 --duration "$D")"
row "hyper + sled insert+flush per req, 128"    "$(lg http://127.0.0.1:18002/ --connections 128 --duration "$D")"
row "hookrelay http h1, 3 subscribers, 32"      "$(lg "$HR" --connections 32 --duration "$D")"
row "hookrelay http h1, 3 subscribers, 128"     "$(lg "$HR" --connections 128 --duration "$D")"
row "hookrelay https h1, 3 subscribers, 128"    "$(lg "$HRS" --ca "$W/cert.pem" --connections 128 --duration "$D")"
row "hookrelay https h2, 8 conns x 16 streams"  "$(lg "$HRS" --ca "$W/cert.pem" --h2 --connections 8 --streams 16 --duration "$D")"

echo "## steady 1000 req/s (open loop): latency of the 200, and end to end (ingest -> subscriber)"
# Let the fan-out of the runs above drain first (hookrelay ingests faster than 3 subscribers take).
for port in 19080 19443; do
  until curl -s "http://127.0.0.1:$port/api/subscribers" | grep -q '"queue_depth": 0' &&
        ! curl -s "http://127.0.0.1:$port/api/subscribers" | grep -q '"queue_depth": [1-9]'; do sleep 1; done
done
row "fan-out backlog drained after the runs"   "yes"
for p in 18101 18102 18103; do curl -s "http://127.0.0.1:$p/reset" >/dev/null; done
row "hookrelay http, 1000/s, answer"            "$(lg "$HR" --connections 16 --rate 1000 --duration "$D")"
sleep 1
row "end to end, subscriber a"                  "$(curl -s http://127.0.0.1:18101/stats)"
row "end to end, subscriber c"                  "$(curl -s http://127.0.0.1:18103/stats)"
plain_pid=$(pgrep -f "hookrelay run -c $W/plain.toml")
row "hookrelay RSS after the runs (KiB)"        "$(rss_kib "$plain_pid") (peak $(hwm_kib "$plain_pid"))"
kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; pids=()

echo "## backlog: $BACKLOG jobs for a subscriber that was down"
"$R/examples/prefill" "$W/store-backlog" "$BACKLOG" runway down 2>&1
row "store size on disk with the backlog"        "$(du -sh "$W/store-backlog" | cut -f1)"
cfg=$(config backlog 127.0.0.1:18081 127.0.0.1:19081 "$W/store-backlog" 0 down=18201)
t0=$(date +%s%N)
bg "$R/hookrelay" run -c "$cfg"
hr_pid=${pids[-1]}
until curl -sf http://127.0.0.1:19081/readyz >/dev/null; do sleep 0.01; done
row "start-up to ready with the backlog"        "$(( ($(date +%s%N) - t0) / 1000000 )) ms"
sleep 3
row "idle RSS with the backlog (subscriber down)" "$(rss_kib "$hr_pid") KiB"
bg "$R/examples/bench_servers" sink 127.0.0.1:18201
t1=$(date +%s%N)
while :; do
  n=$(curl -s http://127.0.0.1:18201/stats | sed 's/.*"count":\([0-9]*\).*/\1/')
  [ "${n:-0}" -ge "$BACKLOG" ] && break
  sleep 0.5
done
ms=$(( ($(date +%s%N) - t1) / 1000000 ))
row "drain after the subscriber came back"      "$BACKLOG jobs in $ms ms = $(( BACKLOG * 1000 / ms )) jobs/s"
row "peak RSS of hookrelay (start + drain)"     "$(hwm_kib "$hr_pid") KiB"
sleep 2
row "store size on disk after the drain"        "$(du -sh "$W/store-backlog" | cut -f1)"
