#!/usr/bin/env bash
# failoverd side by side with gdnsd, PowerDNS, NSD and Knot on one machine: answering speed,
# failover and failback time, 10,000 checks at 1 s, footprint. See bench/README.md.
#
#   bench/run.sh [--quick] [--only SECTIONS] [--servers LIST]
#
#   --quick            short runs (3 s dnsperf, 1 run, 2 trials, 10 s scale) to try the script
#   --secs N           length of one dnsperf run (default 10)
#   --trials N         failover/failback trials per setting (default 5)
#   --only SECTIONS    comma list of: speed,failover,scale,footprint (default: all)
#   --servers LIST     comma list of: failoverd,gdnsd,pdns,nsd,knot (default: all)
#
# Every server listens on 127.0.0.x high ports, its files live under one temporary directory,
# and everything started is stopped and removed on every exit path. All traffic is loopback;
# PowerDNS's security poll (a query to the machine's resolver) is disabled.
# Results: bench/results/<UTC date-time>.md (printed at the end).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

secs=10       # length of one dnsperf run
runs=3        # dnsperf runs per figure (median)
trials=5      # failover/failback trials per setting
scale_secs=30 # probe-rate measurement of the scale test
sections=speed,failover,scale,footprint
servers=failoverd,gdnsd,pdns,nsd,knot
args="$*"
while (($#)); do
  case $1 in
    --quick) secs=3 runs=1 trials=2 scale_secs=10 ;;
    --only) sections=$2; shift ;;
    --secs) secs=$2; shift ;;
    --servers) servers=$2; shift ;;
    --trials) trials=$2; shift ;;
    *) echo "usage: bench/run.sh [--quick] [--secs N] [--trials N] [--only speed,failover,scale,footprint] [--servers failoverd,gdnsd,pdns,nsd,knot]" >&2; exit 2 ;;
  esac
  shift
done
want() { [[ ",$sections," == *",$1,"* ]]; }
serves() { [[ ",$servers," == *",$1,"* ]]; }

[ "$(id -u)" = 0 ] || { echo "run as root (cgroups, packages, ulimit)" >&2; exit 2; }
[ "$(nproc)" -ge 2 ] || { echo "needs 2 CPUs: server on CPU 0, dnsperf on CPU 1" >&2; exit 2; }

