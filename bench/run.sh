#!/usr/bin/env bash
# Reproduces BENCHMARKS.md on this machine: everything on loopback, one load
# tool (examples/loadgen.rs) for every scenario, baselines in the same run.
#   bash bench/run.sh [SECONDS_PER_RUN] [BACKLOG] [SMALL_BACKLOG]
set -euo pipefail
cd "$(dirname "$0")/.."
D=${1:-10}
BACKLOG=${2:-1000000}
SMALL=${3:-200000}
cargo build --release --bin hookrelay --example bench_servers --example loadgen --example prefill 2>&1 | tail -1
R=target/release
W=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$W"; }
trap cleanup EXIT
bg() { "$@" >/dev/null 2>&1 & pids+=($!); }
stop_all() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; pids=(); }
wait_port() { for _ in $(seq 1 200); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; exit 1; }
lg() { "$R/examples/loadgen" "$@"; }
rss_kib() { awk '/^VmRSS/ {print $2}' /proc/"$1"/status; }
hwm_kib() { awk '/^VmHWM/ {print $2}' /proc/"$1"/status; }
row() { printf '%-52s %s\n' "$1" "$2"; }
rps() { sed 's/.*"rps":\([0-9.]*\).*/\1/' <<<"$1"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
count_of() { curl -s "http://127.0.0.1:$1/stats" | sed 's/.*"count":\([0-9]*\).*/\1/'; }
depth_zero() { # ADMIN_PORT: every subscriber's queue is empty
  local s; s=$(curl -s "http://127.0.0.1:$1/api/subscribers")
  grep -q '"queue_depth"' <<<"$s" && ! grep -q '"queue_depth": [1-9]' <<<"$s"
}
metric() { curl -s "http://127.0.0.1:$1/metrics" | awk -v k="$2" '$1 == k {print $2}'; }

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$W/key.pem" -out "$W/cert.pem" \
  -days 1 -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 -addext basicConstraints=critical,CA:FALSE 2>/dev/null

config() { # NAME LISTEN ADMIN STORE TLS(0/1) EXTRA_STORE SUBS...
  local name=$1 listen=$2 admin=$3 store=$4 tls=$5 extra=$6; shift 6
  {
    echo "[server]"; echo "listen = [\"$listen\"]"
    [ "$tls" = 1 ] && echo "tls = { cert = \"$W/cert.pem\", key = \"$W/key.pem\" }"
    echo "[store]"; echo "path = \"$store\""; [ -n "$extra" ] && echo "$extra"
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
HR() { echo "http://127.0.0.1:$1/hooks/runway?token=bench-token"; }

echo "# hookrelay benchmarks ($(date -u +%F), $(nproc) cores, ${D}s per run)"
echo "## baselines"
bg "$R/examples/bench_servers" bare 127.0.0.1:18001
bg "$R/examples/bench_servers" sled 127.0.0.1:18002 "$W/sled-baseline"
wait_port 18001; wait_port 18002
bare=$(lg http://127.0.0.1:18001/ --connections 128 --duration "$D")
row "bare hyper, h1, 128 conns" "$bare"
row "hyper + sled insert+flush per req, 128" "$(lg http://127.0.0.1:18002/ --connections 128 --duration "$D")"
BARE=$(rps "$bare")
stop_all

echo "## ingest with 3 subscribers (closed loop, unique Runway bodies)"
for p in 18101 18102 18103; do bg "$R/examples/bench_servers" sink 127.0.0.1:$p; done
for p in 18111 18112 18113; do bg "$R/examples/bench_servers" hang 127.0.0.1:$p; done
bg "$R/hookrelay" run -c "$(config plain 127.0.0.1:18080 127.0.0.1:19080 "$W/store-plain" 0 "" a=18101 b=18102 c=18103)"
bg "$R/hookrelay" run -c "$(config hung 127.0.0.1:18081 127.0.0.1:19081 "$W/store-hung" 0 "" a=18111 b=18112 c=18113)"
bg "$R/hookrelay" run -c "$(config tls 127.0.0.1:18443 127.0.0.1:19443 "$W/store-tls" 1 "" a=18101 b=18102 c=18103)"
for p in 18101 18102 18103 18111 18112 18113 18080 18081 18443; do wait_port $p; done
hung=$(lg "$(HR 18081)" --connections 128 --duration "$D")
row "hookrelay h1, 3 subscribers hung, 128" "$hung  ($(ratio "$(rps "$hung")" "$BARE")x bare)"
# Steady fan-out: the load, then until every delivery is made; events per second over both.
t0=$(date +%s%N)
live=$(lg "$(HR 18080)" --connections 128 --duration "$D" --tag steady)
row "hookrelay h1, 3 subscribers live, 128 (answers)" "$live  ($(ratio "$(rps "$live")" "$BARE")x bare)"
until depth_zero 19080; do sleep 0.2; done
t1=$(date +%s%N)
n=$(count_of 18101)
steady=$(awk -v n="$n" -v ns="$((t1 - t0))" 'BEGIN { printf "%.0f", n / (ns / 1e9) }')
row "steady fan-out x3, every delivery drained" "$n events in $(( (t1 - t0) / 1000000 )) ms = $steady events/s ($(ratio "$steady" "$BARE")x bare)"
writes=$(metric 19080 hookrelay_store_writes_total)
events=$(curl -s http://127.0.0.1:19080/metrics | awk '/^hookrelay_ingest_requests_total/ && /status="200"/ {s+=$2} END {print s}')
row "store rows written per event (3 subscribers)" "$(awk -v w="$writes" -v e="$events" 'BEGIN { printf "%.2f (%d rows, %d events)", w / e, w, e }')"
row "hookrelay https h1, 3 subscribers, 128" "$(lg "https://localhost:18443/hooks/runway?token=bench-token" --ca "$W/cert.pem" --connections 128 --duration "$D")"
row "hookrelay https h2, 8 conns x 16 streams" "$(lg "https://localhost:18443/hooks/runway?token=bench-token" --ca "$W/cert.pem" --h2 --connections 8 --streams 16 --duration "$D")"

echo "## steady 1000 req/s (open loop): latency of the 200, and end to end (ingest -> subscriber)"
for port in 19080 19443; do until depth_zero $port; do sleep 0.5; done; done
for p in 18101 18102 18103; do curl -s "http://127.0.0.1:$p/reset" >/dev/null; done
row "hookrelay http, 1000/s, answer" "$(lg "$(HR 18080)" --connections 16 --rate 1000 --duration "$D")"
sleep 1
row "end to end, subscriber a" "$(curl -s http://127.0.0.1:18101/stats)"
plain_pid=$(pgrep -f "hookrelay run -c $W/plain.toml")
row "hookrelay RSS after the runs (KiB)" "$(rss_kib "$plain_pid") (peak $(hwm_kib "$plain_pid"))"
stop_all

backlog() { # LABEL COUNT EXTRA_STORE
  local label=$1 n=$2 extra=$3 store="$W/store-$1"
  echo "## backlog ($label): $n events for a subscriber that was down"
  cfg=$(config "$label" 127.0.0.1:18082 127.0.0.1:19082 "$store" 0 "$extra" down=18201)
  t0=$(date +%s%N)
  "$R/examples/prefill" "$store" "$n" runway down ${extra:+--compression} 2>&1 | tail -1
  row "prefill ($label)" "$(( n * 1000000000 / ($(date +%s%N) - t0) )) events/s"
  row "store on disk per event, 1 subscriber ($label)" "$(( $(du -sb "$store" | cut -f1) / n )) B"
  t0=$(date +%s%N)
  bg "$R/hookrelay" run -c "$cfg"
  local pid=${pids[-1]}
  until curl -sf http://127.0.0.1:19082/readyz >/dev/null; do sleep 0.01; done
  row "start-up to ready with the backlog ($label)" "$(( ($(date +%s%N) - t0) / 1000000 )) ms"
  sleep 2
  row "idle RSS with the backlog, subscriber down ($label)" "$(rss_kib "$pid") KiB"
  bg "$R/examples/bench_servers" sink 127.0.0.1:18201
  t1=$(date +%s%N)
  while :; do c=$(count_of 18201 2>/dev/null || echo 0); [ "${c:-0}" -ge "$n" ] && break; sleep 0.2; done
  ms=$(( ($(date +%s%N) - t1) / 1000000 ))
  drain=$(( n * 1000 / ms ))
  row "drain after the subscriber came back ($label)" "$n in $ms ms = $drain/s ($(ratio "$drain" "$BARE")x bare)"
  row "peak RSS of hookrelay, start + drain ($label)" "$(( $(hwm_kib "$pid") / 1024 )) MiB"
  sleep 2
  row "store on disk per event after the drain ($label)" "$(( $(du -sb "$store" | cut -f1) / n )) B"
  stop_all
}
backlog small "$SMALL" ""
backlog compressed "$SMALL" "compression = true"
backlog large "$BACKLOG" ""

echo "## idle"
cfg=$(config idle 127.0.0.1:18083 127.0.0.1:19083 "$W/store-idle" 0 "" s=18301)
t0=$(date +%s%N)
bg "$R/hookrelay" run -c "$cfg"
until curl -sf http://127.0.0.1:19083/readyz >/dev/null; do sleep 0.005; done
row "start-up to ready, empty store" "$(( ($(date +%s%N) - t0) / 1000000 )) ms"
sleep 1
row "idle RSS, empty store" "$(rss_kib "${pids[-1]}") KiB"
stop_all
