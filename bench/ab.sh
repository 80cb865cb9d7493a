#!/usr/bin/env bash
# Alternating A/B runs of hookrelay builds on bench/run.sh's two throughput
# scenarios (ingest with 3 hung subscribers; steady fan-out x3 with every
# delivery drained), 10 s each, bare hyper once for the ratio. Noise on a
# shared machine is large (BENCHMARKS.md): compare builds within one run.
#   ROUNDS=2 bash bench/ab.sh BINARY...   (copy each build aside first)
# The steady line also gives the relay's CPU time per event.
# Uses the load tool and sinks of a release build of this checkout.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { echo "usage: bash bench/ab.sh BINARY..." >&2; exit 2; }
cargo build --release --example bench_servers --example loadgen 2>&1 | tail -1
R=$PWD/target/release
W=$(mktemp -d)
pids=()
bg() { "$@" >/dev/null 2>&1 & pids+=($!); }
stop_all() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; pids=(); }
trap 'stop_all; rm -rf "$W"' EXIT
wait_port() { for _ in $(seq 1 200); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; exit 1; }
rps() { sed 's/.*"rps":\([0-9.]*\).*/\1/' <<<"$1"; }
# CPU time (user + system, clock ticks) a process has used: less noisy than
# throughput on a shared machine when comparing builds.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
count_of() { curl -s "http://127.0.0.1:$1/stats" | sed 's/.*"count":\([0-9]*\).*/\1/'; }
depth_zero() { local s; s=$(curl -s "http://127.0.0.1:$1/api/subscribers"); grep -q '"queue_depth"' <<<"$s" && ! grep -q '"queue_depth": [1-9]' <<<"$s"; }
config() { local name=$1 listen=$2 admin=$3 store=$4; shift 4
  { echo "[server]"; echo "listen = [\"$listen\"]"; echo "[store]"; echo "path = \"$store\""
    echo "[admin]"; echo "listen = \"$admin\""; echo "[log]"; echo "level = \"warn\""
    echo "[delivery]"; echo "concurrency = 64"
    echo "[[routes]]"; echo "name = \"runway\""; echo "path = \"/hooks/runway\""; echo "tokens = [\"bench-token\"]"
    echo "dedupe_key = [\"/data/task_id\", \"/code\"]"
    for s in "$@"; do echo "[[routes.subscribers]]"; echo "name = \"${s%%=*}\""; echo "url = \"http://127.0.0.1:${s#*=}/cb\""
      echo "secret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\""; done; } > "$W/$name.toml"; echo "$W/$name.toml"; }
HR() { echo "http://127.0.0.1:$1/hooks/runway?token=bench-token"; }
bg $R/examples/bench_servers bare 127.0.0.1:18001; wait_port 18001
echo "bare $(rps "$($R/examples/loadgen http://127.0.0.1:18001/ --connections 128 --duration 10)")"; stop_all
ROUNDS=${ROUNDS:-2}
for round in $(seq 1 $ROUNDS); do for bin in "$@"; do
  rm -rf "$W"/store-*
  for p in 18101 18102 18103; do bg $R/examples/bench_servers sink 127.0.0.1:$p; done
  for p in 18111 18112 18113; do bg $R/examples/bench_servers hang 127.0.0.1:$p; done
  bg "$bin" run -c "$(config plain 127.0.0.1:18080 127.0.0.1:19080 "$W/store-plain" a=18101 b=18102 c=18103)"; steady_pid=$!
  bg "$bin" run -c "$(config hung 127.0.0.1:18081 127.0.0.1:19081 "$W/store-hung" a=18111 b=18112 c=18113)"
  for p in 18101 18102 18103 18111 18112 18113 18080 18081; do wait_port $p; done
  hung=$(rps "$($R/examples/loadgen "$(HR 18081)" --connections 128 --duration 10)")
  t0=$(date +%s%N); c0=$(cpu_ticks $steady_pid)
  live=$(rps "$($R/examples/loadgen "$(HR 18080)" --connections 128 --duration 10 --tag steady)")
  until depth_zero 19080; do sleep 0.2; done
  t1=$(date +%s%N); c1=$(cpu_ticks $steady_pid); n=$(count_of 18101)
  steady=$(awk -v n="$n" -v ns="$((t1 - t0))" 'BEGIN { printf "%.0f", n / (ns / 1e9) }')
  us=$(awk -v n="$n" -v t="$((c1 - c0))" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.0f", t / hz * 1e6 / n }')
  echo "$(basename "$bin") round $round: hung $hung req/s, live answers $live req/s, steady $steady events/s ($us us of relay CPU per event)"
  stop_all
done; done
