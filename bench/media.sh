#!/usr/bin/env bash
# Media archive benchmark (issue 11), everything on loopback, release build:
#  1. archive throughput of one large file (download + SHA-256 + write +
#     fsync + rename, through the daemon: callback -> stored) against a bare
#     copy of the same file in the same run (curl to a file + fsync),
#     alternating, best of each;
#  2. callback ingest latency (the 200) at a fixed rate, with every callback
#     naming two small files, first alone, then while BIG_COUNT large files
#     are being archived.
#   bash bench/media.sh [BIG_MIB] [SECONDS] [RATE] [BIG_COUNT]
set -euo pipefail
cd "$(dirname "$0")/.."
BIG_MIB=${1:-1024}
D=${2:-10}
RATE=${3:-500}
BIG_COUNT=${4:-8}
BIG=$((BIG_MIB << 20))
if [ "${PROFILE:-release}" = release ]; then
  cargo build --release --bin hookrelay --example bench_servers --example loadgen 2>&1 | tail -1
  R=target/release
else # PROFILE=debug: quick comparisons while developing (not for published numbers)
  cargo build --bin hookrelay --example bench_servers --example loadgen 2>&1 | tail -1
  R=target/debug
fi
W=$(mktemp -d -p "${BENCH_DIR:-/tmp}")
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$W"; }
trap cleanup EXIT
bg() { "$@" >"$W/$(basename "$1").$$.$RANDOM.log" 2>&1 & pids+=($!); }
wait_port() { for _ in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; exit 1; }
now() { date +%s.%N; }
mbps() { echo "$1 $2" | awk '{printf "%.0f", $1 / 1e6 / $2}'; }
row() { printf '%-58s %s\n' "$1" "$2"; }

FILES=127.0.0.1:18201
ADMIN=127.0.0.1:19201
HOOKS=127.0.0.1:18280
cat > "$W/config.toml" <<EOF
[server]
listen = ["$HOOKS"]
[store]
path = "$W/data"
[admin]
listen = "$ADMIN"
[log]
level = "warn"
[media]
store = "${MEDIA_DIR:-$W/media}"
allow_private = true
concurrency = 4
max_size = "64GiB"
[[routes]]
name = "runway"
path = "/hooks/runway"
preset = "kie-runway"
allow_anyone = true                   # loopback benchmark
[[routes.subscribers]]
name = "sink"
url = "http://127.0.0.1:18202/cb"
EOF

bg "$R/examples/bench_servers" files "$FILES" "$BIG"
bg "$R/examples/bench_servers" sink 127.0.0.1:18202
bg "$R/hookrelay" run -c "$W/config.toml"
daemon=${pids[-1]}
for p in 18201 18202 18280 19201; do wait_port $p; done

post() { # URL -> event id
  curl -sf -X POST "http://$HOOKS/hooks/runway" -H 'content-type: application/json' \
    -d "{\"code\":200,\"msg\":\"ok\",\"data\":{\"task_id\":\"$RANDOM$RANDOM-$(now)\",\"video_url\":\"$1\",\"image_url\":\"\"}}" | jq -r .id
}
wait_stored() { # EVENT -> prints nothing, fails if not stored
  while :; do
    st=$(curl -sf "http://$ADMIN/api/media?event=$1" | jq -r '[.media[].state] | if any(. == "pending") then "pending" else (if all(. == "stored") then "stored" else "failed" end) end')
    case $st in stored) return 0 ;; failed) echo "archive failed: $(curl -s "http://$ADMIN/api/media?event=$1")" >&2; exit 1 ;; esac
    sleep 0.02
  done
}
archive_once() { # N -> seconds
  local t0 id
  t0=$(now); id=$(post "http://$FILES/big/$1.mp4"); wait_stored "$id"
  echo "$(now) $t0" | awk '{printf "%.3f", $1 - $2}'
}
bare_once() { # -> seconds
  local t0
  t0=$(now); curl -sf -o "$W/bare.bin" "http://$FILES/big/bare.mp4"; sync "$W/bare.bin"
  echo "$(now) $t0" | awk '{printf "%.3f", $1 - $2}'; rm -f "$W/bare.bin"
}

