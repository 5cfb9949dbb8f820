#!/usr/bin/env bash
# failoverd on its own: answering speed (dnsperf), footprint, time to first answer, failover and
# failback time. Everything runs on 127.0.0.0/8; every loop is bounded.
#
#   bench/quick.sh [SECONDS_PER_DNSPERF_RUN]    (default 10)
#
# Results: bench/results/quick-<date>.md
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}

need=()
command -v dig >/dev/null || need+=(bind9-dnsutils)
command -v dnsperf >/dev/null || need+=(dnsperf)
if ((${#need[@]})); then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
cargo build --release --quiet
bin=target/release/failoverd

# shellcheck source=bench/lib.sh
source bench/lib.sh

# Two backends: python's http.server on 127.0.0.21 and .22 (one port each, same number).
port=18480
for ip in 127.0.0.21 127.0.0.22; do
  mkdir -p "$work/www-$ip" && echo "Sign in" > "$work/www-$ip/login"
  (cd "$work/www-$ip" && exec /usr/bin/python3 -m http.server "$port" --bind "$ip" >/dev/null 2>&1) &
  pids+=($!)
done
dns_port=15353
cat > "$work/config.yaml" <<EOF
zone: ha.example.com
self: node1
dns: { listen: ["127.0.0.1:$dns_port"], ttl: 10s }
defaults: { interval: 1s, retry_interval: 500ms, timeout: 300ms, fall: 2, rise: 2 }
nodes:
  - { id: node1, address: 127.0.0.21, priority: 20 }
  - { id: node2, address: 127.0.0.22, priority: 10 }
checks:
  - { id: web, type: http, url: "http://{address}:$port/login", expect_body: "Sign in" }
hostnames:
  - { name: app, checks: [web] }
EOF
for _ in $(seq 1 50); do
  curl -fs "http://127.0.0.21:$port/login" >/dev/null 2>&1 && curl -fs "http://127.0.0.22:$port/login" >/dev/null 2>&1 && break
  sleep 0.1
done

ms() { date +%s%3N; }
answer() { dig @127.0.0.1 -p "$dns_port" app.ha.example.com +short +time=1 +tries=1 2>/dev/null | head -1; }

# Time from start to first answer.
t0=$(ms)
RUST_LOG=warn taskset -c 0 "$bin" run --config "$work/config.yaml" --state-dir "$work/state" 2>"$work/agent.log" &
agent=$!
pids+=("$agent")
for _ in $(seq 1 200); do [ "$(answer)" = 127.0.0.21 ] && break; sleep 0.01; done
first_answer=$(( $(ms) - t0 ))
sleep 2
rss_kb=$(awk '/VmRSS/ {print $2}' /proc/$agent/status)
size=$(stat -c %s "$bin")

# dnsperf pinned to the other core: the failover name, then a mix.
printf 'app.ha.example.com A\n' > "$work/q-failover"
printf '%s\n' 'app.ha.example.com A' 'app.ha.example.com AAAA' 'ha.example.com SOA' 'ha.example.com NS' 'nope.ha.example.com A' > "$work/q-mix"
perf() {
  local cpu0 cpu1 out qps
  cpu0=$(awk '{print $14+$15}' /proc/$agent/stat)
  out=$(taskset -c 1 dnsperf -s 127.0.0.1 -p "$dns_port" -d "$1" -l "$secs" -c 4 -q 200 2>&1)
  cpu1=$(awk '{print $14+$15}' /proc/$agent/stat)
  qps=$(echo "$out" | awk '/Queries per second/ {print $4}')
  lost=$(echo "$out" | awk '/Queries lost/ {print $3}')
  lat=$(echo "$out" | awk '/Average Latency/ {print $4}')
  local ticks
  ticks=$(getconf CLK_TCK)
  local share
  share=$(echo "($cpu1 - $cpu0) / $ticks / $secs" | bc -l)
  printf '| %s | %.0f | %.0f%% | %.0f | %s s | %s |\n' "$2" "$qps" "$(echo "$share*100" | bc -l)" "$(echo "$qps / $share" | bc -l)" "$lat" "$lost"
}
perf_rows=$(perf "$work/q-failover" "app A (failover name)"; perf "$work/q-mix" "mix: A, AAAA-NODATA, SOA, NS, NXDOMAIN")

# Failover and failback: stop node1's web server, poll every 50 ms until the answer moves.
bound_ms=$((1000 + 1 * 500 + 300 + 100))
fo=(); fb=()
for _trial in 1 2 3 4 5; do
  sleep 1.3 # land the kill at a random point of the 1 s probe cycle
  kill "${pids[0]}"; wait "${pids[0]}" 2>/dev/null || true
  t=$(ms)
  for _ in $(seq 1 200); do [ "$(answer)" = 127.0.0.22 ] && break; sleep 0.05; done
  fo+=($(( $(ms) - t )))
  (cd "$work/www-127.0.0.21" && exec /usr/bin/python3 -m http.server "$port" --bind 127.0.0.21 >/dev/null 2>&1) &
  pids[0]=$!
  t=$(ms)
  for _ in $(seq 1 200); do [ "$(answer)" = 127.0.0.21 ] && break; sleep 0.05; done
  fb+=($(( $(ms) - t )))
done
median() { printf '%s\n' "$@" | sort -n | sed -n 3p; }
range() { printf '%s\n' "$@" | sort -n | sed -n '1p;$p' | paste -sd- ; }

mkdir -p bench/results
out="bench/results/quick-$(date +%Y-%m-%d).md"
{
  echo "# failoverd quick benchmark — $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  echo "Machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r); $(rustc --version); dnsperf $(dnsperf -h 2>&1 | awk '/Version/ {print $2}' | head -1)"
  echo "Agent pinned to CPU 0, dnsperf to CPU 1 (-c 4 -q 200, ${secs} s per run). Command: bench/quick.sh $secs"
  echo
  echo "| queries | QPS | agent CPU | queries per agent-core-second | avg latency | lost |"
  echo "|---|---|---|---|---|---|"
  echo "$perf_rows"
  echo
  echo "| footprint | value |"
  echo "|---|---|"
  echo "| idle RSS (2 nodes, 1 check) | $((rss_kb / 1024)).$(( (rss_kb % 1024) * 10 / 1024 )) MiB |"
  echo "| binary size (release) | $((size / 1048576)) MiB |"
  echo "| start to first answer | ${first_answer} ms |"
  echo
  echo "Failover/failback (interval 1s, retry 500ms, timeout 300ms, fall 2, rise 2; web server killed"
  echo "or restarted, dig every 50 ms). Bound: interval + (fall−1)×retry + timeout + 100 ms = ${bound_ms} ms."
  echo
  echo "| | median | range | trials (ms) |"
  echo "|---|---|---|---|"
  echo "| failover | $(median "${fo[@]}") ms | $(range "${fo[@]}") ms | ${fo[*]} |"
  echo "| failback | $(median "${fb[@]}") ms | $(range "${fb[@]}") ms | ${fb[*]} |"
} > "$out"
cat "$out"