# ---------------------------------------------------------------- packages, binaries
need=()
command -v dig >/dev/null || need+=(bind9-dnsutils)
command -v dnsperf >/dev/null || need+=(dnsperf)
command -v gcc >/dev/null || need+=(gcc libc6-dev)
command -v gdnsd >/dev/null || need+=(gdnsd)
command -v pdns_server >/dev/null || need+=(pdns-server)
[ -e /usr/lib/x86_64-linux-gnu/pdns/libbindbackend.so ] || ls /usr/lib/*/pdns/libbindbackend.so >/dev/null 2>&1 || need+=(pdns-backend-bind)
command -v nsd >/dev/null || need+=(nsd)
command -v knotd >/dev/null || need+=(knot)
if ((${#need[@]})); then
  echo "installing: ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# Debian starts the peers as services on port 53 when it can; the benchmark runs its own copies.
for svc in gdnsd pdns nsd knot; do
  if command -v systemctl >/dev/null && systemctl is-active --quiet "$svc" 2>/dev/null; then
    echo "note: the $svc service is running on this machine (left alone)"
  fi
done

# Numbers are only worth something on a quiet machine: wait (at most 2 min, BENCH_QUIET_WAIT × 5 s)
# for builds to end; the load at start goes into the results.
for _ in $(seq 1 "${BENCH_QUIET_WAIT:-24}"); do
  busy=$(( $(pgrep -c -x rustc || true) + $(pgrep -c -x cargo || true) + $(pgrep -c -x cc1 || true) ))
  load=$(cut -d' ' -f1 /proc/loadavg)
  [ "${busy:-0}" = 0 ] && awk -v l="$load" 'BEGIN {exit !(l < 1.0)}' && break
  echo "waiting for a quiet machine (load $load, $busy compiler processes)"
  sleep 5
done
load_at_start="$(cut -d' ' -f1-3 /proc/loadavg) (1/5/15 min)"

if [ -n "${FAILOVERD_BIN:-}" ]; then
  echo "using $FAILOVERD_BIN (FAILOVERD_BIN)"
else
  echo "building failoverd (release)"
  cargo build --release --quiet
fi

work=$(mktemp -d /tmp/failoverd-bench.XXXXXX)
cg_cpu=/sys/fs/cgroup/cpu/failoverd-bench-$$
cg_acct=/sys/fs/cgroup/cpuacct/failoverd-bench-$$
cleanup() {
  local p
  set +e
  if [ -f "$work/pids" ]; then
    while read -r p; do kill "$p" 2>/dev/null; done < "$work/pids"
    sleep 0.3
    while read -r p; do kill -9 "$p" 2>/dev/null; done < "$work/pids"
  fi
  wait 2>/dev/null
  for d in "$cg_cpu" "$cg_acct"; do
    [ -d "$d" ] || continue
    for _ in 1 2 3 4 5 6 7 8 9 10; do rmdir "$d" 2>/dev/null && break; sleep 0.2; done
  done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

gcc -O2 -Wall -o "$work/backend" bench/backend.c
# A private copy: a rebuild in the tree during the run must not change the binary under test.
cp "${FAILOVERD_BIN:-$repo/target/release/failoverd}" "$work/failoverd.bin"
bin=$work/failoverd.bin

# One cgroup for the server under test: CPU time from cpuacct (counts every process and thread
# it forks), a CPU quota from cpu when capped.
mkdir -p "$cg_cpu" "$cg_acct"
echo -1 > "$cg_cpu/cpu.cfs_quota_us"
cpu_ns() { cat "$cg_acct/cpuacct.usage"; }
cap() { # cap 50 | cap off
  if [ "$1" = off ]; then echo -1 > "$cg_cpu/cpu.cfs_quota_us"
  else echo 100000 > "$cg_cpu/cpu.cfs_period_us"; echo $(($1 * 1000)) > "$cg_cpu/cpu.cfs_quota_us"; fi
}

ms() { date +%s%3N; }
median() { sort -g | awk '{v[NR]=$1} END {if (NR==0) print "-"; else if (NR%2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'; }
spread() { sort -g | awk 'NR==1 {lo=$1} {hi=$1} END {if (NR) printf "%s–%s", lo, hi; else print "-"}'; }

# Starts a background process; its pid goes to $last_pid and to the cleanup list.
# bg LOG [--cg] CMD...   --cg: inside the server cgroup, pinned to CPU 0.
bg() {
  local log=$1; shift
  if [ "$1" = --cg ]; then
    shift
    # The shell joins the cgroups, then execs the server: every child it forks is counted.
    sh -c 'echo $$ > "$1/cgroup.procs"; echo $$ > "$2/cgroup.procs"; shift 2; exec taskset -c 0 "$@"' \
      sh "$cg_cpu" "$cg_acct" "$@" > "$log" 2>&1 &
  else
    "$@" > "$log" 2>&1 &
  fi
  last_pid=$!
  echo "$last_pid" >> "$work/pids"
}
stop() { # stop PID: TERM, then KILL after 3 s
  local p=$1
  kill "$p" 2>/dev/null || return 0
  for _ in $(seq 1 30); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$p" 2>/dev/null || true
  wait "$p" 2>/dev/null || true
}
# Every process in the server cgroup (a server may fork: NSD does).
cg_pids() { cat "$cg_acct/cgroup.procs"; }
cg_rss_kb() { local p s=0; for p in $(cg_pids); do s=$((s + $(awk '/VmRSS/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0))); done; echo "$s"; }

# ---------------------------------------------------------------- the zone, the same everywhere
zone=ha.example.com
port=15353
web_port=18480
primary=127.0.0.21
secondary=127.0.0.22
declare -A addr=([failoverd]=127.0.0.31 [gdnsd]=127.0.0.32 [pdns]=127.0.0.33 [nsd]=127.0.0.34 [knot]=127.0.0.35)

static_zone() { # static_zone FILE APP_RECORD
  cat > "$1" <<EOF
\$ORIGIN $zone.
\$TTL 10
@        10   IN SOA ns-node1.$zone. hostmaster.$zone. 1 3600 600 86400 10
@        3600 IN NS  ns-node1.$zone.
@        3600 IN NS  ns-node2.$zone.
ns-node1 3600 IN A   $primary
ns-node2 3600 IN A   $secondary
$2
EOF
}

printf 'app.%s A\n' "$zone" > "$work/q-failover"
printf '%s\n' "app.$zone A" "app.$zone AAAA" "$zone SOA" "$zone NS" "nope.$zone A" > "$work/q-mix"

# failoverd timings: name interval retry timeout fall rise
declare -A fo_timing=(
  [fastest]="100ms 100ms 50ms 1 1"
  [equal]="1s 1s 500ms 1 1"
  [retry]="1s 250ms 200ms 1 1"
  [defaults]="3s 500ms 500ms 2 2"
)

# Writes the server's configuration for a setting (fastest|equal|defaults) and starts it.
start_server() { # start_server NAME [SETTING]
  local name=$1 setting=${2:-equal} a=${addr[$1]} d="$work/$1"
  rm -rf "$d"; mkdir -p "$d"
  case $name in
    failoverd)
      local t
      read -r -a t <<< "${fo_timing[$setting]}"
      cat > "$d/config.yaml" <<EOF
zone: $zone
self: node1
dns: { listen: ["$a:$port"], ttl: 10s }
dashboard: { listen: "127.0.0.1:18081" }
defaults: { interval: ${t[0]}, retry_interval: ${t[1]}, timeout: ${t[2]}, fall: ${t[3]}, rise: ${t[4]} }
nodes:
  - { id: node1, address: $primary, priority: 20 }
  - { id: node2, address: $secondary, priority: 10 }
checks:
  - { id: web, type: http, url: "http://{address}:$web_port/health" }
hostnames:
  - { name: app, checks: [web] }
EOF
      RUST_LOG=warn bg "$d/log" --cg "$bin" run --config "$d/config.yaml" --state-dir "$d/state"
      ;;
    gdnsd)
      # 3.8.1 rejects an interval under 2 s, so "fastest" and "equal" are both 2 s; thresholds 1.
      mkdir -p "$d/zones"
      cat > "$d/config" <<EOF
options => { listen => [ $a:$port ], udp_threads => 1, tcp_threads => 1, zones_default_ttl => 10 }
service_types => {
  web => { plugin => http_status, port => $web_port, url_path => /health, interval => 2, timeout => 1, up_thresh => 1, ok_thresh => 1, down_thresh => 1 }
}
plugins => { simplefo => { app => { primary => $primary, secondary => $secondary, service_types => [ web ] } } }
EOF
      static_zone "$d/zones/$zone" "app      10   IN DYNA simplefo!app"
      bg "$d/log" --cg gdnsd -c "$d" start
      ;;
    pdns)
      # lua-health-checks-interval=1 is its fastest; one failure marks an address down (4.7).
      cat > "$d/pdns.conf" <<EOF
launch=bind
bind-config=$d/named.conf
local-address=$a
local-port=$port
daemon=no
guardian=no
webserver=no
api=no
write-pid=no
socket-dir=$d
security-poll-suffix=
enable-lua-records=shared
lua-health-checks-interval=1
distributor-threads=1
receiver-threads=1
reuseport=no
loglevel=3
EOF
      echo "zone \"$zone\" { type master; file \"$d/zone\"; };" > "$d/named.conf"
      static_zone "$d/zone" "app      10   IN LUA A \"ifurlup('http://app.$zone:$web_port/health', {{'$primary'}, {'$secondary'}}, {timeout=1})\""
      bg "$d/log" --cg pdns_server --config-dir="$d"
      ;;
    nsd)
      static_zone "$d/zone" "app      10   IN A   $primary"
      cat > "$d/nsd.conf" <<EOF
server:
  ip-address: $a@$port
  server-count: 1
  username: ""
  database: ""
  chroot: ""
  zonesdir: "$d"
  pidfile: "$d/nsd.pid"
  xfrdfile: "$d/xfrd.state"
  xfrdir: "$d"
  zonelistfile: "$d/zone.list"
  rrl-ratelimit: 0
  rrl-whitelist-ratelimit: 0
  verbosity: 0
remote-control:
  control-enable: no
zone:
  name: $zone
  zonefile: "$d/zone"
EOF
      bg "$d/log" --cg nsd -d -c "$d/nsd.conf"
      ;;
    knot)
      static_zone "$d/zone" "app      10   IN A   $primary"
      cat > "$d/knot.conf" <<EOF
server:
  listen: $a@$port
  rundir: "$d"
  udp-workers: 1
  tcp-workers: 1
  background-workers: 1
database:
  storage: "$d"
log:
  - target: stderr
    any: warning
template:
  - id: default
    storage: "$d"
zone:
  - domain: $zone
    file: "$d/zone"
EOF
      bg "$d/log" --cg knotd -c "$d/knot.conf"
      ;;
  esac
  srv_pid=$last_pid
  srv=$name
  # Up when it answers the SOA (failoverd: after its first round of checks).
  for _ in $(seq 1 100); do
    dig @"$a" -p "$port" "$zone" SOA +short +time=1 +tries=1 2>/dev/null | grep -q hostmaster && break
    kill -0 "$srv_pid" 2>/dev/null || { echo "$name died at start:"; cat "$d/log"; return 1; }
    sleep 0.1
  done
  # Knot pins its UDP worker itself: put every thread of every server process on CPU 0.
  for p in $(cg_pids); do taskset -a -p -c 0 "$p" >/dev/null 2>&1 || true; done
}
stop_server() { stop "$srv_pid"; cap off; }

answer() { dig @"${addr[$srv]}" -p "$port" "app.$zone" A +short +time=1 +tries=1 2>/dev/null | head -1; }
wait_answer() { # wait_answer IP MAX_SECONDS: 0 when the answer is IP
  local deadline=$(( $(ms) + $2 * 1000 ))
  while (( $(ms) < deadline )); do [ "$(answer)" = "$1" ] && return 0; sleep 0.05; done
  return 1
}

start_web() { # start_web IP: one HTTP backend, pid in web_pid[IP]
  bg "$work/web-$1.log" "$work/backend" -t 3600 "http:$1:$web_port"
  web_pid[$1]=$last_pid
  for _ in $(seq 1 50); do curl -fs -o /dev/null "http://$1:$web_port/health" && return 0; sleep 0.05; done
  echo "backend on $1 did not start" >&2; return 1
}
declare -A web_pid=()

results=bench/results/$(date -u +%Y-%m-%dT%H%MZ).md
mkdir -p bench/results
report="$work/report.md"
: > "$report"
out() { printf '%s\n' "$@" >> "$report"; }

start_web "$primary"
start_web "$secondary"

# ---------------------------------------------------------------- answering speed
# One dnsperf run on CPU 1: prints "qps lost avg_latency_ms cpu_share".
dnsperf_run() { # dnsperf_run QUERYFILE SECONDS [extra dnsperf args]
  local qf=$1 s=$2 c0 c1 t0 t1 o
  shift 2
  c0=$(cpu_ns); t0=$(date +%s%N)
  o=$(taskset -c 1 dnsperf -s "${addr[$srv]}" -p "$port" -d "$qf" -l "$s" -c 4 -q 200 -t 2 "$@" 2>&1)
  t1=$(date +%s%N); c1=$(cpu_ns)
  printf '%s\n' "$o" > "$work/dnsperf.last"
  local qps lost lat
  qps=$(awk '/Queries per second/ {print $4}' <<< "$o")
  lost=$(awk '/Queries lost/ {print $3}' <<< "$o")
  lat=$(awk '/Average Latency/ {printf "%.3f", $4 * 1000}' <<< "$o")
  echo "${qps:-0} ${lost:-?} ${lat:-0} $(echo "($c1 - $c0) / ($t1 - $t0)" | bc -l)"
}
# Per-query latencies at a fixed rate: prints "p50_ms p99_ms max_ms lost".
latency_run() { # latency_run QUERYFILE SECONDS RATE
  local o
  o=$(taskset -c 1 dnsperf -s "${addr[$srv]}" -p "$port" -d "$1" -l "$2" -Q "$3" -c 1 -q 100 -t 2 -v 2>&1)
  awk '$1 == ">" {print $NF * 1000}' <<< "$o" | sort -g | awk '{v[NR]=$1} END {
        if (NR == 0) { print "- - -"; exit }
        i50 = int(NR * 0.50); if (i50 < 1) i50 = 1
        i99 = int(NR * 0.99); if (i99 < 1) i99 = 1
        printf "%.3f %.3f %.3f", v[i50], v[i99], v[NR] }'
  echo " $(awk '/Queries lost/ {print $3}' <<< "$o")"
}

declare -A speed_rows=()
if want speed; then
  echo "== answering speed (${secs} s runs, median of $runs)"
  for s in failoverd gdnsd pdns nsd knot; do
    serves "$s" || continue
    start_server "$s" equal
    wait_answer "$primary" 20 || echo "warning: $s does not answer $primary yet"
    taskset -c 1 dnsperf -s "${addr[$s]}" -p "$port" -d "$work/q-mix" -l 1 -c 4 -q 200 >/dev/null 2>&1 || true
    idle_rss=$(cg_rss_kb)
    for q in failover mix; do
      : > "$work/runs"; : > "$work/capped"
      for _ in $(seq 1 "$runs"); do
        dnsperf_run "$work/q-$q" "$secs" >> "$work/runs"
        cap 50
        dnsperf_run "$work/q-$q" "$secs" >> "$work/capped"
        cap off
      done
      read -r p50 p99 pmax _ <<< "$(latency_run "$work/q-$q" "$secs" 10000)"
      qps=$(awk '{print $1}' "$work/runs" | median)
      lost=$(awk '{print $2}' "$work/runs" | median)
      lat=$(awk '{print $3}' "$work/runs" | median)
      share=$(awk '{print $4}' "$work/runs" | median)
      per_core=$(awk '$4 > 0 {print $1 / $4}' "$work/runs" | median)
      capped=$(awk '{print $1 * 2}' "$work/capped" | median)
      capped_core=$(awk '$4 > 0 {print $1 / $4}' "$work/capped" | median)
      row=$(printf '| %s | %s | %.0f | %.0f %% | **%.0f** | %.0f | %.0f | %s | %s / %s / %s | %s |' \
        "$s" "$q" "$qps" "$(echo "$share * 100" | bc -l)" "$per_core" "$capped" "$capped_core" "$lat" "$p50" "$p99" "$pmax" "$lost")
      speed_rows[$s-$q]=$row
      echo "$row"
      echo "   runs: $(tr '\n' ';' < "$work/runs")  capped: $(tr '\n' ';' < "$work/capped")"
    done
    speed_rows[$s-rss]=$((idle_rss / 1024))
    stop_server
  done
fi

# ---------------------------------------------------------------- failover and failback
declare -a fo_rows=()
failover_trials() { # failover_trials SERVER SETTING BOUND_SECONDS
  local s=$1 setting=$2 bound=$3 fo=() fb=() t k
  start_server "$s" "$setting"
  # PowerDNS starts checking on the first query, which sees every address down: warm it up.
  wait_answer "$primary" 30 || { echo "$s never answered $primary"; stop_server; return 0; }
  for k in $(seq 1 "$trials"); do
    sleep "$(awk -v s="$k$RANDOM" 'BEGIN {srand(s); printf "%.2f", 1 + rand() * 2}')"
    stop "${web_pid[$primary]}"
    t=$(ms)
    if wait_answer "$secondary" "$bound"; then fo+=($(( $(ms) - t ))); else fo+=(">${bound}000"); fi
    # Restart at a random point of the probe cycle too (not right after a probe).
    sleep "$(awk -v s="$k$RANDOM" 'BEGIN {srand(s); printf "%.2f", 0.5 + rand() * 2}')"
    start_web "$primary"
    t=$(ms)
    if wait_answer "$primary" "$bound"; then fb+=($(( $(ms) - t ))); else fb+=(">${bound}000"); fi
  done
  stop_server
  local row
  row=$(printf '| %s | %s | %s ms | %s ms | %s | %s ms | %s ms | %s |' "$s" "$4" \
    "$(printf '%s\n' "${fo[@]}" | median)" "$(printf '%s\n' "${fo[@]}" | spread)" "${fo[*]}" \
    "$(printf '%s\n' "${fb[@]}" | median)" "$(printf '%s\n' "${fb[@]}" | spread)" "${fb[*]}")
  fo_rows+=("$row")
  echo "$row"
}
if want failover; then
  echo "== failover and failback ($trials trials each)"
  if serves failoverd; then
    failover_trials failoverd fastest 10 "fastest: interval 100ms, retry 100ms, timeout 50ms, fall 1, rise 1"
    failover_trials failoverd equal 10 "equal: interval 1s, retry 1s, timeout 500ms, fall 1, rise 1"
    failover_trials failoverd retry 10 "1 s interval, failing checks every 250ms: retry 250ms, timeout 200ms, fall 1, rise 1"
    failover_trials failoverd defaults 20 "defaults ÷ 10: interval 3s, retry 500ms, timeout 500ms, fall 2, rise 2"
  fi
  serves gdnsd && failover_trials gdnsd equal 15 "fastest = equal: interval 2s (its minimum), timeout 1s, up/ok/down_thresh 1"
  serves pdns && failover_trials pdns equal 15 "fastest = equal: lua-health-checks-interval 1, timeout 1, one failure"
fi

# ---------------------------------------------------------------- 10,000 (node, check) pairs
scale_rows=()
if want scale && serves failoverd; then
  echo "== scale: 100 nodes × 100 checks (50 HTTP, 50 TCP) at 1 s"
  ulimit -n "$(ulimit -Hn)" # the hard limit; 200 listeners and ~10,000 connects a second need a few thousand
  d="$work/scale"; mkdir -p "$d"
  # 100 node addresses 127.0.1.1–100; HTTP checks share port 20080 (one path each), TCP checks
  # port 20081: 200 listening sockets serve all 10,000 pairs.
  bg "$d/backend.log" "$work/backend" -t 600 -o "$d/counts" "http:127.0.1.1:20080:100" "tcp:127.0.1.1:20081:100"
  scale_backend=$last_pid
  {
    echo "zone: $zone"
    echo "self: n1"
    echo "dns: { listen: [\"${addr[failoverd]}:$port\"], ttl: 10s }"
    echo "dashboard: { listen: \"127.0.0.1:18081\" }"
    echo "defaults: { interval: 1s, retry_interval: 1s, timeout: 900ms, fall: 2, rise: 2 }"
    echo "nodes:"
    for n in $(seq 1 100); do echo "  - { id: n$n, address: 127.0.1.$n, priority: $((200 - n)) }"; done
    echo "checks:"
    for c in $(seq 1 50); do echo "  - { id: h$c, type: http, url: \"http://{address}:20080/c$c\" }"; done
    for c in $(seq 1 50); do echo "  - { id: t$c, type: tcp, port: 20081 }"; done
    echo "hostnames:"
    echo "  - { name: app, checks: [h1, t1] }"
    for c in $(seq 2 10); do echo "  - { name: app$c, checks: [h$c, t$c], mode: all }"; done
  } > "$d/config.yaml"
  srv=failoverd
  t0=$(ms)
  RUST_LOG=warn bg "$d/log" --cg "$bin" run --config "$d/config.yaml" --state-dir "$d/state"
  srv_pid=$last_pid
  # Unlike the speed test, the agent may use both cores here: the question is how much it needs.
  for p in $(cg_pids); do taskset -a -p -c 0,1 "$p" >/dev/null 2>&1 || true; done
  wait_answer 127.0.1.1 30 || echo "warning: the scale agent did not answer in 30 s"
  ready_ms=$(( $(ms) - t0 ))
  sleep 5
  counts() { tail -1 "$d/counts"; }
  read -r _ h0 c0 <<< "$(counts)"; n0=$(cpu_ns); w0=$(date +%s%N)
  sleep "$scale_secs"
  read -r _ h1 c1 <<< "$(counts)"; n1=$(cpu_ns); w1=$(date +%s%N)
  rss=$(cg_rss_kb)
  hwm=$(awk '/VmHWM/ {print $2}' "/proc/$srv_pid/status")
  el=$(echo "($w1 - $w0) / 1000000000" | bc -l)
  share=$(echo "($n1 - $n0) / ($w1 - $w0)" | bc -l)
  http_rate=$(echo "($h1 - $h0) / $el" | bc -l)
  tcp_rate=$(echo "($c1 - $c0) / $el" | bc -l)
  # DNS while probing: dnsperf on CPU 1, the agent unpinned.
  read -r dq dlost dlat dshare <<< "$(dnsperf_run "$work/q-mix" 10)"
  read -r _ h2 c2 <<< "$(counts)"
  probes_during=$(echo "($h2 + $c2 - $h1 - $c1) / 10" | bc -l)
  stop "$srv_pid"; stop "$scale_backend"
  scale_rows+=("$(printf '| pairs (node × check) | 10,000 (100 × (50 HTTP + 50 TCP)), interval 1 s |')")
  scale_rows+=("$(printf '| start to first answer (first full round) | %s ms |' "$ready_ms")")
  scale_rows+=("$(printf '| agent CPU (of one core), probing only | %.0f %% |' "$(echo "$share * 100" | bc -l)")")
  scale_rows+=("$(printf '| RSS / peak RSS | %.1f MiB / %.1f MiB |' "$(echo "$rss / 1024" | bc -l)" "$(echo "$hwm / 1024" | bc -l)")")
  scale_rows+=("$(printf '| probes done per second (counted by the backend) | %.0f (HTTP %.0f, TCP %.0f) of ~10,000–10,500 scheduled (1 s minus 0–10 %% jitter) |' "$(echo "$http_rate + $tcp_rate" | bc -l)" "$http_rate" "$tcp_rate")")
  scale_rows+=("$(printf '| DNS while probing (mix, 10 s, dnsperf on CPU 1) | %.0f QPS, avg %s ms, lost %s; agent CPU %.0f %%; probes/s meanwhile %.0f |' "$dq" "$dlat" "$dlost" "$(echo "$dshare * 100" | bc -l)" "$probes_during")")
  printf '%s\n' "${scale_rows[@]}"
fi

# ---------------------------------------------------------------- footprint
foot_rows=()
if want footprint && serves failoverd; then
  echo "== footprint"
  firsts=()
  for k in $(seq 1 5); do
    t0=$(ms)
    start_server failoverd equal
    firsts+=($(( $(ms) - t0 )))
    if [ "$k" = 5 ]; then sleep 10; idle_kb=$(cg_rss_kb); fi
    stop_server
  done
  size=$(stat -c %s "$bin")  # the copy: same size
  strip -o "$work/stripped" "$bin"
  ssize=$(stat -c %s "$work/stripped")
  foot_rows+=("$(printf '| idle RSS (2 nodes, 1 check, 10 s after start) | %.1f MiB |' "$(echo "$idle_kb / 1024" | bc -l)")")
  foot_rows+=("$(printf '| binary size (release / stripped) | %.1f MiB / %.1f MiB |' "$(echo "$size / 1048576" | bc -l)" "$(echo "$ssize / 1048576" | bc -l)")")
  foot_rows+=("$(printf '| start to first answer (median of 5; includes the first round of checks) | %s ms (%s) |' "$(printf '%s\n' "${firsts[@]}" | median)" "${firsts[*]}")")
  printf '%s\n' "${foot_rows[@]}"
fi

# ---------------------------------------------------------------- report
ver() { dpkg-query -W -f '${Version}' "$1" 2>/dev/null || echo "?"; }
{
  echo "# failoverd benchmarks — $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  echo "Command: \`bench/run.sh $args\` (dnsperf ${secs} s per run, median of $runs; $trials failover trials)."
  echo "Machine: $(nproc) × $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), Linux $(uname -r); load at start: $load_at_start."
  echo "Versions: failoverd $(git -C "$repo" describe --always --dirty 2>/dev/null || echo ?) ($(rustc --version | cut -d' ' -f2)), gdnsd $(ver gdnsd), PowerDNS $(ver pdns-server), NSD $(ver nsd), Knot $(ver knot), dnsperf $(ver dnsperf)."
  echo
  if want speed; then
    echo "## Answering speed"
    echo
    echo "Server pinned to CPU 0 (every thread), dnsperf to CPU 1 (\`-c 4 -q 200\`). CPU is the server's whole"
    echo "cgroup (cpuacct). *per core* = QPS ÷ CPU share. *capped*: the server's cgroup limited to 50 % of a"
    echo "core (cfs quota), QPS × 2 — the server-bound figure, since dnsperf saturates its core first."
    echo "Latency percentiles: a separate ${secs} s run at a fixed 10,000 QPS with \`-v\` (per-query latencies)."
    echo
    echo "| server | queries | QPS | server CPU | per core | capped QPS × 2 | capped per core | avg latency ms | p50 / p99 / max ms @10k | lost |"
    echo "|---|---|---|---|---|---|---|---|---|---|"
    for s in failoverd gdnsd pdns nsd knot; do
      for q in failover mix; do [ -n "${speed_rows[$s-$q]:-}" ] && echo "${speed_rows[$s-$q]}"; done
    done
    echo
    echo "Idle RSS after the warm-up (all processes of the server):"
    for s in failoverd gdnsd pdns nsd knot; do [ -n "${speed_rows[$s-rss]:-}" ] && echo "$s ${speed_rows[$s-rss]} MiB;"; done | paste -sd' '
    echo
  fi
  if want failover; then
    echo "## Failover and failback"
    echo
    echo "HTTP backends on $primary (primary) and $secondary; the primary's process is killed (connection refused),"
    echo "then restarted; \`dig\` every 50 ms until the answer moves. Kills land at a random point of the cycle."
    echo
    echo "| server | settings | failover median | spread | trials | failback median | spread | trials |"
    echo "|---|---|---|---|---|---|---|---|"
    printf '%s\n' "${fo_rows[@]}"
    echo
  fi
  if ((${#scale_rows[@]})); then
    echo "## Scale: 10,000 (node, check) pairs at 1 s"
    echo
    echo "Backends: one C epoll process (bench/backend.c), 100 loopback addresses × (HTTP port, TCP port),"
    echo "counting what it serves. Agent unpinned (both cores), measured for ${scale_secs} s after 5 s of warm-up."
    echo
    echo "| | |"
    echo "|---|---|"
    printf '%s\n' "${scale_rows[@]}"
    echo
  fi
  if ((${#foot_rows[@]})); then
    echo "## Footprint"
    echo
    echo "| | |"
    echo "|---|---|"
    printf '%s\n' "${foot_rows[@]}"
    echo
  fi
} > "$results"
cat "$results"
echo "written: $results"