echo "# media archive benchmark ($(date -u +%F), $(nproc) cores, ${BIG_MIB} MiB file, ${D}s latency runs at ${RATE} req/s)"
echo "# load before: $(cut -d' ' -f1-3 /proc/loadavg) (the machine may be shared: compare rows of the same run only)"
echo "## 1. one ${BIG_MIB} MiB file on loopback: archive (daemon, callback -> stored) vs bare copy (curl -o + fsync)"
best_a=999999; best_b=999999
for i in 1 2; do
  b=$(bare_once); a=$(archive_once "$i")
  row "round $i: bare copy" "${b}s ($(mbps "$BIG" "$b") MB/s)"
  row "round $i: archive" "${a}s ($(mbps "$BIG" "$a") MB/s)"
  best_a=$(echo "$a $best_a" | awk '{print ($1 < $2) ? $1 : $2}')
  best_b=$(echo "$b $best_b" | awk '{print ($1 < $2) ? $1 : $2}')
done
row "best: bare copy" "$(mbps "$BIG" "$best_b") MB/s"
row "best: archive" "$(mbps "$BIG" "$best_a") MB/s"
row "archive / bare copy" "$(echo "$best_b $best_a" | awk '{printf "%.2f", $1 / $2}')"
row "daemon peak RSS so far (VmHWM)" "$(awk '/^VmHWM/ {print $2, $3}' /proc/"$daemon"/status)"

settle() { sync; sleep 3; } # let the page cache's writeback of the previous step finish
settle
echo "## 2. ingest latency of the 200 (loadgen, open loop, each callback names 2 small files)"
lg() { "$R/examples/loadgen" "http://$HOOKS/hooks/runway" --rate "$RATE" --duration "$D" --connections 16 --media "http://$FILES" --tag "$1"; }
row "no large download running" "$(lg idle)"
settle
# The same large files copied by curl (4 at a time, to files, fsynced), as a
# baseline for what the download and disk load alone cost the 200.
( for i in $(seq 1 "$BIG_COUNT"); do echo "$i"; done | xargs -P 4 -I{} sh -c \
    "curl -sf -o '$W/copy-{}.bin' 'http://$FILES/big/copy-{}.mp4' && sync '$W/copy-{}.bin' && rm -f '$W/copy-{}.bin'" ) &
copies=$!
row "while ${BIG_COUNT} x ${BIG_MIB} MiB are copied by curl" "$(lg copy)"
t0=$(now); wait $copies
row "  curl copies done after the run by" "$(echo "$(now) $t0" | awk '{printf "%.1f", $1 - $2}')s"
settle
ids=()
for i in $(seq 1 "$BIG_COUNT"); do ids+=("$(post "http://$FILES/big/busy-$i.mp4")"); done
t0=$(now)
row "while ${BIG_COUNT} x ${BIG_MIB} MiB are archived" "$(lg busy)"
still=$(curl -sf "http://$ADMIN/api/media?limit=100" | jq '[.waiting[] | select(.url | contains("/big/"))] | length')
row "large files still pending when the run ended" "$still of ${BIG_COUNT}$( [ "$still" -gt 0 ] && echo " (archiving lasted the whole run)")"
for id in "${ids[@]}"; do wait_stored "$id"; done
row "all large archives done after" "$(echo "$(now) $t0" | awk '{printf "%.1f", $1 - $2}')s"
row "media metrics" "$(curl -sf "http://$ADMIN/metrics" | grep -E '^hookrelay_media_(files_total|bytes_total)' | tr '\n' ' ')"
row "daemon peak RSS (VmHWM)" "$(awk '/^VmHWM/ {print $2, $3}' /proc/"$daemon"/status)"
echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)"
