#!/usr/bin/env bash
# Does hickory-server 0.26's own UDP path collapse under dnsperf, and does failoverd's? Runs each
# server pinned to CPU 0 and dnsperf (-c 4 -q 200, the answering-speed settings) on CPU 1 for
# RUNS short runs, and prints QPS, lost queries, max latency and, for hickory, the responses its
# handler could not hand to the socket task. A run under half the server's median QPS is marked
# as a collapse. Everything on 127.0.0.0/8; every loop bounded.
#
#   bench/hickory-collapse.sh [RUNS] [SECONDS]    (default 10 runs of 5 s)
#   PIN=no bench/hickory-collapse.sh ...         server and dnsperf left to the scheduler
#
# Results: bench/results/hickory-collapse-<date>.md
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-10}
secs=${2:-5}
if [ "${PIN:-yes}" = no ]; then
  on_server=() on_client=() placement="unpinned (server and dnsperf share both CPUs)"
else
  on_server=(taskset -c 0) on_client=(taskset -c 1) placement="server on CPU 0, dnsperf on CPU 1"
fi
[ "$(nproc)" -ge 2 ] || { echo "needs 2 CPUs" >&2; exit 2; }
command -v dnsperf >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dnsperf >/dev/null; }
cargo build --release --quiet --bin failoverd --example hickory_udp

# shellcheck source=bench/lib.sh
source bench/lib.sh

port=15354
# Nothing listens on the check's port: failoverd answers every node (when_all_down: all);
# hickory_udp answers node1. Either way one A record.
cat > "$work/config.yaml" <<EOF
zone: ha.example.com
self: node1
dns: { listen: ["127.0.0.36:$port"], ttl: 10s }
dashboard: { listen: "127.0.0.36:0" }
defaults: { interval: 1s, retry_interval: 1s, timeout: 500ms, fall: 1, rise: 1 }
nodes:
  - { id: node1, address: 127.0.0.21, priority: 20 }
checks:
  - { id: web, type: tcp, port: 18481 }
hostnames:
  - { name: app, checks: [web] }
EOF
printf 'app.ha.example.com A\n' > "$work/q"

results=bench/results/hickory-collapse-$(date -u +%Y-%m-%dT%H%MZ).md
mkdir -p bench/results
{
  echo "# hickory-server's UDP path and failoverd's under dnsperf — $(date -u +%FT%RZ)"
  echo
  echo "Command: \`PIN=${PIN:-yes} bench/hickory-collapse.sh $runs $secs\`; $placement; \`dnsperf -c 4 -q 200 -l $secs\`; query \`app.ha.example.com A\`."
  echo "failoverd $(git describe --always --dirty), rustc $(rustc --version | cut -d' ' -f2), hickory-server 0.26.3; load at start $(cut -d' ' -f1-3 /proc/loadavg)."
  echo
  echo "| server | run | QPS | lost | max latency ms | send failures |"
  echo "|---|---|---|---|---|---|"
} > "$results"

# hickory's path on tokio's multi-thread runtime (as failoverd runs) and on a current-thread one.
for server in hickory-multi hickory-current failoverd; do
  if [ "${server#hickory-}" != "$server" ]; then
    "${on_server[@]}" target/release/examples/hickory_udp "$work/config.yaml" "127.0.0.36:$port" "${server#hickory-}" 2> "$work/$server.log" &
  else
    "${on_server[@]}" env RUST_LOG=warn target/release/failoverd run --config "$work/config.yaml" --state-dir "$work/state" > "$work/$server.log" 2>&1 &
  fi
  pid=$!
  pids+=("$pid")
  ready=no
  for _ in $(seq 1 50); do
    if dig @127.0.0.36 -p $port app.ha.example.com +short +time=1 +tries=1 2>/dev/null | grep -q 127; then ready=yes; break; fi
    sleep 0.1
  done
  [ $ready = yes ] || { echo "$server did not answer:"; cat "$work/$server.log"; exit 1; }
  for run in $(seq 1 "$runs"); do
    before=$(tail -1 "$work/$server.log" | awk '/send_failures/ {print $4}')
    out=$("${on_client[@]}" dnsperf -s 127.0.0.36 -p $port -d "$work/q" -l "$secs" -c 4 -q 200 -t 2 -v 2>&1 | grep -v '^> ' || true)
    sleep 1.1 # one more line of counters from hickory_udp
    after=$(tail -1 "$work/$server.log" | awk '/send_failures/ {print $4}')
    qps=$(awk '/Queries per second/ {printf "%.0f", $4}' <<< "$out")
    lost=$(awk '/Queries lost/ {print $3}' <<< "$out")
    maxlat=$(awk '/Average Latency/ {gsub(/[,)]/, ""); for (i = 1; i <= NF; i++) if ($i == "max") printf "%.1f", $(i + 1) * 1000}' <<< "$out")
    failures=-
    if [ -n "${after:-}" ]; then failures=$(( after - ${before:-0} )); fi
    row="| $server | $run | $qps | $lost | $maxlat | $failures |"
    echo "$row"; echo "$row" >> "$results"
  done
  kill "$pid"; wait "$pid" 2>/dev/null || true
done
summary=$(for server in hickory-multi hickory-current failoverd; do
  qps=$(awk -F'|' -v s=" $server " '$2 == s {print $4 + 0}' "$results" | sort -n)
  n=$(wc -l <<< "$qps")
  med=$(sed -n "$(( (n + 1) / 2 ))p" <<< "$qps")
  low=$(awk -v m="$med" '$1 < m / 2' <<< "$qps" | wc -l)
  echo "- $server: $low of $n runs (median $med QPS)"
done)
printf '\nCollapses (a run under half its server'"'"'s median QPS):\n%s\n' "$summary" >> "$results"
tail -4 "$results"
echo "results: $results"
